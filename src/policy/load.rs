//! Loading a policy folder: read the files, sort the items into lists, macros, policies and
//! tunings, compile everything, apply tunings by id, order the policies, and hash the set.
//!
//! Every phase runs even when an earlier one found problems, so a single run reports every
//! mistake in the folder. The result is all-or-nothing: a set is returned only when there is
//! no diagnostic at all.
//!
//! This module does not evaluate (that is `cond`) and never applies part of a folder.

use super::action;
use super::compile::{Compiler, ListDef, MacroDef};
use super::cond::{Cond, Loc};
use super::diag::{codes, did_you_mean, Diagnostics, Pos, Sink, SourceFile};
use super::fields::{trust_from_rank, TRUSTS};
use super::fixture;
use super::yaml::{self, Entries, Kind, Node, Reader};
use super::{Exception, FileInfo, Policy, PolicySet, Priority};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Largest policy file read.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// The four kinds of item; each item has exactly one of these keys.
const KINDS: &[&str] = &["list", "macro", "policy", "tuning"];
const LIST_KEYS: &[&str] = &["list", "items", "append", "desc"];
const MACRO_KEYS: &[&str] = &["macro", "match", "desc"];
const POLICY_KEYS: &[&str] = &[
    "policy",
    "id",
    "desc",
    "enabled",
    "priority",
    "tags",
    "min_trust",
    "match",
    "agent",
    "exceptions",
    "action",
    "tests",
];
const TUNING_KEYS: &[&str] = &["tuning", "desc", "enabled", "priority", "note", "exceptions", "tests"];
const EXCEPTION_KEYS: &[&str] = &["name", "desc", "match", "agent"];

pub(crate) fn embedded(name: &str, text: &str) -> SourceFile {
    SourceFile { shown: name.into(), relative: name.into(), text: text.into() }
}

/// Reads every `*.yaml` / `*.yml` directly in `dir` (hidden files skipped) and loads them.
pub(crate) fn load_dir(dir: &Path) -> Result<PolicySet, Diagnostics> {
    let mut sink = Sink::default();
    let folder = SourceFile { shown: dir.to_path_buf(), relative: String::new(), text: String::new() };
    let at_start = Pos { line: 1, col: 1, width: 1 };
    let mut names: Vec<String> = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = match entry {
                    Ok(e) => e,
                    Err(err) => {
                        sink.push(&folder, at_start, codes::IO, format!("cannot list the folder: {err}"));
                        continue;
                    }
                };
                let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                if name.starts_with('.') || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
                    continue;
                }
                // Follows symlinks (Kubernetes ConfigMap mounts are symlinks); folders are skipped.
                if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                names.push(name);
            }
        }
        Err(err) => {
            sink.push(&folder, at_start, codes::IO, format!("cannot read the policy folder: {err}"));
            return Err(sink.finish().unwrap_or(Diagnostics(Vec::new())));
        }
    }
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let shown = SourceFile { shown: path.clone(), relative: name.clone(), text: String::new() };
        let read = std::fs::metadata(&path).map_err(|e| e.to_string()).and_then(|m| {
            if m.len() > MAX_FILE_BYTES {
                Err(format!("the file is larger than {} MiB", MAX_FILE_BYTES >> 20))
            } else {
                std::fs::read(&path).map_err(|e| e.to_string())
            }
        });
        match read
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string()))
        {
            Ok(text) => files.push(SourceFile { text, ..shown }),
            Err(why) => sink.push(&shown, at_start, codes::IO, format!("cannot read: {why}")),
        }
    }
    if files.is_empty() && sink.diags.is_empty() {
        sink.push(&folder, at_start, codes::EMPTY_DIR, "no policy files (*.yaml, *.yml) in this folder");
    }
    load_with(files, Some(dir), sink)
}

/// Loads a set from files already in memory (the built-in default, tests).
pub(crate) fn load_sources(
    files: Vec<SourceFile>,
    fixture_dir: Option<&Path>,
) -> Result<PolicySet, Diagnostics> {
    load_with(files, fixture_dir, Sink::default())
}

