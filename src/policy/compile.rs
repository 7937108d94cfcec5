//! Compiling `match` and `agent` blocks (and macros) into [`Cond`]s: field names checked against
//! the catalog, modifiers against the field's type, values against the field's domain, regexes
//! and globs built with size limits, list and macro references resolved.
//!
//! Every problem is reported to the sink with its position and compilation continues, so one run
//! shows every mistake. A block with any error compiles to `None`; the set is then not built.
//!
//! This module does not know policies, actions or files on disk (that is `load`).

use super::cond::{quote, CmpOp, Cond, Loc, Op, RegexSource, Test};
use super::diag::{codes, did_you_mean, Pos, Sink, SourceFile};
use super::fields::{self, Field, FieldType, FIELDS, SESSION_CHOICES, SEVERITIES};
use super::yaml::{Kind, Node, Reader};
use memchr::memmem::Finder;
use regex::{Regex, RegexBuilder};
use std::collections::HashMap;

/// Longest regex or glob source accepted.
pub(crate) const MAX_PATTERN_CHARS: usize = 4096;
/// Compiled-program and lazy-DFA limits for each regex (bytes).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;
const REGEX_DFA_LIMIT: usize = 1 << 20;
const REGEX_NEST_LIMIT: u32 = 64;

/// Operators (at most one per key) and flags (each at most once).
const OPERATORS: &[&str] =
    &["equals", "in", "contains", "startswith", "endswith", "re", "glob", "gt", "gte", "lt", "lte", "exists"];
const FLAGS: &[&str] = &["all", "nocase", "in_list"];
/// Keys of a match block that are not fields.
const STRUCTURAL: &[&str] = &["any", "all", "not", "macro"];

/// A named list, as defined (with appends applied).
#[derive(Debug, Clone)]
pub(crate) struct ListDef {
    pub items: Vec<(String, Loc)>,
}

/// A named macro: where its `match` block is, and whether it has been compiled yet.
pub(crate) struct MacroDef<'n> {
    pub node: &'n Node,
    pub file: usize,
    state: MacroState,
}

enum MacroState {
    Pending,
    InProgress,
    Done(Cond),
    Failed,
}

impl<'n> MacroDef<'n> {
    pub fn new(node: &'n Node, file: usize) -> MacroDef<'n> {
        MacroDef { node, file, state: MacroState::Pending }
    }
}

pub(crate) struct Compiler<'n, 's> {
    pub files: &'s [SourceFile],
    pub sink: &'s mut Sink,
    pub lists: HashMap<String, ListDef>,
    pub macros: HashMap<String, MacroDef<'n>>,
    /// Macros being compiled, outermost first, to name a cycle.
    macro_stack: Vec<String>,
}

fn loc(file: usize, pos: Pos) -> Loc {
    Loc { file, pos }
}

impl<'n, 's> Compiler<'n, 's> {
    pub fn new(
        files: &'s [SourceFile],
        sink: &'s mut Sink,
        lists: HashMap<String, ListDef>,
        macros: HashMap<String, MacroDef<'n>>,
    ) -> Compiler<'n, 's> {
        Compiler { files, sink, lists, macros, macro_stack: Vec::new() }
    }

    pub fn reader(&mut self, file: usize) -> Reader<'_> {
        let files = self.files;
        Reader { file: &files[file], sink: &mut *self.sink }
    }

    fn error(&mut self, file: usize, pos: Pos, code: &'static str, message: impl Into<String>) {
        let files = self.files;
        self.sink.push(&files[file], pos, code, message);
    }

    /// Compiles every macro not compiled yet, so unused macros are checked too.
    pub fn check_all_macros(&mut self) {
        let mut names: Vec<String> = self.macros.keys().cloned().collect();
        names.sort();
        for name in names {
            if let Some(def) = self.macros.get(&name) {
                if matches!(def.state, MacroState::Pending) {
                    let _ = self.macro_cond(&name, None);
                }
            }
        }
    }

