//! `haltwire bench hook`: how long Claude Code waits for `haltwire hook claude` at `PreToolUse`,
//! from process start to decision, against a running broker.
//!
//! Each sample spawns the hook binary exactly as Claude Code does (a fresh process, the hook
//! JSON on stdin) and times spawn → exit; the decision is complete at exit. A `SessionStart`
//! first registers the session, so every measured call takes the steady-state path: read
//! stdin, load the session state file, record the call in the ledger, ask the gate, answer.
//! Alongside wall time it reports the children's CPU time (user + system, from `getrusage`),
//! which a busy machine disturbs far less than wall time.
//!
//! It measures; it does not judge (docs/performance.md holds the targets and the figures).

use super::stats::{micros, Latencies};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// What to run.
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// The `haltwire` binary to spawn.
    pub binary: PathBuf,
    /// Broker base URL.
    pub url: String,
    /// The broker's data directory (for its trust store).
    pub data_dir: PathBuf,
    /// Measured calls.
    pub runs: usize,
    /// Calls made first and left out.
    pub warmup: usize,
}

/// The figures.
#[derive(Debug, Clone)]
pub struct HookReport {
    pub wall: Latencies,
    /// Mean CPU time (user + system) of one hook process, µs.
    pub cpu_us_mean: u64,
    /// Calls whose answer was not an allow (should be 0: the bench session has no blocks).
    pub unexpected: usize,
}

impl HookReport {
    pub fn summary(&self) -> String {
        format!(
            "hook claude PreToolUse, process start to decision: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             CPU per call {:.2} ms; unexpected answers {}",
            self.wall.count(),
            self.wall.percentile_us(0.5) as f64 / 1000.0,
            self.wall.percentile_us(0.99) as f64 / 1000.0,
            self.wall.max_us() as f64 / 1000.0,
            self.cpu_us_mean as f64 / 1000.0,
            self.unexpected,
        )
    }

    pub fn to_json(&self) -> String {
        json!({
            "bench": "hook",
            "runs": self.wall.count(),
            "p50_us": self.wall.percentile_us(0.5),
            "p99_us": self.wall.percentile_us(0.99),
            "max_us": self.wall.max_us(),
            "cpu_us_mean": self.cpu_us_mean,
            "unexpected": self.unexpected,
        })
        .to_string()
    }
}

/// Runs the benchmark. The agent-state directory is a fresh temporary one.
pub fn run(settings: &HookSettings) -> std::io::Result<HookReport> {
    let state = tempdir()?;
    let cwd = std::env::current_dir()?;
    let session = format!("bench-{}", uuid::Uuid::now_v7());
    let base = json!({"session_id": session, "transcript_path": "/dev/null", "cwd": cwd, "permission_mode": "default"});
    let mut start = base.clone();
    start["hook_event_name"] = json!("SessionStart");
    start["source"] = json!("startup");
    spawn_hook(settings, &state, &start.to_string())?;

    let mut samples = Vec::with_capacity(settings.runs);
    let mut unexpected = 0;
    let mut cpu_measured = 0u64;
    for i in 0..settings.warmup + settings.runs {
        let mut input = base.clone();
        input["hook_event_name"] = json!("PreToolUse");
        input["tool_name"] = json!("Bash");
        input["tool_input"] = json!({"command": format!("ls -la src/{i}"), "description": "list"});
        input["tool_use_id"] = json!(format!("toolu_bench_{i}"));
        let text = input.to_string();
        let cpu_start = children_cpu_us();
        let started = Instant::now();
        let stdout = spawn_hook(settings, &state, &text)?;
        let took = started.elapsed();
        if i >= settings.warmup {
            samples.push(micros(took));
            cpu_measured += children_cpu_us().saturating_sub(cpu_start);
            if !stdout.trim().is_empty() {
                unexpected += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(HookReport {
        wall: Latencies::from_micros(samples),
        cpu_us_mean: cpu_measured / settings.runs.max(1) as u64,
        unexpected,
    })
}

fn spawn_hook(settings: &HookSettings, state: &std::path::Path, input: &str) -> std::io::Result<String> {
    let mut child = Command::new(&settings.binary)
        .args(["hook", "claude", "--url", &settings.url, "--data-dir"])
        .arg(&settings.data_dir)
        .env("HALTWIRE_STATE_DIR", state)
        .env_remove("CLAUDE_PID")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!("hook exited with {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// User + system CPU time of all waited-for children so far, µs.
fn children_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the struct we pass and has no other effects.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// A private scratch directory for the hook's session state (0700, as the hook requires).
fn tempdir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("haltwire-bench-hook-{}", uuid::Uuid::now_v7().simple()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}
