//! Agent-side per-session state: which haltwire session an agent session maps to, its token,
//! and the directive replay state (last `seq`, seen `jti`s) the verifier needs across hook
//! processes.
//!
//! Each hook invocation is a fresh process, so this state lives in files, one per agent
//! session, keyed by a hash of the agent's own session id. The files hold a credential, so
//! the directory is hardened like the inbox (R41–R43): `$XDG_RUNTIME_DIR/haltwire/agents/<agent>/`
//! (fallback `~/.local/state/haltwire/agents/<agent>/`), every level we own created 0700 and
//! refused when it is a symlink, owned by another user or open to group/others; files are
//! written to a `.tmp-*` name (`O_EXCL|O_NOFOLLOW`, 0600), fsynced and renamed into place, and
//! read with `O_NOFOLLOW|O_NONBLOCK` and an `fstat` check on the descriptor.
//!
//! A per-session advisory lock ([`StateDir::lock`]) serializes read-modify-write cycles of
//! concurrent hooks (Claude Code runs hooks of parallel tool calls at the same time).
//!
//! It does not interpret the replay state (that is [`crate::directive::verify`]'s) and it knows
//! no agent: the agent name is only a folder name.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Largest state file we read; a replay state with its jti set stays far below this.
const MAX_STATE_BYTES: u64 = 256 * 1024;

