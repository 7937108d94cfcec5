//! A scripted stand-in for the OpenAI Responses API, for driving the real Codex CLI offline.
//!
//! Codex POSTs `<base_url>/responses` and reads a server-sent-event stream back. Each request
//! takes the next [`Step`] of the script: an optional callback runs first (so a test can act
//! between model turns, or hold the model while something happens), then the step's output
//! items are streamed as `response.output_item.done` frames followed by `response.completed`.
//! Once the script is used up every further request gets a short assistant message, so a turn
//! always ends. Every request is recorded (headers and JSON body) for assertions.
//!
//! It deliberately speaks only the few frames Codex 0.169 needs (shapes from
//! `shared/reference/codex-app-server.md` §b); it is not a general Responses API.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Runs before a step's reply, with the request that consumed the step.
pub type StepHook = Box<dyn FnOnce(&Recorded) + Send>;

/// One scripted model answer.
pub struct Step {
    items: Vec<Value>,
    before: Option<StepHook>,
}

impl Step {
    /// The model calls Codex's shell tool (`exec_command`) with `cmd`. The yield time is long so
    /// a command that waits for the test is not reported as "still running".
    pub fn shell(call_id: &str, cmd: &str) -> Step {
        let args = json!({"cmd": cmd, "yield_time_ms": 30000, "login": false}).to_string();
        Step::items(vec![
            json!({"type": "function_call", "call_id": call_id, "name": "exec_command", "arguments": args}),
        ])
    }

    /// The model asks for `cmd` with escalated permissions, which makes Codex ask the client for
    /// approval under `approval_policy = "on-request"`.
    pub fn shell_escalated(call_id: &str, cmd: &str) -> Step {
        let args = json!({"cmd": cmd, "yield_time_ms": 30000, "login": false,
            "sandbox_permissions": "require_escalated", "justification": "needs it"})
        .to_string();
        Step::items(vec![
            json!({"type": "function_call", "call_id": call_id, "name": "exec_command", "arguments": args}),
        ])
    }

    /// The model answers with text and ends its turn.
    pub fn message(text: &str) -> Step {
        Step::items(vec![json!({"type": "message", "role": "assistant", "id": format!("msg_{}", next_id()),
            "content": [{"type": "output_text", "text": text}]})])
    }

    /// Raw output items.
    pub fn items(items: Vec<Value>) -> Step {
        Step { items, before: None }
    }

    /// Runs `hook` (on the mock's thread) before answering; it may block to hold the model.
    pub fn before(mut self, hook: impl FnOnce(&Recorded) + Send + 'static) -> Step {
        self.before = Some(Box::new(hook));
        self
    }
}

fn next_id() -> usize {
    static N: AtomicUsize = AtomicUsize::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// One request Codex sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn input(&self) -> &[Value] {
        self.body["input"].as_array().map(Vec::as_slice).unwrap_or(&[])
    }

    /// The text of every message with this role, in order.
    pub fn texts(&self, role: &str) -> Vec<String> {
        self.input()
            .iter()
            .filter(|i| i["type"] == "message" && i["role"] == role)
            .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["text"].as_str().map(str::to_string))
            .collect()
    }

    /// The output Codex reported for a tool call, if this request carries it.
    pub fn call_output(&self, call_id: &str) -> Option<String> {
        self.input().iter().find(|i| i["type"] == "function_call_output" && i["call_id"] == call_id).map(
            |i| match &i["output"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        )
    }

    /// Everything in `input` as one string, for "does this text appear anywhere" checks.
    pub fn all_input(&self) -> String {
        self.body["input"].to_string()
    }
}

struct Shared {
    script: Mutex<std::collections::VecDeque<Step>>,
    requests: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    stop: AtomicBool,
}

/// The running mock; stops accepting on drop.
pub struct MockModel {
    /// Base URL for Codex's provider config (`…/v1`).
    pub base_url: String,
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
}

impl MockModel {
    pub fn start(steps: Vec<Step>) -> MockModel {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind mock model");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script: Mutex::new(steps.into()),
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = accept_shared.clone();
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        MockModel { base_url: format!("http://{addr}/v1"), shared, addr }
    }

    /// Adds steps to the end of the script.
    pub fn push(&self, step: Step) {
        self.shared.script.lock().unwrap().push_back(step);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived; panics after `timeout`.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let mut got = self.shared.requests.lock().unwrap();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "mock model: expected {n} requests, got {}", got.len());
            got = self.shared.arrived.wait_timeout(got, left).unwrap().0;
        }
        got.clone()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone stream"));
    let Some(request) = read_request(&mut reader) else { return };
    let step = shared.script.lock().unwrap().pop_front();
    {
        let mut all = shared.requests.lock().unwrap();
        all.push(request.clone());
        shared.arrived.notify_all();
    }
    let step = step.unwrap_or_else(|| Step::message("done"));
    if let Some(hook) = step.before {
        hook(&request);
    }
    let mut out = conn;
    let _ = write_stream(&mut out, &step.items);
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let body = if let Some(len) = find("content-length") {
        let mut buf = vec![0u8; len.parse().ok()?];
        reader.read_exact(&mut buf).ok()?;
        buf
    } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        read_chunked(reader)?
    } else {
        Vec::new()
    };
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Recorded { path, headers, body })
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn write_stream(out: &mut TcpStream, items: &[Value]) -> std::io::Result<()> {
    let id = format!("resp_{}", next_id());
    let mut body = String::new();
    let mut frame = |v: Value| {
        body.push_str(&format!("event: {}\ndata: {}\n\n", v["type"].as_str().unwrap_or(""), v));
    };
    frame(json!({"type": "response.created", "response": {"id": id}}));
    for item in items {
        frame(json!({"type": "response.output_item.done", "item": item}));
    }
    frame(json!({"type": "response.completed", "response": {"id": id, "usage": {"input_tokens": 10,
        "input_tokens_details": null, "output_tokens": 5, "output_tokens_details": null, "total_tokens": 15}}}));
    write!(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{body}")?;
    out.flush()
}
