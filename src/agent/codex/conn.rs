//! A JSON-RPC connection over any pair of byte streams (a child's stdio, a socket pair in tests).
//!
//! One reader thread classifies every line: responses go to the request that waits for them,
//! server requests and notifications go to one event queue in arrival order. When the stream
//! ends — cleanly, mid-message, or with a read error — every waiting request fails with the
//! reason and the queue yields [`Event::Closed`]; nothing waits forever on a dead peer, and
//! every wait has a timeout because a peer can also stall in the middle of a line.
//!
//! It does not know any method names; [`super::protocol`] and the adapter do.

use super::rpc::{FrameError, LineReader, Message, RequestId, RpcError};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Something the peer sent that is not an answer to us.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A notification; `raw` is the message exactly as received (for relaying).
    Notification { method: String, params: Value, raw: Value },
    /// A request the peer wants answered with [`Connection::respond`].
    Request { id: RequestId, method: String, params: Value, raw: Value },
    /// The stream ended; nothing more will arrive.
    Closed(FrameError),
}

/// Why a call on the connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("the app-server connection is closed: {0}")]
    Closed(FrameError),
    #[error("no answer to `{method}` within {timeout:?}")]
    Timeout { method: String, timeout: Duration },
    #[error("`{method}` failed: {error}")]
    Rpc { method: String, error: RpcError },
    #[error("writing to the app-server failed: {0}")]
    Write(std::io::Error),
    #[error("unexpected answer to `{method}`: {detail}")]
    BadReply { method: String, detail: String },
}

type Reply = Result<Value, RpcError>;

#[derive(Default)]
struct Pending {
    waiting: HashMap<RequestId, Sender<Reply>>,
    /// Set once the stream ended; later requests fail at once with it.
    closed: Option<FrameError>,
}

/// The connection. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Connection {
    writer: Mutex<Box<dyn Write + Send>>,
    pending: Arc<Mutex<Pending>>,
    events: Mutex<Receiver<Event>>,
    next_id: AtomicI64,
}

/// A request sent and not yet answered.
pub struct PendingReply {
    method: String,
    id: RequestId,
    rx: Receiver<Reply>,
    pending: Arc<Mutex<Pending>>,
}

impl PendingReply {
    /// The id the request went out with.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// Waits for the answer.
    pub fn wait(self, timeout: Duration) -> Result<Value, ConnError> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(ConnError::Rpc { method: self.method, error }),
            Err(RecvTimeoutError::Timeout) => {
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).waiting.remove(&self.id);
                Err(ConnError::Timeout { method: self.method, timeout })
            }
            Err(RecvTimeoutError::Disconnected) => {
                let reason = self.pending.lock().unwrap_or_else(|p| p.into_inner()).closed.clone();
                Err(ConnError::Closed(reason.unwrap_or(FrameError::Eof)))
            }
        }
    }
}

impl Connection {
    /// Starts the reader thread on `reader`; messages go out through `writer`.
    pub fn new(reader: impl Read + Send + 'static, writer: impl Write + Send + 'static) -> Connection {
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (tx, rx) = mpsc::channel();
        let thread_pending = pending.clone();
        std::thread::Builder::new()
            .name("codex-rpc-reader".into())
            .spawn(move || read_loop(LineReader::new(reader), &thread_pending, &tx))
            .expect("spawn reader thread");
        Connection {
            writer: Mutex::new(Box::new(writer)),
            pending,
            events: Mutex::new(rx),
            next_id: AtomicI64::new(1),
        }
    }

    /// Sends a request and returns a handle to wait on.
    pub fn send_request(&self, method: &str, params: Value) -> Result<PendingReply, ConnError> {
        let id = RequestId::Int(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reason) = &pending.closed {
                return Err(ConnError::Closed(reason.clone()));
            }
            pending.waiting.insert(id.clone(), tx);
        }
        let message = Message::Request { id: id.clone(), method: method.into(), params };
        if let Err(e) = self.write(&message) {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).waiting.remove(&id);
            return Err(e);
        }
        Ok(PendingReply { method: method.into(), id, rx, pending: self.pending.clone() })
    }

    /// Sends a request and waits for its answer.
    pub fn request(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, ConnError> {
        self.send_request(method, params)?.wait(timeout)
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Value) -> Result<(), ConnError> {
        self.write(&Message::Notification { method: method.into(), params })
    }

    /// Answers a request from the peer.
    pub fn respond(&self, id: RequestId, outcome: Result<Value, RpcError>) -> Result<(), ConnError> {
        self.write(&Message::Response { id, outcome })
    }

    /// Writes any message as is (a proxy relaying the other side's traffic).
    pub fn send(&self, message: &Message) -> Result<(), ConnError> {
        self.write(message)
    }

    /// The next notification or server request, or `None` when `timeout` passed first.
    /// After [`Event::Closed`] every call returns `Closed` again at once.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        let rx = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let reason = self.pending.lock().unwrap_or_else(|p| p.into_inner()).closed.clone();
                Some(Event::Closed(reason.unwrap_or(FrameError::Eof)))
            }
        }
    }

    /// Closes our sending side (the peer sees end of input); later writes fail.
    pub fn close_writer(&self) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        *writer = Box::new(ClosedWriter);
    }

    /// Why the stream ended, once it has.
    pub fn closed(&self) -> Option<FrameError> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).closed.clone()
    }

    fn write(&self, message: &Message) -> Result<(), ConnError> {
        let line = message.to_line();
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.write_all(&line).and_then(|()| writer.flush()).map_err(ConnError::Write)
    }
}

