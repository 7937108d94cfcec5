//! Data-driven integrations: a mapping file (TOML) says where each normalized field sits in a
//! vendor's JSON, and this module applies it.
//!
//! A mapping is *compiled* once (paths split, regexes built, references checked, every error
//! located with `file:line:col`) and then *applied* per payload without allocation-heavy
//! interpretation. Paths are JSON Pointers (RFC 6901), so vendor keys containing dots, such as
//! Falco's `proc.pid`, need no escaping. The language is documented for SOC engineers in
//! `docs/integrations.md`.
//!
//! This module does not read files, know vendors by name, or decide trust: it maps JSON to
//! [`EventBody`]. Formats that are not JSON (audit lines) are turned into JSON by a named
//! pre-parser first.

use crate::event::{Disposition, EventBody, Process, ProcessRef, Rule, Severity, Target};
use regex::Regex;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------------
// The file format (what a SOC engineer writes).
// ---------------------------------------------------------------------------------------------

/// A whole `mapping.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    /// Must equal the folder name (`integrations/<name>/mapping.toml`).
    integration: String,
    /// One line for `haltwire integrations list`.
    description: String,
    /// How payload bytes become JSON: `json` (default) or `audit` (Linux audit records).
    #[serde(default)]
    parser: ParserKind,
    /// Where the events sit inside one payload.
    #[serde(default)]
    envelope: EnvelopeSpec,
    /// Named pointers resolved per event, used as `${name}` in paths.
    #[serde(default, rename = "let")]
    lets: BTreeMap<String, LetSpec>,
    /// Normalized field name → where to find it.
    #[serde(default)]
    fields: BTreeMap<String, FieldSpec>,
    /// Ancestors listed one by one (sources that report fixed ancestor slots, like Falco).
    #[serde(default)]
    ancestor: Vec<AncestorSpec>,
    /// Ancestors taken from an array in the event (Tetragon, OCSF).
    ancestors_from: Option<AncestorsFromSpec>,
    /// Ordered rules: the first whose `when` holds sets the disposition.
    #[serde(default)]
    disposition: Vec<DispositionRule>,
    /// Disposition when no rule holds. Default `unknown`.
    #[serde(default)]
    disposition_default: Disposition,
}