/// Hex SHA-256 over each file's relative name and bytes, length-prefixed, in name order.
pub(crate) fn hash_files(files: &[SourceFile]) -> String {
    let mut sorted: Vec<&SourceFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.relative.cmp(&b.relative));
    let mut h = Sha256::new();
    for f in sorted {
        h.update((f.relative.len() as u64).to_be_bytes());
        h.update(f.relative.as_bytes());
        h.update((f.text.len() as u64).to_be_bytes());
        h.update(f.text.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// One item of a file, sorted by kind.
struct Item<'n> {
    file: usize,
    index: usize,
    node: &'n Node,
    entries: Entries<'n>,
}

#[derive(Default)]
struct Items<'n> {
    lists: Vec<Item<'n>>,
    macros: Vec<Item<'n>>,
    policies: Vec<Item<'n>>,
    tunings: Vec<Item<'n>>,
}

fn load_with(
    mut files: Vec<SourceFile>,
    fixture_dir: Option<&Path>,
    mut sink: Sink,
) -> Result<PolicySet, Diagnostics> {
    // File order is the tie-break after priority: by relative name, whatever the caller gave.
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    // Parse every file; a file with a syntax error contributes nothing else.
    let docs: Vec<Option<Node>> = files
        .iter()
        .map(|f| match yaml::parse(&f.text) {
            Ok(n) => Some(n),
            Err((pos, msg)) => {
                sink.push(f, pos, codes::YAML, msg);
                None
            }
        })
        .collect();

    let mut items = Items::default();
    for (file, doc) in docs.iter().enumerate() {
        if let Some(doc) = doc {
            sort_items(&mut Reader { file: &files[file], sink: &mut sink }, file, doc, &mut items);
        }
    }

    // Every id written, compiled or not: a tuning or test naming a policy that has an error of
    // its own is not reported a second time as "undefined".
    let written_ids: Vec<&str> =
        items.policies.iter().filter_map(|i| i.entries.get("id").and_then(Node::as_str)).collect();

    let lists = lists(&files, &mut sink, &items.lists);
    let macros = macros(&files, &mut sink, &items.macros);
    let mut c = Compiler::new(&files, &mut sink, lists, macros);

    let mut policies = Vec::new();
    for item in &items.policies {
        if let Some(p) = policy(&mut c, item, fixture_dir) {
            policies.push(p);
        }
    }
    c.check_all_macros();

    // Ids are unique across the folder.
    let mut seen: HashMap<&str, Loc> = HashMap::new();
    let mut dup_errors = Vec::new();
    for p in &policies {
        if let Some(first) = seen.get(p.id.as_str()) {
            let where_ = format!("{}:{}", files[first.file].shown.display(), first.pos);
            dup_errors.push((p.at, format!("policy id `{}` is already used at {where_}", p.id)));
        } else {
            seen.insert(&p.id, p.at);
        }
    }
    for (at, msg) in dup_errors {
        c.reader(at.file).error(at.pos, codes::DUPLICATE, msg);
    }

    let tuning_tests = tunings(&mut c, &items.tunings, &mut policies, &written_ids, fixture_dir);

    // Test expectations name existing policies.
    let mut missing = Vec::new();
    for t in policies.iter().flat_map(|p| p.tests.iter()).chain(tuning_tests.iter().map(|(_, t)| t)) {
        if let Some(want) = t.expect.policy.as_deref().filter(|w| !written_ids.contains(w)) {
            let hint = did_you_mean(want, written_ids.iter().copied());
            missing.push((
                t.expect.policy_at,
                format!("the test expects policy `{want}`, which is not defined{hint}"),
            ));
        }
    }
    for (at, msg) in missing {
        c.reader(at.file).error(at.pos, codes::UNDEFINED_POLICY, msg);
    }

    drop(c);
    if let Some(diags) = sink.finish() {
        return Err(diags);
    }
    policies.sort_by_key(|p| (p.priority, p.order));
    let index = super::index::Index::build(&policies);
    Ok(PolicySet {
        hash: hash_files(&files),
        files: files.iter().map(|f| FileInfo { shown: f.shown.clone() }).collect(),
        policies,
        tuning_tests,
        index,
    })
}

