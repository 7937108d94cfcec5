//! `haltwire codex serve`: a JSON-RPC proxy that an orchestrator talks to instead of
//! `codex app-server`, with haltwire in the middle.
//!
//! haltwire performs the handshake itself (so an old server is refused before the orchestrator
//! does anything) and answers the orchestrator's `initialize` with the server's answer. Every
//! orchestrator request is forwarded under a fresh id of ours and its answer mapped back, so
//! requests haltwire sends on its own (`turn/steer`) can never collide with the orchestrator's
//! ids. Server notifications are relayed unchanged after haltwire has looked at them. Approval
//! requests the [`Guard`] declines are answered by haltwire and never reach the orchestrator
//! (nor does their `serverRequest/resolved`); approved ones go to the orchestrator, which may
//! still decline. Notices are steered into running turns, or put in front of the input of the
//! orchestrator's next `turn/start` on that thread.
//!
//! With a broker, every thread the orchestrator starts gets the gate hook's trust in its
//! `config`, and is checked (`hooks/list`) and registered before the orchestrator learns its
//! id; a thread that cannot be protected is answered with an error instead.
//!
//! It does not interpret any other method.

use super::conn::{Connection, Event};
use super::guard::{Guard, Notice};
use super::protocol::{ThreadStartResult, TurnStartResult, UserInput};
use super::rpc::{FrameError, LineReader, Message, RequestId, RpcError};
use super::server::AppServer;
use super::thread::{Observed, ThreadState};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an orchestrator request may wait for the server.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(600);

/// Why the proxy stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("codex app-server exited: {reason}{}", tail(.stderr))]
    ServerDied { reason: FrameError, stderr: String },
    #[error("writing to the orchestrator failed: {0}")]
    Output(std::io::Error),
}

fn tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!("\ncodex stderr:\n{t}")
    }
}

struct Shared {
    guard: Box<dyn Guard>,
    threads: HashMap<String, ThreadState>,
    /// Server requests haltwire answered itself; their `serverRequest/resolved` is dropped.
    answered: HashSet<RequestId>,
    /// Merged into the `config` of every thread the orchestrator starts (the gate's trust).
    thread_config: Option<Value>,
}

/// How the proxy protects the threads it sees.
pub struct Protection {
    /// `config` entries added to `thread/start|resume|fork` ([`super::hooks::gate_thread_config`]).
    pub thread_config: Option<Value>,
}

type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Runs the proxy until the orchestrator closes its input (Ok) or the server dies (Err).
pub fn serve(
    server: &AppServer,
    guard: Box<dyn Guard>,
    protection: Protection,
    input: impl Read + Send + 'static,
    output: Box<dyn Write + Send>,
    poll: Duration,
) -> Result<(), ProxyError> {
    let conn = server.conn().clone();
    let out: Out = Arc::new(Mutex::new(output));
    let shared = Arc::new(Mutex::new(Shared {
        guard,
        threads: HashMap::new(),
        answered: HashSet::new(),
        thread_config: protection.thread_config,
    }));
    let init = serde_json::to_value(
        serde_json::json!({"userAgent": server.info.user_agent, "codexHome": server.info.codex_home}),
    )
    .unwrap_or_default();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    {
        let (conn, out, shared) = (conn.clone(), out.clone(), shared.clone());
        std::thread::spawn(move || {
            client_loop(LineReader::new(input), &conn, &out, &shared, &init);
            let _ = done_tx.send(());
        });
    }
    let mut last_poll = Instant::now();
    loop {
        if done_rx.try_recv().is_ok() {
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<String> = s.threads.keys().cloned().collect();
            for id in ids {
                s.guard.thread_ended(&id);
            }
            return Ok(());
        }
        match conn.next_event(poll) {
            None => {}
            Some(Event::Closed(reason)) => {
                std::thread::sleep(Duration::from_millis(200));
                return Err(ProxyError::ServerDied { reason, stderr: server.stderr_tail() });
            }
            Some(Event::Notification { method, params, raw }) => {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                if method == "serverRequest/resolved" {
                    let id = serde_json::from_value::<RequestId>(params["requestId"].clone()).ok();
                    if id.is_some_and(|id| s.answered.remove(&id)) {
                        continue;
                    }
                }
                let Shared { guard, threads, .. } = &mut *s;
                if let Some(thread) = params["threadId"].as_str().and_then(|t| threads.get_mut(t)) {
                    if let Observed::TurnCompleted(_) = thread.observe(guard.as_mut(), &method, &params) {
                        let _ = thread.deliver(&conn, guard.as_mut());
                    }
                }
                drop(s);
                write_value(&out, &raw)?;
            }
            Some(Event::Request { id, method, params, raw }) => {
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                let Shared { guard, threads, answered, .. } = &mut *s;
                let thread = params["threadId"].as_str().and_then(|t| threads.get_mut(t));
                let decision = thread.and_then(|t| t.approval(guard.as_mut(), &method, &params));
                match decision {
                    Some(result) if result["decision"] == "decline" => {
                        answered.insert(id.clone());
                        let _ = conn.respond(id, Ok(result));
                    }
                    _ => {
                        drop(s);
                        write_value(&out, &raw)?;
                    }
                }
            }
        }
        if last_poll.elapsed() >= poll {
            last_poll = Instant::now();
            let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
            let Shared { guard, threads, .. } = &mut *s;
            for thread in threads.values_mut() {
                let _ = thread.deliver(&conn, guard.as_mut());
            }
        }
    }
}