/// Pre-parsers for payloads that are not JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParserKind {
    #[default]
    Json,
    Audit,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeSpec {
    /// Pointers tried in order; the first that exists holds the events (an array of event
    /// objects, or one object). When none exists the payload itself is the event; a payload
    /// that is a JSON array is always a list of events.
    #[serde(default)]
    events: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LetSpec {
    /// The first of these pointers that exists.
    #[serde(default)]
    first_of: Vec<String>,
    /// Or: an array (or single object) at this pointer…
    path: Option<String>,
    /// …and the first item of it for which this condition holds (paths relative to the item).
    item_where: Option<ConditionSpec>,
}

/// Where a field's value comes from. A bare string is a path; a list is alternatives (each a
/// path or a table), tried in order until one yields a usable value.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FieldSpec {
    Path(String),
    Full(Box<FieldTable>),
    Alternatives(Vec<FieldSpec>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldTable {
    /// One pointer.
    path: Option<String>,
    /// Several pointers: the first present, non-empty value wins (for lists: all are collected).
    #[serde(default)]
    paths: Vec<String>,
    /// Several pointers whose values are joined with a space (e.g. binary + arguments).
    #[serde(default)]
    join: Vec<String>,
    /// A directory and a file name, joined with the directory's own separator (`/` or `\`).
    #[serde(default)]
    join_path: Vec<String>,
    /// A fixed value.
    value: Option<Value>,
    /// Value map applied to the found value's text; `"*"` is the catch-all.
    #[serde(default)]
    map: BTreeMap<String, String>,
    /// Numeric bands: the first whose `min` is ≤ the value gives the result.
    #[serde(default)]
    bands: Vec<Band>,
    /// Used when nothing is found (after `map`/`bands`).
    default: Option<Value>,
    /// For `time`: `rfc3339`, `iso8601` (offset may lack the colon), `unix_s`, `unix_ms`,
    /// `unix_ns`, `audit` (`EPOCH.MS:SERIAL`), `ctime` (`Tue Sep 30 17:37:30 2014 UTC`).
    format: Option<TimeFormat>,
    /// For lists (`attacks`): keep only items matching this regex.
    matches: Option<String>,
    /// Take the last `/`-separated component (an executable's basename) or not.
    #[serde(default)]
    basename: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Band {
    min: f64,
    value: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    Rfc3339,
    Iso8601,
    UnixS,
    UnixMs,
    UnixNs,
    Audit,
    Ctime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AncestorSpec {
    pid: Option<FieldSpec>,
    exe: Option<FieldSpec>,
    cmd_line: Option<FieldSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AncestorsFromSpec {
    /// The array of ancestor objects (nearest first).
    path: String,
    /// Paths inside each item.
    pid: Option<FieldSpec>,
    exe: Option<FieldSpec>,
    cmd_line: Option<FieldSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispositionRule {
    when: ConditionSpec,
    value: Disposition,
}

/// A condition on the event. Exactly one operator per table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    path: Option<String>,
    equals: Option<Value>,
    #[serde(rename = "in")]
    one_of: Option<Vec<Value>>,
    exists: Option<bool>,
    /// A string containing this text, or an array containing this string.
    contains: Option<String>,
    /// A regex the value's text matches.
    matches: Option<String>,
    /// An array with at least one item for which the inner condition holds (paths relative
    /// to the item).
    any_item: Option<Box<ConditionSpec>>,
    all: Option<Vec<ConditionSpec>>,
    any: Option<Vec<ConditionSpec>>,
    not: Option<Box<ConditionSpec>>,
}

// ---------------------------------------------------------------------------------------------
// Errors.
// ---------------------------------------------------------------------------------------------

/// A mapping file that cannot be used, located in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct MappingError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Why one payload could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("not valid JSON: {0}")]
    Syntax(String),
    #[error("{0}")]
    Shape(String),
}

// ---------------------------------------------------------------------------------------------
// Compiled form.
// ---------------------------------------------------------------------------------------------

/// A path template: a pointer, optionally starting with `${var}` or `${root}`.
#[derive(Debug, Clone)]
struct PathRef {
    base: Base,
    /// Unescaped pointer tokens after the base.
    tokens: Vec<String>,
}

#[derive(Debug, Clone)]
enum Base {
    /// Relative to the current event (or array item inside ancestors/item conditions).
    Here,
    /// Relative to the whole payload (for envelopes that put shared facts beside the events).
    Root,
    /// Relative to a `let` variable (an index into `Mapping::lets`).
    Var(usize),
}

#[derive(Debug)]
enum Source {
    First(Vec<PathRef>),
    Join(Vec<PathRef>),
    /// Directory, then file name.
    JoinPath(PathRef, PathRef),
    Fixed(Value),
    /// Whole fields tried in order; the first that yields a usable value wins.
    Alternatives(Vec<Field>),
}

#[derive(Debug)]
struct Field {
    source: Source,
    map: BTreeMap<String, String>,
    bands: Vec<(f64, String)>,
    default: Option<Value>,
    format: Option<TimeFormat>,
    matches: Option<Regex>,
    basename: bool,
}

#[derive(Debug)]
enum Let {
    FirstOf(Vec<PathRef>),
    ItemWhere(PathRef, Condition),
}

#[derive(Debug)]
enum Condition {
    Equals(PathRef, Value),
    In(PathRef, Vec<Value>),
    Exists(PathRef, bool),
    Contains(PathRef, String),
    Matches(PathRef, Regex),
    AnyItem(PathRef, Box<Condition>),
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
}

#[derive(Debug, Default)]
struct AncestorFields {
    pid: Option<Field>,
    exe: Option<Field>,
    cmd_line: Option<Field>,
}

/// A compiled mapping, ready to apply. Immutable and shared.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    pub description: String,
    pub parser: ParserKind,
    envelope: Vec<Vec<String>>,
    lets: Vec<Let>,
    fields: BTreeMap<&'static str, Field>,
    ancestors: Vec<AncestorFields>,
    ancestors_from: Option<(PathRef, AncestorFields)>,
    disposition: Vec<(Condition, Disposition)>,
    disposition_default: Disposition,
}

/// Every normalized field a mapping may fill, with its kind.
const TARGETS: &[(&str, Kind)] = &[
    ("time", Kind::Time),
    ("host", Kind::Text),
    ("severity", Kind::Severity),
    ("rule.name", Kind::Text),
    ("rule.id", Kind::Text),
    ("attacks", Kind::List),
    ("process.pid", Kind::Pid),
    ("process.cmd_line", Kind::Text),
    ("process.exe", Kind::Text),
    ("process.cwd", Kind::Text),
    ("process.user", Kind::Text),
    ("process.uid", Kind::Uid),
    ("process.parent.pid", Kind::Pid),
    ("process.parent.cmd_line", Kind::Text),
    ("process.parent.exe", Kind::Text),
    ("target.file", Kind::Text),
    ("target.host", Kind::Text),
    ("target.url", Kind::Text),
    ("vendor_id", Kind::Text),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Pid,
    Uid,
    Time,
    Severity,
    List,
}

/// Longest text kept in any mapped field; longer vendor values are cut at a char boundary.
const MAX_FIELD_BYTES: usize = 32 * 1024;
/// Most ancestors and list items kept per event.
const MAX_LIST: usize = 64;
/// Most values one wildcard path collects before it stops looking.
const MAX_WILDCARD_VALUES: usize = 1024;
/// The pointer token that stands for every item of an array (list fields only).
const WILDCARD: &str = "*";

impl Mapping {
    /// Parses and compiles a mapping file. `file` is only used in messages.
    pub fn compile(text: &str, file: &str) -> Result<Mapping, MappingError> {
        let spec: MappingFile = toml::from_str(text).map_err(|err| {
            let (line, col) = err.span().map(|s| crate::config::line_col(text, s.start)).unwrap_or((1, 1));
            MappingError { file: file.into(), line, col, message: err.message().to_string() }
        })?;
        Compiler { text, file }.mapping(spec)
    }

    /// Applies the mapping to one JSON payload: one decoded event per event in the envelope.
    pub fn apply_json(&self, payload: &[u8]) -> Result<Vec<(EventBody, Box<RawValue>)>, ApplyError> {
        let doc: Value = serde_json::from_slice(payload).map_err(|e| ApplyError::Syntax(e.to_string()))?;
        let raw_root: &RawValue =
            serde_json::from_slice(payload).map_err(|e| ApplyError::Syntax(e.to_string()))?;
        self.apply_value(&doc, raw_root)
    }

    /// Applies the mapping to an already parsed document; `raw_root` is its verbatim text.
    pub fn apply_value(
        &self,
        doc: &Value,
        raw_root: &RawValue,
    ) -> Result<Vec<(EventBody, Box<RawValue>)>, ApplyError> {
        let mut out = Vec::new();
        for (pointer, event) in self.events(doc) {
            let Value::Object(_) = event else {
                return Err(ApplyError::Shape(format!(
                    "expected an event object at {:?}",
                    display_pointer(&pointer)
                )));
            };
            let raw = raw_at(raw_root, &pointer)
                .ok_or_else(|| ApplyError::Shape("event not found in payload".into()))?;
            out.push((self.map_event(doc, event), raw));
        }
        if out.is_empty() {
            return Err(ApplyError::Shape("the payload holds no event".into()));
        }
        Ok(out)
    }

    /// The events of a payload with their pointer tokens from the root.
    fn events<'a>(&self, doc: &'a Value) -> Vec<(Vec<String>, &'a Value)> {
        if let Value::Array(items) = doc {
            return items.iter().enumerate().map(|(i, v)| (vec![i.to_string()], v)).collect();
        }
        for tokens in &self.envelope {
            match lookup(doc, tokens) {
                Some(Value::Array(items)) => {
                    return items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let mut p = tokens.clone();
                            p.push(i.to_string());
                            (p, v)
                        })
                        .collect();
                }
                Some(v @ Value::Object(_)) => return vec![(tokens.clone(), v)],
                _ => continue,
            }
        }
        vec![(Vec::new(), doc)]
    }

    fn map_event(&self, root: &Value, event: &Value) -> EventBody {
        let ctx = Ctx { root, here: event, vars: self.bind_lets(root, event) };
        let text = |name: &str| self.fields.get(name).and_then(|f| f.text(&ctx));
        let pid = |name: &str| self.fields.get(name).and_then(|f| f.number(&ctx)).and_then(to_pid);
        let parent = ProcessRef {
            pid: pid("process.parent.pid"),
            exe: text("process.parent.exe"),
            cmd_line: text("process.parent.cmd_line"),
        };
        let process = Process {
            pid: pid("process.pid"),
            cmd_line: text("process.cmd_line"),
            exe: text("process.exe"),
            cwd: text("process.cwd"),
            user: text("process.user"),
            uid: self.fields.get("process.uid").and_then(|f| f.number(&ctx)).and_then(to_uid),
            parent: (parent != ProcessRef::default()).then_some(parent),
            ancestors: self.ancestors(&ctx),
        };
        let rule = Rule { name: text("rule.name"), id: text("rule.id") };
        let target = Target { file: text("target.file"), host: text("target.host"), url: text("target.url") };
        EventBody {
            time: self.fields.get("time").and_then(|f| f.time(&ctx)),
            host: text("host"),
            disposition: self.disposition(&ctx),
            severity: self
                .fields
                .get("severity")
                .and_then(|f| f.text(&ctx))
                .map_or(Severity::Unknown, |s| parse_severity(&s)),
            rule: (rule != Rule::default()).then_some(rule),
            attacks: self.fields.get("attacks").map(|f| f.list(&ctx)).unwrap_or_default(),
            process: (process != Process::default()).then_some(process),
            target: (target != Target::default()).then_some(target),
            vendor_id: text("vendor_id"),
        }
    }

    fn bind_lets(&self, root: &Value, event: &Value) -> Vec<Option<Vec<String>>> {
        let mut vars: Vec<Option<Vec<String>>> = Vec::with_capacity(self.lets.len());
        for l in &self.lets {
            let ctx = Ctx { root, here: event, vars: vars.clone() };
            let bound = match l {
                Let::FirstOf(paths) => paths.iter().find_map(|p| ctx.pointer_of(p)),
                Let::ItemWhere(path, cond) => ctx.pointer_of(path).and_then(|base| {
                    let found = lookup(event, &base)?;
                    match found {
                        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                            let item_ctx = Ctx { root, here: item, vars: Vec::new() };
                            cond.holds(&item_ctx).then(|| {
                                let mut p = base.clone();
                                p.push(i.to_string());
                                p
                            })
                        }),
                        item @ Value::Object(_) => {
                            let item_ctx = Ctx { root, here: item, vars: Vec::new() };
                            cond.holds(&item_ctx).then_some(base)
                        }
                        _ => None,
                    }
                }),
            };
            vars.push(bound);
        }
        vars
    }

    fn ancestors(&self, ctx: &Ctx<'_>) -> Vec<ProcessRef> {
        let from_slots = self.ancestors.iter().map(|a| a.build(ctx));
        let mut out: Vec<ProcessRef> = from_slots.filter(|a| *a != ProcessRef::default()).collect();
        if let Some((path, fields)) = &self.ancestors_from {
            if let Some(Value::Array(items)) = ctx.resolve(path) {
                for item in items.iter().take(MAX_LIST) {
                    let item_ctx = Ctx { root: ctx.root, here: item, vars: Vec::new() };
                    let a = fields.build(&item_ctx);
                    if a != ProcessRef::default() {
                        out.push(a);
                    }
                }
            }
        }
        out.truncate(MAX_LIST);
        out
    }

    fn disposition(&self, ctx: &Ctx<'_>) -> Disposition {
        self.disposition
            .iter()
            .find(|(cond, _)| cond.holds(ctx))
            .map_or(self.disposition_default, |(_, d)| *d)
    }
}

