//! Tests that live next to policies: each case names an event (inline, or a fixture file beside
//! the policy file), optionally the agent session and command it was tied to, and the expected
//! outcome (which policy decides, its action and scope).
//!
//! Cases are checked and their fixtures read and validated at load time, so `policy check`
//! catches a broken fixture as surely as a broken policy. Running them evaluates the *whole*
//! set, so a case also catches a policy shadowed by a higher-priority one, or an exception
//! that swallows it.
//!
//! This module does not print; the CLI formats [`TestReport`].

use super::action::{self, SCOPES};
use super::compile::Compiler;
use super::cond::Loc;
use super::diag::{codes, Sink, SourceFile};
use super::fields::TRUSTS;
use super::yaml::{self, Kind, Node, Reader};
use super::{Action, Decision, EvalInput, PolicySet, Retry, Scope, Trace};
use crate::event::{Correlation, CorrelationStatus, EventBody, SecurityEvent, Trust};
use crate::sessions::model::{AgentKind, CommandRecord, Session, SessionStatus};
use serde_json::Value;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use time::OffsetDateTime;
use uuid::Uuid;

/// Largest fixture file read.
const MAX_FIXTURE_BYTES: u64 = 1 << 20;
/// The fixed clock of fixtures: tests must not depend on when they run.
const FIXTURE_TIME: OffsetDateTime = time::macros::datetime!(2026-01-01 00:00:00 UTC);

/// One test case, ready to run.
#[derive(Debug)]
pub(crate) struct TestCase {
    pub name: String,
    pub at: Loc,
    pub event: SecurityEvent,
    pub session: Option<Session>,
    pub command: Option<CommandRecord>,
    pub correlation: Option<Correlation>,
    pub prior_blocks: u32,
    pub expect: Expect,
}

#[derive(Debug)]
pub(crate) struct Expect {
    /// `None`: no policy may match.
    pub policy: Option<String>,
    pub policy_at: Loc,
    pub action: Option<&'static str>,
    pub scope: Option<Scope>,
    pub retry: Option<Retry>,
}

/// The result of running a set's tests.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    pub passed: usize,
    pub failed: usize,
    /// Cases of disabled policies (tuning may disable a policy; its tests then do not apply).
    pub skipped: usize,
    /// Every case, in file order.
    pub cases: Vec<TestCaseResult>,
}

#[derive(Debug, Clone)]
pub struct TestCaseResult {
    /// Where the case is written.
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// The policy that carries the case.
    pub policy_id: String,
    pub name: String,
    /// `None` when it passed (or was skipped); otherwise why it failed, on one line.
    pub failure: Option<String>,
    pub skipped: bool,
    /// The explanation, when requested.
    pub trace: Vec<Trace>,
}

impl TestReport {
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// `N passed, N failed`: the last line of `haltwire policy test`.
    pub fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &TestCaseResult> {
        self.cases.iter().filter(|c| c.failure.is_some())
    }
}

impl fmt::Display for TestCaseResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (&self.failure, self.skipped) {
            (Some(why), _) => format!("FAIL: {why}"),
            (None, true) => "skipped (policy disabled)".to_string(),
            (None, false) => "ok".to_string(),
        };
        write!(
            f,
            "{}:{}:{}: {} {:?}: {status}",
            self.file.display(),
            self.line,
            self.col,
            self.policy_id,
            self.name
        )
    }
}

pub(crate) fn run(set: &PolicySet, base_dir: &Path, explain: bool) -> TestReport {
    let mut report = TestReport::default();
    // (owner label, owner enabled, case), in file order.
    let mut all: Vec<(&str, bool, &TestCase)> = Vec::new();
    for p in &set.policies {
        all.extend(p.tests.iter().map(|t| (p.id.as_str(), p.enabled, t)));
    }
    for (label, t) in &set.tuning_tests {
        // A tuning's own tests always run: they check the tuned outcome, disabled or not.
        all.push((label.as_str(), true, t));
    }
    all.sort_by_key(|(_, _, t)| (t.at.file, t.at.pos.line, t.at.pos.col));
    for (owner, enabled, case) in all {
        let shown = set.files.get(case.at.file).map(|f| f.shown.clone()).unwrap_or_default();
        let file = if shown.starts_with(base_dir) { shown } else { base_dir.join(shown) };
        let mut result = TestCaseResult {
            file,
            line: case.at.pos.line,
            col: case.at.pos.col,
            policy_id: owner.to_string(),
            name: case.name.clone(),
            failure: None,
            skipped: false,
            trace: Vec::new(),
        };
        if !enabled {
            result.skipped = true;
            report.skipped += 1;
            report.cases.push(result);
            continue;
        }
        let input = EvalInput {
            event: &case.event,
            correlation: case.correlation.as_ref(),
            session: case.session.as_ref(),
            command: case.command.as_ref(),
            prior_blocks: case.prior_blocks,
        };
        result.failure = check(&case.expect, set.evaluate(&input).as_ref());
        if explain {
            result.trace = set.explain(&input);
        }
        if result.failure.is_some() {
            report.failed += 1;
        } else {
            report.passed += 1;
        }
        report.cases.push(result);
    }
    report
}