/// Reads the orchestrator's messages until its input ends.
fn client_loop<R: Read>(
    mut input: LineReader<R>,
    conn: &Arc<Connection>,
    out: &Out,
    shared: &Arc<Mutex<Shared>>,
    init: &Value,
) {
    let mut initialized = false;
    while let Ok(line) = input.next_line() {
        let message = match Message::parse(&line) {
            Ok(m) => m,
            Err(e) => {
                let _ = write_message(
                    out,
                    &error_reply(RequestId::Str(String::new()), -32700, &format!("parse error: {e}")),
                );
                continue;
            }
        };
        match message {
            Message::Request { id, method, .. } if method == "initialize" => {
                let reply = if initialized {
                    error_reply(id, -32600, "Already initialized")
                } else {
                    initialized = true;
                    Message::Response { id, outcome: Ok(init.clone()) }
                };
                let _ = write_message(out, &reply);
            }
            Message::Request { id, method, mut params } => {
                let carried = if method == "turn/start" { carry_into(shared, &mut params) } else { None };
                if is_thread_opening(&method) {
                    add_thread_config(shared, &mut params);
                }
                let turn_thread = params["threadId"].as_str().map(str::to_string);
                match conn.send_request(&method, params) {
                    Ok(pending) => {
                        let (out, shared, conn) = (out.clone(), shared.clone(), conn.clone());
                        std::thread::spawn(move || {
                            let outcome = match pending.wait(FORWARD_TIMEOUT) {
                                Ok(result) => {
                                    match after_reply(&shared, &conn, &method, &result, turn_thread, carried)
                                    {
                                        Ok(()) => Ok(result),
                                        Err(message) => Err(RpcError { code: -32603, message, data: None }),
                                    }
                                }
                                Err(e) => {
                                    put_back(&shared, turn_thread, carried);
                                    match e {
                                        super::conn::ConnError::Rpc { error, .. } => Err(error),
                                        other => Err(RpcError {
                                            code: -32603,
                                            message: other.to_string(),
                                            data: None,
                                        }),
                                    }
                                }
                            };
                            let _ = write_message(&out, &Message::Response { id, outcome });
                        });
                    }
                    Err(e) => {
                        let _ = write_message(out, &error_reply(id, -32603, &e.to_string()));
                    }
                }
            }
            Message::Notification { method, .. } if method == "initialized" => {}
            other => {
                let _ = conn.send(&other);
            }
        }
    }
}