impl AncestorFields {
    fn build(&self, ctx: &Ctx<'_>) -> ProcessRef {
        ProcessRef {
            pid: self.pid.as_ref().and_then(|f| f.number(ctx)).and_then(to_pid),
            exe: self.exe.as_ref().and_then(|f| f.text(ctx)),
            cmd_line: self.cmd_line.as_ref().and_then(|f| f.text(ctx)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation.
// ---------------------------------------------------------------------------------------------

/// What paths resolve against: the payload, the current event or item, and bound variables.
struct Ctx<'a> {
    root: &'a Value,
    here: &'a Value,
    /// Pointer tokens (relative to `here`) for each `let`, or `None` when it did not bind.
    vars: Vec<Option<Vec<String>>>,
}

impl<'a> Ctx<'a> {
    fn resolve(&self, path: &PathRef) -> Option<&'a Value> {
        match &path.base {
            Base::Here => lookup(self.here, &path.tokens),
            Base::Root => lookup(self.root, &path.tokens),
            Base::Var(i) => {
                let mut tokens = self.vars.get(*i)?.clone()?;
                tokens.extend(path.tokens.iter().cloned());
                lookup(self.here, &tokens)
            }
        }
    }

    /// Every value a path names: like [`Ctx::resolve`], but a `*` token stands for each item
    /// of an array (a single object counts as a one-item array). Used by list fields only.
    fn resolve_all(&self, path: &PathRef) -> Vec<&'a Value> {
        let (start, tokens): (&'a Value, Vec<String>) = match &path.base {
            Base::Here => (self.here, path.tokens.clone()),
            Base::Root => (self.root, path.tokens.clone()),
            Base::Var(i) => match self.vars.get(*i).cloned().flatten() {
                Some(mut t) => {
                    t.extend(path.tokens.iter().cloned());
                    (self.here, t)
                }
                None => return Vec::new(),
            },
        };
        let mut out = Vec::new();
        lookup_all(start, &tokens, &mut out);
        out
    }

    /// The concrete pointer (relative to `here`) a path names, if the value exists.
    fn pointer_of(&self, path: &PathRef) -> Option<Vec<String>> {
        let tokens = match &path.base {
            Base::Here => path.tokens.clone(),
            Base::Root => return None,
            Base::Var(i) => {
                let mut t = self.vars.get(*i)?.clone()?;
                t.extend(path.tokens.iter().cloned());
                t
            }
        };
        lookup(self.here, &tokens).map(|_| tokens)
    }
}

fn lookup<'a>(value: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens
        .iter()
        .try_fold(value, |v, t| match v {
            Value::Object(m) => m.get(t.as_str()),
            Value::Array(a) => t.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
        .filter(|v| !v.is_null())
}

/// Collects every non-null value at `tokens`, expanding `*` over array items. Bounded: at most
/// `MAX_WILDCARD_VALUES` values, however large or deep the payload.
fn lookup_all<'a>(value: &'a Value, tokens: &[String], out: &mut Vec<&'a Value>) {
    if out.len() >= MAX_WILDCARD_VALUES {
        return;
    }
    match tokens.split_first() {
        None => {
            if !value.is_null() {
                out.push(value);
            }
        }
        Some((t, rest)) if t == WILDCARD => match value {
            Value::Array(items) => items.iter().for_each(|item| lookup_all(item, rest, out)),
            Value::Object(_) => lookup_all(value, rest, out),
            _ => {}
        },
        Some((t, rest)) => {
            if let Some(next) = lookup(value, std::slice::from_ref(t)) {
                lookup_all(next, rest, out);
            }
        }
    }
}

/// The verbatim JSON text at `tokens` inside `raw`, walking the raw text level by level so
/// that `raw` keeps the sender's exact bytes, not a re-serialization.
fn raw_at(raw: &RawValue, tokens: &[String]) -> Option<Box<RawValue>> {
    let mut current: &RawValue = raw;
    for token in tokens {
        let text = current.get().trim_start();
        current = if text.starts_with('{') {
            let map: BTreeMap<String, &RawValue> = serde_json::from_str(current.get()).ok()?;
            *map.get(token.as_str())?
        } else {
            let items: Vec<&RawValue> = serde_json::from_str(current.get()).ok()?;
            items.get(token.parse::<usize>().ok()?).copied()?
        };
    }
    Some(current.to_owned())
}

impl Field {
    /// The field's value as text (strings as they are; numbers and booleans printed).
    fn text(&self, ctx: &Ctx<'_>) -> Option<String> {
        if let Source::Alternatives(alts) = &self.source {
            return alts.iter().find_map(|f| f.text(ctx));
        }
        let found = self.found_text(ctx);
        let mapped = match found {
            Some(t) => self.apply_maps(t),
            None => None,
        };
        let value = mapped.or_else(|| self.default.as_ref().and_then(scalar_text))?;
        let value = if self.basename { basename(&value).to_string() } else { value };
        (!value.is_empty()).then(|| cap(value))
    }

    fn apply_maps(&self, found: String) -> Option<String> {
        if !self.bands.is_empty() {
            let n: f64 = found.trim().parse().ok()?;
            return self.bands.iter().find(|(min, _)| n >= *min).map(|(_, v)| v.clone());
        }
        if self.map.is_empty() {
            return Some(found);
        }
        self.map.get(&found).or_else(|| self.map.get("*")).cloned()
    }

    fn found_text(&self, ctx: &Ctx<'_>) -> Option<String> {
        match &self.source {
            Source::Fixed(v) => scalar_text(v),
            Source::First(paths) => paths.iter().find_map(|p| ctx.resolve(p).and_then(value_text)),
            Source::Join(paths) => {
                let parts: Vec<String> =
                    paths.iter().filter_map(|p| ctx.resolve(p).and_then(value_text)).collect();
                (!parts.is_empty()).then(|| parts.join(" "))
            }
            Source::JoinPath(dir, name) => {
                let name = ctx.resolve(name).and_then(scalar_text)?;
                match ctx.resolve(dir).and_then(scalar_text) {
                    Some(dir) => Some(join_path(&dir, &name)),
                    None => Some(name),
                }
            }
            Source::Alternatives(alts) => alts.iter().find_map(|f| f.found_text(ctx)),
        }
    }