    /// A `match` block: a map whose entries must all hold.
    pub fn match_block(&mut self, file: usize, node: &'n Node, what: &str) -> Option<Cond> {
        let raw = self.reader(file).map(node, what)?;
        let entries = self.reader(file).check_keys(raw, &[], what);
        if entries.is_empty() {
            self.error(
                file,
                node.pos,
                codes::CONFLICT,
                format!("{what} is empty; it would match every event (write at least one condition)"),
            );
            return None;
        }
        let mut ok = true;
        let mut items = Vec::new();
        for &(name, key, value) in entries.iter() {
            let cond = match name {
                "any" | "all" => self.group(file, name, key, value),
                "not" => self
                    .match_block(file, value, "`not`")
                    .map(|c| Cond::Not { inner: Box::new(c), at: loc(file, key.pos) }),
                "macro" => self.macro_refs(file, value),
                _ => self.field_test(file, name, key, value, ""),
            };
            match cond {
                Some(c) => items.push(c),
                None => ok = false,
            }
        }
        ok.then(|| Cond::all(items))
    }

    /// An `agent` block: the same as a match block over the `agent.*` fields, without the
    /// prefix (`command|contains: curl`).
    pub fn agent_block(&mut self, file: usize, node: &'n Node) -> Option<Cond> {
        let raw = self.reader(file).map(node, "`agent`")?;
        let entries = self.reader(file).check_keys(raw, &[], "`agent`");
        if entries.is_empty() {
            self.error(file, node.pos, codes::CONFLICT, "`agent` is empty (write e.g. `session: required`)");
            return None;
        }
        let mut ok = true;
        let mut items = Vec::new();
        for &(name, key, value) in entries.iter() {
            match self.field_test(file, name, key, value, "agent.") {
                Some(c) => items.push(c),
                None => ok = false,
            }
        }
        ok.then(|| Cond::all(items))
    }

