//! End-to-end tests against the real, pinned Codex CLI (`CODEX_BIN`, installed by `.ci/run`)
//! and a scripted mock model. Each test prints `SKIP` and passes when `CODEX_BIN` is unset, and
//! `RAN` when it ran.
//!
//! The blocked-command scenario runs twice, once per way of connecting Codex: the hooks path
//! (`haltwire install codex` into a fresh CODEX_HOME, then a plain `codex exec` — no trust
//! bypass) and the adapter path (`haltwire codex run`). The model runs a command; an EDR-style
//! event for that command's live process reaches the real broker, whose default policy blocks
//! it; the model's retry and a variant touching the same target are denied before they run,
//! with the signed notice as the reason the model reads; once the SOC clears the block, the
//! retry runs. A second pair of tests puts an impostor in the broker's place: forged,
//! misaddressed, expired and replayed directives never reach the model.

mod common;

use common::codex::{codex_bin, CodexHome, Running};
use common::impostor;
use common::model::{MockModel, Recorded, Step};
use common::scenario::{self, Project, COMMAND, NOTICE_HEAD, VARIANT};
use common::{report, Broker, BIN};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How Codex is connected to haltwire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Connect {
    /// `haltwire install codex`, then `codex exec`.
    Hooks,
    /// `haltwire codex run`.
    Adapter,
}

/// Connects and starts Codex on `home` against the broker at `url` (keys in `data`).
/// One real Codex at a time. The scenarios assert the exact sequence of model requests, and the
/// adapter's steer lands between two of them; with six Codex processes and six brokers sharing
/// two cores, a delayed steer became an extra request and the script ran out of steps. Run
/// one after another, every run is deterministic (about 10 s for the file).
fn one_codex_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn start_codex(connect: Connect, bin: &Path, home: &CodexHome, url: &str, data: &Path) -> Running {
    match connect {
        Connect::Hooks => {
            let install = Command::new(BIN)
                .args(["install", "codex", "--codex-home"])
                .arg(&home.home)
                .args(["--url", url, "--data-dir"])
                .arg(data)
                .env("CODEX_BIN", bin)
                .envs(home.env())
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&install.stdout).into_owned()
                + &String::from_utf8_lossy(&install.stderr);
            assert!(install.status.success(), "install codex failed:\n{said}");
            assert!(said.contains("trusted 5 hook(s)"), "{said}");
            let mut cmd = Command::new(bin);
            cmd.args(["exec", "--skip-git-repo-check", "--disable", "plugins", "-C"])
                .arg(&home.work)
                .arg("install the tool")
                .envs(home.env());
            Running::spawn(cmd)
        }
        Connect::Adapter => {
            let mut cmd = Command::new(BIN);
            cmd.args(["codex", "run", "--timeout-secs", "150", "--url", url, "--data-dir"])
                .arg(data)
                .arg("--cwd")
                .arg(&home.work)
                .arg("--codex-bin")
                .arg(bin)
                .arg("install the tool")
                .envs(home.env());
            Running::spawn(cmd)
        }
    }
}

/// The output Codex reported for `call_id` in `request` (panics when absent).
fn output_of(request: &Recorded, call_id: &str) -> String {
    request
        .call_output(call_id)
        .unwrap_or_else(|| panic!("no output for {call_id} in {}", request.all_input()))
}

/// The deny Codex reports for a call its PreToolUse hook refused.
const HOOK_DENY: &str = "Command blocked by PreToolUse hook: ";

#[test]
fn hooks_path_explains_a_blocked_command_and_denies_its_retries_until_the_soc_clears_it() {
    let _one = one_codex_at_a_time();
    let test = "codex_e2e hooks path";
    let Some(bin) = codex_bin(test) else { return };
    blocked_command_scenario(&bin, Connect::Hooks, test);
}

#[test]
fn adapter_path_explains_a_blocked_command_and_denies_its_retries_until_the_soc_clears_it() {
    let _one = one_codex_at_a_time();
    let test = "codex_e2e adapter path";
    let Some(bin) = codex_bin(test) else { return };
    blocked_command_scenario(&bin, Connect::Adapter, test);
}

