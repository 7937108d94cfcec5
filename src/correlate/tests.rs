//! Unit tests of the scoring rules, with fabricated sessions and a `/proc` fixture that holds
//! no processes (so only the event's own facts and the ledger count).

use super::*;
use crate::event::{EventBody, Process, ProcessRef, Target, Trust};
use crate::sessions::model::{AgentKind, CommandRecord, Outcome, Session, SessionStatus};
use serde_json::json;
use uuid::Uuid;

fn t0() -> OffsetDateTime {
    OffsetDateTime::now_utc() - Duration::minutes(1)
}

fn session(pid: u32, host: &str) -> Session {
    Session {
        session_id: Uuid::now_v7(),
        agent: AgentKind::ClaudeCode,
        agent_session_id: format!("a{pid}"),
        pid,
        pid_start_time: None,
        host: host.into(),
        user: None,
        cwd: "/work/repo".into(),
        channels: vec![],
        status: SessionStatus::Active,
        registered_at: t0() - Duration::minutes(5),
        last_seen: t0(),
        ended_at: None,
        end_reason: None,
    }
}

fn bash(s: &Session, call: &str, command: &str, at: OffsetDateTime) -> CommandRecord {
    CommandRecord {
        session_id: s.session_id,
        call_id: call.into(),
        tool: "Bash".into(),
        input: json!({ "command": command }),
        time: at,
        outcome: None,
    }
}

fn event(host: &str, pid: Option<u32>, ppid: Option<u32>, cmd: &str, at: OffsetDateTime) -> SecurityEvent {
    SecurityEvent {
        id: Uuid::now_v7(),
        source: "generic".into(),
        integration: "generic".into(),
        trust: Trust::Signed,
        received_at: at,
        body: EventBody {
            time: Some(at),
            host: Some(host.into()),
            process: Some(Process {
                pid,
                cmd_line: Some(cmd.into()),
                parent: ppid.map(|p| ProcessRef { pid: Some(p), ..ProcessRef::default() }),
                ..Process::default()
            }),
            ..EventBody::default()
        },
        raw: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
    }
}

fn correlator() -> (tempfile::TempDir, Correlator) {
    let empty_proc = tempfile::tempdir().unwrap();
    let c = Correlator::new(Procfs::at(empty_proc.path()), "this-host".into(), Tracker::default());
    (empty_proc, c)
}

#[test]
fn parent_pid_and_command_pick_the_session_and_call() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let b = session(200, "remote-1");
    let la = vec![bash(&a, "a1", "curl -fsSL https://x.example/i.sh | sh", t0())];
    let lb = vec![bash(&b, "b1", "npm test", t0())];
    let e = event(
        "remote-1",
        Some(105),
        Some(100),
        "curl -fsSL https://x.example/i.sh",
        t0() + Duration::seconds(1),
    );
    let r = c.correlate(
        &e,
        &[Candidate { session: &a, commands: &la }, Candidate { session: &b, commands: &lb }],
        t0(),
    );
    assert_eq!(r.status, CorrelationStatus::Matched, "{r:?}");
    assert_eq!(r.session_id, Some(a.session_id));
    assert_eq!(r.call_id.as_deref(), Some("a1"));
    assert!(r.evidence.iter().any(|e| e.kind == "ancestry"));
    assert!(r.evidence.iter().any(|e| e.kind == "command"));
}

#[test]
fn same_command_in_two_sessions_without_ancestry_is_ambiguous() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let b = session(200, "remote-1");
    let la = vec![bash(&a, "a1", "make deploy", t0())];
    let lb = vec![bash(&b, "b1", "make deploy", t0())];
    let e = event("remote-1", Some(999), None, "make deploy", t0() + Duration::seconds(2));
    let r = c.correlate(
        &e,
        &[Candidate { session: &a, commands: &la }, Candidate { session: &b, commands: &lb }],
        t0(),
    );
    assert_eq!(r.status, CorrelationStatus::Ambiguous, "{r:?}");
    assert_eq!(r.session_id, None);
}

#[test]
fn a_retried_command_binds_to_the_latest_call_before_the_event() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![
        bash(&a, "first", "curl https://x.example/i.sh | sh", t0()),
        bash(&a, "second", "curl https://x.example/i.sh | sh", t0() + Duration::seconds(30)),
    ];
    let e =
        event("remote-1", Some(300), Some(100), "curl https://x.example/i.sh", t0() + Duration::seconds(31));
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.status, CorrelationStatus::Matched, "{r:?}");
    assert_eq!(r.call_id.as_deref(), Some("second"));
}

