//! Correlation with real processes and the real binary: two fake agents (a shell that spawns
//! shells, as agents do) run the same command; events for their children, live or already
//! killed, bind to the right session and call; events for unrelated processes of the same user
//! bind to nothing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A fake agent: a shell whose children are shells running `sleep` (like an agent's tool calls).
struct FakeAgent {
    child: Child,
}

impl FakeAgent {
    fn start(marker: &str) -> FakeAgent {
        // Each tool call is `bash -c '<cmd>'` under the agent process, as Codex runs them.
        let script = format!("bash -c 'exec -a {marker} sleep 60' & bash -c 'sleep 61' & wait");
        let child = Command::new("bash").arg("-c").arg(script).spawn().unwrap();
        FakeAgent { child }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pids of processes below the agent whose command line contains `needle`.
    fn descendants_matching(&self, needle: &str) -> Vec<(u32, u32)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = descendants(self.pid())
                .into_iter()
                .filter(|(pid, _)| cmdline(*pid).contains(needle))
                .collect::<Vec<_>>();
            if !found.is_empty() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        for (pid, _) in descendants(self.pid()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn stat(pid: u32) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
    Some((pid, ppid))
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// (pid, ppid) of every process below `root`.
fn descendants(root: u32) -> Vec<(u32, u32)> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &all {
            if ppid == p {
                out.push((pid, ppid));
                frontier.push(pid);
            }
        }
    }
    out
}

fn register(broker: &Broker, agent: &FakeAgent, name: &str) -> (String, String) {
    broker.register(&json!({"agent": "codex", "agent_session_id": name, "pid": agent.pid(), "cwd": "/tmp"}))
}

fn record(broker: &Broker, session: &str, token: &str, call: &str, command: &str) {
    let body = json!({"call_id": call, "tool": "Bash", "input": {"command": command}});
    let reply = broker.post(
        &format!("/v1/sessions/{session}/commands"),
        &session_headers(token),
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
}

fn post_event(broker: &Broker, msg: &str, process: Value) -> String {
    let body = json!({"host": hostname(), "disposition": "blocked", "process": process, "vendor_id": msg})
        .to_string();
    let reply = broker.post_generic(msg, now(), body.as_bytes());
    assert_eq!(reply.status, 202, "{}", reply.body);
    reply.json()["event_id"].as_str().unwrap().to_string()
}

/// Waits for the pipeline to correlate the event and returns its correlation.
fn correlation(broker: &Broker, token: &str, event_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let event = broker.event(token, event_id);
        if let Some(c) = event.get("correlation") {
            return c.clone();
        }
        assert!(Instant::now() < deadline, "event {event_id} was never correlated");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn events_bind_to_the_agent_that_ran_the_command_even_after_the_process_died() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let soc = broker.soc_token();

    let alpha = FakeAgent::start("alpha-tool");
    let beta = FakeAgent::start("beta-tool");
    let (alpha_sid, alpha_token) = register(&broker, &alpha, "thread-alpha");
    let (beta_sid, beta_token) = register(&broker, &beta, "thread-beta");
    // Both agents ran the very same command: only ancestry can tell them apart.
    record(&broker, &alpha_sid, &alpha_token, "call-a1", "sleep 61");
    record(&broker, &beta_sid, &beta_token, "call-b1", "sleep 61");
    record(&broker, &alpha_sid, &alpha_token, "call-a2", "exec -a alpha-tool sleep 60");

    let (alpha_sleep, alpha_shell) = alpha.descendants_matching("sleep 61")[0];
    let (beta_sleep, beta_shell) = beta.descendants_matching("sleep 61")[0];

    // A live child, with the parent pid the EDR reports.
    let e1 = post_event(
        &broker,
        "msg_live_alpha",
        json!({"pid": alpha_sleep, "cmd_line": "sleep 61", "parent": {"pid": alpha_shell}}),
    );
    // The same command under the other agent.
    let e2 = post_event(
        &broker,
        "msg_live_beta",
        json!({"pid": beta_sleep, "cmd_line": "sleep 61", "parent": {"pid": beta_shell}}),
    );
    // An unrelated process of the same user running the same command.
    let mut stranger = Command::new("sleep").arg("61").spawn().unwrap();
    let e3 = post_event(
        &broker,
        "msg_stranger",
        json!({"pid": stranger.id(), "cmd_line": "sleep 61", "parent": {"pid": std::process::id()}}),
    );

    // A child that is killed (as an EDR would) before the event arrives, reported without
    // its parent: the process tracker saw it under alpha while it ran.
    let (killed, _) = alpha.descendants_matching("alpha-tool")[0];
    std::thread::sleep(Duration::from_millis(600));
    Command::new("kill").arg("-9").arg(killed.to_string()).status().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(stat(killed).is_none(), "the process must be gone for this case to mean anything");
    let e4 = post_event(&broker, "msg_killed", json!({"pid": killed, "cmd_line": "alpha-tool"}));

    let c1 = correlation(&broker, &soc, &e1);
    assert_eq!(c1["status"], "matched", "{c1}");
    assert_eq!(c1["session_id"], alpha_sid.as_str());
    assert_eq!(c1["call_id"], "call-a1");
    let c2 = correlation(&broker, &soc, &e2);
    assert_eq!(c2["session_id"], beta_sid.as_str(), "{c2}");
    assert_eq!(c2["call_id"], "call-b1");
    let c3 = correlation(&broker, &soc, &e3);
    assert_eq!(c3["status"], "unmatched", "an unrelated process must not bind: {c3}");
    let c4 = correlation(&broker, &soc, &e4);
    assert_eq!(c4["status"], "matched", "{c4}");
    assert_eq!(c4["session_id"], alpha_sid.as_str());
    assert!(c4["evidence"].to_string().contains("process tracker"), "{c4}");
    let _ = stranger.kill();
    let _ = stranger.wait();
}

#[test]
fn an_event_that_arrives_before_its_ledger_entry_binds_late() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let soc = broker.soc_token();
    let agent = FakeAgent::start("late-tool");
    let (sid, token) = register(&broker, &agent, "thread-late");
    // An event for a process of another host (no ancestry to go on) before the ledger knows
    // the command: unmatched at first.
    let body = json!({"host": hostname(), "disposition": "blocked", "process": {"cmd_line": "terraform destroy -auto-approve"}});
    let e = broker.post_generic("msg_late", now(), body.to_string().as_bytes()).json()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(correlation(&broker, &soc, &e)["status"], "unmatched");
    record(&broker, &sid, &token, "call-late", "terraform destroy -auto-approve");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = correlation(&broker, &soc, &e);
        if c["status"] == "matched" {
            assert_eq!(c["call_id"], "call-late");
            assert_eq!(c["session_id"], sid.as_str());
            break;
        }
        assert!(Instant::now() < deadline, "never bound late: {c}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn session_routes_check_tokens_and_the_session_ends_with_its_agent() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    let soc = broker.soc_token();
    let mut agent = FakeAgent::start("ending-tool");
    let (sid, token) = register(&broker, &agent, "thread-end");
    let other = FakeAgent::start("other-tool");
    let (_, other_token) = register(&broker, &other, "thread-other");

    let body = json!({"call_id": "x", "tool": "Bash", "input": {"command": "ls"}}).to_string();
    let json_ct = ("content-type", "application/json".to_string());
    let path = format!("/v1/sessions/{sid}/commands");
    broker
        .post(&path, std::slice::from_ref(&json_ct), body.as_bytes())
        .assert_problem(401, "urn:haltwire:problem:unauthorized");
    broker
        .post(&path, &[json_ct.clone(), ("authorization", format!("Bearer {other_token}"))], body.as_bytes())
        .assert_problem(403, "urn:haltwire:problem:forbidden");
    broker
        .post(&path, &[json_ct.clone(), ("authorization", format!("Bearer {soc}"))], body.as_bytes())
        .assert_problem(403, "urn:haltwire:problem:forbidden");
    let ok =
        broker.post(&path, &[json_ct.clone(), ("authorization", format!("Bearer {token}"))], body.as_bytes());
    assert_eq!(ok.status, 201);
    let again =
        broker.post(&path, &[json_ct.clone(), ("authorization", format!("Bearer {token}"))], body.as_bytes());
    assert_eq!(again.status, 200, "a retried post records nothing new");
    assert_eq!(again.json()["recorded"], false);

    let rows = broker.get("/v1/sessions", Some(&soc)).json();
    let row = rows["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == sid.as_str())
        .unwrap()
        .clone();
    for key in ["agent", "agent_session_id", "pid", "host", "cwd", "status"] {
        assert!(row.get(key).is_some(), "row lacks {key}: {row}");
    }
    assert_eq!(row["status"], "active");
    assert_eq!(row["host"], hostname());

    // The agent exits: the session ends by itself (pid + start time no longer match).
    for (pid, _) in descendants(agent.pid()) {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = broker.get(&format!("/v1/sessions/{sid}"), Some(&soc)).json();
        if s["status"] == "ended" {
            assert_eq!(s["end_reason"], "process_exited");
            break;
        }
        assert!(Instant::now() < deadline, "session never ended: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    broker
        .post(
            &path,
            &[json_ct, ("authorization", format!("Bearer {token}"))],
            body.replace("\"x\"", "\"y\"").as_bytes(),
        )
        .assert_problem(409, "urn:haltwire:problem:session-ended");
}