/// Splits a file's top-level list into items by kind, checking each item's keys.
fn sort_items<'n>(r: &mut Reader<'_>, file: usize, doc: &'n Node, out: &mut Items<'n>) {
    let list = match &doc.kind {
        Kind::Null => return,
        Kind::Seq(list) => list,
        _ => {
            r.error(
                doc.pos,
                codes::TYPE,
                format!(
                    "a policy file is a list of items (`- policy: …`, `- list: …`), found {}",
                    doc.describe()
                ),
            );
            return;
        }
    };
    for (index, node) in list.iter().enumerate() {
        let Some(raw) = r.map(node, "an item") else { continue };
        let kinds: Vec<&Node> =
            raw.iter().map(|(k, _)| k).filter(|k| k.as_str().is_some_and(|s| KINDS.contains(&s))).collect();
        let kind = match kinds.as_slice() {
            [one] => one.as_str().unwrap_or(""),
            [] => {
                let hint = raw
                    .iter()
                    .filter_map(|(k, _)| k.as_str())
                    .find_map(|k| super::diag::suggest(k, KINDS.iter().copied()).map(|s| (k, s)));
                let msg = match hint {
                    Some((k, s)) => format!(
                        "an item needs one of list, macro, policy, tuning (`{k}`: did you mean `{s}`?)"
                    ),
                    None => "an item needs one of list, macro, policy, tuning".to_string(),
                };
                r.error(node.pos, codes::ITEM_KIND, msg);
                continue;
            }
            [first, second, ..] => {
                let msg = format!(
                    "an item is one of list, macro, policy, tuning, not both `{}` and `{}`",
                    first.as_str().unwrap_or(""),
                    second.as_str().unwrap_or("")
                );
                r.error(second.pos, codes::ITEM_KIND, msg);
                continue;
            }
        };
        let (allowed, bucket) = match kind {
            "list" => (LIST_KEYS, &mut out.lists),
            "macro" => (MACRO_KEYS, &mut out.macros),
            "policy" => (POLICY_KEYS, &mut out.policies),
            _ => (TUNING_KEYS, &mut out.tunings),
        };
        let entries = r.check_keys(raw, allowed, &format!("a {kind}"));
        bucket.push(Item { file, index, node, entries });
    }
}

/// A list or macro name: a letter or `_`, then letters, digits, `_`, `-`, `.`.
fn check_name(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<String> {
    let name = r.str(node, what)?;
    let valid = name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        r.error(
            node.pos,
            codes::BAD_NAME,
            format!("{what} {name:?} must start with a letter or `_` and use only letters, digits, `_`, `-`, `.` (at most 64)"),
        );
        return None;
    }
    Some(name.to_string())
}

/// A policy id: letters, digits, `.`, `_`, `:`, `-`, at most 128, not `none`.
fn check_id(r: &mut Reader<'_>, node: &Node) -> Option<String> {
    let id = r.str(node, "`id`")?;
    let valid = id.len() <= 128
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if !valid || id == "none" {
        r.error(
            node.pos,
            codes::BAD_NAME,
            format!("policy id {id:?} must start with a letter or digit and use only letters, digits, `.`, `_`, `:`, `-` (at most 128; `none` is reserved)"),
        );
        return None;
    }
    Some(id.to_string())
}