    fn number(&self, ctx: &Ctx<'_>) -> Option<u64> {
        if let Source::Alternatives(alts) = &self.source {
            return alts.iter().find_map(|f| f.number(ctx));
        }
        let text = self.text(ctx)?;
        let trimmed = text.trim();
        trimmed.parse::<u64>().ok()
    }

    fn time(&self, ctx: &Ctx<'_>) -> Option<OffsetDateTime> {
        if let Source::Alternatives(alts) = &self.source {
            return alts.iter().find_map(|f| f.time(ctx));
        }
        let text = self.text(ctx)?;
        parse_time(&text, self.format.unwrap_or(TimeFormat::Rfc3339))
    }

    /// All items (for `attacks`): every listed path contributes, arrays are flattened, and `*`
    /// in a path collects from every array item. Alternatives: the first non-empty list.
    fn list(&self, ctx: &Ctx<'_>) -> Vec<String> {
        let paths: &[PathRef] = match &self.source {
            Source::First(p) | Source::Join(p) => p,
            Source::JoinPath(..) | Source::Fixed(_) => &[],
            Source::Alternatives(alts) => {
                return alts.iter().map(|f| f.list(ctx)).find(|l| !l.is_empty()).unwrap_or_default();
            }
        };
        let mut out: Vec<String> = Vec::new();
        for value in paths.iter().flat_map(|p| ctx.resolve_all(p)) {
            let items: Vec<&Value> = match value {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for item in items {
                let Some(text) = scalar_text(item) else { continue };
                let keep = self.matches.as_ref().is_none_or(|re| re.is_match(&text));
                if keep && !out.contains(&text) && out.len() < MAX_LIST {
                    out.push(text);
                }
            }
        }
        out
    }
}

impl Condition {
    fn holds(&self, ctx: &Ctx<'_>) -> bool {
        match self {
            Condition::Equals(p, v) => ctx.resolve(p).is_some_and(|found| loosely_equal(found, v)),
            Condition::In(p, vs) => {
                ctx.resolve(p).is_some_and(|found| vs.iter().any(|v| loosely_equal(found, v)))
            }
            Condition::Exists(p, want) => ctx.resolve(p).is_some() == *want,
            Condition::Contains(p, needle) => match ctx.resolve(p) {
                Some(Value::String(s)) => s.contains(needle.as_str()),
                Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(needle.as_str())),
                _ => false,
            },
            Condition::Matches(p, re) => ctx.resolve(p).and_then(value_text).is_some_and(|t| re.is_match(&t)),
            Condition::AnyItem(p, inner) => match ctx.resolve(p) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|item| inner.holds(&Ctx { root: ctx.root, here: item, vars: Vec::new() })),
                Some(item @ Value::Object(_)) => {
                    inner.holds(&Ctx { root: ctx.root, here: item, vars: Vec::new() })
                }
                _ => false,
            },
            Condition::All(cs) => cs.iter().all(|c| c.holds(ctx)),
            Condition::Any(cs) => cs.iter().any(|c| c.holds(ctx)),
            Condition::Not(c) => !c.holds(ctx),
        }
    }
}

/// Equality that treats `"2"` and `2` as different but `2` and `2.0` as equal, and compares
/// strings case-sensitively (vendor enums are case-stable).
fn loosely_equal(found: &Value, expected: &Value) -> bool {
    match (found, expected) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(scalar_text).collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        }
        other => scalar_text(other),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn cap(mut s: String) -> String {
    if s.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A directory and a file name joined the way the directory is written: with its last
/// separator (`/` or `\`), a drive (`C:`) taking `\`, no separator doubled. A name that is
/// already a path is kept as it is.
fn join_path(dir: &str, name: &str) -> String {
    if name.contains(['/', '\\']) {
        return name.to_string();
    }
    if dir.ends_with(['/', '\\']) {
        return format!("{dir}{name}");
    }
    let sep = dir.chars().rev().find(|c| *c == '/' || *c == '\\').unwrap_or(if dir.ends_with(':') {
        '\\'
    } else {
        '/'
    });
    format!("{dir}{sep}{name}")
}

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// OS pids are positive and fit in 32 bits; anything else (a vendor's graph id) is not a pid.
fn to_pid(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|p| *p > 0 && *p <= 4_194_304)
}

/// `4294967295` is the kernel's "unset" uid (e.g. auid of daemons), not a user.
fn to_uid(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|u| *u != u32::MAX)
}

pub(crate) fn parse_severity(text: &str) -> Severity {
    match text.trim().to_ascii_lowercase().as_str() {
        "informational" | "info" | "debug" | "notice" | "low_info" => Severity::Informational,
        "low" => Severity::Low,
        "medium" | "moderate" | "warning" => Severity::Medium,
        "high" | "error" | "alert" => Severity::High,
        "critical" | "emergency" => Severity::Critical,
        "fatal" => Severity::Fatal,
        _ => Severity::Unknown,
    }
}

/// Parses a time in one of the supported formats; `None` if it does not parse.
pub fn parse_time(text: &str, format: TimeFormat) -> Option<OffsetDateTime> {
    use time::format_description::well_known::{Iso8601, Rfc3339};
    let text = text.trim();
    match format {
        TimeFormat::Rfc3339 => OffsetDateTime::parse(text, &Rfc3339).ok(),
        TimeFormat::Iso8601 => OffsetDateTime::parse(text, &Rfc3339)
            .ok()
            .or_else(|| OffsetDateTime::parse(text, &Iso8601::DEFAULT).ok())
            .or_else(|| parse_offset_without_colon(text)),
        TimeFormat::UnixS => from_unix_units(text, 1_000_000_000),
        TimeFormat::UnixMs => from_unix_units(text, 1_000_000),
        TimeFormat::UnixNs => OffsetDateTime::from_unix_timestamp_nanos(text.parse::<i128>().ok()?).ok(),
        TimeFormat::Audit => from_decimal_seconds(text.split(':').next()?),
        TimeFormat::Ctime => {
            let fmt = time::macros::format_description!(
                "[weekday repr:short] [month repr:short] [day padding:none] [hour]:[minute]:[second] [year]"
            );
            let without_zone = text.trim_end_matches(" UTC");
            let normalized = without_zone.split_whitespace().collect::<Vec<_>>().join(" ");
            time::PrimitiveDateTime::parse(&normalized, &fmt).ok().map(|t| t.assume_utc())
        }
    }
}

/// `SECONDS[.FRACTION]` exactly (an `f64` would turn audit's `.977` into `.976999936`).
fn from_decimal_seconds(text: &str) -> Option<OffsetDateTime> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if secs.is_empty() || secs.len() > 12 || frac.len() > 9 || !digits(secs) || !digits(frac) {
        return None;
    }
    let nanos: i128 = format!("{frac:0<9}").parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(secs.parse::<i128>().ok()? * 1_000_000_000 + nanos).ok()
}