/// Moves a thread's carried notices in front of a `turn/start` input; returns them, to be
/// acknowledged once the server accepted the turn (or put back if it refused).
fn carry_into(shared: &Arc<Mutex<Shared>>, params: &mut Value) -> Option<Vec<Notice>> {
    let thread_id = params["threadId"].as_str()?.to_string();
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    let thread = s.threads.get_mut(&thread_id)?;
    if thread.carry.is_empty() {
        return None;
    }
    let notices = std::mem::take(&mut thread.carry);
    let mut input: Vec<Value> =
        notices.iter().filter_map(|n| serde_json::to_value(UserInput::text(n.text.clone())).ok()).collect();
    input.extend(params["input"].as_array().cloned().unwrap_or_default());
    params["input"] = Value::Array(input);
    Some(notices)
}

fn put_back(shared: &Arc<Mutex<Shared>>, thread_id: Option<String>, carried: Option<Vec<Notice>>) {
    let (Some(thread_id), Some(carried)) = (thread_id, carried) else { return };
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(thread) = s.threads.get_mut(&thread_id) {
        let later = std::mem::replace(&mut thread.carry, carried);
        thread.carry.extend(later);
    }
}

fn is_thread_opening(method: &str) -> bool {
    matches!(method, "thread/start" | "thread/resume" | "thread/fork")
}

/// Adds the protection's entries to the request's `config`, keeping the orchestrator's own.
fn add_thread_config(shared: &Arc<Mutex<Shared>>, params: &mut Value) {
    let s = shared.lock().unwrap_or_else(|p| p.into_inner());
    let Some(Value::Object(ours)) = &s.thread_config else { return };
    if !params.is_object() {
        *params = Value::Object(Default::default());
    }
    let config = &mut params["config"];
    if !config.is_object() {
        *config = Value::Object(Default::default());
    }
    if let Value::Object(config) = config {
        for (k, v) in ours {
            config.insert(k.clone(), v.clone());
        }
    }
}

/// Learns from the answers to the orchestrator's requests. An error is what the orchestrator
/// gets instead of the answer: a thread haltwire could not protect.
fn after_reply(
    shared: &Arc<Mutex<Shared>>,
    conn: &Connection,
    method: &str,
    result: &Value,
    turn_thread: Option<String>,
    carried: Option<Vec<Notice>>,
) -> Result<(), String> {
    let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
    let Shared { guard, threads, thread_config, .. } = &mut *s;
    match method {
        m if is_thread_opening(m) => {
            if let Ok(started) = serde_json::from_value::<ThreadStartResult>(result.clone()) {
                let id = started.thread.id.clone();
                if !threads.contains_key(&id) {
                    if thread_config.is_some() {
                        super::hooks::check_gate(conn, &id)
                            .map_err(|e| format!("haltwire: thread not protected: {e}"))?;
                    }
                    guard
                        .thread_started(&id, started.cwd.as_deref())
                        .map_err(|e| format!("haltwire: thread not protected: {e}"))?;
                    threads.insert(id.clone(), ThreadState::new(&id));
                }
            }
        }
        "turn/start" => {
            if let Ok(turn) = serde_json::from_value::<TurnStartResult>(result.clone()) {
                if let Some(thread) = turn_thread.and_then(|t| threads.get_mut(&t)) {
                    thread.active_turn = Some(turn.turn.id);
                    for notice in carried.unwrap_or_default() {
                        guard.delivered(&thread.thread_id, &notice);
                    }
                    let _ = thread.deliver(conn, guard.as_mut());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn error_reply(id: RequestId, code: i64, message: &str) -> Message {
    Message::Response { id, outcome: Err(RpcError { code, message: message.into(), data: None }) }
}

fn write_message(out: &Out, message: &Message) -> Result<(), ProxyError> {
    write_value(out, &message.to_value())
}

fn write_value(out: &Out, value: &Value) -> Result<(), ProxyError> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
    w.write_all(&line).and_then(|()| w.flush()).map_err(ProxyError::Output)
}