/// Why `got` is not what `expect` says, or `None` when it is.
fn check(expect: &Expect, got: Option<&Decision>) -> Option<String> {
    let show = |d: &Decision| format!("`{}` ({})", d.policy_id, d.action);
    match (&expect.policy, got) {
        (None, None) => None,
        (None, Some(d)) => Some(format!("expected no policy to match, got {}", show(d))),
        (Some(want), None) => Some(format!("expected `{want}` to decide, but no policy matched")),
        (Some(want), Some(d)) if *want != d.policy_id => {
            Some(format!("expected `{want}` to decide, got {}", show(d)))
        }
        (Some(_), Some(d)) => {
            if let Some(kind) = expect.action.filter(|k| *k != d.action.kind()) {
                return Some(format!("expected action {kind}, got {}", d.action));
            }
            match (expect.scope, d.action) {
                (Some(want), Action::DoNotRetry { scope, .. }) if want != scope => {
                    return Some(format!("expected scope {}, got {}", want.as_str(), d.action));
                }
                (Some(want), Action::HaltSession | Action::Ignore) => {
                    return Some(format!("expected scope {}, got {}", want.as_str(), d.action));
                }
                _ => {}
            }
            match (expect.retry, d.action) {
                (Some(want), Action::DoNotRetry { retry, .. }) if want != retry => {
                    Some(format!("expected retry {}, got {}", show_retry(want), d.action))
                }
                (Some(want), Action::HaltSession | Action::Ignore) => {
                    Some(format!("expected retry {}, got {}", show_retry(want), d.action))
                }
                _ => None,
            }
        }
    }
}

fn show_retry(r: Retry) -> String {
    match r {
        Retry::Never => "never".into(),
        Retry::After(d) => format!("after {}", super::show_duration(d)),
    }
}