    /// `any: [block, …]` or `all: [block, …]`.
    fn group(&mut self, file: usize, name: &str, key: &Node, value: &'n Node) -> Option<Cond> {
        let what = format!("`{name}`");
        let blocks = self.reader(file).seq(value, &what)?;
        if blocks.is_empty() {
            self.error(file, value.pos, codes::CONFLICT, format!("{what} needs at least one block"));
            return None;
        }
        let mut ok = true;
        let mut items = Vec::new();
        for block in blocks {
            match self.match_block(file, block, &format!("an item of {what}")) {
                Some(c) => items.push(c),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        Some(if name == "any" { Cond::any(items, loc(file, key.pos)) } else { Cond::all(items) })
    }

    /// `macro: name` or `macro: [a, b]` (all must hold).
    fn macro_refs(&mut self, file: usize, value: &'n Node) -> Option<Cond> {
        let names = self.reader(file).one_or_many(value);
        if names.is_empty() {
            self.error(file, value.pos, codes::CONFLICT, "`macro` needs at least one macro name");
            return None;
        }
        let mut ok = true;
        let mut items = Vec::new();
        for n in names {
            let Some(name) = self.reader(file).str(n, "a macro name") else {
                ok = false;
                continue;
            };
            match self.macro_cond(name, Some((file, n.pos))) {
                Some(inner) => items.push(Cond::Macro {
                    name: name.to_string(),
                    inner: Box::new(inner),
                    at: loc(file, n.pos),
                }),
                None => ok = false,
            }
        }
        ok.then(|| Cond::all(items))
    }

    /// A macro's compiled condition, compiling it on first use.
    fn macro_cond(&mut self, name: &str, used_at: Option<(usize, Pos)>) -> Option<Cond> {
        let Some(def) = self.macros.get_mut(name) else {
            if let Some((file, pos)) = used_at {
                let hint = did_you_mean(name, self.macros.keys().map(String::as_str));
                self.error(file, pos, codes::UNDEFINED_MACRO, format!("macro `{name}` is not defined{hint}"));
            }
            return None;
        };
        match &def.state {
            MacroState::Done(c) => return Some(c.clone()),
            MacroState::Failed => return None,
            MacroState::InProgress => {
                if let Some((file, pos)) = used_at {
                    let start = self.macro_stack.iter().position(|m| m == name).unwrap_or(0);
                    let mut chain: Vec<&str> = self.macro_stack[start..].iter().map(String::as_str).collect();
                    chain.push(name);
                    let chain = chain.join(" → ");
                    self.error(
                        file,
                        pos,
                        codes::MACRO_CYCLE,
                        format!("macros refer to each other in a cycle: {chain}"),
                    );
                }
                return None;
            }
            MacroState::Pending => def.state = MacroState::InProgress,
        }
        let (node, file) = (def.node, def.file);
        self.macro_stack.push(name.to_string());
        let compiled = self.match_block(file, node, &format!("the `match` of macro `{name}`"));
        self.macro_stack.pop();
        if let Some(def) = self.macros.get_mut(name) {
            def.state = match &compiled {
                Some(c) => MacroState::Done(c.clone()),
                None => MacroState::Failed,
            };
        }
        compiled
    }

    /// One `field|modifier…: value` entry. `prefix` is `agent.` inside an `agent` block.
    fn field_test(
        &mut self,
        file: usize,
        key: &str,
        key_node: &Node,
        value: &'n Node,
        prefix: &str,
    ) -> Option<Cond> {
        let source = self.files[file].text.as_str();
        let mut parts = key.split('|');
        let field_name = parts.next().unwrap_or("");
        let full_name = format!("{prefix}{field_name}");
        let Some((field, ty)) = fields::lookup(&full_name) else {
            let pos = key_node.sub_pos(source, key, 0, field_name.len());
            let known: Vec<&str> = FIELDS
                .iter()
                .filter_map(|(n, _, _)| n.strip_prefix(prefix))
                .chain(if prefix.is_empty() { STRUCTURAL } else { &[] }.iter().copied())
                .collect();
            let hint = did_you_mean(field_name, known.iter().copied());
            let hint = if hint.is_empty()
                && prefix.is_empty()
                && fields::lookup(&format!("agent.{field_name}")).is_some()
            {
                format!(" (did you mean `agent.{field_name}`?)")
            } else {
                hint
            };
            let where_ = if prefix.is_empty() { "" } else { " in `agent`" };
            self.error(
                file,
                pos,
                codes::UNKNOWN_FIELD,
                format!("unknown field `{field_name}`{where_}{hint}"),
            );
            return None;
        };

        // Modifiers: at most one operator, each flag at most once.
        let mut operator: Option<&str> = None;
        let (mut all, mut nocase, mut in_list) = (false, false, false);
        let mut offset = field_name.len();
        let mut ok = true;
        for m in parts {
            let pos = key_node.sub_pos(source, key, offset + 1, m.len());
            offset += 1 + m.len();
            if OPERATORS.contains(&m) {
                if let Some(first) = operator {
                    self.error(
                        file,
                        pos,
                        codes::MODIFIER_MISUSE,
                        format!("`{m}` after `{first}`: one operator per key"),
                    );
                    ok = false;
                }
                operator = Some(m);
            } else if FLAGS.contains(&m) {
                let flag = match m {
                    "all" => &mut all,
                    "nocase" => &mut nocase,
                    _ => &mut in_list,
                };
                if *flag {
                    self.error(file, pos, codes::MODIFIER_MISUSE, format!("`{m}` is given twice"));
                    ok = false;
                }
                *flag = true;
            } else {
                let hint = did_you_mean(m, OPERATORS.iter().chain(FLAGS).copied());
                let hint = if hint.is_empty() {
                    format!(" (modifiers: {}, {})", OPERATORS.join(", "), FLAGS.join(", "))
                } else {
                    hint
                };
                self.error(file, pos, codes::UNKNOWN_MODIFIER, format!("unknown modifier `{m}`{hint}"));
                ok = false;
            }
        }
        if !ok {
            return None;
        }
        let op = operator.unwrap_or("equals");
        let at = loc(file, key_node.pos);
        let misuse = |why: String| (key_node.pos, why);

        // What each field type accepts.
        let allowed: &[&str] = match ty {
            FieldType::Text => {
                &["equals", "in", "contains", "startswith", "endswith", "re", "glob", "exists"]
            }
            FieldType::Enum(_) => &["equals", "in", "exists"],
            FieldType::Ordered(_) => &["equals", "in", "gt", "gte", "lt", "lte"],
            FieldType::Number => &["equals", "in", "gt", "gte", "lt", "lte", "exists"],
            FieldType::Bool | FieldType::Session => &["equals"],
        };
        let mut problem: Option<(Pos, String)> = None;
        if !allowed.contains(&op) {
            problem = Some(misuse(format!(
                "`{op}` does not apply to {full_name} (it accepts: {})",
                allowed.join(", ")
            )));
        } else if all && !matches!(op, "contains" | "startswith" | "endswith" | "re" | "glob") {
            problem = Some(misuse(format!(
                "`all` needs one of contains, startswith, endswith, re, glob (not `{op}`)"
            )));
        } else if nocase && (ty != FieldType::Text || matches!(op, "re" | "exists")) {
            let why = if op == "re" {
                "`nocase` does not combine with `re`; write `(?i)` in the pattern".to_string()
            } else {
                format!("`nocase` applies to text tests only (not `{op}` on {full_name})")
            };
            problem = Some(misuse(why));
        } else if in_list && (matches!(op, "exists") || !matches!(ty, FieldType::Text | FieldType::Enum(_))) {
            problem = Some(misuse(format!("`in_list` does not combine with `{op}` on {full_name}")));
        }
        if let Some((pos, why)) = problem {
            self.error(file, pos, codes::MODIFIER_MISUSE, why);
            return None;
        }

        // `exists: true|false`.
        if op == "exists" {
            let want = self.reader(file).bool(value, "`exists`")?;
            return Some(test(field, ty, key, want.to_string(), at, Op::Exists(want)));
        }

        // `agent.session: required|forbidden|any` and `stopped: true|false`.
        match ty {
            FieldType::Session => {
                let choice = self.reader(file).choice(value, "`session`", SESSION_CHOICES)?;
                return Some(match choice {
                    "required" => test(field, ty, key, "required".into(), at, Op::Bool(true)),
                    "forbidden" => test(field, ty, key, "forbidden".into(), at, Op::Bool(false)),
                    _ => Cond::always(),
                });
            }
            FieldType::Bool => {
                let want = self.reader(file).bool(value, &format!("`{full_name}`"))?;
                return Some(test(field, ty, key, want.to_string(), at, Op::Bool(want)));
            }
            _ => {}
        }

        // The values: from lists, or written here (one, or a list meaning "any of").
        let values = if in_list {
            self.list_values(file, value)?
        } else {
            let items = self.reader(file).one_or_many(value);
            let is_seq = matches!(value.kind, Kind::Seq(_));
            if op == "in" && !is_seq {
                self.error(file, value.pos, codes::TYPE, "`in` takes a list of values");
                return None;
            }
            if matches!(op, "gt" | "gte" | "lt" | "lte") && is_seq {
                self.error(file, value.pos, codes::TYPE, format!("`{op}` takes a single value"));
                return None;
            }
            if all && !is_seq {
                self.error(file, value.pos, codes::TYPE, "`all` takes a list of values");
                return None;
            }
            if items.is_empty() {
                self.error(file, value.pos, codes::CONFLICT, "an empty list never matches");
                return None;
            }
            let mut values = Vec::with_capacity(items.len());
            for item in items {
                if matches!(item.kind, Kind::Null) {
                    self.error(
                        file,
                        item.pos,
                        codes::TYPE,
                        "a value is missing here (null); use `exists: false` to match an absent field",
                    );
                    ok = false;
                    continue;
                }
                match self.reader(file).scalar_text(item, "a match value") {
                    Some(text) => values.push((text, loc(file, item.pos))),
                    None => ok = false,
                }
            }
            if !ok {
                return None;
            }
            values
        };
        let shown = if in_list {
            // The list names as written: shorter and more telling than the items.
            let names: Vec<String> = self
                .reader(file)
                .one_or_many(value)
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            names.join(", ")
        } else {
            show_values(&values, 6, ty == FieldType::Text)
        };

        let op = match ty {
            FieldType::Text => self.text_op(op, nocase, all, &values)?,
            FieldType::Enum(words) => {
                let mut out = Vec::new();
                for (v, at) in &values {
                    if words.contains(&v.as_str()) {
                        out.push(v.clone());
                    } else {
                        let hint = did_you_mean(v, words.iter().copied());
                        let msg = format!(
                            "{full_name} is never {}: it is one of {}{hint}",
                            quote(v),
                            words.join(", ")
                        );
                        self.error(at.file, at.pos, codes::FIELD_VALUE, msg);
                        ok = false;
                    }
                }
                Op::TextEq(out)
            }
            FieldType::Ordered(words) => {
                let mut ranks = Vec::new();
                for (v, at) in &values {
                    // `info` is accepted for `informational`, as in `priority`.
                    let word = if words == SEVERITIES && v == "info" { "informational" } else { v.as_str() };
                    match words.iter().position(|w| *w == word) {
                        Some(r) => ranks.push(r),
                        None => {
                            let hint = did_you_mean(v, words.iter().copied());
                            let msg = format!(
                                "{full_name} is never {}: it is one of {}{hint}",
                                quote(v),
                                words.join(", ")
                            );
                            self.error(at.file, at.pos, codes::FIELD_VALUE, msg);
                            ok = false;
                        }
                    }
                }
                match CmpOp::from_modifier(op) {
                    Some(c) => Op::Cmp(c, ranks.first().copied().unwrap_or(0) as f64),
                    None => Op::RankIn(ranks),
                }
            }
            FieldType::Number => {
                let mut numbers = Vec::new();
                for (v, at) in &values {
                    match v.trim().parse::<f64>() {
                        Ok(n) if n.is_finite() => numbers.push(n),
                        _ => {
                            self.error(
                                at.file,
                                at.pos,
                                codes::FIELD_VALUE,
                                format!("{full_name} is a number; {} is not", quote(v)),
                            );
                            ok = false;
                        }
                    }
                }
                match CmpOp::from_modifier(op) {
                    Some(c) => Op::Cmp(c, numbers.first().copied().unwrap_or(0.0)),
                    None => Op::NumIn(numbers),
                }
            }
            FieldType::Bool | FieldType::Session => return None,
        };
        ok.then(|| test(field, ty, key, shown, at, op))
    }

    /// Items of the named list(s) (`field|in_list: name` or `[a, b]`).
    fn list_values(&mut self, file: usize, value: &Node) -> Option<Vec<(String, Loc)>> {
        let names = self.reader(file).one_or_many(value);
        if names.is_empty() {
            self.error(file, value.pos, codes::CONFLICT, "`in_list` needs at least one list name");
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for n in names {
            let Some(name) = self.reader(file).str(n, "a list name") else {
                ok = false;
                continue;
            };
            match self.lists.get(name) {
                Some(list) => out.extend(list.items.iter().cloned()),
                None => {
                    let hint = did_you_mean(name, self.lists.keys().map(String::as_str));
                    self.error(
                        file,
                        n.pos,
                        codes::UNDEFINED_LIST,
                        format!("list `{name}` is not defined{hint}"),
                    );
                    ok = false;
                }
            }
        }
        if ok && out.is_empty() {
            self.error(file, value.pos, codes::CONFLICT, "the list is empty, so this never matches");
            return None;
        }
        ok.then_some(out)
    }

    fn text_op(&mut self, op: &str, nocase: bool, all: bool, values: &[(String, Loc)]) -> Option<Op> {
        let plain = |v: &[(String, Loc)]| v.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
        if !nocase {
            match op {
                "equals" | "in" => return Some(Op::TextEq(plain(values))),
                "contains" => {
                    let finders =
                        values.iter().map(|(s, _)| Finder::new(s.as_bytes()).into_owned()).collect();
                    return Some(Op::Contains { finders, all });
                }
                "startswith" => return Some(Op::StartsWith { values: plain(values), all }),
                "endswith" => return Some(Op::EndsWith { values: plain(values), all }),
                _ => {}
            }
        }
        let mut regexes = Vec::with_capacity(values.len());
        let mut sources = Vec::with_capacity(values.len());
        let mut ok = true;
        for (v, at) in values {
            let (pattern, source) = match op {
                "re" => (Ok(v.clone()), RegexSource::Pattern(v.clone())),
                "glob" => (
                    glob_to_regex(v, nocase)
                        .map_err(|why| (codes::GLOB, format!("invalid glob {}: {why}", quote(v)))),
                    RegexSource::Glob { glob: v.clone(), nocase },
                ),
                // Only `nocase` text tests get here: ASCII letters fold, nothing else does.
                "equals" | "in" => {
                    (Ok(format!("^(?:{})$", nocase_literal(v))), RegexSource::NocaseText(v.clone()))
                }
                "contains" => (Ok(nocase_literal(v)), RegexSource::NocaseText(v.clone())),
                "startswith" => {
                    (Ok(format!("^(?:{})", nocase_literal(v))), RegexSource::NocaseText(v.clone()))
                }
                _ => (Ok(format!("(?:{})$", nocase_literal(v))), RegexSource::NocaseText(v.clone())),
            };
            let compiled = pattern.and_then(|src| {
                compile_regex(&src).map_err(|why| {
                    if op == "glob" {
                        (codes::GLOB, format!("invalid glob {}: {why}", quote(v)))
                    } else {
                        (codes::REGEX, why)
                    }
                })
            });
            match compiled {
                Ok(r) => {
                    regexes.push(r);
                    sources.push(source);
                }
                Err((code, why)) => {
                    self.error(at.file, at.pos, code, why);
                    ok = false;
                }
            }
        }
        ok.then_some(Op::Regex { regexes, sources, all })
    }
}

fn test(field: Field, ty: FieldType, key: &str, shown: String, at: Loc, op: Op) -> Cond {
    Cond::Test(Box::new(Test { field, ty, key: key.to_string(), shown, at, op }))
}

/// A regex with the size limits applied; the error is one readable line.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, String> {
    if pattern.chars().count() > MAX_PATTERN_CHARS {
        return Err(format!("pattern is longer than {MAX_PATTERN_CHARS} characters"));
    }
    RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .nest_limit(REGEX_NEST_LIMIT)
        .build()
        .map_err(|err| match err {
            regex::Error::CompiledTooBig(limit) => {
                format!("regex is too large once compiled (limit {limit} bytes); simplify it")
            }
            regex::Error::Syntax(text) => {
                // The crate's message spans lines (pattern, caret, "error: …"); keep the last.
                let why = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("syntax error");
                let why = why.trim().trim_start_matches("error: ");
                format!("invalid regex {}: {why}", quote(pattern))
            }
            other => format!("invalid regex {}: {other}", quote(pattern)),
        })
}

/// A shell-style glob as an anchored regex: `*` is any run of characters except `/`, `**` any
/// run including `/`, `?` one character except `/`, `[abc]`/`[a-z]`/`[!abc]` a class, `\x` a
/// literal `x`. With `nocase`, ASCII letters outside classes match either case.
pub(crate) fn glob_to_regex(glob: &str, nocase: bool) -> Result<String, String> {
    let lit = |c: char| if nocase { nocase_literal(&c.to_string()) } else { regex::escape(&c.to_string()) };
    let chars: Vec<char> = glob.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if chars.get(i + 1) == Some(&'*') {
                    while chars.get(i + 1) == Some(&'*') {
                        i += 1;
                    }
                    out.push_str(".*");
                } else {
                    out.push_str("[^/]*");
                }
            }
            '?' => out.push_str("[^/]"),
            '\\' => {
                let Some(c) = chars.get(i + 1) else { return Err("it ends with a lone `\\`".into()) };
                out.push_str(&lit(*c));
                i += 1;
            }
            '[' => {
                let mut j = i + 1;
                let negate = matches!(chars.get(j), Some('!') | Some('^'));
                if negate {
                    j += 1;
                }
                let start = j;
                // A `]` right after the opening bracket is a literal.
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!("the `[` at character {} is never closed", i + 1));
                }
                out.push('[');
                if negate {
                    out.push('^');
                }
                let class = &chars[start..j];
                for (k, c) in class.iter().enumerate() {
                    if *c == '-' && k > 0 && k + 1 < class.len() {
                        out.push('-');
                    } else {
                        out.push_str(&regex::escape(&c.to_string()));
                    }
                }
                out.push(']');
                i = j;
            }
            c => out.push_str(&lit(c)),
        }
        i += 1;
    }
    out.push('$');
    Ok(out)
}

