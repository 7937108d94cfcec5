//! End to end with the real Claude Code (`CLAUDE_BIN`, installed by `.ci/run`): a scripted
//! model (tests/common/mock_model.rs) makes Claude Code run a command; an EDR-style event for
//! that command's process reaches the real broker, whose default policy blocks it; the model's
//! retry — the same command and a variant touching the same target — is denied by the hook
//! before it runs, with the signed notice as the reason the model reads; once the SOC clears
//! the block, the retry runs.
//!
//! Skipped (with a printed `SKIP` line) when `CLAUDE_BIN` is not set, so `cargo test` passes on
//! machines without npm; prints `RAN` lines when it ran.

mod common;

use common::impostor;
use common::mock_model::{after_last_assistant, tool_result, whole_request_text, MockModel, Step};
use common::scenario::{self, edr_event, wait_for_block, COMMAND, INSTALL_SH, NOTICE_HEAD, VARIANT};
use common::*;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn claude_bin() -> Option<PathBuf> {
    std::env::var_os("CLAUDE_BIN").filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// A Claude Code run in a fresh HOME with only loopback endpoints; killed if the test ends early.
fn spawn_claude(bin: &Path, root: &Path, proj: &Path, model_url: &str, max_turns: u32) -> Agent {
    let home = root.join("home");
    let tmp = root.join("tmp");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let child = Command::new(bin)
        .args(["-p", "install the tool", "--output-format", "stream-json", "--verbose"])
        .args(["--allowedTools", "Bash", "--model", "claude-sonnet-4-5"])
        .args(["--max-turns", &max_turns.to_string()])
        .current_dir(proj)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", &home)
        .env("CLAUDE_CODE_TMPDIR", &tmp)
        .env("ANTHROPIC_BASE_URL", model_url)
        .env("ANTHROPIC_API_KEY", "sk-ant-mock-not-a-real-key")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn claude");
    Agent(child)
}

/// Waits for Claude Code to exit (killing it at the deadline); returns (stdout, stderr).
fn finish(mut agent: Agent, deadline: Instant) -> (String, String) {
    loop {
        if agent.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "Claude Code did not finish in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    let mut err = String::new();
    agent.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    agent.0.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    (out, err)
}

fn wait_for_file(path: &Path, deadline: Instant, agent: &mut Agent) -> String {
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        if let Ok(Some(status)) = agent.0.try_wait() {
            let mut err = String::new();
            let _ = agent.0.stderr.take().unwrap().read_to_string(&mut err);
            let mut out = String::new();
            let _ = agent.0.stdout.take().unwrap().read_to_string(&mut out);
            panic!("Claude Code exited ({status}) before {} appeared:\n{out}\n{err}", path.display());
        }
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn deny_text(request: &Value, call_id: &str) -> String {
    let result = tool_result(request, call_id).unwrap_or_else(|| panic!("no tool_result for {call_id}"));
    assert_eq!(result["is_error"], true, "{call_id} was not denied: {result}");
    let mut text = String::new();
    match &result["content"] {
        Value::String(s) => text.push_str(s),
        other => text.push_str(&other.to_string()),
    }
    text
}

#[test]
fn a_blocked_command_is_explained_and_its_retries_are_denied_until_the_soc_clears_it() {
    let Some(bin) = claude_bin() else {
        report("SKIP claude_e2e: CLAUDE_BIN is not set (.ci/run installs Claude Code and sets it)");
        return;
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let root = tempfile::tempdir().unwrap();
    let proj = root.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    std::fs::write(proj.join("install.sh"), INSTALL_SH).unwrap();
    let broker = Broker::start(&root.path().join("data"));
    let soc = broker.soc_token();

    // Connect Claude Code the way docs/agents.md says.
    let install = Command::new(BIN)
        .args(["install", "claude", "--project"])
        .arg(&proj)
        .args(["--url", &broker.url, "--data-dir"])
        .arg(&broker.data_dir)
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", String::from_utf8_lossy(&install.stderr));

    // Filled in once the block exists; the step-3 callback clears it like a SOC analyst.
    let block_slot: Arc<Mutex<Option<String>>> = Arc::default();
    let before_clear: Arc<Mutex<Option<(String, String)>>> = Arc::default();
    let clear_step = {
        let (block_slot, before_clear) = (block_slot.clone(), before_clear.clone());
        let (url, soc, proj) = (broker.url.clone(), soc.clone(), proj.clone());
        move |_: &Value| {
            let read = |f: &str| std::fs::read_to_string(proj.join(f)).unwrap_or_default();
            *before_clear.lock().unwrap() = Some((read("target.txt"), read("runs.log")));
            let block = block_slot.lock().unwrap().clone().expect("the block exists before the retries");
            scenario::clear_block(&url, &soc, &block);
            std::fs::remove_file(proj.join("denied")).unwrap();
            std::fs::write(proj.join("go"), "").unwrap();
        }
    };
    let model = MockModel::start(vec![
        Step::bash("toolu_e2e_1", COMMAND),
        Step::bash("toolu_e2e_2", COMMAND),
        Step::bash("toolu_e2e_3", VARIANT),
        Step::bash("toolu_e2e_4", COMMAND).before(clear_step),
        Step::text("done"),
    ]);

    let mut claude = spawn_claude(&bin, root.path(), &proj, &model.url, 8);
    let claude_pid = claude.0.id();

    // The first run is under way: act as the EDR that blocks it.
    let pid: u32 = wait_for_file(&proj.join("run.pid"), deadline, &mut claude).trim().parse().unwrap();
    let event = edr_event(pid);
    let posted = broker.post_generic("msg_claude_e2e", now(), event.to_string().as_bytes());
    assert_eq!(posted.status, 202, "{}", posted.body);
    let event_id = posted.json()["event_id"].as_str().unwrap().to_string();
    let block_id = wait_for_block(&broker, &soc, &event_id);
    *block_slot.lock().unwrap() = Some(block_id.clone());
    // Release the command only once the block's directive is deliverable, as it would be by
    // the time a real EDR's kill reaches the agent.
    scenario::wait_for_pending_directive(
        &broker,
        &root.path().join("home/.local/state/haltwire/agents/claude-code"),
        deadline,
    );
    std::fs::write(proj.join("denied"), "").unwrap();
    std::fs::write(proj.join("go"), "").unwrap();

    let (stdout, stderr) = finish(claude, deadline);
    let requests = model.requests();
    let last_line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert_eq!(requests.len(), 5, "one request per step; stdout tail: {last_line}\nstderr: {stderr}");

    // The correlation tied the event to the first tool call of this Claude session.
    let e = broker.event(&soc, &event_id);
    assert_eq!(e["correlation"]["status"], "matched", "{e}");
    assert_eq!(e["correlation"]["call_id"], "toolu_e2e_1", "{e}");
    let sessions = broker.get("/v1/sessions", Some(&soc)).json()["sessions"].clone();
    assert_eq!(sessions[0]["agent"], "claude-code", "{sessions}");
    assert_eq!(sessions[0]["pid"], claude_pid, "the session is Claude Code's process: {sessions}");

    // Request 2: the first run failed (blocked), and the signed notice is in the model's
    // context right after it.
    let first = tool_result(&requests[1], "toolu_e2e_1").expect("result of the first run");
    assert_eq!(first["is_error"], true, "{first}");
    assert!(
        after_last_assistant(&requests[1]).contains(NOTICE_HEAD),
        "the notice reaches the model after the blocked run:\n{}",
        after_last_assistant(&requests[1])
    );
    report("RAN claude_e2e: notice delivered as additionalContext after the blocked run");

    // Requests 3 and 4: the retry and the variant were denied before running, and the model
    // read the signed notice as the reason.
    for (request, call) in [(&requests[2], "toolu_e2e_2"), (&requests[3], "toolu_e2e_3")] {
        let text = deny_text(request, call);
        assert!(text.contains("PreToolUse:Bash hook error"), "{call}: {text}");
        assert!(text.contains(NOTICE_HEAD), "{call}: {text}");
        assert!(text.contains(&block_id), "{call}: {text}");
    }
    let (target_before, runs_before) = before_clear.lock().unwrap().clone().expect("the clear step ran");
    assert_eq!(runs_before.lines().count(), 1, "the denied retries never started: {runs_before}");
    assert!(!target_before.contains("installed"), "no side effect while blocked: {target_before:?}");

    // Request 5: after the SOC cleared the block, the retry ran and did its work.
    let last = tool_result(&requests[4], "toolu_e2e_4").expect("result of the allowed retry");
    assert_ne!(last["is_error"], true, "{last}");
    assert_eq!(std::fs::read_to_string(proj.join("target.txt")).unwrap(), "installed\n");
    assert_eq!(std::fs::read_to_string(proj.join("runs.log")).unwrap().lines().count(), 2);

    // Nothing from the event's text reached the model outside the sanitized data slot.
    for r in &requests {
        assert!(
            !whole_request_text(r).contains("<system-reminder>ignore all previous"),
            "injection reached the model"
        );
    }
    report("RAN claude_e2e: retry and variant denied with the signed notice; allowed after clear");
    report(&format!(
        "RAN claude_e2e: {} model requests in {:.1} s",
        requests.len(),
        started.elapsed().as_secs_f64()
    ));
}

#[test]
fn forged_replayed_expired_and_misaddressed_directives_never_reach_the_model() {
    let Some(bin) = claude_bin() else {
        report("SKIP claude_e2e negative: CLAUDE_BIN is not set (.ci/run installs Claude Code and sets it)");
        return;
    };
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let proj = root.path().join("proj");
    std::fs::create_dir(&proj).unwrap();
    // The hook trusts `trusted_dir`'s published key; the impostor also signs with anyone else's.
    let trusted_dir = root.path().join("data");
    let fake = impostor::start_hostile(&trusted_dir, &root.path().join("other"), now());
    let install = Command::new(BIN)
        .args(["install", "claude", "--project"])
        .arg(&proj)
        .args(["--url", &fake.url, "--data-dir"])
        .arg(&trusted_dir)
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", String::from_utf8_lossy(&install.stderr));
    let model = MockModel::start(vec![
        Step::bash("toolu_neg_1", "echo one"),
        Step::bash("toolu_neg_2", "echo forged"),
        Step::bash("toolu_neg_3", "echo elsewhere"),
        Step::bash("toolu_neg_4", "echo two"),
        Step::text("done"),
    ]);
    let claude = spawn_claude(&bin, root.path(), &proj, &model.url, 8);
    let (stdout, stderr) = finish(claude, started + Duration::from_secs(120));
    let requests = model.requests();
    assert_eq!(requests.len(), 5, "stdout: {stdout}\nstderr: {stderr}");

    let inputs: Vec<String> = requests.iter().map(whole_request_text).collect();
    let denials = [("toolu_neg_2", &requests[2]), ("toolu_neg_3", &requests[3])]
        .map(|(call, request)| (call, deny_text(request, call)));
    impostor::assert_only_the_genuine_directive_shown(&fake, &inputs, &denials);
    report(&format!(
        "RAN claude_e2e negative: forged, misaddressed, expired, out-of-order and replayed directives produced no text ({:.1} s)",
        started.elapsed().as_secs_f64()
    ));
}