/// An epoch count of units of `nanos_per_unit`: integers exactly (a float would turn
/// `…212400` ms into `…212399.999872`), fractions through a float.
fn from_unix_units(text: &str, nanos_per_unit: i128) -> Option<OffsetDateTime> {
    match text.parse::<i128>() {
        Ok(n) => OffsetDateTime::from_unix_timestamp_nanos(n.checked_mul(nanos_per_unit)?).ok(),
        Err(_) => from_unix_nanos(text.parse::<f64>().ok()? * nanos_per_unit as f64),
    }
}

fn from_unix_nanos(nanos: f64) -> Option<OffsetDateTime> {
    if !nanos.is_finite() {
        return None;
    }
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).ok()
}

/// `2021-02-01T20:58:44.830+0000` (Wazuh): ISO 8601 basic offset, not RFC 3339.
fn parse_offset_without_colon(text: &str) -> Option<OffsetDateTime> {
    let (head, sign_pos) =
        text.char_indices().rev().find(|(_, c)| *c == '+' || *c == '-').map(|(i, _)| (&text[..i], i))?;
    let offset = &text[sign_pos..];
    if offset.len() != 5 || !offset[1..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let fixed = format!("{head}{}:{}", &offset[..3], &offset[3..]);
    OffsetDateTime::parse(&fixed, &time::format_description::well_known::Rfc3339).ok()
}

fn display_pointer(tokens: &[String]) -> String {
    tokens.iter().map(|t| format!("/{t}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Compilation (checks and locations).
// ---------------------------------------------------------------------------------------------

struct Compiler<'a> {
    text: &'a str,
    file: &'a str,
}

impl Compiler<'_> {
    /// Errors point at the first occurrence of `needle` in the file (TOML spans are lost after
    /// deserialization), which is where a reader looks for it.
    fn err(&self, needle: &str, message: String) -> MappingError {
        let offset = self.text.find(needle).unwrap_or(0);
        let (line, col) = crate::config::line_col(self.text, offset);
        MappingError { file: self.file.into(), line, col, message }
    }

    fn mapping(&self, spec: MappingFile) -> Result<Mapping, MappingError> {
        let var_names: Vec<String> = spec.lets.keys().cloned().collect();
        let mut lets = Vec::new();
        for (i, (name, l)) in spec.lets.iter().enumerate() {
            // A variable may use only the variables defined before it (alphabetical order).
            lets.push(self.let_binding(name, l, &var_names[..i])?);
        }
        let mut fields = BTreeMap::new();
        for (name, field) in &spec.fields {
            let Some((target, kind)) = TARGETS.iter().find(|(t, _)| t == name) else {
                let known: Vec<&str> = TARGETS.iter().map(|(t, _)| *t).collect();
                return Err(
                    self.err(name, format!("unknown field `{name}`; fields are: {}", known.join(", ")))
                );
            };
            fields.insert(*target, self.field(name, field, *kind, &var_names)?);
        }
        let ancestors = spec
            .ancestor
            .iter()
            .map(|a| self.ancestor_fields(&a.pid, &a.exe, &a.cmd_line, &var_names))
            .collect::<Result<Vec<_>, _>>()?;
        let ancestors_from = match &spec.ancestors_from {
            Some(a) => Some((
                self.path(&a.path, &var_names)?,
                self.ancestor_fields(&a.pid, &a.exe, &a.cmd_line, &[])?,
            )),
            None => None,
        };
        let disposition = spec
            .disposition
            .iter()
            .map(|r| Ok((self.condition(&r.when, &var_names)?, r.value)))
            .collect::<Result<Vec<_>, MappingError>>()?;
        let envelope = spec
            .envelope
            .events
            .iter()
            .map(|p| self.path(p, &[]).map(|r| r.tokens))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mapping {
            name: spec.integration,
            description: spec.description,
            parser: spec.parser,
            envelope,
            lets,
            fields,
            ancestors,
            ancestors_from,
            disposition,
            disposition_default: spec.disposition_default,
        })
    }

    fn let_binding(&self, name: &str, l: &LetSpec, vars: &[String]) -> Result<Let, MappingError> {
        match (&l.first_of[..], &l.path, &l.item_where) {
            (paths, None, None) if !paths.is_empty() => {
                Ok(Let::FirstOf(paths.iter().map(|p| self.path(p, vars)).collect::<Result<_, _>>()?))
            }
            ([], Some(path), Some(cond)) => {
                Ok(Let::ItemWhere(self.path(path, vars)?, self.condition(cond, &[])?))
            }
            _ => {
                Err(self
                    .err(name, format!("`let.{name}` needs either `first_of` or `path` with `item_where`")))
            }
        }
    }

    fn ancestor_fields(
        &self,
        pid: &Option<FieldSpec>,
        exe: &Option<FieldSpec>,
        cmd_line: &Option<FieldSpec>,
        vars: &[String],
    ) -> Result<AncestorFields, MappingError> {
        let one = |spec: &Option<FieldSpec>, kind| {
            spec.as_ref().map(|s| self.field("ancestor", s, kind, vars)).transpose()
        };
        Ok(AncestorFields {
            pid: one(pid, Kind::Pid)?,
            exe: one(exe, Kind::Text)?,
            cmd_line: one(cmd_line, Kind::Text)?,
        })
    }

    fn field(
        &self,
        name: &str,
        spec: &FieldSpec,
        kind: Kind,
        vars: &[String],
    ) -> Result<Field, MappingError> {
        let table = match spec {
            FieldSpec::Path(p) => FieldTable { path: Some(p.clone()), ..FieldTable::default() },
            FieldSpec::Full(t) => FieldTable {
                path: t.path.clone(),
                paths: t.paths.clone(),
                join: t.join.clone(),
                join_path: t.join_path.clone(),
                value: t.value.clone(),
                map: t.map.clone(),
                bands: t.bands.iter().map(|b| Band { min: b.min, value: b.value.clone() }).collect(),
                default: t.default.clone(),
                format: t.format,
                matches: t.matches.clone(),
                basename: t.basename,
            },
            FieldSpec::Alternatives(alts) => {
                if alts.is_empty() {
                    return Err(self.err(name, format!("field `{name}`: an empty list of alternatives")));
                }
                let fields = alts
                    .iter()
                    .map(|alt| match alt {
                        FieldSpec::Alternatives(_) => Err(self.err(
                            name,
                            format!("field `{name}`: alternatives cannot contain lists of alternatives"),
                        )),
                        other => self.field(name, other, kind, vars),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(Field {
                    source: Source::Alternatives(fields),
                    map: BTreeMap::new(),
                    bands: Vec::new(),
                    default: None,
                    format: None,
                    matches: None,
                    basename: false,
                });
            }
        };
        let given = [
            table.path.is_some(),
            !table.paths.is_empty(),
            !table.join.is_empty(),
            !table.join_path.is_empty(),
            table.value.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(self.err(
                name,
                format!("field `{name}` needs exactly one of `path`, `paths`, `join`, `join_path`, `value`"),
            ));
        }
        let list = kind == Kind::List;
        let to_refs =
            |ps: &[String]| ps.iter().map(|p| self.path_in(p, vars, list)).collect::<Result<Vec<_>, _>>();
        let source = if let Some(p) = &table.path {
            Source::First(vec![self.path_in(p, vars, list)?])
        } else if !table.paths.is_empty() {
            Source::First(to_refs(&table.paths)?)
        } else if !table.join.is_empty() {
            Source::Join(to_refs(&table.join)?)
        } else if let [dir, file] = &table.join_path[..] {
            Source::JoinPath(self.path(dir, vars)?, self.path(file, vars)?)
        } else if !table.join_path.is_empty() {
            return Err(self.err(
                name,
                format!("field `{name}`: `join_path` takes two paths, the directory and the file name"),
            ));
        } else {
            Source::Fixed(table.value.clone().unwrap_or(Value::Null))
        };
        if table.format.is_some() && kind != Kind::Time {
            return Err(self.err(name, format!("`format` only applies to `time`, not `{name}`")));
        }
        if table.matches.is_some() && kind != Kind::List {
            return Err(self.err(name, format!("`matches` only applies to `attacks`, not `{name}`")));
        }
        if kind == Kind::Severity {
            for v in table.map.values().chain(table.bands.iter().map(|b| &b.value)) {
                if parse_severity(v) == Severity::Unknown && v != "unknown" {
                    return Err(self.err(v, format!("`{v}` is not a severity (informational, low, medium, high, critical, fatal, unknown)")));
                }
            }
        }
        let matches = match &table.matches {
            Some(re) => Some(self.regex(name, re)?),
            None => None,
        };
        Ok(Field {
            source,
            map: table.map,
            bands: table.bands.into_iter().map(|b| (b.min, b.value)).collect(),
            default: table.default,
            format: table.format,
            matches,
            basename: table.basename,
        })
    }

    fn regex(&self, name: &str, pattern: &str) -> Result<Regex, MappingError> {
        regex::RegexBuilder::new(pattern)
            .size_limit(64 * 1024)
            .build()
            .map_err(|e| self.err(pattern, format!("`{name}`: invalid regex: {e}")))
    }

    fn condition(&self, c: &ConditionSpec, vars: &[String]) -> Result<Condition, MappingError> {
        let path = |c: &ConditionSpec| -> Result<PathRef, MappingError> {
            let p = c.path.as_deref().ok_or_else(|| self.err("when", "condition needs a `path`".into()))?;
            self.path(p, vars)
        };
        let ops = [
            c.equals.is_some(),
            c.one_of.is_some(),
            c.exists.is_some(),
            c.contains.is_some(),
            c.matches.is_some(),
            c.any_item.is_some(),
            c.all.is_some(),
            c.any.is_some(),
            c.not.is_some(),
        ];
        if ops.iter().filter(|o| **o).count() != 1 {
            let at = c.path.as_deref().unwrap_or("when");
            return Err(self.err(at, "a condition needs exactly one of equals, in, exists, contains, matches, any_item, all, any, not".into()));
        }
        let list =
            |cs: &[ConditionSpec]| cs.iter().map(|c| self.condition(c, vars)).collect::<Result<Vec<_>, _>>();
        Ok(if let Some(v) = &c.equals {
            Condition::Equals(path(c)?, v.clone())
        } else if let Some(vs) = &c.one_of {
            Condition::In(path(c)?, vs.clone())
        } else if let Some(e) = c.exists {
            Condition::Exists(path(c)?, e)
        } else if let Some(s) = &c.contains {
            Condition::Contains(path(c)?, s.clone())
        } else if let Some(re) = &c.matches {
            Condition::Matches(path(c)?, self.regex("matches", re)?)
        } else if let Some(inner) = &c.any_item {
            Condition::AnyItem(path(c)?, Box::new(self.condition(inner, &[])?))
        } else if let Some(cs) = &c.all {
            Condition::All(list(cs)?)
        } else if let Some(cs) = &c.any {
            Condition::Any(list(cs)?)
        } else if let Some(inner) = &c.not {
            Condition::Not(Box::new(self.condition(inner, vars)?))
        } else {
            unreachable!("exactly one operator was checked above")
        })
    }

    /// `""`, `/a/b`, `${root}/a`, `${var}/a`; pointer escapes `~0` and `~1` are honoured.
    fn path(&self, text: &str, vars: &[String]) -> Result<PathRef, MappingError> {
        self.path_in(text, vars, false)
    }

    /// A path; `*` tokens (every item of an array) only where a list is being collected.
    fn path_in(&self, text: &str, vars: &[String], wildcard_ok: bool) -> Result<PathRef, MappingError> {
        let path = self.parse_path(text, vars)?;
        if !wildcard_ok && path.tokens.iter().any(|t| t == WILDCARD) {
            return Err(self.err(
                text,
                format!("path `{text}`: `*` (every item) is only allowed in list fields (`attacks`)"),
            ));
        }
        Ok(path)
    }

    fn parse_path(&self, text: &str, vars: &[String]) -> Result<PathRef, MappingError> {
        let (base, rest) = if let Some(after) = text.strip_prefix("${") {
            let end =
                after.find('}').ok_or_else(|| self.err(text, format!("unclosed `${{` in path `{text}`")))?;
            let name = &after[..end];
            let base = if name == "root" {
                Base::Root
            } else {
                let i = vars.iter().position(|v| v == name).ok_or_else(|| {
                    self.err(
                        text,
                        format!(
                            "path `{text}` uses `${{{name}}}`, which is not defined (by an earlier `let`)"
                        ),
                    )
                })?;
                Base::Var(i)
            };
            (base, &after[end + 1..])
        } else {
            (Base::Here, text)
        };
        if !rest.is_empty() && !rest.starts_with('/') {
            return Err(self.err(text, format!("path `{text}` must be a JSON Pointer starting with `/`")));
        }
        let tokens = rest.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
        Ok(PathRef { base, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Mapping {
        Mapping::compile(text, "m.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    const HEADER: &str = "integration = \"t\"\ndescription = \"test\"\n";

    #[test]
    fn paths_with_dots_and_escapes_resolve() {
        let m = compile(&format!(
            "{HEADER}[fields]\n\"process.pid\" = \"/output_fields/proc.pid\"\n\"process.cwd\" = \"/a~1b\"\n"
        ));
        let out = m.apply_json(br#"{"output_fields":{"proc.pid":"123"},"a/b":"/tmp"}"#).unwrap();
        let p = out[0].0.process.as_ref().unwrap();
        assert_eq!(p.pid, Some(123));
        assert_eq!(p.cwd.as_deref(), Some("/tmp"));
    }

    #[test]
    fn large_vendor_ids_never_become_pids() {
        let m = compile(&format!("{HEADER}[fields]\n\"process.pid\" = \"/pid\"\n"));
        for payload in [r#"{"pid": 43009301133}"#, r#"{"pid": 0}"#, r#"{"pid": "abc"}"#, r#"{"pid": -5}"#] {
            let out = m.apply_json(payload.as_bytes()).unwrap();
            assert!(out[0].0.process.is_none(), "{payload}");
        }
    }

    #[test]
    fn let_variables_pick_the_present_branch() {
        let m = compile(&format!(
            "{HEADER}[let]\nev = {{ first_of = [\"/process_kprobe\", \"/process_exec\"] }}\n[fields]\n\"process.cmd_line\" = {{ join = [\"${{ev}}/process/binary\", \"${{ev}}/process/arguments\"] }}\n"
        ));
        let out = m
            .apply_json(
                br#"{"process_exec":{"process":{"binary":"/usr/bin/cat","arguments":"/etc/passwd"}}}"#,
            )
            .unwrap();
        assert_eq!(out[0].0.process.as_ref().unwrap().cmd_line.as_deref(), Some("/usr/bin/cat /etc/passwd"));
    }

    #[test]
    fn item_where_selects_the_matching_array_element() {
        let m = compile(&format!(
            "{HEADER}[let]\nproc = {{ path = \"/evidence\", item_where = {{ path = \"/entityType\", equals = \"Process\" }} }}\n[fields]\n\"process.pid\" = \"${{proc}}/processId\"\n"
        ));
        let out = m.apply_json(br#"{"evidence":[{"entityType":"File","processId":1},{"entityType":"Process","processId":77}]}"#).unwrap();
        assert_eq!(out[0].0.process.as_ref().unwrap().pid, Some(77));
        let single = m.apply_json(br#"{"evidence":{"entityType":"Process","processId":78}}"#).unwrap();
        assert_eq!(single[0].0.process.as_ref().unwrap().pid, Some(78));
    }

    #[test]
    fn first_matching_disposition_rule_wins_else_default() {
        let m = compile(&format!(
            "{HEADER}disposition_default = \"detected\"\n[[disposition]]\nwhen = {{ path = \"/flags/PolicyDisabled\", equals = true }}\nvalue = \"detected\"\n[[disposition]]\nwhen = {{ any = [{{ path = \"/flags/KillProcess\", equals = true }}, {{ path = \"/flags/ProcessBlocked\", equals = true }}] }}\nvalue = \"killed\"\n"
        ));
        let d = |p: &str| m.apply_json(p.as_bytes()).unwrap()[0].0.disposition;
        assert_eq!(d(r#"{"flags":{"KillProcess":true,"PolicyDisabled":true}}"#), Disposition::Detected);
        assert_eq!(d(r#"{"flags":{"KillProcess":true,"PolicyDisabled":false}}"#), Disposition::Killed);
        assert_eq!(d(r#"{"flags":{}}"#), Disposition::Detected);
    }

    #[test]
    fn any_item_checks_array_elements() {
        let m = compile(&format!(
            "{HEADER}[[disposition]]\nwhen = {{ path = \"/mitigation\", any_item = {{ all = [{{ path = \"/action\", equals = \"kill\" }}, {{ path = \"/status\", equals = \"success\" }}] }} }}\nvalue = \"killed\"\n"
        ));
        let d = |p: &str| m.apply_json(p.as_bytes()).unwrap()[0].0.disposition;
        assert_eq!(d(r#"{"mitigation":[{"action":"kill","status":"success"}]}"#), Disposition::Killed);
        assert_eq!(d(r#"{"mitigation":[{"action":"kill","status":"failed"}]}"#), Disposition::Unknown);
    }

    #[test]
    fn severity_maps_and_bands() {
        let m = compile(&format!(
            "{HEADER}[fields]\nseverity = {{ path = \"/level\", bands = [{{ min = 12, value = \"critical\" }}, {{ min = 7, value = \"high\" }}, {{ min = 0, value = \"low\" }}] }}\n"
        ));
        let s = |p: &str| m.apply_json(p.as_bytes()).unwrap()[0].0.severity;
        assert_eq!(s(r#"{"level": 13}"#), Severity::Critical);
        assert_eq!(s(r#"{"level": "8"}"#), Severity::High);
        assert_eq!(s(r#"{"level": 3}"#), Severity::Low);
        let m = compile(&format!("{HEADER}[fields]\nseverity = {{ path = \"/p\", map = {{ Warning = \"medium\", \"*\" = \"low\" }} }}\n"));
        let s = |p: &str| m.apply_json(p.as_bytes()).unwrap()[0].0.severity;
        assert_eq!(s(r#"{"p": "Warning"}"#), Severity::Medium);
        assert_eq!(s(r#"{"p": "Whatever"}"#), Severity::Low);
    }

    #[test]
    fn attacks_are_collected_and_filtered() {
        let m = compile(&format!(
            "{HEADER}[fields]\nattacks = {{ paths = [\"/tags\", \"/extra\"], matches = \"^T[0-9]{{4}}(\\\\.[0-9]{{3}})?$\" }}\n"
        ));
        let out =
            m.apply_json(br#"{"tags":["T1059.004","mitre_execution","T1059.004"],"extra":"T1105"}"#).unwrap();
        assert_eq!(out[0].0.attacks, ["T1059.004", "T1105"]);
    }

    #[test]
    fn time_formats_parse() {
        let ts = |s: &str, f| parse_time(s, f).map(|t| t.unix_timestamp());
        assert_eq!(ts("2021-02-01T20:58:44.830+0000", TimeFormat::Iso8601), Some(1612213124));
        assert_eq!(ts("2022-02-01T18:01:56.410123456Z", TimeFormat::Rfc3339), Some(1643738516));
        assert_eq!(ts("1412123850", TimeFormat::UnixS), Some(1412123850));
        assert_eq!(ts("1412123850000", TimeFormat::UnixMs), Some(1412123850));
        let exact = |s: &str, f| parse_time(s, f).map(|t| t.unix_timestamp_nanos());
        assert_eq!(exact("1686845212400", TimeFormat::UnixMs), Some(1_686_845_212_400_000_000));
        assert_eq!(exact("1412123850", TimeFormat::UnixS), Some(1_412_123_850_000_000_000));
        assert_eq!(ts("1412123850.5", TimeFormat::UnixS), Some(1412123850));
        assert_eq!(exact("99999999999999999999999999", TimeFormat::UnixMs), None);
        assert_eq!(ts("1795320857.092:60", TimeFormat::Audit), Some(1795320857));
        let audit = parse_time("1170021493.977:293", TimeFormat::Audit).unwrap();
        assert_eq!(audit.nanosecond(), 977_000_000, "audit stamps are exact, not f64");
        assert_eq!(parse_time("1.2.3:4", TimeFormat::Audit), None);
        assert_eq!(ts("Tue Sep 30 17:37:30 2014 UTC", TimeFormat::Ctime), Some(1412098650));
        assert_eq!(ts("not a time", TimeFormat::Rfc3339), None);
    }

    #[test]
    fn envelope_arrays_yield_one_event_each_with_verbatim_raw() {
        let m = compile(&format!(
            "{HEADER}[envelope]\nevents = [\"/batch\"]\n[fields]\nhost = \"${{root}}/host\"\nvendor_id = \"/id\"\n"
        ));
        let payload = br#"{"host":"h","batch":[{"id":"a",  "x":1},{"id":"b"}]}"#;
        let out = m.apply_json(payload).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0.vendor_id.as_deref(), Some("a"));
        assert_eq!(out[1].0.host.as_deref(), Some("h"));
        assert_eq!(out[0].1.get(), r#"{"id":"a",  "x":1}"#);
    }

    #[test]
    fn ancestors_from_slots_and_arrays() {
        let m = compile(&format!(
            "{HEADER}[[ancestor]]\nexe = \"/a2\"\npid = \"/p2\"\n[[ancestor]]\nexe = \"/a3\"\n[ancestors_from]\npath = \"/anc\"\npid = \"/pid\"\ncmd_line = {{ join = [\"/binary\", \"/arguments\"] }}\n"
        ));
        let out = m
            .apply_json(br#"{"a2":"bash","p2":10,"anc":[{"pid":5,"binary":"/bin/sh","arguments":"-c x"}]}"#)
            .unwrap();
        let anc = &out[0].0.process.as_ref().unwrap().ancestors;
        assert_eq!(anc.len(), 2);
        assert_eq!(anc[0].exe.as_deref(), Some("bash"));
        assert_eq!(anc[0].pid, Some(10));
        assert_eq!(anc[1].cmd_line.as_deref(), Some("/bin/sh -c x"));
    }

    #[test]
    fn alternatives_are_tried_in_order_each_with_its_own_format() {
        let m = compile(&format!(
            "{HEADER}[fields]\ntime = [{{ path = \"/meta/ms\", format = \"unix_ms\" }}, {{ paths = [\"/ts\", \"/created\"], format = \"rfc3339\" }}]\nseverity = [{{ path = \"/sev_name\" }}, {{ path = \"/sev\", bands = [{{ min = 70, value = \"high\" }}, {{ min = 0, value = \"low\" }}] }}]\n\"process.pid\" = [\"/os_pid\", {{ path = \"/pid_text\" }}]\n"
        ));
        let body = |p: &str| m.apply_json(p.as_bytes()).unwrap().remove(0).0;
        let t = |p: &str| body(p).time.map(|t| t.unix_timestamp());
        assert_eq!(t(r#"{"meta":{"ms":1686845212400}}"#), Some(1686845212));
        assert_eq!(t(r#"{"ts":"2023-11-03T18:00:22.328Z"}"#), Some(1699034422));
        // The first alternative is present but does not parse as its format: the next one is tried.
        assert_eq!(t(r#"{"meta":{"ms":"soon"},"created":"2023-11-03T18:00:22Z"}"#), Some(1699034422));
        assert_eq!(body(r#"{"sev_name":"Critical","sev":10}"#).severity, Severity::Critical);
        assert_eq!(body(r#"{"sev":75}"#).severity, Severity::High);
        assert_eq!(body(r#"{"pid_text":"4242"}"#).process.unwrap().pid, Some(4242));
        assert_eq!(body(r#"{"os_pid":"x","pid_text":"4243"}"#).process.unwrap().pid, Some(4243));
        for bad in ["[fields]\nhost = []\n", "[fields]\nhost = [[\"/a\"], \"/b\"]\n"] {
            let err = Mapping::compile(&format!("{HEADER}{bad}"), "m.toml").unwrap_err();
            assert!(err.message.contains("alternatives"), "{bad}: {err}");
        }
    }

    #[test]
    fn join_path_uses_the_directory_separator() {
        let m = compile(&format!(
            "{HEADER}[fields]\n\"process.exe\" = {{ join_path = [\"/dir\", \"/name\"] }}\n"
        ));
        let exe = |p: &str| m.apply_json(p.as_bytes()).unwrap().remove(0).0.process.and_then(|p| p.exe);
        assert_eq!(
            exe(r#"{"dir":"C:\\Windows\\System32","name":"notepad.exe"}"#).as_deref(),
            Some(r"C:\Windows\System32\notepad.exe")
        );
        assert_eq!(exe(r#"{"dir":"/usr/bin","name":"curl"}"#).as_deref(), Some("/usr/bin/curl"));
        assert_eq!(exe(r#"{"dir":"/usr/bin/","name":"curl"}"#).as_deref(), Some("/usr/bin/curl"));
        assert_eq!(exe(r#"{"dir":"C:","name":"x.exe"}"#).as_deref(), Some(r"C:\x.exe"));
        assert_eq!(exe(r#"{"name":"curl"}"#).as_deref(), Some("curl"));
        assert_eq!(exe(r#"{"dir":"/tmp","name":"/usr/bin/curl"}"#).as_deref(), Some("/usr/bin/curl"));
        assert_eq!(exe(r#"{"dir":"/usr/bin"}"#), None);
        let err = Mapping::compile(
            &format!("{HEADER}[fields]\n\"process.exe\" = {{ join_path = [\"/a\"] }}\n"),
            "m.toml",
        )
        .unwrap_err();
        assert!(err.message.contains("two paths"), "{err}");
    }

    #[test]
    fn wildcards_collect_from_every_item_in_list_fields_only() {
        let m = compile(&format!(
            "{HEADER}[fields]\nattacks = {{ paths = [\"/threat/*/technique/*/id\", \"/threat/*/technique/*/subtechnique/*/id\"], matches = \"^T[0-9]{{4}}\" }}\n"
        ));
        let payload = br#"{"threat":[{"technique":[{"id":"T1059","subtechnique":[{"id":"T1059.004"}]},{"id":"T1105"}]},{"technique":{"id":"T1027"}},{"technique":[{"id":"CST0001"}]}]}"#;
        assert_eq!(m.apply_json(payload).unwrap()[0].0.attacks, ["T1059", "T1105", "T1027", "T1059.004"]);
        for bad in [
            "[fields]\nhost = \"/hosts/*/name\"\n",
            "[[disposition]]\nwhen = { path = \"/r/*/action\", equals = \"kill\" }\nvalue = \"killed\"\n",
        ] {
            let err = Mapping::compile(&format!("{HEADER}{bad}"), "m.toml").unwrap_err();
            assert!(err.message.contains("only allowed in list fields"), "{bad}: {err}");
        }
    }

    #[test]
    fn wildcards_stay_bounded_on_huge_payloads() {
        let m = compile(&format!("{HEADER}[fields]\nattacks = \"/a/*/*/*\"\n"));
        let row = format!("[{}]", vec!["[1,2,3,4,5,6,7,8,9,10]"; 50].join(","));
        let payload = format!("{{\"a\":[{}]}}", vec![row.as_str(); 50].join(","));
        let out = m.apply_json(payload.as_bytes()).unwrap();
        assert_eq!(out[0].0.attacks.len(), 10);
    }

    #[test]
    fn compile_errors_name_the_line_and_the_problem() {
        let cases = [
            ("[fields]\n\"process.pidd\" = \"/x\"\n", "unknown field `process.pidd`", 4),
            ("[fields]\nhost = \"x\"\n", "JSON Pointer", 4),
            ("[fields]\nhost = \"${nope}/x\"\n", "not defined", 4),
            ("[fields]\nseverity = { path = \"/s\", map = { A = \"severe\" } }\n", "not a severity", 4),
            ("[fields]\nattacks = { path = \"/t\", matches = \"(\" }\n", "invalid regex", 4),
            ("colour = 1\n", "unknown field `colour`", 3),
        ];
        for (body, needle, line) in cases {
            let err = Mapping::compile(&format!("{HEADER}{body}"), "m.toml").unwrap_err();
            assert!(err.message.contains(needle), "{body}: {err}");
            assert_eq!(err.line, line, "{body}: {err}");
            assert!(err.to_string().starts_with(&format!("m.toml:{line}:")), "{err}");
        }
    }

    #[test]
    fn non_object_events_and_bad_json_are_errors_not_panics() {
        let m = compile(HEADER);
        assert!(matches!(m.apply_json(b"{"), Err(ApplyError::Syntax(_))));
        assert!(matches!(m.apply_json(b"[1,2]"), Err(ApplyError::Shape(_))));
        assert!(matches!(m.apply_json(b"[]"), Err(ApplyError::Shape(_))));
        assert!(m.apply_json(b"\"x\"").is_err());
    }
}
