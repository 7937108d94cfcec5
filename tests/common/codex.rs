//! Running the real, pinned Codex CLI in tests: where it is, and a throwaway CODEX_HOME that
//! points it at the mock model with plugins off and connection retries bounded, so nothing
//! leaves loopback and a broken mock fails fast instead of retrying forever.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The Codex binary from `CODEX_BIN`, or `None` (and a printed SKIP note) when unset.
pub fn codex_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("CODEX_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => {
            super::report(&format!("RAN {test}: real Codex at {}", PathBuf::from(&bin).display()));
            Some(PathBuf::from(bin))
        }
        None => {
            super::report(&format!(
                "SKIP {test}: CODEX_BIN is not set (.ci/run installs @openai/codex@0.169.0 and sets it)"
            ));
            None
        }
    }
}

/// A CODEX_HOME and a work directory for one test.
pub struct CodexHome {
    _root: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
}

impl CodexHome {
    /// Writes `config.toml` pointing at `model_base_url`; `extra` is appended verbatim.
    pub fn new(model_base_url: &str, extra: &str) -> CodexHome {
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("codex-home");
        let work = root.path().join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let work = std::fs::canonicalize(&work).unwrap();
        std::fs::write(home.join("config.toml"), config_toml(model_base_url, extra)).unwrap();
        // The hooks' per-session state (HALTWIRE_STATE_DIR must exist and be private).
        std::fs::DirBuilder::new().mode(0o700).create(root.path().join("haltwire-state")).unwrap();
        CodexHome { _root: root, home, work }
    }

    /// Environment for any process that runs Codex against this home (hooks keep their
    /// per-session state beside it).
    pub fn env(&self) -> Vec<(String, String)> {
        let state = self.home.parent().unwrap().join("haltwire-state");
        vec![
            ("CODEX_HOME".into(), self.home.display().to_string()),
            ("MOCK_API_KEY".into(), "dummy".into()),
            ("HOME".into(), self.home.display().to_string()),
            ("HALTWIRE_STATE_DIR".into(), state.display().to_string()),
        ]
    }

    /// The Codex hooks' (and the adapter's shared) per-session state folder.
    pub fn agent_state(&self) -> PathBuf {
        self.home.parent().unwrap().join("haltwire-state").join("agents").join("codex")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }
}

pub fn config_toml(base_url: &str, extra: &str) -> String {
    format!(
        r#"model = "mock-model"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "danger-full-access"
check_for_update_on_startup = false

[model_providers.mock]
name = "Mock"
base_url = "{base_url}"
wire_api = "responses"
env_key = "MOCK_API_KEY"
request_max_retries = 0
stream_max_retries = 0

[features]
plugins = false
apps = false
unbounded_connection_retries = false

[analytics]
enabled = false
{extra}
"#
    )
}

/// Waits until `path` exists (up to `secs`).
pub fn wait_file(path: &Path, secs: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    false
}

/// A running agent process (`codex exec`, `haltwire codex run`) whose output is drained by
/// threads (a full pipe would stall it), killed on drop.
pub struct Running {
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    err: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    pub fn spawn(mut cmd: std::process::Command) -> Running {
        use std::process::Stdio;
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let err = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let readers = vec![
            drain(child.stdout.take().unwrap(), out.clone()),
            drain(child.stderr.take().unwrap(), err.clone()),
        ];
        Running { child, out, err, readers }
    }

    /// `Err` with the output once the process has exited.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait().unwrap() {
            None => Ok(()),
            Some(status) => Err(format!("{status}\n{}", self.output_text())),
        }
    }

    fn output_text(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&self.out.lock().unwrap()),
            String::from_utf8_lossy(&self.err.lock().unwrap())
        )
    }

    /// Waits for the exit (panics at `deadline`); returns (success, stdout, stderr).
    pub fn finish(mut self, deadline: std::time::Instant) -> (bool, String, String) {
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the agent did not finish in time:\n{}",
                self.output_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let out = String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned();
        let err = String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned();
        (status.success(), out, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn drain(
    mut from: impl std::io::Read + Send + 'static,
    into: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}
