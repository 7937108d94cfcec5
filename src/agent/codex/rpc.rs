//! JSON-RPC 2.0 messages as the Codex app-server speaks them, and newline framing.
//!
//! The server omits the `"jsonrpc"` member from its replies and notifications, numbers its own
//! requests from `0`, and may write a partial line before dying. So classification here looks
//! only at `id`, `method`, `result` and `error`; an id is a value (never "truthy"); and a line
//! reader caps the length and reports a line cut off by end of stream as its own error.
//!
//! This module does not route messages or own any I/O thread; see [`super::conn`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, Read};

/// Longest line accepted from the peer. The app-server's own WebSocket limit is 16 MiB per
/// message; a little headroom over that, then the stream is treated as broken.
pub const MAX_LINE_BYTES: usize = 17 * 1024 * 1024;

/// A JSON-RPC request id: a string or an integer. `0` is an ordinary id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// An integer id (the server's own requests count up from 0).
    Int(i64),
    /// A string id.
    Str(String),
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestId::Int(n) => write!(f, "{n}"),
            RequestId::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// The `error` member of a failed response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("JSON-RPC error {code}: {message}")]
pub struct RpcError {
    /// JSON-RPC error code (`-32600` for the app-server's request errors).
    pub code: i64,
    /// The server's message.
    pub message: String,
    /// Extra data, when the server sends any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// One classified message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// A request that wants an answer with the same id.
    Request { id: RequestId, method: String, params: Value },
    /// A notification: no id, no answer.
    Notification { method: String, params: Value },
    /// An answer to a request this side sent.
    Response { id: RequestId, outcome: Result<Value, RpcError> },
}

/// Why a line is not a usable message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("bad id (must be a string or an integer)")]
    BadId,
    #[error("method is not a string")]
    BadMethod,
    #[error("bad error member: {0}")]
    BadError(serde_json::Error),
    #[error("neither a request, a notification nor a response")]
    Unclassifiable,
}

impl Message {
    /// Classifies one JSON text. `jsonrpc` is neither required nor checked.
    pub fn parse(text: &[u8]) -> Result<Message, MessageError> {
        let value: Value = serde_json::from_slice(text)?;
        Message::from_value(value)
    }

    /// Classifies one JSON value.
    pub fn from_value(value: Value) -> Result<Message, MessageError> {
        let Value::Object(mut obj) = value else { return Err(MessageError::NotObject) };
        let id = match obj.remove("id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<RequestId>(v).map_err(|_| MessageError::BadId)?),
        };
        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else { return Err(MessageError::BadMethod) };
            let params = obj.remove("params").unwrap_or(Value::Null);
            return Ok(match id {
                Some(id) => Message::Request { id, method, params },
                None => Message::Notification { method, params },
            });
        }
        let id = id.ok_or(MessageError::Unclassifiable)?;
        if let Some(error) = obj.remove("error") {
            let error = serde_json::from_value(error).map_err(MessageError::BadError)?;
            return Ok(Message::Response { id, outcome: Err(error) });
        }
        match obj.remove("result") {
            Some(result) => Ok(Message::Response { id, outcome: Ok(result) }),
            None => Err(MessageError::Unclassifiable),
        }
    }

    /// The wire form, with `"jsonrpc":"2.0"` (the server accepts it with or without).
    pub fn to_value(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("jsonrpc".into(), Value::from("2.0"));
        match self {
            Message::Request { id, method, params } => {
                obj.insert("id".into(), serde_json::to_value(id).unwrap_or(Value::Null));
                obj.insert("method".into(), Value::from(method.as_str()));
                if !params.is_null() {
                    obj.insert("params".into(), params.clone());
                }
            }
            Message::Notification { method, params } => {
                obj.insert("method".into(), Value::from(method.as_str()));
                if !params.is_null() {
                    obj.insert("params".into(), params.clone());
                }
            }
            Message::Response { id, outcome } => {
                obj.insert("id".into(), serde_json::to_value(id).unwrap_or(Value::Null));
                match outcome {
                    Ok(result) => obj.insert("result".into(), result.clone()),
                    Err(error) => {
                        obj.insert("error".into(), serde_json::to_value(error).unwrap_or(Value::Null))
                    }
                };
            }
        }
        Value::Object(obj)
    }

    /// The wire form as one line, newline included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(&self.to_value()).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// How reading the stream ended or failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// End of stream after a complete line: the peer closed cleanly.
    #[error("the peer closed the stream")]
    Eof,
    /// End of stream in the middle of a line: a partial message that will never complete.
    #[error("the peer closed the stream in the middle of a message ({bytes} bytes never completed)")]
    Truncated { bytes: usize },
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("the peer sent a message longer than {max} bytes")]
    TooLong { max: usize },
    /// The read itself failed.
    #[error("reading from the peer failed: {0}")]
    Io(String),
}

