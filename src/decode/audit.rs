//! The `audit` pre-parser: Linux audit records (auditd's `audit.log`, or the kernel log's
//! `audit: type=… audit(…)` lines) grouped into events and turned into one JSON object per
//! event, which a `mapping.toml` with `parser = "audit"` then addresses with JSON Pointers.
//!
//! Two steps, usable apart:
//!
//! * **Grouping** ([`AuditGrouper`], [`group_lines`]): the kernel writes one event as several
//!   records sharing `msg=audit(EPOCH.MS:SERIAL)`, and records of different events may
//!   interleave. An event ends at its `type=EOE` record, when [`REORDER_WINDOW`] other events
//!   have started since it did, or at the end of the input. Memory is bounded: at most
//!   [`REORDER_WINDOW`] events are open, each holding at most [`MAX_RECORDS_PER_EVENT`] records
//!   and [`MAX_EVENT_BYTES`] bytes; records beyond that are dropped and counted.
//! * **Parsing** ([`to_json`]): each record's `key=value` pairs (quoted, bare, or hex-encoded
//!   for untrusted strings), the interpreted fields Debian's `log_format = ENRICHED` appends
//!   after a 0x1D byte (kept apart, under `enriched`), SELinux's free-text `avc:  denied  { … }
//!   for …` prefix, and the command line from `EXECVE` (or, failing that, `PROCTITLE`).
//!
//! The JSON for one event looks like this (values are always strings, as written in the log,
//! except the lists; `(null)` values are left out):
//!
//! ```text
//! { "stamp": "1795320857.092:60", "time": "1795320857.092", "serial": "60",
//!   "node": "web-1", "node_source": "record" | "local-hostname",
//!   "types": ["SYSCALL", "CWD", "PATH", "PROCTITLE"],
//!   "SYSCALL": { "pid": "8026", "exit": "-13", …, "enriched": { "UID": "nobody", … } },
//!   "CWD": { "cwd": "/tmp" },
//!   "PATH": [ { "item": "0", "name": "/etc/shadow", "nametype": "NORMAL", … } ],
//!   "PROCTITLE": { "proctitle": "cat /etc/shadow", "argv": "cat /etc/shadow" },
//!   "EXECVE": { "argc": "2", "a0": "cat", …, "argv": "cat /etc/shadow" },
//!   "AVC": { "avc": "denied", "permissions": ["read"], "permissive": "0", … },
//!   "more": { "AVC": [ { … second AVC record … } ] },
//!   "cmd_line": "cat /etc/shadow" }
//! ```
//!
//! Each record type appears once, as the object of its first record; `PATH` is always a list,
//! `EXECVE` records (the kernel splits long argument lists) are merged into one object, and
//! further records of any other type are listed under `more`. Numeric record types from the
//! kernel log (`type=1400`) and auditd's `UNKNOWN[1423]` are named as in `linux/audit.h`.
//!
//! This module does not decide anything (dispositions are the mapping's job), does not read
//! files or follow rotation (file ingest does), and does not parse `ausearch -i`'s interpreted
//! output (only raw records; `ausearch` without `-i` works, its `----` and `time->` lines are
//! skipped). Interpretation beyond what the log itself carries (syscall numbers, uid names) is
//! left to auditd's ENRICHED format.

use serde_json::{Map, Value};
use std::sync::OnceLock;

/// An event still open when this many other events have started since it did is complete.
/// The kernel emits an event's records together, so interleaving is shallow in practice.
pub const REORDER_WINDOW: usize = 8;
/// Most records kept per event (a long `execve` produces many `EXECVE` records).
pub const MAX_RECORDS_PER_EVENT: usize = 64;
/// Most bytes of record text kept per event (and per line that is not an audit record).
pub const MAX_EVENT_BYTES: usize = 128 * 1024;
/// Most arguments assembled into an `EXECVE` command line.
const MAX_ARGS: usize = 4096;

/// Why a group of lines is not an audit event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("no audit records")]
    Empty,
    #[error("not an audit record (no `audit(EPOCH.MS:SERIAL)` stamp) at line {line} of the event")]
    NoStamp { line: usize },
    #[error("line {line} belongs to audit event {found}, not to {expected} like the lines before it")]
    MixedEvents { line: usize, expected: String, found: String },
}

// ---------------------------------------------------------------------------------------------
// Grouping.
// ---------------------------------------------------------------------------------------------

/// Groups audit lines into events as they arrive (for a file tailer), bounded in memory.
///
/// Feed lines with [`push_line`](Self::push_line); it returns the events that completed. Call
/// [`finish`](Self::finish) at the end of the input, or when the input has been idle for a
/// moment: events without an `EOE` record (a lone AppArmor `AVC`, user-space records) are only
/// known to be complete when others follow or the input ends.
#[derive(Debug, Default)]
pub struct AuditGrouper {
    /// Open events, oldest first.
    open: Vec<OpenEvent>,
    /// How many events have started so far: each open event remembers its number, so that one
    /// with [`REORDER_WINDOW`] newer events is closed.
    started: u64,
    /// Records dropped because their event was full: worth a metric.
    dropped: u64,
}

#[derive(Debug)]
struct OpenEvent {
    /// `node` (empty when absent) and stamp: serials are only unique per node and boot.
    key: String,
    /// The caller's position of the event's first line.
    at: usize,
    seq: u64,
    text: String,
    records: usize,
}