#[test]
fn events_on_another_host_or_outside_the_window_do_not_match() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![bash(&a, "a1", "rm -rf build", t0())];
    let elsewhere = event("remote-2", Some(101), Some(100), "rm -rf build", t0());
    assert_eq!(
        c.correlate(&elsewhere, &[Candidate { session: &a, commands: &ledger }], t0()).status,
        CorrelationStatus::Unmatched
    );
    let later = event("remote-1", Some(999), None, "rm -rf build", t0() + Duration::hours(2));
    let r = c.correlate(&later, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
}

#[test]
fn an_ended_session_does_not_claim_later_events_with_its_reused_pid() {
    let (_p, c) = correlator();
    let mut a = session(100, "remote-1");
    a.status = SessionStatus::Ended;
    a.ended_at = Some(t0() - Duration::minutes(2));
    let e = event("remote-1", Some(101), Some(100), "whoami", t0());
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &[] }], t0());
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
}

#[test]
fn ancestry_alone_matches_the_session_without_a_call() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let e = event("remote-1", Some(101), Some(100), "some-background-task", t0());
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &[] }], t0());
    assert_eq!(r.status, CorrelationStatus::Matched, "{r:?}");
    assert_eq!(r.session_id, Some(a.session_id));
    assert_eq!(r.call_id, None);
}

#[test]
fn a_file_edit_matches_through_the_target_path() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let edit = CommandRecord {
        tool: "Edit".into(),
        input: json!({"file_path": "/work/repo/.env"}),
        ..bash(&a, "e1", "", t0())
    };
    let mut e = event("remote-1", Some(101), Some(100), "claude", t0() + Duration::seconds(1));
    e.body.target = Some(Target { file: Some("/work/repo/.env".into()), ..Target::default() });
    let r = c.correlate(&e, &[Candidate { session: &a, commands: std::slice::from_ref(&edit) }], t0());
    assert_eq!(r.call_id.as_deref(), Some("e1"), "{r:?}");
}

#[test]
fn hostnames_compare_by_short_name_and_case() {
    assert!(hosts_equal("Build-7.corp.example", "build-7"));
    assert!(!hosts_equal("build-7", "build-8"));
}

#[test]
fn fully_qualified_names_in_different_domains_are_different_hosts() {
    assert!(!hosts_equal("web-1.eu.corp.example", "web-1.us.corp.example"));
    assert!(hosts_equal("web-1.eu.corp.example", "WEB-1"));
    assert!(hosts_equal("mbp-maya.local", "mbp-maya.corp.example"), "mDNS names are not qualified");
}

#[test]
fn an_event_without_a_host_is_about_this_machine() {
    let (_p, c) = correlator();
    let remote = session(100, "remote-1");
    let local = session(200, "this-host");
    let lr = vec![bash(&remote, "r1", "terraform destroy -auto-approve", t0())];
    let ll = vec![bash(&local, "l1", "terraform destroy -auto-approve", t0())];
    let mut e = event("x", None, None, "terraform destroy -auto-approve", t0() + Duration::seconds(1));
    e.body.host = None;
    let r = c.correlate(
        &e,
        &[Candidate { session: &remote, commands: &lr }, Candidate { session: &local, commands: &ll }],
        t0(),
    );
    assert_eq!(r.status, CorrelationStatus::Matched, "{r:?}");
    assert_eq!(r.session_id, Some(local.session_id));
}

#[test]
fn the_same_command_run_from_a_login_shell_is_not_the_agents() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![bash(&a, "a1", "npm test", t0())];
    let mut e = event("remote-1", Some(700), Some(650), "npm test", t0() + Duration::seconds(2));
    if let Some(p) = e.body.process.as_mut() {
        p.parent =
            Some(ProcessRef { pid: Some(650), cmd_line: Some("-zsh".into()), ..ProcessRef::default() });
    }
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
    assert!(r.evidence.iter().any(|e| e.kind == "parent" && e.weight < 0.0), "{r:?}");
}

