//! A small blocking client for the broker's session routes (DESIGN §4), used by the agent-side
//! commands (`hook claude`, `hook codex`, adapters).
//!
//! It knows the broker only through its HTTP wire contracts: the request and answer shapes
//! below are this module's own copies of those contracts, not the broker's types. One
//! keep-alive [`ureq::Agent`] serves every call of a process, with no proxy (the session token
//! must not leave the loopback path) and no redirects.
//!
//! What it deliberately does not do: verify or interpret directives (it hands back the raw
//! envelope bytes for [`crate::directive`] to verify), retry, or decide anything on failure —
//! the caller chooses between failing open and failing closed. It is agent-neutral: nothing
//! here knows Claude Code or Codex.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::time::Duration;

/// Where agent-side commands find the broker when neither `--url` nor `HALTWIRE_URL` is set.
pub const DEFAULT_URL: &str = "http://127.0.0.1:4258";

/// Cap on any answer body read from the broker; a pending-directives page is the largest.
const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// Why a broker call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer at all: connection refused, timeout, reset. The caller's fail-open /
    /// fail-closed choice applies.
    #[error("broker unreachable at {url}: {reason}")]
    Unreachable {
        /// The URL that was called.
        url: String,
        /// The transport error, as text.
        reason: String,
    },
    /// The broker answered with a non-success status.
    #[error("broker answered {status} to {url}{}", problem_suffix(.problem_type, .detail))]
    Status {
        /// The URL that was called.
        url: String,
        /// HTTP status.
        status: u16,
        /// The problem+json `type`, when the body was one.
        problem_type: Option<String>,
        /// The problem+json `detail`, when present (broker-authored, never shown to a model).
        detail: Option<String>,
    },
    /// The broker answered success with a body this client cannot read.
    #[error("unexpected answer from {url}: {reason}")]
    Malformed {
        /// The URL that was called.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The configured URL is not usable.
    #[error("bad broker URL {0:?}: expected http://host:port")]
    BadUrl(String),
}

fn problem_suffix(kind: &Option<String>, detail: &Option<String>) -> String {
    match (kind, detail) {
        (Some(k), Some(d)) => format!(" ({k}: {d})"),
        (Some(k), None) => format!(" ({k})"),
        (None, Some(d)) => format!(" ({d})"),
        (None, None) => String::new(),
    }
}

impl ClientError {
    /// True when the broker could not be reached at all (as opposed to answering "no").
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
    }

    /// The HTTP status, when the broker answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What an agent sends to register a session (`POST /v1/sessions`).
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// `claude-code`, `codex` or `generic`.
    pub agent: String,
    /// The agent's own session or thread id.
    pub agent_session_id: String,
    /// The agent's process id (the process that spawns tool calls).
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22, when known; the broker reads it itself when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    /// Host name; the broker uses its own when omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// User name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The agent's working directory.
    pub cwd: String,
    /// Where directives should go (`hook`, `app-server`, `inbox`, `sse`); broker default when
    /// omitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<Vec<String>>,
}

/// The registration answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Registered {
    /// The haltwire session id.
    pub session_id: String,
    /// Bearer token for this session's routes.
    pub token: String,
}

/// A registered session's credentials: everything a `/v1/sessions/{id}/…` call needs.
#[derive(Clone)]
pub struct SessionAuth {
    /// The haltwire session id.
    pub session_id: String,
    /// The session's bearer token.
    pub token: String,
}

impl std::fmt::Debug for SessionAuth {
    // The token is a credential: never in logs or panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionAuth")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl From<Registered> for SessionAuth {
    fn from(r: Registered) -> SessionAuth {
        SessionAuth { session_id: r.session_id, token: r.token }
    }
}

/// What happened when a tool call ran (`POST …/commands/{call_id}/outcome`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// The process exit code, when the tool was a process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The agent's error text, when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the call ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