/// Stands in for a closed stream.
struct ClosedWriter;

impl Write for ClosedWriter {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "connection closed by haltwire"))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_loop<R: Read>(mut reader: LineReader<R>, pending: &Mutex<Pending>, events: &Sender<Event>) {
    let reason = loop {
        let line = match reader.next_line() {
            Ok(line) => line,
            Err(reason) => break reason,
        };
        let raw: Value = match serde_json::from_slice(&line) {
            Ok(v) => v,
            Err(_) => {
                // Not JSON (a stray log line on stdout): skip it, keep the stream.
                tracing::debug!(bytes = line.len(), "codex app-server: skipped a non-JSON line");
                continue;
            }
        };
        match Message::from_value(raw.clone()) {
            Ok(Message::Response { id, outcome }) => {
                let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).waiting.remove(&id);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(outcome);
                    }
                    None => tracing::debug!(%id, "codex app-server: answer to no waiting request"),
                }
            }
            Ok(Message::Request { id, method, params }) => {
                let _ = events.send(Event::Request { id, method, params, raw });
            }
            Ok(Message::Notification { method, params }) => {
                let _ = events.send(Event::Notification { method, params, raw });
            }
            Err(e) => tracing::debug!(error = %e, "codex app-server: skipped an unusable message"),
        }
    };
    let mut p = pending.lock().unwrap_or_else(|p| p.into_inner());
    p.closed = Some(reason.clone());
    // Dropping the senders wakes every waiter with "disconnected", which reads `closed`.
    p.waiting.clear();
    drop(p);
    let _ = events.send(Event::Closed(reason));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;

    const T: Duration = Duration::from_secs(5);

    /// A scripted peer on the other end of a socket pair.
    fn pair() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let conn = Connection::new(ours.try_clone().unwrap(), ours);
        (conn, theirs)
    }

    fn read_msg(peer: &UnixStream) -> Value {
        let mut line = String::new();
        BufReader::new(peer).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn answer_without_jsonrpc_reaches_its_request_and_events_keep_order() {
        let (conn, mut peer) = pair();
        let reply = conn.send_request("thread/start", json!({"cwd": "/w"})).unwrap();
        let sent = read_msg(&peer);
        assert_eq!(sent["jsonrpc"], "2.0");
        assert_eq!(sent["method"], "thread/start");
        let id = sent["id"].clone();
        write!(peer, "{{\"method\":\"a\"}}\n{{\"id\":0,\"method\":\"item/commandExecution/requestApproval\",\"params\":{{}}}}\n{{\"id\":{id},\"result\":{{\"thread\":{{\"id\":\"t\"}}}}}}\n").unwrap();
        assert_eq!(reply.wait(T).unwrap()["thread"]["id"], "t");
        assert!(matches!(conn.next_event(T), Some(Event::Notification { method, .. }) if method == "a"));
        let Some(Event::Request { id, .. }) = conn.next_event(T) else { panic!() };
        assert_eq!(id, RequestId::Int(0));
        conn.respond(id, Ok(json!({"decision": "decline"}))).unwrap();
        let answer = read_msg(&peer);
        assert_eq!(answer["id"], 0);
        assert_eq!(answer["result"]["decision"], "decline");
    }

    #[test]
    fn error_reply_is_an_rpc_error() {
        let (conn, mut peer) = pair();
        let reply = conn.send_request("turn/steer", json!({})).unwrap();
        let id = read_msg(&peer)["id"].clone();
        writeln!(
            peer,
            "{{\"error\":{{\"code\":-32600,\"message\":\"no active turn to steer\"}},\"id\":{id}}}"
        )
        .unwrap();
        match reply.wait(T) {
            Err(ConnError::Rpc { error, .. }) => assert_eq!(error.message, "no active turn to steer"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn partial_message_that_never_completes_times_out_then_closes_as_truncated() {
        let (conn, mut peer) = pair();
        let reply = conn.send_request("initialize", json!({})).unwrap();
        let _ = read_msg(&peer);
        let partial = br#"{"id":1,"result":{"userAg"#;
        peer.write_all(partial).unwrap();
        match reply.wait(Duration::from_millis(200)) {
            Err(ConnError::Timeout { method, .. }) => assert_eq!(method, "initialize"),
            other => panic!("{other:?}"),
        }
        drop(peer);
        assert_eq!(conn.next_event(T), Some(Event::Closed(FrameError::Truncated { bytes: partial.len() })));
        assert!(matches!(
            conn.request("x", json!({}), T),
            Err(ConnError::Closed(FrameError::Truncated { .. }))
        ));
    }

    #[test]
    fn peer_death_fails_waiting_requests_at_once() {
        let (conn, peer) = pair();
        let reply = conn.send_request("turn/start", json!({})).unwrap();
        let _ = read_msg(&peer);
        let started = std::time::Instant::now();
        drop(peer);
        assert!(matches!(reply.wait(Duration::from_secs(30)), Err(ConnError::Closed(FrameError::Eof))));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(conn.next_event(T), Some(Event::Closed(FrameError::Eof)));
        assert_eq!(conn.next_event(T), Some(Event::Closed(FrameError::Eof)));
        assert_eq!(conn.closed(), Some(FrameError::Eof));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let (conn, mut peer) = pair();
        write!(peer, "WARN something\n[1]\n{{\"method\":\"ok\"}}\n").unwrap();
        assert!(matches!(conn.next_event(T), Some(Event::Notification { method, .. }) if method == "ok"));
    }
}