/// The `tests` of one policy. `fixture_dir` is where fixture files are looked up (the policy
/// folder); `None` for sets loaded from memory.
pub(crate) fn cases(
    c: &mut Compiler<'_, '_>,
    file: usize,
    node: &Node,
    fixture_dir: Option<&Path>,
) -> Option<Vec<TestCase>> {
    let items = c.reader(file).seq(node, "`tests`")?;
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    let mut names: Vec<(String, super::diag::Pos)> = Vec::new();
    for item in items {
        match case(c, file, item, fixture_dir) {
            Some(t) => {
                if let Some((_, first)) = names.iter().find(|(n, _)| *n == t.name) {
                    let msg = format!("two tests are named {:?} (first at {first})", t.name);
                    c.reader(file).error(item.pos, codes::DUPLICATE, msg);
                    ok = false;
                }
                names.push((t.name.clone(), item.pos));
                out.push(t);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn case(c: &mut Compiler<'_, '_>, file: usize, node: &Node, fixture_dir: Option<&Path>) -> Option<TestCase> {
    let mut r = c.reader(file);
    let e = r.entries(node, &["name", "event", "agent", "correlation", "expect"], "a test")?;
    let mut ok = true;
    let name = match e.get("name") {
        Some(n) => r.str(n, "`name`").map(str::to_string),
        None => {
            r.error(node.pos, codes::MISSING_KEY, "a test needs a `name`");
            None
        }
    };
    ok &= name.is_some();

    let event = match e.get("event") {
        Some(n @ Node { kind: Kind::Str(path), .. }) => fixture_file(&mut r, n, path, fixture_dir),
        Some(n) => event_from_node(&mut r, n),
        None => {
            r.error(node.pos, codes::MISSING_KEY, "a test needs an `event` (inline, or a fixture file name)");
            None
        }
    };
    ok &= event.is_some();

    let correlation_word = match e.get("correlation") {
        Some(n) => {
            let w = r.choice(n, "`correlation`", &["ambiguous", "unmatched"]);
            ok &= w.is_some();
            if let (Some(_), Some(agent)) = (w, e.key("agent")) {
                r.error(
                    agent.pos,
                    codes::CONFLICT,
                    "a test with an `agent` is correlated (matched); drop `correlation`",
                );
                ok = false;
            }
            w
        }
        None => None,
    };
    let agent = match e.get("agent") {
        Some(n) => {
            let a = agent_fixture(&mut r, n, event.as_ref());
            ok &= a.is_some();
            a
        }
        None => None,
    };

    let expect = match e.get("expect") {
        Some(n) => expect(&mut r, n, file),
        None => {
            r.error(
                node.pos,
                codes::MISSING_KEY,
                "a test needs an `expect` (`policy: <id>` or `policy: none`)",
            );
            None
        }
    };
    ok &= expect.is_some();

    let (name, mut event, expect) = match (ok, name, event, expect) {
        (true, Some(n), Some(ev), Some(ex)) => (n, ev, ex),
        _ => return None,
    };
    let (session, command, prior_blocks) = agent.unwrap_or((None, None, 0));
    let correlation = Some(match (&session, correlation_word) {
        (Some(s), _) => Correlation {
            status: CorrelationStatus::Matched,
            session_id: Some(s.session_id),
            call_id: command.as_ref().map(|c| c.call_id.clone()),
            score: Some(1.0),
            evidence: Vec::new(),
            correlated_at: FIXTURE_TIME,
        },
        (None, word) => Correlation {
            status: if word == Some("ambiguous") {
                CorrelationStatus::Ambiguous
            } else {
                CorrelationStatus::Unmatched
            },
            session_id: None,
            call_id: None,
            score: None,
            evidence: Vec::new(),
            correlated_at: FIXTURE_TIME,
        },
    });
    if event.body.host.is_none() {
        if let Some(s) = &session {
            event.body.host = Some(s.host.clone());
        }
    }
    Some(TestCase {
        name,
        at: Loc { file, pos: node.pos },
        event,
        session,
        command,
        correlation,
        prior_blocks,
        expect,
    })
}

fn expect(r: &mut Reader<'_>, node: &Node, file: usize) -> Option<Expect> {
    let e = r.entries(node, &["policy", "action", "scope", "retry"], "`expect`")?;
    let Some(policy_node) = e.get("policy") else {
        r.error(node.pos, codes::MISSING_KEY, "`expect` needs `policy: <id>` (or `policy: none`)");
        return None;
    };
    let policy = r.str(policy_node, "`policy`")?;
    let policy = (policy != "none").then(|| policy.to_string());
    let action = match e.get("action") {
        Some(n) => Some(r.choice(n, "`action`", &["do_not_retry", "halt_session", "ignore"])?),
        None => None,
    };
    let action: Option<&'static str> = action.map(|a| match a {
        "do_not_retry" => "do_not_retry",
        "halt_session" => "halt_session",
        _ => "ignore",
    });
    let scope = match e.get("scope") {
        Some(n) => Some(action::scope_from(r.choice(n, "`scope`", SCOPES)?)),
        None => None,
    };
    let retry = match e.get("retry") {
        Some(n) => Some(action::retry(r, n)?),
        None => None,
    };
    if policy.is_none() && (action.is_some() || scope.is_some() || retry.is_some()) {
        r.error(
            node.pos,
            codes::CONFLICT,
            "`policy: none` expects no decision; drop `action`, `scope` and `retry`",
        );
        return None;
    }
    if action.is_some_and(|a| a != "do_not_retry") && (scope.is_some() || retry.is_some()) {
        r.error(node.pos, codes::CONFLICT, "`scope` and `retry` apply to `do_not_retry` only");
        return None;
    }
    Some(Expect { policy, policy_at: Loc { file, pos: policy_node.pos }, action, scope, retry })
}

/// Reads a fixture file named relative to the policy folder.
fn fixture_file(r: &mut Reader<'_>, node: &Node, rel: &str, dir: Option<&Path>) -> Option<SecurityEvent> {
    let Some(dir) = dir else {
        r.error(
            node.pos,
            codes::FIXTURE,
            "built-in policies cannot use fixture files; write the event inline",
        );
        return None;
    };
    let path = Path::new(rel);
    if path.is_absolute() || path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        r.error(
            node.pos,
            codes::FIXTURE,
            format!("fixture {rel:?} must be a relative path inside the policy folder"),
        );
        return None;
    }
    let full = dir.join(path);
    let text = std::fs::metadata(&full).map_err(|e| e.to_string()).and_then(|m| {
        if m.len() > MAX_FIXTURE_BYTES {
            Err(format!("larger than {MAX_FIXTURE_BYTES} bytes"))
        } else {
            std::fs::read_to_string(&full).map_err(|e| e.to_string())
        }
    });
    let text = match text {
        Ok(t) => t,
        Err(why) => {
            r.error(node.pos, codes::FIXTURE, format!("cannot read fixture {}: {why}", full.display()));
            return None;
        }
    };
    let source = SourceFile { shown: full, relative: rel.to_string(), text };
    let parsed = yaml::parse(&source.text);
    let mut sink = Sink::default();
    let event = {
        let mut fr = Reader { file: &source, sink: &mut sink };
        match parsed {
            Ok(doc) => event_from_node(&mut fr, &doc),
            Err((pos, msg)) => {
                fr.error(pos, codes::FIXTURE, format!("fixture is not valid JSON/YAML: {msg}"));
                None
            }
        }
    };
    if !sink.diags.is_empty() {
        // Problems inside the fixture are reported in the fixture, plus one line at the use.
        let count = sink.diags.len();
        r.sink.diags.append(&mut sink.diags);
        r.error(
            node.pos,
            codes::FIXTURE,
            format!("fixture {rel:?} has {count} problem(s), shown at its own lines"),
        );
        return None;
    }
    event
}

/// Keys a fixture may carry besides the event body: set by the broker, or (for `id`,
/// `received_at`, `raw`, `correlation`, `block_id`) accepted and ignored so that an event read
/// back from the API or printed by `haltwire event decode` can be pasted as a fixture.
const BROKER_KEYS: &[&str] =
    &["source", "integration", "trust", "id", "received_at", "raw", "correlation", "block_id"];

/// The normalized event of a fixture: `EventBody` fields plus `source`, `integration`, `trust`.
fn event_from_node(r: &mut Reader<'_>, node: &Node) -> Option<SecurityEvent> {
    let raw_entries = r.map(node, "an event fixture")?;
    let entries = r.check_keys(raw_entries, &[], "an event fixture");
    let mut ok = true;
    let mut text_or = |r: &mut Reader<'_>, key: &str, default: &str| -> String {
        match entries.get(key) {
            Some(n) => r.str(n, &format!("`{key}`")).map(str::to_string).unwrap_or_else(|| {
                ok = false;
                String::new()
            }),
            None => default.to_string(),
        }
    };
    let source = text_or(r, "source", "test");
    let integration = text_or(r, "integration", "generic");
    let trust = match entries.get("trust") {
        Some(n) => match r.choice(n, "`trust`", TRUSTS) {
            Some("local") => Trust::Local,
            Some("shared-secret") => Trust::SharedSecret,
            Some(_) => Trust::Signed,
            None => {
                ok = false;
                Trust::Signed
            }
        },
        None => Trust::Signed,
    };
    let mut body = serde_json::Map::new();
    let mut whole = serde_json::Map::new();
    for &(key, _, value) in entries.iter() {
        let v = to_json(value, r.source());
        whole.insert(key.to_string(), v.clone());
        if !BROKER_KEYS.contains(&key) {
            body.insert(key.to_string(), v);
        }
    }
    let parsed: Result<EventBody, _> = serde_path_to_error::deserialize(Value::Object(body));
    let body = match parsed {
        Ok(b) => b,
        Err(err) => {
            let segments: Vec<String> = err
                .path()
                .iter()
                .map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => index.to_string(),
                    serde_path_to_error::Segment::Map { key } => key.clone(),
                    serde_path_to_error::Segment::Enum { variant } => variant.clone(),
                    serde_path_to_error::Segment::Unknown => String::new(),
                })
                .collect();
            let path = err.path().to_string();
            let inner = err.into_inner().to_string();
            let at = locate(node, &segments, inner.starts_with("unknown field"));
            let msg = if path == "." { inner } else { format!("{path}: {inner}") };
            r.error(at.pos, codes::FIXTURE, format!("not a valid event: {msg}"));
            return None;
        }
    };
    if !ok {
        return None;
    }
    let raw_text = serde_json::to_string(&Value::Object(whole)).unwrap_or_else(|_| "{}".into());
    let raw = serde_json::value::RawValue::from_string(raw_text).ok()?;
    Some(SecurityEvent { id: Uuid::nil(), source, integration, trust, received_at: FIXTURE_TIME, body, raw })
}