impl AuditGrouper {
    pub fn new() -> AuditGrouper {
        AuditGrouper::default()
    }

    /// Adds one line; `at` is the caller's position for it (a line number, a byte offset) and
    /// comes back with the event it starts. Returns the events this line completed, each as
    /// `(position of its first line, its records joined by "\n")`.
    ///
    /// Blank lines and `ausearch` separators are skipped. A line with no audit stamp is
    /// returned at once as its own group, so that the caller reports it where it is (parsing
    /// it with [`to_json`] fails) instead of it vanishing or joining an unrelated event.
    pub fn push_line(&mut self, at: usize, line: &str) -> Vec<(usize, String)> {
        let line = line.trim_end_matches(['\r', '\n']);
        if is_noise(line) {
            return Vec::new();
        }
        let Some(head) = parse_head(split_enriched(line).0) else {
            return vec![(at, truncated(line).to_string())];
        };
        let key = head.event_key();
        let mut done = Vec::new();
        let found = self.open.iter().position(|e| e.key == key);
        if head.kind == "EOE" {
            // The EOE record carries nothing; one for an event already closed is ignored.
            if let Some(i) = found {
                done.push(self.close(i));
            }
            return done;
        }
        if let Some(i) = found {
            if !self.open[i].add(line) {
                self.dropped += 1;
            }
            return done;
        }
        self.started += 1;
        self.open.push(OpenEvent {
            key,
            at,
            seq: self.started,
            text: truncated(line).to_string(),
            records: 1,
        });
        while self.open.first().is_some_and(|e| self.started - e.seq >= REORDER_WINDOW as u64) {
            done.push(self.close(0));
        }
        done
    }

    /// Completes every open event, oldest first. The grouper stays usable.
    pub fn finish(&mut self) -> Vec<(usize, String)> {
        self.open.drain(..).map(|e| (e.at, e.text)).collect()
    }

    /// How many events are open (waiting for more records).
    pub fn pending(&self) -> usize {
        self.open.len()
    }

    /// The caller's positions (`at`) of the open events' first lines, oldest event first: a
    /// tailer must not checkpoint past the oldest of them.
    pub fn pending_positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.open.iter().map(|e| e.at)
    }

    /// How many records were dropped because their event already held
    /// [`MAX_RECORDS_PER_EVENT`] records or [`MAX_EVENT_BYTES`] bytes.
    pub fn dropped_records(&self) -> u64 {
        self.dropped
    }

    fn close(&mut self, i: usize) -> (usize, String) {
        let e = self.open.remove(i);
        (e.at, e.text)
    }
}

impl OpenEvent {
    /// Appends a record unless the event is full; false when it was dropped.
    fn add(&mut self, line: &str) -> bool {
        if self.records >= MAX_RECORDS_PER_EVENT || self.text.len() + 1 + line.len() > MAX_EVENT_BYTES {
            return false;
        }
        self.text.push('\n');
        self.text.push_str(line);
        self.records += 1;
        true
    }
}

/// Groups a whole text into audit events: `(1-based line number of the event's first line,
/// its records joined by "\n")`, in the order the events start. See [`AuditGrouper`].
pub fn group_lines(text: &str) -> Vec<(usize, String)> {
    let mut grouper = AuditGrouper::new();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        out.extend(grouper.push_line(i + 1, line));
    }
    out.extend(grouper.finish());
    out.sort_by_key(|(at, _)| *at);
    out
}

/// Blank lines, and the `----` / `time->…` lines `ausearch` prints between events.
fn is_noise(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || (t.len() >= 2 && t.bytes().all(|b| b == b'-')) || t.starts_with("time->")
}

/// The line cut to [`MAX_EVENT_BYTES`] at a character boundary.
fn truncated(line: &str) -> &str {
    if line.len() <= MAX_EVENT_BYTES {
        return line;
    }
    let mut end = MAX_EVENT_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

// ---------------------------------------------------------------------------------------------
// One record's head: `[node=N] type=T msg=audit(EPOCH.MS:SERIAL):` or the kernel log's
// `… audit: type=1400 audit(EPOCH.MS:SERIAL):`.
// ---------------------------------------------------------------------------------------------

struct Head<'a> {
    node: Option<&'a str>,
    kind: String,
    time: &'a str,
    serial: &'a str,
    /// The record's fields: everything after `):`.
    body: &'a str,
}

impl Head<'_> {
    fn stamp(&self) -> String {
        format!("{}:{}", self.time, self.serial)
    }

    fn event_key(&self) -> String {
        format!("{} {}", self.node.unwrap_or(""), self.stamp())
    }
}

/// The record text before the ENRICHED separator (0x1D) and the interpreted fields after it.
fn split_enriched(line: &str) -> (&str, Option<&str>) {
    match line.split_once('\u{1d}') {
        Some((main, enriched)) => (main, Some(enriched)),
        None => (line, None),
    }
}

fn parse_head(main: &str) -> Option<Head<'_>> {
    let (start, time, serial, body_at) = find_stamp(main)?;
    let mut node = None;
    let mut kind = None;
    for token in tokens(&main[..start]) {
        match token {
            Token::Pair("node", Raw::Bare(v) | Raw::Double(v)) if !v.is_empty() => node = Some(v),
            Token::Pair("type", Raw::Bare(v)) => kind = Some(v),
            _ => {}
        }
    }
    Some(Head { node, kind: type_name(kind.unwrap_or("")), time, serial, body: &main[body_at..] })
}