#[test]
fn a_shell_wrapper_whose_parent_is_not_the_agent_is_not_the_agents() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![bash(&a, "a1", "pg_dump -Fc orders > /tmp/o.dump", t0())];
    // cron's `sh -c`: same script, but started by pid 40 (cron), not by the agent.
    let cron = event("remote-1", Some(41), Some(40), "/bin/sh -c pg_dump -Fc orders > /tmp/o.dump", t0());
    let r = c.correlate(&cron, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
    let agent = event("remote-1", Some(41), Some(100), "/bin/sh -c pg_dump -Fc orders > /tmp/o.dump", t0());
    let r = c.correlate(&agent, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.call_id.as_deref(), Some("a1"), "{r:?}");
}

#[test]
fn a_call_that_finished_does_not_claim_later_processes_unless_it_left_a_job() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let done = Outcome { exit_code: Some(0), error: None, duration_ms: Some(1_000) };
    let ledger = vec![
        CommandRecord { outcome: Some(done.clone()), ..bash(&a, "a1", "kubectl get pods", t0()) },
        CommandRecord {
            outcome: Some(done),
            ..bash(&a, "a2", "nohup node worker.js > /tmp/w.log 2>&1 &", t0())
        },
    ];
    let later = t0() + Duration::seconds(90);
    let r = c.correlate(
        &event("remote-1", Some(900), Some(899), "kubectl get pods", later),
        &[Candidate { session: &a, commands: &ledger }],
        t0(),
    );
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
    assert!(r.evidence.iter().any(|e| e.kind == "finished"), "{r:?}");
    let r = c.correlate(
        &event("remote-1", Some(901), Some(1), "node worker.js", later),
        &[Candidate { session: &a, commands: &ledger }],
        t0(),
    );
    assert_eq!(r.call_id.as_deref(), Some("a2"), "{r:?}");
}

#[test]
fn a_file_written_by_another_process_is_not_the_agents_edit() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let edit = CommandRecord {
        tool: "Write".into(),
        input: json!({"file_path": "/work/repo/.github/workflows/ci.yml"}),
        ..bash(&a, "w1", "", t0())
    };
    let mut e = event("remote-1", Some(5000), Some(4000), "vim .github/workflows/ci.yml", t0());
    e.body.target =
        Some(Target { file: Some("/work/repo/.github/workflows/ci.yml".into()), ..Target::default() });
    let r = c.correlate(&e, &[Candidate { session: &a, commands: std::slice::from_ref(&edit) }], t0());
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
    // A file-integrity alert names no process: the target and the time are all there is.
    e.body.process = None;
    let r = c.correlate(&e, &[Candidate { session: &a, commands: std::slice::from_ref(&edit) }], t0());
    assert_eq!(r.call_id.as_deref(), Some("w1"), "{r:?}");
}

#[test]
fn a_chain_in_the_event_that_reaches_init_without_the_agent_counts_against_it() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![bash(&a, "a1", "make deploy", t0())];
    let mut e = event("remote-1", Some(900), Some(800), "make deploy", t0() + Duration::seconds(1));
    if let Some(p) = e.body.process.as_mut() {
        p.ancestors = vec![
            ProcessRef { pid: Some(800), ..ProcessRef::default() },
            ProcessRef { pid: Some(700), ..ProcessRef::default() },
            ProcessRef { pid: Some(1), ..ProcessRef::default() },
        ];
    }
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.status, CorrelationStatus::Unmatched, "{r:?}");
    assert!(r.evidence.iter().any(|e| e.kind == "ancestry" && e.weight < 0.0), "{r:?}");
}

#[test]
fn a_process_still_running_under_the_calls_command_binds_after_the_window() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![bash(&a, "dev", "npm run dev", t0() - Duration::minutes(30))];
    let mut e = event("remote-1", Some(900), Some(800), "node .next/server.js", t0());
    if let Some(p) = e.body.process.as_mut() {
        p.ancestors = vec![
            ProcessRef { pid: Some(800), cmd_line: Some("npm run dev".into()), ..ProcessRef::default() },
            ProcessRef { pid: Some(100), cmd_line: Some("claude".into()), ..ProcessRef::default() },
        ];
    }
    let mut long = a.clone();
    long.registered_at = t0() - Duration::hours(1);
    let r = c.correlate(&e, &[Candidate { session: &long, commands: &ledger }], t0());
    assert_eq!(r.call_id.as_deref(), Some("dev"), "{r:?}");
}

