//! End-to-end tests against the real, pinned Codex CLI (`CODEX_BIN`, installed by `.ci/run`)
//! and a scripted mock model. Each test prints `SKIP` and passes when `CODEX_BIN` is unset, and
//! `RAN` when it ran.

mod common;

use common::codex::{codex_bin, CodexHome};
use common::model::{MockModel, Step};
use std::process::Command;
use std::time::Duration;

/// `haltwire codex run` drives a real Codex turn with a shell call, relays every notification
/// as a JSON line, registers the thread as a `codex` session, and records the shell call in
/// the ledger under its item id.
#[test]
fn codex_run_relays_a_real_turn() {
    let Some(bin) = codex_bin("codex_run_relays_a_real_turn") else { return };
    let data = tempfile::tempdir().unwrap();
    let broker = common::Broker::start(data.path());
    let model =
        MockModel::start(vec![Step::shell("call_smoke_1", "echo hi > x.txt"), Step::message("all done")]);
    let home = CodexHome::new(&model.base_url, "");
    let out = Command::new(common::BIN)
        .args(["codex", "run", "--timeout-secs", "60", "--url", &broker.url, "--data-dir"])
        .arg(data.path())
        .arg("--cwd")
        .arg(&home.work)
        .arg("--codex-bin")
        .arg(&bin)
        .arg("please write x.txt")
        .envs(home.env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert_eq!(std::fs::read_to_string(home.path("x.txt")).unwrap(), "hi\n");
    let lines: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let started = lines
        .iter()
        .find(|m| m["method"] == "item/started" && m["params"]["item"]["type"] == "commandExecution");
    assert_eq!(started.expect("commandExecution started")["params"]["item"]["id"], "call_smoke_1");
    let last = lines.last().unwrap();
    assert_eq!(last["method"], "turn/completed", "{stdout}");
    assert_eq!(last["params"]["turn"]["status"], "completed");
    let requests = model.wait_requests(2, Duration::from_secs(5));
    assert!(requests[1].call_output("call_smoke_1").is_some(), "{}", requests[1].all_input());
    assert_eq!(requests[0].header("originator"), Some("haltwire"));

    let thread_id = lines.iter().find_map(|m| m["params"]["threadId"].as_str()).unwrap().to_string();
    let soc = broker.soc_token();
    let sessions = broker.get("/v1/sessions", Some(&soc)).json();
    let session = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["agent_session_id"] == thread_id.as_str())
        .unwrap_or_else(|| panic!("thread {thread_id} not registered: {sessions}"))
        .clone();
    assert_eq!(session["agent"], "codex");
    let session_id = session["session_id"].as_str().unwrap();
    let ledger = broker.get(&format!("/v1/sessions/{session_id}/commands"), Some(&soc)).json();
    let call =
        ledger.as_array().unwrap().iter().find(|c| c["call_id"] == "call_smoke_1").expect("call in ledger");
    assert_eq!(call["tool"], "Bash");
    assert_eq!(call["input"]["command"], "echo hi > x.txt");
}

/// `haltwire codex serve` stands in for `codex app-server`: the orchestrator's own ids (0 and
/// a string) come back unchanged, `initialize` is answered with the real server's version,
/// and the turn's notifications are relayed.
#[test]
fn codex_serve_proxies_an_orchestrator() {
    use std::io::{BufRead, BufReader, Write};
    let Some(bin) = codex_bin("codex_serve_proxies_an_orchestrator") else { return };
    let model =
        MockModel::start(vec![Step::shell("call_serve_1", "echo proxied > p.txt"), Step::message("ok")]);
    let home = CodexHome::new(&model.base_url, "");
    let mut child = Command::new(common::BIN)
        .args(["codex", "serve", "--no-broker", "--codex-bin"])
        .arg(&bin)
        .envs(home.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
        }
    });
    let mut send = |v: serde_json::Value| writeln!(stdin, "{v}").unwrap();
    let wait = |pred: &dyn Fn(&serde_json::Value) -> bool| loop {
        let m = rx.recv_timeout(Duration::from_secs(60)).expect("message from codex serve");
        if pred(&m) {
            return m;
        }
    };
    send(
        serde_json::json!({"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "orch", "version": "1"}}}),
    );
    let init = wait(&|m| m.get("id") == Some(&serde_json::json!(0)));
    assert!(init["result"]["userAgent"].as_str().unwrap().contains("/0.169.0"), "{init}");
    send(serde_json::json!({"method": "initialized"}));
    send(serde_json::json!({"id": "t", "method": "thread/start", "params": {"cwd": home.work}}));
    let started = wait(&|m| m.get("id") == Some(&serde_json::json!("t")));
    let thread = started["result"]["thread"]["id"].as_str().expect("thread id").to_string();
    send(serde_json::json!({"id": 0, "method": "turn/start", "params": {"threadId": thread,
        "input": [{"type": "text", "text": "go"}]}}));
    let turn = wait(&|m| m.get("id") == Some(&serde_json::json!(0)));
    assert!(turn["result"]["turn"]["id"].is_string(), "{turn}");
    wait(&|m| m["method"] == "item/started" && m["params"]["item"]["id"] == "call_serve_1");
    let done = wait(&|m| m["method"] == "turn/completed");
    assert_eq!(done["params"]["turn"]["status"], "completed");
    assert_eq!(std::fs::read_to_string(home.path("p.txt")).unwrap(), "proxied\n");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