/// Finds `audit(DIGITS.DIGITS:DIGITS)`: (where `audit(` starts, time, serial, where the body
/// starts after `)` and an optional `:`).
fn find_stamp(text: &str) -> Option<(usize, &str, &str, usize)> {
    for (start, _) in text.match_indices("audit(") {
        let preceded_ok = text[..start].chars().next_back().is_none_or(|c| !c.is_ascii_alphanumeric());
        if !preceded_ok {
            continue;
        }
        let open = start + "audit(".len();
        let Some(close) = text[open..].find(')').map(|i| open + i) else { continue };
        let inside = &text[open..close];
        let Some((time, serial)) = inside.split_once(':') else { continue };
        let Some((secs, millis)) = time.split_once('.') else { continue };
        let digits =
            |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit());
        if digits(secs, 20) && digits(millis, 9) && digits(serial, 20) {
            let after = close + 1;
            let body_at = if text[after..].starts_with(':') { after + 1 } else { after };
            return Some((start, time, serial, body_at));
        }
    }
    None
}

/// A record type's name: numeric types (kernel log) and auditd's `UNKNOWN[n]` for types it
/// predates are named from `linux/audit.h`; anything not shaped like a type is `UNKNOWN`.
fn type_name(raw: &str) -> String {
    let number = raw.strip_prefix("UNKNOWN[").and_then(|r| r.strip_suffix(']')).unwrap_or(raw);
    if let Ok(n) = number.parse::<u32>() {
        return match known_type(n) {
            Some(name) => name.to_string(),
            None => format!("UNKNOWN[{n}]"),
        };
    }
    let well_formed = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if well_formed {
        raw.to_string()
    } else {
        "UNKNOWN".to_string()
    }
}

