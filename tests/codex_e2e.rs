//! End-to-end tests against the real, pinned Codex CLI (`CODEX_BIN`, installed by `.ci/run`)
//! and a scripted mock model. Each test prints `SKIP` and passes when `CODEX_BIN` is unset, and
//! `RAN` when it ran.

mod common;

use common::codex::{codex_bin, CodexHome};
use common::model::{MockModel, Step};
use std::process::Command;
use std::time::Duration;

/// `haltwire codex run` drives a real Codex turn with a shell call and relays every
/// notification as a JSON line.
#[test]
fn codex_run_relays_a_real_turn() {
    let Some(bin) = codex_bin("codex_run_relays_a_real_turn") else { return };
    let model = MockModel::start(vec![Step::shell("call_smoke_1", "echo hi > x.txt"), Step::message("all done")]);
    let home = CodexHome::new(&model.base_url, "");
    let out = Command::new(common::BIN)
        .args(["codex", "run", "--timeout-secs", "60", "--cwd"])
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
    let started = lines.iter().find(|m| m["method"] == "item/started" && m["params"]["item"]["type"] == "commandExecution");
    assert_eq!(started.expect("commandExecution started")["params"]["item"]["id"], "call_smoke_1");
    let last = lines.last().unwrap();
    assert_eq!(last["method"], "turn/completed", "{stdout}");
    assert_eq!(last["params"]["turn"]["status"], "completed");
    let requests = model.wait_requests(2, Duration::from_secs(5));
    assert!(requests[1].call_output("call_smoke_1").is_some(), "{}", requests[1].all_input());
    assert_eq!(requests[0].header("originator"), Some("haltwire"));
}