/// Overrides the state root (tests, benchmarks, unusual layouts); it gets the same checks.
pub const STATE_DIR_ENV: &str = "HALTWIRE_STATE_DIR";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("no place for agent state: neither XDG_RUNTIME_DIR nor HOME is set")]
    NoBase,
    #[error("{0}: refusing agent state directory: {1}")]
    UnsafeDir(PathBuf, &'static str),
    #[error("{0}: refusing agent state file: {1}")]
    UnsafeFile(PathBuf, &'static str),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: unreadable agent state: {1}")]
    Corrupt(PathBuf, String),
}

/// What the agent side remembers about one agent session.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionState {
    /// The haltwire session id the broker assigned at registration.
    pub session_id: String,
    /// The session's bearer token (a credential: never logged).
    pub token: String,
    /// The agent process id the session was registered with.
    pub pid: u32,
    /// The broker URL the session was registered at; a hook pointed elsewhere re-registers.
    pub url: String,
    /// The directive verifier's replay state for this session, as the verifier serializes it.
    #[serde(default)]
    pub replay: serde_json::Value,
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("session_id", &self.session_id)
            .field("token", &"<redacted>")
            .field("pid", &self.pid)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// One agent's hardened state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// An exclusive advisory lock on one session's state; released on drop.
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// Opens (creating as needed) the state directory for `agent` (a short name such as
    /// `claude-code`), from `HALTWIRE_STATE_DIR`, `XDG_RUNTIME_DIR` or `HOME`, in that order.
    pub fn open(agent: &str) -> Result<StateDir, StateError> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        Self::open_from(agent, env(STATE_DIR_ENV), env("XDG_RUNTIME_DIR"), env("HOME"))
    }

    fn open_from(
        agent: &str,
        explicit: Option<OsString>,
        runtime: Option<OsString>,
        home: Option<OsString>,
    ) -> Result<StateDir, StateError> {
        // Levels below the base are ours: created 0700 and checked strictly.
        let (base, ours): (PathBuf, Vec<&str>) = if let Some(root) = explicit {
            (PathBuf::from(root), vec!["agents", agent])
        } else if let Some(runtime) = runtime {
            (PathBuf::from(runtime), vec!["haltwire", "agents", agent])
        } else if let Some(home) = home {
            let base = PathBuf::from(home).join(".local").join("state");
            create_private_all(&base)?;
            (base, vec!["haltwire", "agents", agent])
        } else {
            return Err(StateError::NoBase);
        };
        if agent.is_empty() || !agent.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StateError::UnsafeDir(base, "agent name must be [A-Za-z0-9-]+"));
        }
        check_base(&base)?;
        let mut dir = base;
        for part in ours {
            dir.push(part);
            ensure_private_dir(&dir)?;
        }
        Ok(StateDir { dir })
    }

    /// The directory holding this agent's session files.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The file name for an agent session id: a hash, so any id is a safe name.
    fn file_for(&self, agent_session_id: &str, ext: &str) -> PathBuf {
        let digest = Sha256::digest(agent_session_id.as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.{ext}"))
    }

    /// Takes the session's exclusive lock, waiting for other hooks of the same session.
    pub fn lock(&self, agent_session_id: &str) -> Result<StateLock, StateError> {
        let path = self.file_for(agent_session_id, "lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| StateError::Io(path.clone(), e))?;
        check_file(&path, &file)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor we own; it has no memory effects.
        loop {
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(StateError::Io(path, err));
            }
        }
        Ok(StateLock { _file: file })
    }

    /// The state of an agent session, if any.
    pub fn load(&self, agent_session_id: &str) -> Result<Option<SessionState>, StateError> {
        let path = self.file_for(agent_session_id, "json");
        let mut file = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StateError::UnsafeFile(path, "it is a symlink"))
            }
            Err(e) => return Err(StateError::Io(path, e)),
        };
        check_file(&path, &file)?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| StateError::Io(path.clone(), e))?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(StateError::UnsafeFile(path, "too large"));
        }
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StateError::Corrupt(path, e.to_string()))
    }

    /// Writes an agent session's state atomically (temp file, fsync, rename, fsync dir).
    pub fn store(&self, agent_session_id: &str, state: &SessionState) -> Result<(), StateError> {
        let path = self.file_for(agent_session_id, "json");
        let bytes =
            serde_json::to_vec(state).map_err(|e| StateError::Corrupt(path.clone(), e.to_string()))?;
        let tmp = self.dir.join(format!(".tmp-{}", uuid::Uuid::now_v7().simple()));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |e| StateError::Io(p, e)
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let written = file.write_all(&bytes).and_then(|_| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(StateError::Io(tmp, e));
        }
        drop(file);
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(StateError::Io(path, e));
        }
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))
    }

    /// Forgets an agent session (its session ended).
    pub fn remove(&self, agent_session_id: &str) -> Result<(), StateError> {
        for ext in ["json", "lock"] {
            let path = self.file_for(agent_session_id, ext);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StateError::Io(path, e)),
            }
        }
        Ok(())
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The base (runtime dir, home state dir, or an explicit root) must be a real directory owned
/// by us or root and not writable by group or others.
fn check_base(base: &Path) -> Result<(), StateError> {
    let meta = std::fs::symlink_metadata(base).map_err(|e| StateError::Io(base.to_path_buf(), e))?;
    if meta.file_type().is_symlink() {
        return Err(StateError::UnsafeDir(base.to_path_buf(), "it is a symlink"));
    }
    if !meta.is_dir() {
        return Err(StateError::UnsafeDir(base.to_path_buf(), "not a directory"));
    }
    if meta.uid() != euid() && meta.uid() != 0 {
        return Err(StateError::UnsafeDir(base.to_path_buf(), "owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(StateError::UnsafeDir(base.to_path_buf(), "writable by group or others"));
    }
    Ok(())
}

/// `mkdir -p` with 0700 for each level it creates.
fn create_private_all(path: &Path) -> Result<(), StateError> {
    if path.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| StateError::Io(path.to_path_buf(), e))
}

/// Creates `dir` 0700 if missing, then refuses it unless it is a real directory, ours, and
/// closed to group and others.
fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StateError::Io(dir.to_path_buf(), e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| StateError::Io(dir.to_path_buf(), e))?;
    if meta.file_type().is_symlink() {
        return Err(StateError::UnsafeDir(dir.to_path_buf(), "it is a symlink"));
    }
    if !meta.is_dir() {
        return Err(StateError::UnsafeDir(dir.to_path_buf(), "not a directory"));
    }
    if meta.uid() != euid() {
        return Err(StateError::UnsafeDir(dir.to_path_buf(), "owned by another user"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(StateError::UnsafeDir(dir.to_path_buf(), "group or others have access"));
    }
    Ok(())
}

/// Checks an open state file by its descriptor: a regular file, ours, 0600-ish, one link.
fn check_file(path: &Path, file: &File) -> Result<(), StateError> {
    let meta = file.metadata().map_err(|e| StateError::Io(path.to_path_buf(), e))?;
    let unsafe_file = |why| Err(StateError::UnsafeFile(path.to_path_buf(), why));
    if !meta.is_file() {
        return unsafe_file("not a regular file");
    }
    if meta.uid() != euid() {
        return unsafe_file("owned by another user");
    }
    if meta.mode() & 0o077 != 0 {
        return unsafe_file("group or others have access");
    }
    if meta.nlink() != 1 {
        return unsafe_file("it has other hard links");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SessionState {
        SessionState {
            session_id: "0190-s".into(),
            token: "tok-secret".into(),
            pid: 42,
            url: "http://127.0.0.1:4258".into(),
            replay: serde_json::json!({"last_seq": 3}),
        }
    }

    fn open_in(root: &Path) -> Result<StateDir, StateError> {
        StateDir::open_from("claude-code", Some(root.into()), None, None)
    }

    #[test]
    fn state_round_trips_with_private_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(tmp.path()).unwrap();
        assert!(dir.load("abc").unwrap().is_none());
        dir.store("abc", &sample()).unwrap();
        let back = dir.load("abc").unwrap().unwrap();
        assert_eq!(back.session_id, "0190-s");
        assert_eq!(back.replay["last_seq"], 3);
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "no temp file left behind: {files:?}");
        assert_eq!(std::fs::metadata(&files[0]).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
        dir.remove("abc").unwrap();
        assert!(dir.load("abc").unwrap().is_none());
    }

    #[test]
    fn the_home_fallback_is_used_without_a_runtime_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open_from("codex", None, None, Some(tmp.path().into())).unwrap();
        assert_eq!(dir.path(), tmp.path().join(".local/state/haltwire/agents/codex"));
    }

    #[test]
    fn a_group_readable_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(tmp.path()).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(matches!(open_in(tmp.path()), Err(StateError::UnsafeDir(_, _))));
    }

    #[test]
    fn a_symlinked_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("agents")).unwrap();
        std::fs::set_permissions(tmp.path().join("agents"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), tmp.path().join("agents/claude-code")).unwrap();
        assert!(matches!(open_in(tmp.path()), Err(StateError::UnsafeDir(_, "it is a symlink"))));
    }

    #[test]
    fn a_symlinked_or_loose_state_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(tmp.path()).unwrap();
        dir.store("a", &sample()).unwrap();
        let real = dir.file_for("a", "json");
        std::os::unix::fs::symlink(&real, dir.file_for("b", "json")).unwrap();
        assert!(matches!(dir.load("b"), Err(StateError::UnsafeFile(_, "it is a symlink"))));
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(dir.load("a"), Err(StateError::UnsafeFile(_, _))));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(tmp.path()).unwrap();
        let path = dir.file_for("g", "json");
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).unwrap();
        f.write_all(b"{\"session_id\": 1").unwrap();
        assert!(matches!(dir.load("g"), Err(StateError::Corrupt(_, _))));
    }

    #[test]
    fn bad_agent_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["", "../x", "a/b", "a b"] {
            assert!(StateDir::open_from(name, Some(tmp.path().into()), None, None).is_err(), "{name}");
        }
    }

    #[test]
    fn the_lock_is_exclusive() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = open_in(tmp.path()).unwrap();
        let held = dir.lock("s").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let d2 = dir.clone();
        let t = std::thread::spawn(move || {
            let _l = d2.lock("s").unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "second lock must wait");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
