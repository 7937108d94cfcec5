//! `haltwire codex run`: one headless task in a fresh Codex thread.
//!
//! Starts a thread, runs the prompt as one turn, and writes every message the server sends
//! (notifications and its requests) to the output as JSON lines, exactly as received. Approval
//! requests are answered by the [`Guard`] (no human is there to ask); other server requests get
//! a JSON-RPC error. Notices that arrive while the turn runs are steered in; one that arrives
//! too late for the turn starts a follow-up turn, so the model always sees it before the run
//! ends. A `cleared` notice is never steered and never starts a turn. The run ends when a turn
//! completes with no restriction left to deliver.
//!
//! It does not print anything of its own on the output: that stream is the server's.

use super::conn::{ConnError, Event};
use super::guard::Guard;
use super::protocol::{ThreadStartParams, ThreadStartResult, TurnStartParams, TurnStartResult, UserInput};
use super::rpc::{FrameError, RpcError};
use super::server::AppServer;
use super::thread::{Observed, ThreadState};
use serde_json::Value;
use std::io::Write;
use std::time::{Duration, Instant};

/// Options of one run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Working directory of the thread (the server's own when `None`).
    pub cwd: Option<String>,
    /// The task.
    pub prompt: String,
    /// How often the guard is asked for new notices while the turn runs.
    pub poll: Duration,
    /// Give up after this long (the server is left to the caller to stop).
    pub timeout: Option<Duration>,
    /// `thread/start`'s `config` (the gate hook's trust, [`super::hooks::gate_thread_config`]).
    pub thread_config: Option<Value>,
    /// Refuse to run the prompt unless Codex reports the gate hook as running in the thread.
    pub require_gate: bool,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The thread (= Codex session id).
    pub thread_id: String,
    /// Status of the last turn (`completed`, `failed`, `interrupted`).
    pub status: String,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error("codex app-server exited during the run: {reason}{}", tail(.stderr))]
    ServerDied { reason: FrameError, stderr: String },
    #[error("the run did not finish within {0:?}")]
    Timeout(Duration),
    #[error("unexpected answer to `{method}`: {detail}")]
    BadReply { method: String, detail: String },
    #[error("writing the output failed: {0}")]
    Output(std::io::Error),
    #[error("refusing to run unprotected: {0} (pass --no-broker to run without haltwire)")]
    Unprotected(String),
}

fn tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("\ncodex stderr:\n{t}")
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the task to the end.
pub fn run_task(
    server: &AppServer,
    guard: &mut dyn Guard,
    opts: &RunOptions,
    out: &mut dyn Write,
) -> Result<RunOutcome, RunError> {
    let conn = server.conn();
    let started = Instant::now();
    let params =
        ThreadStartParams { cwd: opts.cwd.clone(), config: opts.thread_config.clone(), ..Default::default() };
    let reply =
        conn.request("thread/start", serde_json::to_value(params).unwrap_or_default(), REQUEST_TIMEOUT)?;
    let thread: ThreadStartResult = parse(reply, "thread/start")?;
    let mut state = ThreadState::new(&thread.thread.id);
    if opts.require_gate {
        super::hooks::check_gate(conn, &state.thread_id).map_err(|e| RunError::Unprotected(e.to_string()))?;
    }
    guard
        .thread_started(&state.thread_id, thread.cwd.as_deref().or(opts.cwd.as_deref()))
        .map_err(RunError::Unprotected)?;
    start_turn(conn, &mut state, guard, vec![UserInput::text(opts.prompt.clone())])?;
    let result = drive(server, guard, opts, out, &mut state, started);
    guard.thread_ended(&state.thread_id);
    result
}

fn drive(
    server: &AppServer,
    guard: &mut dyn Guard,
    opts: &RunOptions,
    out: &mut dyn Write,
    state: &mut ThreadState,
    started: Instant,
) -> Result<RunOutcome, RunError> {
    let conn = server.conn();
    let mut last_poll = Instant::now();
    loop {
        if let Some(limit) = opts.timeout {
            if started.elapsed() > limit {
                return Err(RunError::Timeout(limit));
            }
        }
        match conn.next_event(opts.poll) {
            None => {}
            Some(Event::Closed(reason)) => {
                // Let the stderr reader catch up with a dying server's last words.
                std::thread::sleep(Duration::from_millis(200));
                return Err(RunError::ServerDied { reason, stderr: server.stderr_tail() });
            }
            Some(Event::Notification { method, params, raw }) => {
                emit(out, &raw)?;
                if let Observed::TurnCompleted(status) = state.observe(guard, &method, &params) {
                    // A notice may have arrived as the turn ended: look once more; a restriction
                    // gets a follow-up turn, a lifted one waits for the user's next turn.
                    state.deliver(conn, guard)?;
                    if !state.carries_a_restriction() {
                        return Ok(RunOutcome { thread_id: state.thread_id.clone(), status });
                    }
                    start_turn(conn, state, guard, Vec::new())?;
                }
            }
            Some(Event::Request { id, method, params, raw }) => {
                emit(out, &raw)?;
                let outcome = match state.approval(guard, &method, &params) {
                    Some(result) => Ok(result),
                    None => Err(RpcError {
                        code: -32601,
                        message: format!("`{method}` is not supported by haltwire codex run (headless)"),
                        data: None,
                    }),
                };
                conn.respond(id, outcome)?;
            }
        }
        if last_poll.elapsed() >= opts.poll {
            last_poll = Instant::now();
            state.deliver(conn, guard)?;
        }
    }
}

/// Starts a turn with the carried notices first, then `input`.
fn start_turn(
    conn: &super::conn::Connection,
    state: &mut ThreadState,
    guard: &mut dyn Guard,
    input: Vec<UserInput>,
) -> Result<(), RunError> {
    let mut all = state.carried_input();
    all.extend(input);
    let params = TurnStartParams { thread_id: state.thread_id.clone(), input: all };
    let reply =
        conn.request("turn/start", serde_json::to_value(params).unwrap_or_default(), REQUEST_TIMEOUT)?;
    let turn: TurnStartResult = parse(reply, "turn/start")?;
    state.active_turn = Some(turn.turn.id);
    state.carried_delivered(guard);
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(value: Value, method: &str) -> Result<T, RunError> {
    serde_json::from_value(value)
        .map_err(|e| RunError::BadReply { method: method.into(), detail: e.to_string() })
}

fn emit(out: &mut dyn Write, raw: &Value) -> Result<(), RunError> {
    let mut line = serde_json::to_vec(raw).unwrap_or_default();
    line.push(b'\n');
    out.write_all(&line).and_then(|()| out.flush()).map_err(RunError::Output)
}