/// A literal as a regex in which ASCII letters match either case (`Ab` → `[aA][bB]`) and
/// nothing else folds: exactly what an ASCII case-insensitive substring search finds, which the
/// prefilter relies on.
pub(crate) fn nocase_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            out.push('[');
            out.push(c.to_ascii_lowercase());
            out.push(c.to_ascii_uppercase());
            out.push(']');
        } else {
            out.push_str(&regex::escape(&c.to_string()));
        }
    }
    out
}

/// Values as written, for explanations: one value, or a capped list; text is quoted.
fn show_values(values: &[(String, Loc)], max: usize, text: bool) -> String {
    let show = |v: &str| if text { quote(v) } else { v.to_string() };
    if values.len() == 1 {
        return show(&values[0].0);
    }
    let mut parts: Vec<String> = values.iter().take(max).map(|(v, _)| show(v)).collect();
    if values.len() > max {
        parts.push(format!("… {} more", values.len() - max));
    }
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(g: &str, s: &str) -> bool {
        let re = glob_to_regex(g, false).and_then(|r| compile_regex(&r));
        match re {
            Ok(re) => re.is_match(s),
            Err(e) => panic!("{g}: {e}"),
        }
    }

    #[test]
    fn globs_are_path_aware() {
        assert!(glob("/home/*/.ssh/id_*", "/home/dev/.ssh/id_ed25519"));
        assert!(!glob("/home/*/.ssh/id_*", "/home/a/b/.ssh/id_rsa"));
        assert!(glob("/home/**/.ssh/*", "/home/a/b/.ssh/id_rsa"));
        assert!(glob("*.example.com", "x.example.com"));
        assert!(!glob("*.example.com", "x.example.com.evil"));
        assert!(glob("file?.txt", "file1.txt"));
        assert!(glob("[!a]b", "cb") && !glob("[!a]b", "ab"));
        assert!(glob("[a-c]x", "bx") && !glob("[a-c]x", "dx"));
        assert!(glob("a\\*b", "a*b") && !glob("a\\*b", "axb"));
        assert!(glob("[&&]", "&"));
        assert!(glob("a.b", "a.b") && !glob("a.b", "axb"));
    }

    #[test]
    fn malformed_globs_are_refused() {
        assert!(glob_to_regex("[abc", false).is_err());
        assert!(glob_to_regex("abc\\", true).is_err());
    }

    #[test]
    fn regex_errors_are_one_line_and_size_is_limited() {
        let err = compile_regex("a(b").err().unwrap_or_default();
        assert!(err.starts_with("invalid regex \"a(b\": "), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = compile_regex("(?:\\w{500}){500}").err().unwrap_or_default();
        assert!(err.contains("too large"), "{err}");
        assert!(compile_regex(&"a".repeat(MAX_PATTERN_CHARS + 1)).is_err());
    }
}