fn blocked_command_scenario(bin: &Path, connect: Connect, test: &str) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let broker = Broker::start(&data);
    let soc = broker.soc_token();
    let model = MockModel::start(Vec::new());
    let home = CodexHome::new(&model.base_url, "");
    let project = Arc::new(Project::new(&home.work));

    // Filled in once the block exists; the step-4 callback clears it like a SOC analyst, after
    // noting what the denied retries left behind (nothing, if they never ran).
    let block_slot: Arc<Mutex<Option<String>>> = Arc::default();
    let before_clear: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let clear_step = {
        let (block_slot, before_clear, project) = (block_slot.clone(), before_clear.clone(), project.clone());
        let (url, soc) = (broker.url.clone(), soc.clone());
        move |_: &Recorded| {
            *before_clear.lock().unwrap() = Some((project.read("target.txt"), project.read("runs.log")));
            let block = block_slot.lock().unwrap().clone().expect("the block exists before the retries");
            scenario::clear_block(&url, &soc, &block);
            project.release(false);
        }
    };
    model.push(Step::shell("call_e2e_1", COMMAND));
    model.push(Step::shell("call_e2e_2", COMMAND));
    model.push(Step::shell("call_e2e_3", VARIANT));
    model.push(Step::shell("call_e2e_4", COMMAND).before(clear_step));
    model.push(Step::message("done"));

    let mut codex = start_codex(connect, bin, &home, &broker.url, &data);

    // The first run is under way: act as the EDR that blocks it.
    let pid = project.wait_pid(deadline, || codex.alive());
    let event_id = scenario::post_block_event(&broker, &format!("msg_codex_{connect:?}"), pid);
    let block_id = scenario::wait_for_block(&broker, &soc, &event_id);
    *block_slot.lock().unwrap() = Some(block_id.clone());
    scenario::wait_for_pending_directive(&broker, &home.agent_state(), deadline);
    if connect == Connect::Adapter {
        // The adapter polls: without this the run could end before its steer, and Codex then
        // samples again with the steered notice instead of running the retry (a race of the
        // test, not of the product: the notice still arrives and the gate still denies).
        scenario::wait_for_directive_taken(&broker, &home.agent_state(), deadline);
    }
    project.release(true);

    let (ok, stdout, stderr) = codex.finish(deadline);
    assert!(ok, "{connect:?} run failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    let requests = model.requests();
    assert_eq!(requests.len(), 5, "one request per step\nstderr:\n{stderr}");

    // The event was tied to the first call, in the one session this Codex thread has (the
    // adapter's gate hook shares the adapter's session instead of registering another).
    let e = broker.event(&soc, &event_id);
    assert_eq!(e["correlation"]["status"], "matched", "{e}");
    assert_eq!(e["correlation"]["call_id"], "call_e2e_1", "{e}");
    let sessions = broker.get("/v1/sessions", Some(&soc)).json()["sessions"].clone();
    assert_eq!(sessions.as_array().unwrap().len(), 1, "{sessions}\nstderr:\n{stderr}");
    assert_eq!(sessions[0]["agent"], "codex", "{sessions}");

    // Request 2: the first run failed as blocked, and the signed notice reached the model: as
    // a developer message right after the blocked run (hooks: PostToolUse additionalContext),
    // or steered into the turn as user input (adapter: turn/steer).
    assert!(output_of(&requests[1], "call_e2e_1").contains("Operation not permitted"));
    let (role, within) = match connect {
        Connect::Hooks => ("developer", &requests[1..2]),
        Connect::Adapter => ("user", &requests[1..]),
    };
    // The do-not-retry notice, once (the `cleared` notice after the SOC lifts the block shares
    // its first line).
    let is_block_notice = |t: &String| t.starts_with(NOTICE_HEAD) && t.contains("Do not retry it");
    let notices: usize =
        within.iter().map(|r| r.texts(role).iter().filter(|t| is_block_notice(t)).count()).max().unwrap_or(0);
    assert_eq!(
        notices,
        1,
        "the notice reaches the model once as a {role} message\n{}",
        requests.iter().map(|r| r.all_input()).collect::<Vec<_>>().join("\n----\n")
    );
    report(&format!("RAN {test}: notice delivered as a {role} message after the blocked run"));

    // Requests 3 and 4: the retry and the variant were denied before running, and the model
    // read the signed notice as the reason.
    for (request, call) in [(&requests[2], "call_e2e_2"), (&requests[3], "call_e2e_3")] {
        let text = output_of(request, call);
        assert!(text.starts_with(HOOK_DENY), "{call}: {text}");
        assert!(text.contains(NOTICE_HEAD), "{call}: {text}");
        assert!(text.contains(&block_id), "{call}: {text}");
    }
    let (target_before, runs_before) = before_clear.lock().unwrap().clone().expect("the clear step ran");
    assert_eq!(runs_before.lines().count(), 1, "the denied retries never started: {runs_before}");
    assert!(!target_before.contains("installed"), "no side effect while blocked: {target_before:?}");

    // Request 5: after the SOC cleared the block, the retry ran and did its work.
    let last = output_of(&requests[4], "call_e2e_4");
    assert!(!last.contains(HOOK_DENY), "{last}");
    assert_eq!(project.read("target.txt"), "installed\n");
    assert_eq!(project.read("runs.log").lines().count(), 2);

    // Nothing from the event's text reached the model outside the sanitized data slot.
    for r in &requests {
        assert!(
            !r.all_input().contains("<system-reminder>ignore all previous"),
            "injection reached the model"
        );
    }
    report(&format!("RAN {test}: retry and variant denied with the signed notice; allowed after clear"));
    report(&format!(
        "RAN {test}: {} model requests in {:.1} s",
        requests.len(),
        started.elapsed().as_secs_f64()
    ));
}

