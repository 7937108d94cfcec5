//! Running the real, pinned Codex CLI in tests: where it is, and a throwaway CODEX_HOME that
//! points it at the mock model with plugins off and connection retries bounded, so nothing
//! leaves loopback and a broken mock fails fast instead of retrying forever.

use std::path::{Path, PathBuf};

/// The Codex binary from `CODEX_BIN`, or `None` (and a printed SKIP note) when unset.
pub fn codex_bin(test: &str) -> Option<PathBuf> {
    match std::env::var_os("CODEX_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => {
            eprintln!("RAN {test}: real Codex at {}", PathBuf::from(&bin).display());
            Some(PathBuf::from(bin))
        }
        None => {
            eprintln!(
                "SKIP {test}: CODEX_BIN is not set (.ci/run installs @openai/codex@0.169.0 and sets it)"
            );
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
        CodexHome { _root: root, home, work }
    }

    /// Environment for any process that runs Codex against this home.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CODEX_HOME".into(), self.home.display().to_string()),
            ("MOCK_API_KEY".into(), "dummy".into()),
            ("HOME".into(), self.home.display().to_string()),
        ]
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