fn lists(files: &[SourceFile], sink: &mut Sink, items: &[Item<'_>]) -> HashMap<String, ListDef> {
    let mut out: HashMap<String, ListDef> = HashMap::new();
    let mut defined_at: HashMap<String, Loc> = HashMap::new();
    // Definitions first, then appends (in file order), so an append may sit in any file.
    for appending in [false, true] {
        for item in items {
            let mut r = Reader { file: &files[item.file], sink: &mut *sink };
            let append = match item.entries.get("append") {
                Some(n) => r.bool(n, "`append`").unwrap_or(appending),
                None => false,
            };
            if append != appending {
                continue;
            }
            let Some(name_node) = item.entries.get("list") else { continue };
            let Some(name) = check_name(&mut r, name_node, "list name") else { continue };
            let Some(values_node) = item.entries.get("items") else {
                r.error(item.node.pos, codes::MISSING_KEY, format!("list `{name}` needs `items`"));
                continue;
            };
            let Some(values) = r.seq(values_node, "`items`") else { continue };
            let mut parsed = Vec::with_capacity(values.len());
            for v in values {
                if let Some(text) = r.scalar_text(v, "a list item") {
                    parsed.push((text, Loc { file: item.file, pos: v.pos }));
                }
            }
            let at = Loc { file: item.file, pos: name_node.pos };
            if appending {
                match out.get_mut(&name) {
                    Some(list) => list.items.extend(parsed),
                    None => {
                        let hint = did_you_mean(&name, out.keys().map(String::as_str));
                        r.error(
                            name_node.pos,
                            codes::UNDEFINED_LIST,
                            format!("`append: true` extends list `{name}`, which is not defined{hint}"),
                        );
                    }
                }
            } else if let Some(first) = defined_at.get(&name) {
                let where_ = format!("{}:{}", files[first.file].shown.display(), first.pos);
                r.error(
                    name_node.pos,
                    codes::DUPLICATE,
                    format!("list `{name}` is already defined at {where_} (use `append: true` to extend it)"),
                );
            } else {
                defined_at.insert(name.clone(), at);
                out.insert(name, ListDef { items: parsed });
            }
        }
    }
    out
}

fn macros<'n>(files: &[SourceFile], sink: &mut Sink, items: &[Item<'n>]) -> HashMap<String, MacroDef<'n>> {
    let mut out = HashMap::new();
    let mut defined_at: HashMap<String, Loc> = HashMap::new();
    for item in items {
        let mut r = Reader { file: &files[item.file], sink: &mut *sink };
        let Some(name_node) = item.entries.get("macro") else { continue };
        let Some(name) = check_name(&mut r, name_node, "macro name") else { continue };
        let Some(cond) = item.entries.get("match") else {
            r.error(item.node.pos, codes::MISSING_KEY, format!("macro `{name}` needs a `match` block"));
            continue;
        };
        if let Some(first) = defined_at.get(&name) {
            let where_ = format!("{}:{}", files[first.file].shown.display(), first.pos);
            r.error(
                name_node.pos,
                codes::DUPLICATE,
                format!("macro `{name}` is already defined at {where_}"),
            );
            continue;
        }
        defined_at.insert(name.clone(), Loc { file: item.file, pos: name_node.pos });
        out.insert(name, MacroDef::new(cond, item.file));
    }
    out
}