/// The gate's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// The gate's answer (`POST /v1/sessions/{id}/check`). Unknown fields are ignored so an older
/// hook keeps working against a newer broker.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckAnswer {
    /// Allow or deny.
    pub decision: Decision,
    /// The block that denies the call.
    #[serde(default)]
    pub block_id: Option<String>,
    /// The SOC's note from the policy (trusted, broker-authored text).
    #[serde(default)]
    pub note: Option<String>,
    /// The signed directive explaining the deny, when the broker attaches one; raw so the
    /// verifier sees exactly what was sent.
    #[serde(default)]
    pub directive: Option<Box<RawValue>>,
}

/// One pending directive: the raw DSSE envelope, exactly as the broker sent it.
#[derive(Debug, Clone)]
pub struct PendingDirective {
    /// The envelope's JSON text.
    pub envelope: Box<RawValue>,
}

impl PendingDirective {
    /// The envelope bytes for the verifier.
    pub fn bytes(&self) -> &[u8] {
        self.envelope.get().as_bytes()
    }
}

/// A blocking broker client with one keep-alive connection pool.
pub struct BrokerClient {
    agent: ureq::Agent,
    base: String,
}

impl BrokerClient {
    /// A client for `url` (e.g. `http://127.0.0.1:4258`), with `timeout` for each whole call.
    pub fn new(url: &str, timeout: Duration) -> Result<BrokerClient, ClientError> {
        let base = url.trim().trim_end_matches('/').to_string();
        let valid = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', '?', '#', ' ']));
        if !valid {
            return Err(ClientError::BadUrl(url.to_string()));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(timeout))
            .user_agent(concat!("haltwire-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(BrokerClient { agent, base })
    }

    /// The URL from `--url`, else `HALTWIRE_URL`, else [`DEFAULT_URL`].
    pub fn resolve_url(flag: Option<&str>) -> String {
        flag.map(str::to_string)
            .or_else(|| std::env::var("HALTWIRE_URL").ok().filter(|u| !u.trim().is_empty()))
            .unwrap_or_else(|| DEFAULT_URL.to_string())
    }

    /// The broker's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/sessions`. Registering the same agent session again issues a fresh token.
    pub fn register(&self, registration: &Registration) -> Result<SessionAuth, ClientError> {
        let answer: Registered = self.call_json("POST", "/v1/sessions", None, Some(registration))?;
        Ok(answer.into())
    }

    /// `POST /v1/sessions/{id}/commands`. Returns false when the call id was already recorded.
    pub fn record_command(
        &self,
        session: &SessionAuth,
        call_id: &str,
        tool: &str,
        input: &serde_json::Value,
    ) -> Result<bool, ClientError> {
        #[derive(Serialize)]
        struct Post<'a> {
            call_id: &'a str,
            tool: &'a str,
            input: &'a serde_json::Value,
        }
        #[derive(Deserialize)]
        struct Recorded {
            recorded: bool,
        }
        let path = format!("/v1/sessions/{}/commands", seg(&session.session_id));
        let answer: Recorded =
            self.call_json("POST", &path, Some(&session.token), Some(&Post { call_id, tool, input }))?;
        Ok(answer.recorded)
    }

    /// `POST /v1/sessions/{id}/commands/{call_id}/outcome`.
    pub fn record_outcome(
        &self,
        session: &SessionAuth,
        call_id: &str,
        outcome: &Outcome,
    ) -> Result<(), ClientError> {
        let path = format!("/v1/sessions/{}/commands/{}/outcome", seg(&session.session_id), seg(call_id));
        self.call_json::<_, serde_json::Value>("POST", &path, Some(&session.token), Some(outcome))?;
        Ok(())
    }

    /// `POST /v1/sessions/{id}/check`: may this session make this tool call now?
    pub fn check(
        &self,
        session: &SessionAuth,
        tool: &str,
        input: &serde_json::Value,
    ) -> Result<CheckAnswer, ClientError> {
        #[derive(Serialize)]
        struct Check<'a> {
            tool: &'a str,
            input: &'a serde_json::Value,
        }
        let path = format!("/v1/sessions/{}/check", seg(&session.session_id));
        self.call_json("POST", &path, Some(&session.token), Some(&Check { tool, input }))
    }

    /// Whether the broker answers `GET /healthz` with success.
    pub fn healthy(&self) -> bool {
        self.call_text("GET", "/healthz", None, None).is_ok()
    }