/// Splits a byte stream into lines, without trusting the peer to end them.
pub struct LineReader<R> {
    inner: std::io::BufReader<R>,
    max: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> Self {
        LineReader { inner: std::io::BufReader::new(inner), max: MAX_LINE_BYTES }
    }

    /// A reader with another length cap (tests).
    pub fn with_max(inner: R, max: usize) -> Self {
        LineReader { inner: std::io::BufReader::new(inner), max }
    }

    /// The next non-empty line without its newline (and without a trailing `\r`).
    pub fn next_line(&mut self) -> Result<Vec<u8>, FrameError> {
        loop {
            let mut line = Vec::new();
            let complete = self.read_until_newline(&mut line)?;
            if !complete {
                return Err(if line.is_empty() {
                    FrameError::Eof
                } else {
                    FrameError::Truncated { bytes: line.len() }
                });
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Ok(line);
            }
        }
    }

    /// Appends bytes up to a newline (not kept); false when the stream ended first.
    fn read_until_newline(&mut self, line: &mut Vec<u8>) -> Result<bool, FrameError> {
        loop {
            let buf = match self.inner.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(FrameError::Io(e.to_string())),
            };
            if buf.is_empty() {
                return Ok(false);
            }
            let (take, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if line.len() + take > self.max {
                return Err(FrameError::TooLong { max: self.max });
            }
            line.extend_from_slice(&buf[..take]);
            self.inner.consume(if done { take + 1 } else { take });
            if done {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replies_without_jsonrpc_and_id_zero_classify() {
        let m = Message::parse(br#"{"id":0,"result":{"ok":true}}"#).unwrap();
        assert_eq!(m, Message::Response { id: RequestId::Int(0), outcome: Ok(json!({"ok": true})) });
        let m = Message::parse(br#"{"method":"item/commandExecution/requestApproval","id":0,"params":{}}"#)
            .unwrap();
        assert!(matches!(m, Message::Request { id: RequestId::Int(0), .. }));
        let m = Message::parse(br#"{"method":"turn/started","params":{"x":1},"emittedAtMs":5}"#).unwrap();
        assert!(matches!(m, Message::Notification { ref method, .. } if method == "turn/started"));
        let m = Message::parse(br#"{"error":{"code":-32600,"message":"no active turn to steer"},"id":"a"}"#)
            .unwrap();
        let Message::Response { id, outcome: Err(e) } = m else { panic!("{m:?}") };
        assert_eq!(id, RequestId::Str("a".into()));
        assert_eq!(e.code, -32600);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        for bad in [
            &b"[1,2]"[..],
            b"{}",
            br#"{"id":1}"#,
            br#"{"id":1.5,"result":1}"#,
            br#"{"method":3}"#,
            b"{\"id\":1,",
        ] {
            assert!(Message::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(Message::parse(br#"{"id":{"x":1},"result":1}"#).is_err());
    }

    #[test]
    fn wire_form_round_trips() {
        let m =
            Message::Request { id: RequestId::Int(7), method: "turn/steer".into(), params: json!({"a": 1}) };
        let line = m.to_line();
        assert_eq!(*line.last().unwrap(), b'\n');
        assert_eq!(Message::parse(&line[..line.len() - 1]).unwrap(), m);
    }

    #[test]
    fn lines_split_and_partial_tail_is_reported() {
        let mut r = LineReader::new(&b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\""[..]);
        assert_eq!(r.next_line().unwrap(), br#"{"a":1}"#);
        assert_eq!(r.next_line().unwrap(), br#"{"b":2}"#);
        assert_eq!(r.next_line(), Err(FrameError::Truncated { bytes: 4 }));
        let mut r = LineReader::new(&b"{}\n"[..]);
        r.next_line().unwrap();
        assert_eq!(r.next_line(), Err(FrameError::Eof));
    }

    #[test]
    fn overlong_line_is_refused() {
        let data = [b'x'; 100];
        let mut r = LineReader::with_max(&data[..], 10);
        assert_eq!(r.next_line(), Err(FrameError::TooLong { max: 10 }));
    }
}