/// Compiles one policy item; `None` when it has any problem (all of them reported).
fn policy<'n>(c: &mut Compiler<'n, '_>, item: &Item<'n>, fixture_dir: Option<&Path>) -> Option<Policy> {
    let f = item.file;
    let e = &item.entries;
    let mut ok = true;

    let title = e.get("policy").and_then(|n| c.reader(f).str(n, "`policy` (the title)").map(str::to_string));
    ok &= title.is_some();
    let id = match e.get("id") {
        Some(n) => check_id(&mut c.reader(f), n),
        None => {
            c.reader(f).error(
                item.node.pos,
                codes::MISSING_KEY,
                "a policy needs a stable `id` (tuning and tests refer to it)",
            );
            None
        }
    };
    ok &= id.is_some();
    if let Some(n) = e.get("desc") {
        ok &= c.reader(f).str(n, "`desc`").is_some();
    }
    if let Some(n) = e.get("tags") {
        let mut r = c.reader(f);
        match r.seq(n, "`tags`") {
            Some(tags) => {
                for t in tags {
                    ok &= r.str(t, "a tag").is_some();
                }
            }
            None => ok = false,
        }
    }
    let enabled = match e.get("enabled") {
        Some(n) => c.reader(f).bool(n, "`enabled`"),
        None => Some(true),
    };
    ok &= enabled.is_some();
    let priority = match e.get("priority") {
        Some(n) => c.reader(f).choice(n, "`priority`", Priority::NAMES).and_then(Priority::from_name),
        None => Some(Priority::Medium),
    };
    ok &= priority.is_some();
    let min_trust = match e.get("min_trust") {
        Some(n) => match c.reader(f).choice(n, "`min_trust`", TRUSTS) {
            Some(word) => Some(TRUSTS.iter().position(|t| *t == word).map(trust_from_rank)),
            None => {
                ok = false;
                None
            }
        },
        None => None,
    };

    let mut parts = Vec::new();
    let match_block = e.get("match").map(|n| c.match_block(f, n, "`match`"));
    let agent_block = e.get("agent").map(|n| c.agent_block(f, n));
    if match_block.is_none() && agent_block.is_none() {
        c.reader(f).error(
            item.node.pos,
            codes::MISSING_KEY,
            "a policy needs a `match` block (or an `agent` block)",
        );
        ok = false;
    }
    for block in [match_block, agent_block].into_iter().flatten() {
        match block {
            Some(cond) => parts.push(cond),
            None => ok = false,
        }
    }

    let exceptions = match e.get("exceptions") {
        Some(n) => exceptions(c, f, n),
        None => Some(Vec::new()),
    };
    ok &= exceptions.is_some();

    let action = match e.get("action") {
        Some(n) => action::action(&mut c.reader(f), n),
        None => {
            c.reader(f).error(
                item.node.pos,
                codes::MISSING_KEY,
                "a policy needs an `action` (do_not_retry, halt_session or ignore)",
            );
            None
        }
    };
    ok &= action.is_some();

    let tests = match e.get("tests") {
        Some(n) => fixture::cases(c, f, n, fixture_dir),
        None => Some(Vec::new()),
    };
    ok &= tests.is_some();

    match (ok, title, id, enabled, priority, exceptions, action, tests) {
        (
            true,
            Some(title),
            Some(id),
            Some(enabled),
            Some(priority),
            Some(exceptions),
            Some((action, note)),
            Some(tests),
        ) => Some(Policy {
            id,
            title,
            at: Loc { file: f, pos: item.node.pos },
            priority,
            enabled,
            min_trust: min_trust.flatten(),
            cond: Cond::all(parts),
            exceptions,
            action,
            note,
            tests,
            order: (f, item.index),
        }),
        _ => None,
    }
}

/// `exceptions: [{name, desc?, match?, agent?}, …]`.
fn exceptions<'n>(c: &mut Compiler<'n, '_>, f: usize, node: &'n Node) -> Option<Vec<Exception>> {
    let items = c.reader(f).seq(node, "`exceptions`")?;
    let mut out: Vec<Exception> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(e) = c.reader(f).entries(item, EXCEPTION_KEYS, "an exception") else {
            ok = false;
            continue;
        };
        let name = match e.get("name") {
            Some(n) => check_name(&mut c.reader(f), n, "exception name"),
            None => {
                c.reader(f).error(item.pos, codes::MISSING_KEY, "an exception needs a `name`");
                None
            }
        };
        if let Some(n) = e.get("desc") {
            ok &= c.reader(f).str(n, "`desc`").is_some();
        }
        let mut parts = Vec::new();
        let m = e.get("match").map(|n| c.match_block(f, n, "the exception's `match`"));
        let a = e.get("agent").map(|n| c.agent_block(f, n));
        if m.is_none() && a.is_none() {
            c.reader(f).error(
                item.pos,
                codes::MISSING_KEY,
                "an exception needs a `match` block (or an `agent` block)",
            );
            ok = false;
        }
        for block in [m, a].into_iter().flatten() {
            match block {
                Some(cond) => parts.push(cond),
                None => ok = false,
            }
        }
        if let (Some(name), Some(first)) = (&name, out.iter().find(|x| Some(&x.name) == name.as_ref())) {
            let msg = format!("two exceptions are named `{name}` (first at {})", first.at.pos);
            c.reader(f).error(item.pos, codes::DUPLICATE, msg);
            ok = false;
        }
        match name {
            Some(name) if ok => {
                out.push(Exception { name, cond: Cond::all(parts), at: Loc { file: f, pos: item.pos } })
            }
            _ => ok = false,
        }
    }
    ok.then_some(out)
}