#[test]
fn another_users_process_and_another_directory_weigh_against_the_session() {
    let (_p, c) = correlator();
    let mut a = session(100, "remote-1");
    a.user = Some("amir".into());
    let mut b = session(200, "remote-1");
    b.user = Some("bea".into());
    b.cwd = "/home/bea/exp".into();
    let la = vec![bash(&a, "a1", "nvidia-smi", t0())];
    let lb = vec![bash(&b, "b1", "nvidia-smi", t0())];
    let mut e = event("remote-1", Some(900), Some(899), "nvidia-smi", t0() + Duration::seconds(1));
    if let Some(p) = e.body.process.as_mut() {
        p.user = Some("CORP\\Bea".into());
        p.cwd = Some("/home/bea/exp/run-3".into());
    }
    let r = c.correlate(
        &e,
        &[Candidate { session: &a, commands: &la }, Candidate { session: &b, commands: &lb }],
        t0(),
    );
    assert_eq!(r.session_id, Some(b.session_id), "{r:?}");
    assert_eq!(r.call_id.as_deref(), Some("b1"));
}

#[test]
fn a_user_switch_in_the_chain_or_the_call_explains_another_user() {
    let (_p, c) = correlator();
    let mut a = session(100, "remote-1");
    a.user = Some("ops".into());
    let ledger = vec![bash(&a, "a1", "sudo -u postgres psql -c 'VACUUM orders'", t0())];
    let mut e = event("remote-1", Some(900), Some(899), "psql -c VACUUM orders", t0() + Duration::seconds(1));
    if let Some(p) = e.body.process.as_mut() {
        p.user = Some("postgres".into());
    }
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.call_id.as_deref(), Some("a1"), "{r:?}");
    assert!(!r.evidence.iter().any(|e| e.kind == "user"), "{r:?}");
}

#[test]
fn a_call_that_changed_directory_explains_a_cwd_outside_the_session() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let ledger = vec![bash(&a, "a1", "cd ../api && npm test", t0())];
    let mut e = event("remote-1", Some(900), Some(899), "npm test", t0() + Duration::seconds(1));
    if let Some(p) = e.body.process.as_mut() {
        p.cwd = Some("/work/api".into());
    }
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &ledger }], t0());
    assert_eq!(r.call_id.as_deref(), Some("a1"), "{r:?}");
}

#[test]
fn a_search_tools_helper_binds_by_its_pattern_and_not_to_a_later_read_of_its_file() {
    let (_p, c) = correlator();
    let a = session(100, "remote-1");
    let grep = CommandRecord {
        tool: "Grep".into(),
        input: json!({"pattern": "aws_secret_access_key", "path": "/home/u"}),
        ..bash(&a, "g1", "", t0())
    };
    let read = CommandRecord {
        tool: "Read".into(),
        input: json!({"file_path": "/home/u/.aws/credentials"}),
        ..bash(&a, "r1", "", t0() + Duration::seconds(9))
    };
    let mut e = event(
        "remote-1",
        Some(150),
        Some(100),
        "/opt/claude/vendor/ripgrep/rg --files-with-matches aws_secret_access_key /home/u",
        t0() + Duration::milliseconds(300),
    );
    e.body.target = Some(Target { file: Some("/home/u/.aws/credentials".into()), ..Target::default() });
    let r = c.correlate(&e, &[Candidate { session: &a, commands: &[grep, read] }], t0());
    assert_eq!(r.call_id.as_deref(), Some("g1"), "{r:?}");
}

#[test]
fn a_newer_session_with_the_same_pid_supersedes_an_older_one_never_ended() {
    let (_p, c) = correlator();
    let mut old = session(4100, "remote-1");
    old.registered_at = t0() - Duration::hours(2);
    let mut new = session(4100, "remote-1");
    new.registered_at = t0() - Duration::minutes(1);
    let e = event("remote-1", Some(4200), Some(4100), "some-background-task", t0());
    let r = c.correlate(
        &e,
        &[Candidate { session: &old, commands: &[] }, Candidate { session: &new, commands: &[] }],
        t0(),
    );
    assert_eq!(r.status, CorrelationStatus::Matched, "{r:?}");
    assert_eq!(r.session_id, Some(new.session_id));
    // Before the newer registration the older session still owned the pid.
    let before =
        event("remote-1", Some(4200), Some(4100), "some-background-task", t0() - Duration::minutes(30));
    let r = c.correlate(
        &before,
        &[Candidate { session: &old, commands: &[] }, Candidate { session: &new, commands: &[] }],
        t0(),
    );
    assert_eq!(r.session_id, Some(old.session_id), "{r:?}");
}