    /// `POST /v1/sessions/{id}/end`.
    pub fn end(&self, session: &SessionAuth) -> Result<(), ClientError> {
        let path = format!("/v1/sessions/{}/end", seg(&session.session_id));
        self.call_json::<(), serde_json::Value>("POST", &path, Some(&session.token), None)?;
        Ok(())
    }

    /// `GET /v1/sessions/{id}/directives`: the session's undelivered directives, oldest first.
    /// `Ok(None)` when the broker has no such route (a broker without delivery), so callers can
    /// treat "no delivery yet" as "nothing pending".
    pub fn pending_directives(
        &self,
        session: &SessionAuth,
    ) -> Result<Option<Vec<PendingDirective>>, ClientError> {
        let path = format!("/v1/sessions/{}/directives", seg(&session.session_id));
        let text = match self.call_text("GET", &path, Some(&session.token), None) {
            Ok(text) => text,
            Err(e) if is_missing_route(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        parse_pending(&text)
            .map(Some)
            .map_err(|reason| ClientError::Malformed { url: format!("{}{path}", self.base), reason })
    }

    /// `POST /v1/sessions/{id}/directives/{jti}/ack`. `Ok(false)` when the broker has no such
    /// route or no such directive (already acknowledged, or expired).
    pub fn ack(&self, session: &SessionAuth, jti: &str) -> Result<bool, ClientError> {
        let path = format!("/v1/sessions/{}/directives/{}/ack", seg(&session.session_id), seg(jti));
        match self.call_text("POST", &path, Some(&session.token), Some(b"{}".to_vec())) {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn call_json<B: Serialize, T: for<'de> Deserialize<'de>>(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let body = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|e| ClientError::Malformed { url: url.clone(), reason: e.to_string() })?,
            ),
            None => None,
        };
        let text = self.call_text(method, path, token, body)?;
        serde_json::from_str(&text).map_err(|e| ClientError::Malformed { url, reason: e.to_string() })
    }

    fn call_text(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<String, ClientError> {
        let url = format!("{}{path}", self.base);
        let unreachable =
            |e: ureq::Error| ClientError::Unreachable { url: url.clone(), reason: e.to_string() };
        let auth = token.map(|t| format!("Bearer {t}"));
        let response = if method == "GET" {
            let mut req = self.agent.get(&url);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            req.call()
        } else {
            let mut req = self.agent.post(&url);
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            match body {
                Some(b) => req.header("content-type", "application/json").send(&b[..]),
                None => req.send_empty(),
            }
        };
        let mut response = response.map_err(unreachable)?;
        let status = response.status().as_u16();
        let problem = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json"));
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let (problem_type, detail) = if problem { problem_fields(&text) } else { (None, None) };
        Err(ClientError::Status { url, status, problem_type, detail })
    }
}

/// The problem `type` of the broker's answer to a path it has no route for.
const NO_SUCH_ROUTE: &str = "urn:haltwire:problem:no-such-route";

/// The broker has no such route: its 404 says so in the problem `type`. Any other 404 (a
/// `not-found` about the session, or a 404 that is not the broker's problem document at all)
/// stays an error.
fn is_missing_route(e: &ClientError) -> bool {
    matches!(e, ClientError::Status { status: 404, problem_type: Some(t), .. } if t == NO_SUCH_ROUTE)
}

fn problem_fields(text: &str) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Problem {
        #[serde(rename = "type")]
        kind: Option<String>,
        detail: Option<String>,
    }
    match serde_json::from_str::<Problem>(text) {
        Ok(p) => (p.kind, p.detail.map(|d| d.chars().take(300).collect())),
        Err(_) => (None, None),
    }
}

/// Reads a pending-directives answer: `{"directives": [...]}` or a bare array; each item is an
/// envelope, or an object carrying one under `envelope`.
fn parse_pending(text: &str) -> Result<Vec<PendingDirective>, String> {
    // Not an untagged enum: serde cannot buffer `RawValue`s through one.
    #[derive(Deserialize)]
    struct Wrapped {
        directives: Vec<Box<RawValue>>,
    }
    let items = match serde_json::from_str::<Vec<Box<RawValue>>>(text) {
        Ok(items) => items,
        Err(_) => serde_json::from_str::<Wrapped>(text).map_err(|e| e.to_string())?.directives,
    };
    Ok(items.into_iter().map(|raw| PendingDirective { envelope: unwrap_item(raw) }).collect())
}

/// An item is the envelope itself (it has `payloadType`), or a record holding it as `envelope`.
fn unwrap_item(raw: Box<RawValue>) -> Box<RawValue> {
    let Ok(mut fields) = serde_json::from_str::<std::collections::HashMap<String, Box<RawValue>>>(raw.get())
    else {
        return raw;
    };
    if fields.contains_key("payloadType") {
        return raw;
    }
    fields.remove("envelope").unwrap_or(raw)
}

/// Percent-encodes one path segment (ids are UUIDs and tool-call ids, but never trust that).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("toolu_01AbC-x.y~"), "toolu_01AbC-x.y~");
        assert_eq!(seg("../a b/?"), "..%2Fa%20b%2F%3F");
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["", "127.0.0.1:4258", "ftp://x", "http://", "http://h/p", "http://h p"] {
            assert!(BrokerClient::new(url, Duration::from_secs(1)).is_err(), "{url}");
        }
        let c = BrokerClient::new("http://127.0.0.1:4258/", Duration::from_secs(1)).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:4258");
    }

    #[test]
    fn pending_pages_are_read_in_every_shape() {
        let env = r#"{"payloadType":"t","payload":"cA==","signatures":[]}"#;
        let wrapped = format!(r#"{{"directives":[{env}]}}"#);
        let bare = format!("[{env}]");
        let items = format!(r#"{{"directives":[{{"jti":"j","seq":1,"envelope":{env}}}]}}"#);
        for text in [wrapped, bare, items] {
            let got = parse_pending(&text).unwrap();
            assert_eq!(got.len(), 1, "{text}");
            assert_eq!(got[0].envelope.get(), env, "{text}");
        }
        assert!(parse_pending(r#"{"nope":1}"#).is_err());
        assert!(parse_pending("").is_err());
    }

    #[test]
    fn an_unreachable_broker_is_reported_as_such() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let c = BrokerClient::new("http://127.0.0.1:1", Duration::from_secs(2)).unwrap();
        let auth = SessionAuth { session_id: "s".into(), token: "t".into() };
        let err = c.check(&auth, "Bash", &serde_json::json!({"command": "ls"})).unwrap_err();
        assert!(err.is_unreachable(), "{err}");
    }

    /// A one-connection-at-a-time HTTP server answering every request with `status`,
    /// `content_type` and `body`; returns its base URL.
    fn answering(status: u16, content_type: &'static str, body: &'static str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        url
    }

    #[test]
    fn only_a_no_such_route_problem_means_the_broker_has_no_delivery() {
        let auth = SessionAuth { session_id: "s".into(), token: "t".into() };
        let pending = |status, content_type, body| {
            BrokerClient::new(&answering(status, content_type, body), Duration::from_secs(5))
                .unwrap()
                .pending_directives(&auth)
        };
        const PROBLEM: &str = "application/problem+json";
        let no_route = pending(404, PROBLEM, r#"{"type":"urn:haltwire:problem:no-such-route","status":404}"#);
        assert!(matches!(no_route, Ok(None)), "{no_route:?}");
        // About the session, not the route: an error the caller sees.
        let not_found = pending(404, PROBLEM, r#"{"type":"urn:haltwire:problem:not-found","status":404}"#);
        let err = not_found.unwrap_err();
        assert_eq!(err.status(), Some(404));
        assert!(err.to_string().contains("not-found"), "{err}");
        // A 404 that is not the broker's problem document (something else on the port).
        assert!(pending(404, "text/html", "<h1>Not Found</h1>").is_err());
        assert!(pending(404, "application/json", r#"{"type":"urn:haltwire:problem:no-such-route"}"#).is_err());
        let listed = pending(200, "application/json", r#"{"directives":[]}"#);
        assert!(matches!(listed, Ok(Some(ref l)) if l.is_empty()), "{listed:?}");
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let auth = SessionAuth { session_id: "s".into(), token: "secret-token-value".into() };
        assert!(!format!("{auth:?}").contains("secret-token-value"));
    }
}