fn known_type(n: u32) -> Option<&'static str> {
    Some(match n {
        1006 => "LOGIN",
        1100 => "USER_AUTH",
        1101 => "USER_ACCT",
        1105 => "USER_START",
        1106 => "USER_END",
        1107 => "USER_AVC",
        1123 => "USER_CMD",
        1300 => "SYSCALL",
        1302 => "PATH",
        1303 => "IPC",
        1304 => "SOCKETCALL",
        1305 => "CONFIG_CHANGE",
        1306 => "SOCKADDR",
        1307 => "CWD",
        1309 => "EXECVE",
        1318 => "OBJ_PID",
        1320 => "EOE",
        1321 => "BPRM_FCAPS",
        1322 => "CAPSET",
        1323 => "MMAP",
        1326 => "SECCOMP",
        1327 => "PROCTITLE",
        1331 => "FANOTIFY",
        1400 => "AVC",
        1401 => "SELINUX_ERR",
        1402 => "AVC_PATH",
        1403 => "MAC_POLICY_LOAD",
        1404 => "MAC_STATUS",
        1423 => "LANDLOCK_ACCESS",
        1424 => "LANDLOCK_DOMAIN",
        1701 => "ANOM_ABEND",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Tokens: `key=value`, `key="quoted"`, `key='nested k=v'`, `key={ braced }`, and bare words.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw<'a> {
    Bare(&'a str),
    Double(&'a str),
    Single(&'a str),
    Braced(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    Pair(&'a str, Raw<'a>),
    Word(&'a str),
}

/// Splits record text into tokens. Audit quotes never contain their own quote character (the
/// kernel hex-encodes such strings instead), so a quote runs to the next one, or to the end.
fn tokens(text: &str) -> Vec<Token<'_>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Every index below lands on an ASCII byte or the end, so slicing stays on char boundaries.
    let until =
        |from: usize, stop: u8| b[from..].iter().position(|&c| c == stop).map_or(b.len(), |p| from + p);
    let until_space =
        |from: usize| b[from..].iter().position(u8::is_ascii_whitespace).map_or(b.len(), |p| from + p);
    while i < b.len() {
        if b[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' {
            i += 1;
        }
        if i == b.len() || b[i] != b'=' || i == start {
            let end = until_space(i);
            out.push(Token::Word(&text[start..end]));
            i = end;
            continue;
        }
        let key = &text[start..i];
        i += 1;
        let (raw, next) = match b.get(i) {
            Some(b'"') => {
                let end = until(i + 1, b'"');
                (Raw::Double(&text[i + 1..end]), end + 1)
            }
            Some(b'\'') => {
                let end = until(i + 1, b'\'');
                (Raw::Single(&text[i + 1..end]), end + 1)
            }
            Some(b'{') => {
                let end = until(i + 1, b'}');
                (Raw::Braced(text[i + 1..end].trim()), end + 1)
            }
            _ => {
                let end = until_space(i);
                (Raw::Bare(&text[i..end]), end)
            }
        };
        out.push(Token::Pair(key, raw));
        i = next.min(b.len());
    }
    out
}

/// Fields whose values the kernel or auditd write either quoted or, when they hold spaces,
/// quotes or control bytes, hex-encoded (and then unquoted).
const ENCODED_FIELDS: &[&str] = &[
    "acct",
    "cgroup",
    "cmd",
    "comm",
    "cwd",
    "data",
    "device",
    "dir",
    "exe",
    "file",
    "grp",
    "key",
    "name",
    "new_group",
    "ocomm",
    "path",
    "peer",
    "profile",
    "proctitle",
    "root_dir",
    "target",
    "vm",
    "watch",
];

/// `EXECVE` arguments: `a0`, `a12`, and the pieces of a long one, `a1[0]`.
fn is_execve_arg(key: &str) -> bool {
    let Some(rest) = key.strip_prefix('a') else { return false };
    let (index, piece) = match rest.split_once('[') {
        Some((index, piece)) => (index, piece.strip_suffix(']')),
        None => (rest, Some("0")),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(index) && piece.is_some_and(all_digits)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

/// A bare value of an encoded field, decoded: `proctitle`'s NUL-separated argv becomes
/// space-separated, and `key`'s 0x01-separated list of keys comma-separated.
fn decode_encoded(field: &str, value: &str) -> Option<String> {
    let bytes = decode_hex(value)?;
    let text = String::from_utf8_lossy(&bytes);
    Some(match field {
        "proctitle" => text.trim_end_matches('\0').replace('\0', " "),
        "key" => text.replace('\u{1}', ","),
        _ => text.into_owned(),
    })
}

/// Parses `key=value` pairs into an object (the first of repeated keys wins). `record` is the
/// record type, which decides which bare values are hex; `nested` stops `'…'` recursion.
fn parse_pairs(text: &str, record: &str, nested: bool, into: &mut Map<String, Value>) {
    for token in tokens(text) {
        let Token::Pair(key, raw) = token else { continue };
        let value = match raw {
            Raw::Double(s) | Raw::Braced(s) => Value::String(s.to_string()),
            Raw::Single(s) if !nested && s.contains('=') => Value::Object(parse_body(s, record, true)),
            Raw::Single(s) => Value::String(s.to_string()),
            Raw::Bare("(null)") => continue,
            Raw::Bare(s) => {
                let encoded = ENCODED_FIELDS.contains(&key) || (record == "EXECVE" && is_execve_arg(key));
                let decoded = if encoded { decode_encoded(key, s) } else { None };
                Value::String(decoded.unwrap_or_else(|| s.to_string()))
            }
        };
        into.entry(key.to_string()).or_insert(value);
    }
}

/// A record's fields. SELinux writes a free-text head, `avc:  denied  { read write } for `,
/// before its pairs: it becomes `avc` (`denied`/`granted`) and `permissions` (a list).
fn parse_body(body: &str, record: &str, nested: bool) -> Map<String, Value> {
    let mut fields = Map::new();
    let mut rest = body.trim_start();
    if let Some(after) = rest.strip_prefix("avc:") {
        let after = after.trim_start();
        let end = after.find(|c: char| c.is_ascii_whitespace()).unwrap_or(after.len());
        let decision = &after[..end];
        if !decision.is_empty() && !decision.contains('=') {
            fields.insert("avc".into(), Value::String(decision.to_string()));
            rest = after[end..].trim_start();
        } else {
            rest = after;
        }
        if let Some(inner) = rest.strip_prefix('{') {
            let close = inner.find('}').unwrap_or(inner.len());
            let perms = inner[..close].split_whitespace().map(|p| Value::String(p.to_string())).collect();
            fields.insert("permissions".into(), Value::Array(perms));
            rest = inner.get(close + 1..).unwrap_or("").trim_start();
        }
        if let Some(after_for) = rest.strip_prefix("for") {
            if after_for.is_empty() || after_for.starts_with(|c: char| c.is_ascii_whitespace()) {
                rest = after_for;
            }
        }
    }
    parse_pairs(rest, record, nested, &mut fields);
    fields
}

// ---------------------------------------------------------------------------------------------
// Events.
// ---------------------------------------------------------------------------------------------

/// Which event a record belongs to: serials are only unique per node and boot.
#[derive(PartialEq, Eq)]
struct EventId {
    node: Option<String>,
    time: String,
    serial: String,
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(node) = &self.node {
            write!(f, "{node} ")?;
        }
        write!(f, "{}:{}", self.time, self.serial)
    }
}

/// One parsed record.
struct Record {
    id: EventId,
    kind: String,
    fields: Map<String, Value>,
}

fn parse_record(line: &str) -> Option<Record> {
    let (main, enriched) = split_enriched(line);
    let head = parse_head(main)?;
    let mut fields = parse_body(head.body, &head.kind, false);
    if let Some(enriched) = enriched {
        let mut interpreted = Map::new();
        for token in tokens(enriched) {
            if let Token::Pair(key, Raw::Bare(v) | Raw::Double(v) | Raw::Single(v) | Raw::Braced(v)) = token {
                interpreted.entry(key.to_string()).or_insert_with(|| Value::String(v.to_string()));
            }
        }
        if !interpreted.is_empty() {
            fields.insert("enriched".into(), Value::Object(interpreted));
        }
    }
    let id = EventId {
        node: head.node.map(str::to_string),
        time: head.time.to_string(),
        serial: head.serial.to_string(),
    };
    Some(Record { id, kind: head.kind, fields })
}

/// Parses one event's records (as grouped by [`group_lines`]) into the JSON object described
/// in the module documentation. Every line must carry the same stamp (and node).
pub fn to_json(group: &str) -> Result<Value, AuditError> {
    let mut first: Option<EventId> = None;
    let mut types: Vec<Value> = Vec::new();
    let mut by_type = Map::new();
    let mut paths = Vec::new();
    let mut execve: Option<Map<String, Value>> = None;
    let mut more = Map::new();
    let mut records = 0;
    for (i, line) in group.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if is_noise(line) {
            continue;
        }
        let Record { id, kind, fields } = parse_record(line).ok_or(AuditError::NoStamp { line: i + 1 })?;
        match &first {
            Some(expected) if *expected != id => {
                return Err(AuditError::MixedEvents {
                    line: i + 1,
                    expected: expected.to_string(),
                    found: id.to_string(),
                });
            }
            Some(_) => {}
            None => first = Some(id),
        }
        if kind == "EOE" || records >= MAX_RECORDS_PER_EVENT {
            continue;
        }
        records += 1;
        if !types.iter().any(|t| t == kind.as_str()) {
            types.push(Value::String(kind.clone()));
        }
        match kind.as_str() {
            "PATH" => paths.push(Value::Object(fields)),
            "EXECVE" => {
                let merged = execve.get_or_insert_with(Map::new);
                for (k, v) in fields {
                    merged.entry(k).or_insert(v);
                }
            }
            _ if by_type.contains_key(&kind) => {
                if let Value::Array(list) = more.entry(kind).or_insert_with(|| Value::Array(Vec::new())) {
                    list.push(Value::Object(fields));
                }
            }
            _ => {
                by_type.insert(kind, Value::Object(fields));
            }
        }
    }
    let Some(first) = first.filter(|_| records > 0) else { return Err(AuditError::Empty) };

    let mut event = Map::new();
    event.insert("stamp".into(), Value::String(format!("{}:{}", first.time, first.serial)));
    event.insert("time".into(), Value::String(first.time));
    event.insert("serial".into(), Value::String(first.serial));
    let (node, node_source) = match (first.node, local_hostname()) {
        (Some(n), _) => (Some(n), "record"),
        (None, Some(h)) => (Some(h.to_string()), "local-hostname"),
        (None, None) => (None, "none"),
    };
    if let Some(node) = node {
        event.insert("node".into(), Value::String(node));
    }
    event.insert("node_source".into(), Value::String(node_source.into()));
    event.insert("types".into(), Value::Array(types));

    let mut cmd_line = None;
    if let Some(mut execve) = execve {
        if let Some(argv) = execve_argv(&execve) {
            execve.insert("argv".into(), Value::String(argv.clone()));
            cmd_line = Some(argv);
        }
        by_type.insert("EXECVE".into(), Value::Object(execve));
    }
    if let Some(Value::Object(title)) = by_type.get_mut("PROCTITLE") {
        if let Some(argv) = title.get("proctitle").and_then(Value::as_str).map(str::to_string) {
            if !argv.is_empty() {
                cmd_line = cmd_line.or_else(|| Some(argv.clone()));
                title.insert("argv".into(), Value::String(argv));
            }
        }
    }
    if !paths.is_empty() {
        by_type.insert("PATH".into(), Value::Array(paths));
    }
    event.extend(by_type);
    if !more.is_empty() {
        event.insert("more".into(), Value::Object(more));
    }
    if let Some(cmd_line) = cmd_line {
        event.insert("cmd_line".into(), Value::String(cmd_line));
    }
    Ok(Value::Object(event))
}

/// The command line from `EXECVE`'s `argc` and `a0…aN` (a long argument comes in pieces
/// `aN[0]`, `aN[1]`, …), space-joined. `None` when there are no arguments.
fn execve_argv(execve: &Map<String, Value>) -> Option<String> {
    let argc = execve.get("argc").and_then(Value::as_str).and_then(|s| s.parse::<usize>().ok());
    let mut args: Vec<String> = Vec::new();
    let mut total = 0;
    for i in 0..argc.unwrap_or(MAX_ARGS).min(MAX_ARGS) {
        let arg = match execve.get(&format!("a{i}")).and_then(Value::as_str) {
            Some(whole) => Some(whole.to_string()),
            None => {
                let mut joined: Option<String> = None;
                let mut piece = 0;
                while let Some(part) = execve.get(&format!("a{i}[{piece}]")).and_then(Value::as_str) {
                    joined.get_or_insert_with(String::new).push_str(part);
                    piece += 1;
                }
                joined
            }
        };
        match arg {
            Some(arg) => {
                total += arg.len() + 1;
                args.push(arg);
                if total > MAX_EVENT_BYTES {
                    break;
                }
            }
            // Without `argc` the arguments end at the first gap; with it, a gap is a lost record.
            None if argc.is_none() => break,
            None => {}
        }
    }
    (!args.is_empty()).then(|| args.join(" "))
}

/// This machine's name, for records without `node=` (a local `audit.log`). Read once.
fn local_hostname() -> Option<&'static str> {
    static NAME: OnceLock<Option<String>> = OnceLock::new();
    NAME.get_or_init(|| {
        hostname::get().ok().map(|h| h.to_string_lossy().into_owned()).filter(|h| !h.is_empty())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GS: char = '\u{1d}';

    fn stamp(serial: u32) -> String {
        format!("msg=audit(1700000000.{:03}:{serial})", serial % 1000)
    }

    fn line(kind: &str, serial: u32, rest: &str) -> String {
        format!("type={kind} {}: {rest}", stamp(serial))
    }

    fn json(group: &str) -> Value {
        to_json(group).unwrap_or_else(|e| panic!("{e}: {group}"))
    }

    #[test]
    fn records_sharing_a_stamp_form_one_event_even_interleaved() {
        let text = [
            line("SYSCALL", 10, "pid=1 success=no exit=-13"),
            line("SYSCALL", 11, "pid=2 success=yes exit=0"),
            line("CWD", 10, "cwd=\"/tmp\""),
            line("CWD", 11, "cwd=\"/root\""),
            line("PATH", 10, "item=0 name=\"/etc/shadow\" nametype=NORMAL"),
        ]
        .join("\n");
        let groups = group_lines(&text);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, 1);
        assert_eq!(groups[1].0, 2);
        assert_eq!(groups[0].1.lines().count(), 3);
        let first = json(&groups[0].1);
        assert_eq!(first["SYSCALL"]["pid"], "1");
        assert_eq!(first["CWD"]["cwd"], "/tmp");
        assert_eq!(first["PATH"][0]["name"], "/etc/shadow");
        assert_eq!(json(&groups[1].1)["CWD"]["cwd"], "/root");
    }

    #[test]
    fn eoe_closes_an_event_and_a_late_record_starts_another() {
        let mut g = AuditGrouper::new();
        assert!(g.push_line(1, &line("SYSCALL", 5, "pid=9")).is_empty());
        let done = g.push_line(2, &line("EOE", 5, ""));
        assert_eq!(done, vec![(1, line("SYSCALL", 5, "pid=9"))]);
        assert_eq!(g.pending(), 0);
        // A stray EOE for a closed event is ignored.
        assert!(g.push_line(3, &line("EOE", 5, "")).is_empty());
        g.push_line(4, &line("PROCTITLE", 5, "proctitle=6C73"));
        assert_eq!(g.finish().len(), 1);
    }

    #[test]
    fn pending_positions_name_the_open_events_first_lines_oldest_first() {
        let mut g = AuditGrouper::new();
        g.push_line(10, &line("SYSCALL", 1, "pid=1"));
        g.push_line(11, &line("SYSCALL", 2, "pid=2"));
        g.push_line(12, &line("CWD", 1, "cwd=\"/\""));
        assert_eq!(g.pending_positions().collect::<Vec<_>>(), [10, 11]);
        g.push_line(13, &line("EOE", 1, ""));
        assert_eq!(g.pending_positions().collect::<Vec<_>>(), [11]);
        g.finish();
        assert_eq!(g.pending_positions().count(), 0);
    }

    #[test]
    fn the_kernel_log_names_eoe_by_number() {
        let text =
            "audit: type=1300 audit(1700000000.001:7): pid=3\naudit: type=1320 audit(1700000000.001:7):\n";
        let mut g = AuditGrouper::new();
        let mut done = Vec::new();
        for (i, l) in text.lines().enumerate() {
            done.extend(g.push_line(i + 1, l));
        }
        assert_eq!(done.len(), 1);
        assert_eq!(json(&done[0].1)["SYSCALL"]["pid"], "3");
    }

    #[test]
    fn an_event_closes_once_the_window_of_newer_events_has_started() {
        let mut g = AuditGrouper::new();
        g.push_line(1, &line("AVC", 1, "apparmor=\"DENIED\""));
        for serial in 2..(2 + REORDER_WINDOW as u32 - 1) {
            assert!(g.push_line(serial as usize, &line("AVC", serial, "x=1")).is_empty());
        }
        let done = g.push_line(100, &line("AVC", 100, "x=1"));
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].0, 1);
        assert_eq!(g.pending(), REORDER_WINDOW);
    }

    #[test]
    fn the_same_serial_on_two_nodes_is_two_events() {
        let text = format!(
            "node=a type=SYSCALL {s}: pid=1\nnode=b type=SYSCALL {s}: pid=2\nnode=a type=CWD {s}: cwd=\"/\"",
            s = stamp(3)
        );
        let groups = group_lines(&text);
        assert_eq!(groups.len(), 2);
        let a = json(&groups[0].1);
        assert_eq!(a["node"], "a");
        assert_eq!(a["node_source"], "record");
        assert_eq!(a["CWD"]["cwd"], "/");
        assert_eq!(json(&groups[1].1)["SYSCALL"]["pid"], "2");
    }

    #[test]
    fn events_are_capped_in_records_and_bytes() {
        let mut g = AuditGrouper::new();
        for i in 0..(MAX_RECORDS_PER_EVENT + 10) {
            g.push_line(i + 1, &line("EXECVE", 1, &format!("a{i}=\"x\"")));
        }
        assert_eq!(g.dropped_records(), 10);
        let events = g.finish();
        assert_eq!(events[0].1.lines().count(), MAX_RECORDS_PER_EVENT);

        let huge = "A".repeat(MAX_EVENT_BYTES * 2);
        let mut g = AuditGrouper::new();
        g.push_line(1, &line("PATH", 2, &format!("name=\"{huge}\"")));
        g.push_line(2, &line("PATH", 2, &format!("name=\"{huge}\"")));
        let events = g.finish();
        assert!(events[0].1.len() <= MAX_EVENT_BYTES);
        assert_eq!(g.dropped_records(), 1);
        assert!(to_json(&events[0].1).is_ok());
        let garbage = g.push_line(3, &huge);
        assert_eq!(garbage[0].1.len(), MAX_EVENT_BYTES);
    }

    #[test]
    fn lines_without_a_stamp_stand_alone_and_fail_to_parse() {
        let text = format!(
            "{}\nhello world\n\n----\ntime->Mon Nov 24 10:00:00 2025\n{}\n",
            line("SYSCALL", 1, "pid=1"),
            line("CWD", 1, "cwd=\"/\"")
        );
        let groups = group_lines(&text);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].0, 1);
        assert_eq!(groups[0].1.lines().count(), 2);
        assert_eq!(groups[1], (2, "hello world".to_string()));
        assert_eq!(to_json("hello world"), Err(AuditError::NoStamp { line: 1 }));
        assert_eq!(to_json(""), Err(AuditError::Empty));
        let mixed = format!("{}\n{}", line("SYSCALL", 1, ""), line("SYSCALL", 2, ""));
        assert!(matches!(to_json(&mixed), Err(AuditError::MixedEvents { line: 2, .. })));
    }

    #[test]
    fn stamps_need_digits_and_a_word_boundary() {
        for bad in ["type=X msg=audit(abc:1): a=1", "type=X msg=audit(1.2): a=1", "type=X xaudit(1.2:3): a=1"]
        {
            assert!(to_json(bad).is_err(), "{bad}");
        }
        let v = json("type=X msg=audit(1.2:3) a=1");
        assert_eq!(v["stamp"], "1.2:3");
        assert_eq!(v["X"]["a"], "1");
    }

    #[test]
    fn quoting_bare_values_and_null() {
        let v = json(&line(
            "SYSCALL",
            1,
            "pid=5 comm=\"sleep\" exe=\"/usr/bin/sl eep\" key=(null) tty=(none) subj='a=b c=d' pid=6",
        ));
        let s = &v["SYSCALL"];
        assert_eq!(s["pid"], "5", "first of a repeated key wins");
        assert_eq!(s["comm"], "sleep");
        assert_eq!(s["exe"], "/usr/bin/sl eep");
        assert!(s.get("key").is_none());
        assert_eq!(s["tty"], "(none)");
        assert_eq!(s["subj"]["c"], "d");
    }

    #[test]
    fn hex_encoded_untrusted_strings_are_decoded_but_numbers_are_not() {
        let v = json(&line(
            "SYSCALL",
            1,
            "a0=ffffff9c a1=7ffe exit=-13 comm=6D7920636174 key=6B6579310161646D696E cwd=2F746D702F6120622F",
        ));
        let s = &v["SYSCALL"];
        assert_eq!(s["a0"], "ffffff9c");
        assert_eq!(s["a1"], "7ffe");
        assert_eq!(s["comm"], "my cat");
        assert_eq!(s["key"], "key1,admin");
        assert_eq!(s["cwd"], "/tmp/a b/");
        // Not valid hex: kept as written.
        assert_eq!(json(&line("CWD", 1, "cwd=xyz"))["CWD"]["cwd"], "xyz");
    }

    #[test]
    fn proctitle_and_execve_give_the_command_line() {
        let group = [line("PROCTITLE", 1, "proctitle=636174002F6574632F736861646F7700")].join("\n");
        let v = json(&group);
        assert_eq!(v["PROCTITLE"]["argv"], "cat /etc/shadow");
        assert_eq!(v["cmd_line"], "cat /etc/shadow");

        let group = [
            line(
                "EXECVE",
                2,
                "argc=4 a0=\"sh\" a1=\"-c\" a2_len=22 a2[0]=6563686F2068656C6C6F a2[1]=\"-world\"",
            ),
            line("EXECVE", 2, "a3=\"x\""),
            line("PROCTITLE", 2, "proctitle=\"sh\""),
        ]
        .join("\n");
        let v = json(&group);
        assert_eq!(v["EXECVE"]["argv"], "sh -c echo hello-world x");
        assert_eq!(v["EXECVE"]["a2[0]"], "echo hello");
        assert_eq!(v["cmd_line"], "sh -c echo hello-world x", "EXECVE wins over the truncated proctitle");
        assert_eq!(v["PROCTITLE"]["argv"], "sh");
    }

    #[test]
    fn the_enriched_part_after_0x1d_is_kept_apart() {
        let record = format!(
            "{}{GS}ARCH=x86_64 SYSCALL=openat AUID=\"unset\" UID=\"nobody\" SADDR={{ saddr_fam=inet laddr=1.2.3.4 }}",
            line("SYSCALL", 1, "syscall=257 uid=65534 key=\"agent-denied\"")
        );
        let v = json(&record);
        let s = &v["SYSCALL"];
        assert_eq!(s["uid"], "65534");
        assert_eq!(s["key"], "agent-denied");
        assert!(s.get("UID").is_none());
        assert_eq!(s["enriched"]["UID"], "nobody");
        assert_eq!(s["enriched"]["SYSCALL"], "openat");
        assert_eq!(s["enriched"]["SADDR"], "saddr_fam=inet laddr=1.2.3.4");
        // A record whose raw part is cut short by the separator still parses.
        assert!(to_json(&format!("type=CWD {}: cwd=\"/tm{GS}p\"", stamp(1))).is_ok());
    }

    #[test]
    fn selinux_avc_free_text_is_structured() {
        let v = json(
            "type=AVC msg=audit(1170021493.977:293): avc:  denied  { read write } for  pid=13010 comm=\"pickup\" name=\"maildrop\" tclass=dir permissive=1",
        );
        let avc = &v["AVC"];
        assert_eq!(avc["avc"], "denied");
        assert_eq!(avc["permissions"], serde_json::json!(["read", "write"]));
        assert_eq!(avc["pid"], "13010");
        assert_eq!(avc["permissive"], "1");
        let granted = json("type=AVC msg=audit(1.2:3): avc:  granted  { setenforce } for pid=1");
        assert_eq!(granted["AVC"]["avc"], "granted");
        let user = json("type=USER_AVC msg=audit(1.2:4): pid=1 uid=0 msg='avc:  denied  { start } for auid=0 tclass=service permissive=0  exe=\"/usr/lib/systemd/systemd\"'");
        assert_eq!(user["USER_AVC"]["msg"]["avc"], "denied");
        assert_eq!(user["USER_AVC"]["msg"]["permissions"][0], "start");
        assert_eq!(user["USER_AVC"]["msg"]["exe"], "/usr/lib/systemd/systemd");
    }

    #[test]
    fn repeated_records_go_under_more_and_kernel_prefixes_are_understood() {
        let text = "[ 12.345678] audit: type=1400 audit(1700000000.100:42): apparmor=\"DENIED\" name=\"/a\"\n\
                    Nov 24 10:00:00 box kernel: audit: type=1400 audit(1700000000.100:42): apparmor=\"DENIED\" name=\"/b\"\n\
                    type=UNKNOWN[1423] msg=audit(1700000000.100:42): domain=1a6fdc679 blockers=fs.write_file path=\"/etc/passwd\"";
        let groups = group_lines(text);
        assert_eq!(groups.len(), 1);
        let v = json(&groups[0].1);
        assert_eq!(v["AVC"]["name"], "/a");
        assert_eq!(v["more"]["AVC"][0]["name"], "/b");
        assert_eq!(v["LANDLOCK_ACCESS"]["blockers"], "fs.write_file");
        assert_eq!(v["types"], serde_json::json!(["AVC", "LANDLOCK_ACCESS"]));
        assert_eq!(v["node_source"], if local_hostname().is_some() { "local-hostname" } else { "none" });
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name("1300"), "SYSCALL");
        assert_eq!(type_name("UNKNOWN[1424]"), "LANDLOCK_DOMAIN");
        assert_eq!(type_name("UNKNOWN[9999]"), "UNKNOWN[9999]");
        assert_eq!(type_name("stamp"), "UNKNOWN", "cannot collide with the event's own keys");
        assert_eq!(type_name(""), "UNKNOWN");
    }

    #[test]
    fn garbage_never_panics() {
        let nasty = [
            "type=",
            "=",
            "msg=audit(",
            "audit(1.1:1)",
            "audit(1.1:1):",
            "type=AVC audit(1.1:1): avc:",
            "type=AVC audit(1.1:1): avc: {",
            "type=AVC audit(1.1:1): avc:  denied  { read",
            "type=X audit(1.1:1): a=\"unterminated",
            "type=X audit(1.1:1): a='unterminated k=v",
            "type=X audit(1.1:1): a={ unterminated",
            "type=EXECVE audit(1.1:1): argc=99999999999 a0[0]=zz a1=\u{1d}\u{1d}",
            "type=X audit(1.1:1): é=ü ü=\"é\" name=E9",
            "\u{1d}type=X audit(1.1:1):",
        ];
        for text in nasty {
            for (_, group) in group_lines(text) {
                let _ = to_json(&group);
            }
        }
    }

    fn audit_like_text() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("type=SYSCALL ".to_string()),
            Just("type=EOE ".to_string()),
            Just("type=1400 ".to_string()),
            Just("node=h ".to_string()),
            Just("msg=audit(1700000000.1:".to_string()),
            Just("audit(1.2:3): ".to_string()),
            Just("): ".to_string()),
            Just("avc:  denied  { read } for ".to_string()),
            Just("proctitle=".to_string()),
            Just("a0[".to_string()),
            Just("argc=3 ".to_string()),
            Just("\u{1d}".to_string()),
            Just("\n".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("{".to_string()),
            Just("=".to_string()),
            "[0-9]{1,3}".prop_map(|s| s),
            "[0-9A-F]{1,8}".prop_map(|s| s),
            any::<String>(),
        ];
        prop::collection::vec(fragment, 0..64).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn grouping_and_parsing_never_panic(text in audit_like_text()) {
            let groups = group_lines(&text);
            for (at, group) in &groups {
                prop_assert!(*at >= 1);
                prop_assert!(group.len() <= MAX_EVENT_BYTES);
                prop_assert!(group.lines().count() <= MAX_RECORDS_PER_EVENT);
                if let Ok(v) = to_json(group) {
                    prop_assert!(v.get("stamp").is_some());
                }
            }
        }

        #[test]
        fn the_grouper_keeps_few_events_open(text in audit_like_text()) {
            let mut grouper = AuditGrouper::new();
            for (i, line) in text.lines().enumerate() {
                for (_, group) in grouper.push_line(i + 1, line) {
                    prop_assert!(group.len() <= MAX_EVENT_BYTES);
                }
                prop_assert!(grouper.pending() <= REORDER_WINDOW);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            for (_, group) in group_lines(&text) {
                let _ = to_json(&group);
            }
        }
    }
}
