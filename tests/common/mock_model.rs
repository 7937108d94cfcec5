//! A scripted stand-in for the Anthropic Messages API, for running the real Claude Code against
//! loopback: `POST /v1/messages` answers with the SSE stream shapes Claude Code 2.1.328 accepts
//! (see `reference/claude-code-hooks.md` §b), every request body is recorded, and the step to
//! play is the number of assistant messages already in the conversation (so the mock is
//! stateless per request and a retried request replays its step).
//!
//! Each step may carry a callback that runs before the step's answer is sent, with the request
//! body, so a test can act between the model's turns (clear a block, check a file).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the model says at one step.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A tool call.
    ToolUse { id: String, name: String, input: Value },
    /// A final text answer (`end_turn`).
    Text(String),
}

/// A callback run before a step's answer, with the request body.
pub type StepHook = Box<dyn FnMut(&Value) + Send>;

/// One scripted model turn.
pub struct Step {
    pub reply: Reply,
    pub before: Option<StepHook>,
}

impl Step {
    pub fn bash(id: &str, command: &str) -> Step {
        Step {
            reply: Reply::ToolUse {
                id: id.into(),
                name: "Bash".into(),
                input: json!({"command": command, "description": "run the step"}),
            },
            before: None,
        }
    }

    pub fn text(text: &str) -> Step {
        Step { reply: Reply::Text(text.into()), before: None }
    }

    pub fn before(mut self, f: impl FnMut(&Value) + Send + 'static) -> Step {
        self.before = Some(Box::new(f));
        self
    }
}

/// The running mock. Stops accepting on drop.
pub struct MockModel {
    pub url: String,
    requests: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
}

impl MockModel {
    pub fn start(steps: Vec<Step>) -> MockModel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(Mutex::new(steps));
        let (reqs, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (reqs, steps) = (reqs.clone(), steps.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &reqs, &steps);
                });
            }
        });
        MockModel { url: format!("http://{addr}"), requests, stop, addr }
    }

    /// Every `POST /v1/messages` body so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockModel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(conn: TcpStream, requests: &Mutex<Vec<Value>>, steps: &Mutex<Vec<Step>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let body = if chunked { read_chunked(&mut reader)? } else { read_exact(&mut reader, length)? };
    let mut conn = conn;
    if method == "POST" && path.starts_with("/v1/messages") {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        requests.lock().unwrap().push(request.clone());
        let step = request["messages"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["role"] == "assistant").count())
            .unwrap_or(0);
        let reply = {
            let mut steps = steps.lock().unwrap();
            match steps.get_mut(step) {
                Some(s) => {
                    if let Some(f) = s.before.as_mut() {
                        f(&request);
                    }
                    s.reply.clone()
                }
                None => Reply::Text("done".into()),
            }
        };
        let model = request["model"].as_str().unwrap_or("claude-sonnet-4-5").to_string();
        let sse = sse(&reply, &model, step);
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{sse}",
            sse.len()
        )?;
    } else if method == "HEAD" {
        write!(conn, "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")?;
    } else {
        let body = r#"{"type":"error","error":{"type":"not_found_error","message":"mock: no such route"}}"#;
        write!(
            conn,
            "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
    }
    conn.flush()
}

fn read_exact(reader: &mut impl Read, length: usize) -> std::io::Result<Vec<u8>> {
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            let mut end = String::new();
            reader.read_line(&mut end)?;
            return Ok(body);
        }
        body.extend(read_exact(reader, n)?);
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The six-event stream for one content block.
fn sse(reply: &Reply, model: &str, step: usize) -> String {
    let start = json!({"type": "message_start", "message": {"id": format!("msg_mock_{step}"), "type": "message",
        "role": "assistant", "model": model, "content": [], "stop_reason": null,
        "usage": {"input_tokens": 1, "output_tokens": 1}}});
    let (block, delta, stop_reason) = match reply {
        Reply::ToolUse { id, name, input } => (
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            json!({"type": "input_json_delta", "partial_json": input.to_string()}),
            "tool_use",
        ),
        Reply::Text(text) => {
            (json!({"type": "text", "text": ""}), json!({"type": "text_delta", "text": text}), "end_turn")
        }
    };
    [
        event("message_start", start),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": block}),
        ),
        event("content_block_delta", json!({"type": "content_block_delta", "index": 0, "delta": delta})),
        event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        event(
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
                "usage": {"output_tokens": 5}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ]
    .concat()
}

/// All text in a value (strings at any depth), for searching a request part.
fn all_text(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|i| all_text(i, out)),
        Value::Object(map) => map.values().for_each(|i| all_text(i, out)),
        _ => {}
    }
}

/// Everything the model is shown after its last turn in `request`: the tool results, the
/// text blocks beside them and any `role: "system"` messages (where each lands depends on the
/// model, reference §3).
pub fn after_last_assistant(request: &Value) -> String {
    let messages = request["messages"].as_array().cloned().unwrap_or_default();
    let last = messages.iter().rposition(|m| m["role"] == "assistant").map(|i| i + 1).unwrap_or(0);
    let mut out = String::new();
    for m in &messages[last..] {
        all_text(&m["content"], &mut out);
    }
    out
}

/// Every text anywhere in the request's messages and system prompt.
pub fn whole_request_text(request: &Value) -> String {
    let mut out = String::new();
    all_text(&request["messages"], &mut out);
    all_text(&request["system"], &mut out);
    out
}

/// The `tool_result` block for a tool call, if the request carries it.
pub fn tool_result(request: &Value, tool_use_id: &str) -> Option<Value> {
    request["messages"].as_array()?.iter().find_map(|m| {
        m["content"]
            .as_array()?
            .iter()
            .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == tool_use_id)
            .cloned()
    })
}