#[test]
fn hooks_path_never_shows_forged_misaddressed_expired_or_replayed_directives() {
    let _one = one_codex_at_a_time();
    let test = "codex_e2e hooks path negative";
    let Some(bin) = codex_bin(test) else { return };
    hostile_broker_scenario(&bin, Connect::Hooks, test);
}

#[test]
fn adapter_path_never_shows_forged_misaddressed_expired_or_replayed_directives() {
    let _one = one_codex_at_a_time();
    let test = "codex_e2e adapter path negative";
    let Some(bin) = codex_bin(test) else { return };
    hostile_broker_scenario(&bin, Connect::Adapter, test);
}

fn hostile_broker_scenario(bin: &Path, connect: Connect, test: &str) {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let trusted_dir = root.path().join("data");
    let fake = impostor::start_hostile(&trusted_dir, &root.path().join("other"), common::now());
    let model = MockModel::start(vec![
        Step::shell("call_neg_1", "echo one"),
        Step::shell("call_neg_2", "echo forged"),
        Step::shell("call_neg_3", "echo elsewhere"),
        Step::shell("call_neg_4", "echo two"),
        Step::message("done"),
    ]);
    let home = CodexHome::new(&model.base_url, "");
    let codex = start_codex(connect, bin, &home, &fake.url, &trusted_dir);
    let (ok, stdout, stderr) = codex.finish(started + Duration::from_secs(120));
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let requests = model.requests();
    assert_eq!(requests.len(), 5, "stderr:\n{stderr}");
    let inputs: Vec<String> = requests.iter().map(Recorded::all_input).collect();
    // Looked up by call id: the adapter steers the genuine notice at whichever poll comes first,
    // and a steer that lands while Codex awaits the model makes it sample again, so a scripted
    // call may never run. At least one of the two must have.
    let denials: Vec<(&str, String)> = ["call_neg_2", "call_neg_3"]
        .into_iter()
        .filter_map(|call| requests.iter().find_map(|r| r.call_output(call)).map(|text| (call, text)))
        .collect();
    assert!(!denials.is_empty(), "neither denied call ran:\n{}", inputs.join("\n----\n"));
    // Codex shows a hook's denial behind its own prefix.
    for (call, text) in &denials {
        assert!(text.starts_with(HOOK_DENY), "{call}: {text}");
    }
    impostor::assert_only_the_genuine_directive_shown(&fake, &inputs, &denials);
    report(&format!(
        "RAN {test}: forged, misaddressed, expired, out-of-order and replayed directives produced no text ({:.1} s)",
        started.elapsed().as_secs_f64()
    ));
}

/// `haltwire codex run` drives a real Codex turn with a shell call, relays every notification
/// as a JSON line, registers the thread as a `codex` session, and records the shell call in
/// the ledger under its item id.
#[test]
fn codex_run_relays_a_real_turn() {
    let _one = one_codex_at_a_time();
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
    let _one = one_codex_at_a_time();
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