/// The deepest node along a serde path (for positioning an error inside a fixture): the key of
/// the last segment for an unknown field, else its value.
fn locate<'n>(node: &'n Node, segments: &[String], at_key: bool) -> &'n Node {
    let mut here = node;
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let next = match &here.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(seg.as_str()))
                .map(|(k, v)| if last && at_key { k } else { v }),
            Kind::Seq(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => here = n,
            None => break,
        }
    }
    here
}

fn to_json(node: &Node, source: &str) -> Value {
    match &node.kind {
        Kind::Null => Value::Null,
        Kind::Bool(b) => Value::Bool(*b),
        Kind::Int(i) => i64::try_from(*i)
            .map(Value::from)
            .or_else(|_| u64::try_from(*i).map(Value::from))
            .unwrap_or_else(|_| Value::String(i.to_string())),
        Kind::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(node.scalar_text(source).unwrap_or_default())),
        Kind::Str(s) => Value::String(s.clone()),
        Kind::Seq(items) => Value::Array(items.iter().map(|n| to_json(n, source)).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.scalar_text(source).unwrap_or_default(), to_json(v, source)))
                .collect(),
        ),
    }
}

type AgentFixture = (Option<Session>, Option<CommandRecord>, u32);

/// `agent:` in a test: the session (and optionally the call) the event was tied to.
fn agent_fixture(r: &mut Reader<'_>, node: &Node, event: Option<&SecurityEvent>) -> Option<AgentFixture> {
    let e = r.entries(
        node,
        &["kind", "cwd", "user", "host", "blocks", "tool", "command", "input"],
        "a test's `agent`",
    )?;
    let mut ok = true;
    let kind = match e.get("kind") {
        Some(n) => match r.choice(n, "`kind`", &["claude-code", "codex", "generic"]) {
            Some("codex") => AgentKind::Codex,
            Some("generic") => AgentKind::Generic,
            Some(_) => AgentKind::ClaudeCode,
            None => {
                ok = false;
                AgentKind::ClaudeCode
            }
        },
        None => AgentKind::ClaudeCode,
    };
    let mut text = |r: &mut Reader<'_>, key: &str| -> Option<String> {
        let n = e.get(key)?;
        let s = r.str(n, &format!("`{key}`")).map(str::to_string);
        ok &= s.is_some();
        s
    };
    let cwd = text(r, "cwd");
    let user = text(r, "user");
    let host = text(r, "host");
    let tool = text(r, "tool");
    let command_text = text(r, "command");
    let blocks = match e.get("blocks") {
        Some(n) => match n.kind {
            Kind::Int(i) if (0..=i128::from(u32::MAX)).contains(&i) => i as u32,
            _ => {
                r.error(
                    n.pos,
                    codes::TYPE,
                    format!("`blocks` must be a whole number ≥ 0, found {}", n.describe()),
                );
                ok = false;
                0
            }
        },
        None => 0,
    };
    let input = match (e.get("input"), &command_text) {
        (Some(n), None) => match &n.kind {
            Kind::Map(_) => Some(to_json(n, r.source())),
            _ => {
                r.error(
                    n.pos,
                    codes::TYPE,
                    format!("`input` must be a map (the tool's input), found {}", n.describe()),
                );
                ok = false;
                None
            }
        },
        (Some(n), Some(_)) => {
            r.error(n.pos, codes::CONFLICT, "give either `command` (a shell command) or `input`, not both");
            ok = false;
            None
        }
        (None, Some(cmd)) => Some(serde_json::json!({ "command": cmd })),
        (None, None) => None,
    };
    if input.is_none() && tool.is_some() && ok {
        r.error(node.pos, codes::MISSING_KEY, "`tool` needs the call's `command` or `input`");
        ok = false;
    }
    if !ok {
        return None;
    }
    let session_id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
    let host =
        host.or_else(|| event.and_then(|ev| ev.body.host.clone())).unwrap_or_else(|| "test-host".into());
    let session = Session {
        session_id,
        agent: kind,
        agent_session_id: "test-session".into(),
        pid: 4242,
        pid_start_time: None,
        host,
        user,
        cwd: cwd.unwrap_or_else(|| "/".into()),
        channels: Vec::new(),
        status: SessionStatus::Active,
        registered_at: FIXTURE_TIME,
        last_seen: FIXTURE_TIME,
        ended_at: None,
        end_reason: None,
    };
    let command = input.map(|input| CommandRecord {
        session_id,
        call_id: "test-call".into(),
        tool: tool.unwrap_or_else(|| "Bash".into()),
        input,
        time: FIXTURE_TIME,
        outcome: None,
    });
    Some((Some(session), command, blocks))
}
