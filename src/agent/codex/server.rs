//! Running `codex app-server` as a child process and shaking hands with it.
//!
//! The handshake is `initialize` → check the server's version → `initialized`. A server older
//! than [`MIN_VERSION`] is refused before any thread exists: the adapter relies on 0.169's
//! `turn/steer` (with `expectedTurnId`) and approval shapes. Config errors make Codex exit
//! before it answers, with the reason on stderr only, so stderr is kept (its tail) and put into
//! the error. The child is killed on drop; closing its stdin ends it cleanly.
//!
//! It does not start threads or turns; the adapter does.

use super::conn::{ConnError, Connection};
use super::protocol::{server_version, ClientInfo, InitializeParams, InitializeResult};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Oldest app-server this client speaks to.
pub const MIN_VERSION: (u64, u64, u64) = (0, 169, 0);

/// How much of the server's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 16 * 1024;

/// How to start the server.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    /// The `codex` executable.
    pub program: PathBuf,
    /// `-c key=value` overrides passed to `codex app-server`.
    pub config: Vec<String>,
    /// Extra environment (e.g. `CODEX_HOME`).
    pub env: Vec<(String, String)>,
    /// How long to wait for the `initialize` answer.
    pub handshake_timeout: Duration,
}

impl ServerCommand {
    pub fn new(program: impl Into<PathBuf>) -> ServerCommand {
        ServerCommand {
            program: program.into(),
            config: Vec::new(),
            env: Vec::new(),
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("codex app-server did not complete the handshake: {error}{}", stderr_note(.stderr))]
    Handshake { error: ConnError, stderr: String },
    #[error("codex app-server {found} is older than {}.{}.{}, the oldest this haltwire supports; install @openai/codex@0.169.0 or newer", MIN_VERSION.0, MIN_VERSION.1, MIN_VERSION.2)]
    TooOld { found: String },
    #[error("cannot tell the codex app-server's version from its user agent {user_agent:?}")]
    UnknownVersion { user_agent: String },
}

fn stderr_note(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("\ncodex stderr:\n{trimmed}")
    }
}

/// A running, initialized app-server.
pub struct AppServer {
    child: Child,
    conn: Arc<Connection>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
    /// What `initialize` answered.
    pub info: InitializeResult,
    /// The server's version.
    pub version: (u64, u64, u64),
}

impl AppServer {
    /// Spawns the server and performs the handshake.
    pub fn start(cmd: &ServerCommand, client: ClientInfo) -> Result<AppServer, ServerError> {
        let mut command = Command::new(&cmd.program);
        command.arg("app-server");
        for kv in &cmd.config {
            command.arg("-c").arg(kv);
        }
        for (k, v) in &cmd.env {
            command.env(k, v);
        }
        let mut child =
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(
                |source| ServerError::Spawn { program: cmd.program.display().to_string(), source },
            )?;
        let stdin: ChildStdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = Some(keep_tail(child.stderr.take().expect("piped stderr"), stderr.clone()));
        let conn = Arc::new(Connection::new(stdout, stdin));
        let info = InitializeResult { user_agent: String::new(), codex_home: None };
        let mut server = AppServer { child, conn, stderr, stderr_reader, info, version: (0, 0, 0) };
        server.handshake(client, cmd.handshake_timeout)?;
        Ok(server)
    }

    fn handshake(&mut self, client: ClientInfo, timeout: Duration) -> Result<(), ServerError> {
        let params = serde_json::to_value(InitializeParams { client_info: client }).unwrap_or_default();
        let result = self.conn.request("initialize", params, timeout).map_err(|e| self.handshake_error(e))?;
        let info: InitializeResult = serde_json::from_value(result).map_err(|e| {
            self.handshake_error(ConnError::BadReply { method: "initialize".into(), detail: e.to_string() })
        })?;
        let Some(version) = server_version(&info.user_agent) else {
            return Err(ServerError::UnknownVersion { user_agent: info.user_agent });
        };
        check_version(version)?;
        self.conn.notify("initialized", serde_json::Value::Null).map_err(|e| self.handshake_error(e))?;
        self.info = info;
        self.version = version;
        Ok(())
    }

    fn handshake_error(&mut self, error: ConnError) -> ServerError {
        // A server that died answers nothing (or refuses our write first); give it a moment to
        // exit and its stderr to drain.
        if matches!(error, ConnError::Closed(_) | ConnError::Write(_)) {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let exited = !matches!(self.child.try_wait(), Ok(None));
                let drained = self.stderr_reader.as_ref().is_none_or(|r| r.is_finished());
                if exited && drained {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        ServerError::Handshake { error, stderr: self.stderr_tail() }
    }

    /// The connection (shared with relay threads).
    pub fn conn(&self) -> &Arc<Connection> {
        &self.conn
    }

    /// The server's process id (registered as the session's agent pid).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last part of what the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Whether the process has exited (its status, if so).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Ends the server: close its stdin (it exits on EOF), then kill after `grace`.
    pub fn shutdown(mut self, grace: Duration) {
        self.conn.close_writer();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.try_exit_status().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Refuses a server older than [`MIN_VERSION`].
pub fn check_version(version: (u64, u64, u64)) -> Result<(), ServerError> {
    if version < MIN_VERSION {
        return Err(ServerError::TooOld { found: format!("{}.{}.{}", version.0, version.1, version.2) });
    }
    Ok(())
}

/// Copies a stream into a buffer that keeps only its last [`STDERR_TAIL_BYTES`].
fn keep_tail(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            let mut tail = into.lock().unwrap_or_else(|p| p.into_inner());
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > STDERR_TAIL_BYTES {
                let cut = tail.len() - STDERR_TAIL_BYTES;
                tail.drain(..cut);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_servers_are_refused() {
        assert!(check_version((0, 169, 0)).is_ok());
        assert!(check_version((0, 170, 1)).is_ok());
        assert!(check_version((1, 0, 0)).is_ok());
        assert!(
            matches!(check_version((0, 168, 9)), Err(ServerError::TooOld { found }) if found == "0.168.9")
        );
    }

    /// A fake `codex` (a shell script) that answers `initialize` with an old version.
    #[test]
    fn handshake_refuses_an_old_server_and_reports_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old-codex");
        std::fs::write(
            &old,
            "#!/bin/sh\nread line\necho '{\"id\":1,\"result\":{\"userAgent\":\"haltwire/0.150.0 (linux)\"}}'\nsleep 5\n",
        )
        .unwrap();
        let dead = dir.path().join("dead-codex");
        std::fs::write(
            &dead,
            "#!/bin/sh\necho 'Error: approval_policy is no longer supported' >&2\nexit 1\n",
        )
        .unwrap();
        for p in [&old, &dead] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let client = || ClientInfo { name: "haltwire".into(), version: "test".into() };
        let err = AppServer::start(&ServerCommand::new(&old), client()).err().expect("old server refused");
        assert!(matches!(err, ServerError::TooOld { ref found } if found == "0.150.0"), "{err}");
        let err = AppServer::start(&ServerCommand::new(&dead), client()).err().expect("dead server reported");
        let text = err.to_string();
        // Whether the dead server's stdout closes before our write fails is a race.
        assert!(
            matches!(err, ServerError::Handshake { error: ConnError::Closed(_) | ConnError::Write(_), .. }),
            "{text}"
        );
        assert!(text.contains("no longer supported"), "{text}");
    }
}