/// Applies `tuning` items to the policies they name. Each setting of a policy may be tuned once
/// in the whole folder (a second tuning of it is an error, not a silent override); exceptions
/// accumulate. `written_ids` are all ids in the folder, including those of policies that
/// failed to compile (a tuning of those is not an extra error).
fn tunings<'n>(
    c: &mut Compiler<'n, '_>,
    items: &[Item<'n>],
    policies: &mut [Policy],
    written_ids: &[&str],
    fixture_dir: Option<&Path>,
) -> Vec<(String, fixture::TestCase)> {
    let mut tuned: HashMap<(String, &'static str), Loc> = HashMap::new();
    let mut tests = Vec::new();
    for item in items {
        let f = item.file;
        let e = &item.entries;
        let Some(targets_node) = e.get("tuning") else { continue };
        let targets: Vec<&Node> = c.reader(f).one_or_many(targets_node).iter().collect();
        if let (Some(n), Some(first)) = (e.get("tests"), targets.first().and_then(|t| t.as_str())) {
            let label = format!("tuning:{first}");
            if let Some(cases) = fixture::cases(c, f, n, fixture_dir) {
                tests.extend(cases.into_iter().map(|t| (label.clone(), t)));
            }
        }
        if targets.is_empty() {
            c.reader(f).error(targets_node.pos, codes::CONFLICT, "`tuning` names no policy id");
            continue;
        }
        if let Some(n) = e.get("desc") {
            c.reader(f).str(n, "`desc`");
        }
        let enabled = e.get("enabled").and_then(|n| c.reader(f).bool(n, "`enabled`").map(|b| (b, n.pos)));
        let priority = e.get("priority").and_then(|n| {
            let p = c.reader(f).choice(n, "`priority`", Priority::NAMES).and_then(Priority::from_name);
            p.map(|p| (p, n.pos))
        });
        let note = e.get("note").and_then(|n| action::note(&mut c.reader(f), n).map(|s| (s, n.pos)));
        let settings = e.iter().filter(|(k, _, _)| !matches!(*k, "tuning" | "desc" | "tests")).count();
        if settings == 0 {
            c.reader(f).error(
                item.node.pos,
                codes::MISSING_KEY,
                "a tuning item changes nothing (give enabled, priority, note or exceptions)",
            );
        }
        for target in targets {
            let Some(id) = c.reader(f).str(target, "a policy id") else { continue };
            let Some(policy) = policies.iter_mut().find(|p| p.id == id) else {
                if !written_ids.contains(&id) {
                    let hint = did_you_mean(id, written_ids.iter().copied());
                    c.reader(f).error(
                        target.pos,
                        codes::UNDEFINED_POLICY,
                        format!("tuning names policy `{id}`, which is not defined{hint}"),
                    );
                }
                continue;
            };
            let mut claim = |c: &mut Compiler<'n, '_>, setting: &'static str, pos: Pos| -> bool {
                let at = Loc { file: f, pos };
                match tuned.get(&(id.to_string(), setting)) {
                    Some(first) => {
                        let where_ = format!("{}:{}", c.files[first.file].shown.display(), first.pos);
                        c.reader(f).error(
                            pos,
                            codes::TUNING_CONFLICT,
                            format!("`{setting}` of policy `{id}` is already tuned at {where_}"),
                        );
                        false
                    }
                    None => {
                        tuned.insert((id.to_string(), setting), at);
                        true
                    }
                }
            };
            if let Some((b, pos)) = enabled {
                if claim(c, "enabled", pos) {
                    policy.enabled = b;
                }
            }
            if let Some((p, pos)) = priority {
                if claim(c, "priority", pos) {
                    policy.priority = p;
                }
            }
            if let Some((n, pos)) = &note {
                if claim(c, "note", *pos) {
                    policy.note = Some(n.clone());
                }
            }
            if let Some(n) = e.get("exceptions") {
                if let Some(list) = exceptions(c, f, n) {
                    for ex in list {
                        if let Some(first) = policy.exceptions.iter().find(|x| x.name == ex.name) {
                            let where_ =
                                format!("{}:{}", c.files[first.at.file].shown.display(), first.at.pos);
                            let msg =
                                format!("policy `{id}` already has an exception `{}` (at {where_})", ex.name);
                            c.reader(f).error(ex.at.pos, codes::DUPLICATE, msg);
                        } else {
                            policy.exceptions.push(ex);
                        }
                    }
                }
            }
        }
    }
    tests
}
