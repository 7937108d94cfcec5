//! The inbox directory contract (DESIGN §4, security R41–R43): where a session's inbox lives
//! and how both sides open things in it without being fooled by the filesystem.
//!
//! Layout, per session: `<base>/haltwire/sessions/<session>/` holding `inbox/` (one file per
//! directive, `<seq>.dsse.json`), `done/`, `rejected/` and the reader's `replay.json`. `<base>`
//! is `$XDG_RUNTIME_DIR` when it is set, absolute, owned by this user and private; otherwise
//! `$HOME/.local/state`. Every directory from `haltwire/` down is created 0700 and refused
//! unless it is a real directory (not a symlink), owned by the effective uid and without any
//! group or other permission bit (R41).
//!
//! Every operation is anchored on an open directory descriptor (`openat`, `renameat`,
//! `unlinkat` with `O_NOFOLLOW`), so a symlink swapped in for any component is never followed
//! and a path is never resolved twice. The broker's writer ([`SecureDir::write_atomic`], R42)
//! and the agent's reader ([`SecureDir::open_message`], R43) share these primitives.
//!
//! Deliberately not here: what the files mean (signing, verifying, rendering), which sessions
//! have an inbox, and waking readers up.

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Largest inbox file a reader accepts (R43).
pub const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

/// Suffix of a directive file; the stem is its decimal `seq`.
pub const MESSAGE_SUFFIX: &str = ".dsse.json";

/// Prefix of files still being written; readers ignore them (R42).
pub const TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum InboxDirError {
    #[error("no inbox base: neither XDG_RUNTIME_DIR nor HOME is usable")]
    NoBase,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: refusing an inbox directory that is a symlink or not a directory")]
    NotDirectory(PathBuf),
    #[error("{path}: must be owned by uid {me} with mode 0700 (owner {owner}, mode {mode:o})")]
    Permissions { path: PathBuf, owner: u32, me: u32, mode: u32 },
    #[error("not a session id: must be a UUID")]
    BadSession,
}

/// Why one inbox file was refused before its bytes were read (R43). Reason codes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRefusal {
    /// A symlink (the `O_NOFOLLOW` open failed with `ELOOP`).
    Symlink,
    /// A FIFO, socket, device or directory.
    NotRegular,
    WrongOwner,
    /// Group or others may read or write it.
    WrongMode,
    /// More than one name points at it.
    HardLinked,
    Oversize,
    /// It vanished or could not be opened or read.
    Io,
}

impl FileRefusal {
    pub fn code(self) -> &'static str {
        match self {
            FileRefusal::Symlink => "symlink",
            FileRefusal::NotRegular => "not_regular",
            FileRefusal::WrongOwner => "wrong_owner",
            FileRefusal::WrongMode => "wrong_mode",
            FileRefusal::HardLinked => "hard_link",
            FileRefusal::Oversize => "oversize",
            FileRefusal::Io => "io_error",
        }
    }
}

/// The base directory for inboxes: `$XDG_RUNTIME_DIR` if usable, else `$HOME/.local/state`.
pub fn default_base() -> Result<PathBuf, InboxDirError> {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if dir.is_absolute() && private_dir_ok(&dir) {
            return Ok(dir);
        }
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).filter(|h| h.is_absolute());
    home.map(|h| h.join(".local").join("state")).ok_or(InboxDirError::NoBase)
}

/// The XDG spec's promise for `$XDG_RUNTIME_DIR`, checked rather than trusted.
fn private_dir_ok(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir)
        .map(|m| m.is_dir() && m.uid() == euid() && m.mode() & 0o077 == 0)
        .unwrap_or(false)
}

pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A directory opened once and checked; everything inside is reached through its descriptor.
#[derive(Debug)]
pub struct SecureDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The directories of one session's inbox.
#[derive(Debug)]
pub struct SessionDirs {
    /// `<base>/haltwire/sessions/<session>/`: holds the replay state and the lock.
    pub session: SecureDir,
    /// New directives, `<seq>.dsse.json`.
    pub inbox: SecureDir,
    /// Files that verified and were rendered (R45).
    pub done: SecureDir,
    /// Files that failed a check (mode 0600, R45).
    pub rejected: SecureDir,
}

impl SessionDirs {
    /// Opens (creating with 0700 where missing) every directory of `session`'s inbox under
    /// `base`, refusing any that is a symlink, someone else's, or not private (R41).
    pub fn open(base: &Path, session: &str) -> Result<SessionDirs, InboxDirError> {
        if uuid::Uuid::parse_str(session).is_err() {
            return Err(InboxDirError::BadSession);
        }
        let root = SecureDir::open_base(base)?;
        let app = root.child("haltwire", true)?;
        let sessions = app.child("sessions", true)?;
        let session = sessions.child(session, true)?;
        Ok(SessionDirs {
            inbox: session.child("inbox", true)?,
            done: session.child("done", true)?,
            rejected: session.child("rejected", true)?,
            session,
        })
    }

    /// The inbox path for display and for file-change watchers.
    pub fn inbox_path(&self) -> &Path {
        &self.inbox.path
    }
}

impl SecureDir {
    /// The anchor: opened with `O_DIRECTORY`; created (0700, parents too) when missing. Its own
    /// ownership is not required to be private (`~/.local/state` often is 0755); everything
    /// haltwire creates below it is.
    fn open_base(base: &Path) -> Result<SecureDir, InboxDirError> {
        let io = |source| InboxDirError::Io { path: base.to_path_buf(), source };
        if !base.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(base).map_err(io)?;
        }
        let fd = rustix::fs::open(base, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| io(e.into()))?;
        Ok(SecureDir { fd, path: base.to_path_buf() })
    }

    /// A private subdirectory, opened relative to this one without following symlinks.
    pub fn child(&self, name: &str, create: bool) -> Result<SecureDir, InboxDirError> {
        let path = self.path.join(name);
        if create {
            match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(InboxDirError::Io { path, source: e.into() }),
            }
        }
        let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(InboxDirError::NotDirectory(path)),
            Err(e) => return Err(InboxDirError::Io { path, source: e.into() }),
        };
        let stat =
            rustix::fs::fstat(&fd).map_err(|e| InboxDirError::Io { path: path.clone(), source: e.into() })?;
        let mode = stat.st_mode & 0o7777;
        let me = euid();
        if stat.st_uid != me || mode & 0o077 != 0 {
            return Err(InboxDirError::Permissions { path, owner: stat.st_uid, me, mode });
        }
        Ok(SecureDir { fd, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` as `name` atomically (R42): a `.tmp-*` file created with
    /// `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600, written and fsynced, renamed over `name`, then
    /// the directory fsynced. A reader sees the old file or the new one, never a partial one.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let temp = format!("{TEMP_PREFIX}{}", uuid::Uuid::now_v7().simple());
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, temp.as_str(), flags, Mode::from_raw_mode(0o600))?;
        let written = (|| {
            let mut file = std::fs::File::from(fd);
            file.write_all(bytes)?;
            file.sync_all()?;
            rustix::fs::renameat(&self.fd, temp.as_str(), &self.fd, name)?;
            rustix::fs::fsync(&self.fd)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, temp.as_str(), AtFlags::empty());
        }
        written
    }

    /// Whether `name` exists here (as anything; symlinks are not followed).
    pub fn contains(&self, name: &str) -> std::io::Result<bool> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Names of the directive files here, in `seq` order; temp files and anything not named
    /// `<decimal>.dsse.json` are skipped (and never opened).
    pub fn messages(&self) -> std::io::Result<Vec<(u64, String)>> {
        let mut out = Vec::new();
        let dir = rustix::fs::Dir::read_from(&self.fd)?;
        for entry in dir {
            let entry = entry?;
            let Ok(name) = entry.file_name().to_str() else { continue };
            if let Some(seq) = parse_message_name(name) {
                out.push((seq, name.to_string()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens and reads one inbox file under R43: `O_NOFOLLOW|O_NONBLOCK` (a FIFO cannot hang
    /// the open), then `fstat` on the descriptor: a regular file owned by this uid, no group or
    /// other bits, exactly one link, at most [`MAX_MESSAGE_BYTES`]. Only then are bytes read.
    pub fn open_message(&self, name: &str) -> Result<Vec<u8>, FileRefusal> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => return Err(FileRefusal::Symlink),
            Err(_) => return Err(FileRefusal::Io),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|_| FileRefusal::Io)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(FileRefusal::NotRegular);
        }
        if stat.st_uid != euid() {
            return Err(FileRefusal::WrongOwner);
        }
        if stat.st_mode & 0o077 != 0 {
            return Err(FileRefusal::WrongMode);
        }
        if stat.st_nlink != 1 {
            return Err(FileRefusal::HardLinked);
        }
        let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
        if size > MAX_MESSAGE_BYTES {
            return Err(FileRefusal::Oversize);
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        std::fs::File::from(fd)
            .take(MAX_MESSAGE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|_| FileRefusal::Io)?;
        if bytes.len() as u64 > MAX_MESSAGE_BYTES {
            return Err(FileRefusal::Oversize);
        }
        Ok(bytes)
    }

    /// Moves `name` from here into `to` (same name), then fsyncs both directories. A regular
    /// file moved into `rejected/` is made 0600 first (R45); nothing else is followed or opened.
    pub fn move_to(&self, name: &str, to: &SecureDir) -> std::io::Result<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if let Ok(fd) = rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            if rustix::fs::fstat(&fd)
                .is_ok_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::RegularFile)
            {
                let _ = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o600));
            }
        }
        rustix::fs::renameat(&self.fd, name, &to.fd, name)?;
        rustix::fs::fsync(&self.fd)?;
        rustix::fs::fsync(&to.fd)?;
        Ok(())
    }

    /// Reads a small private file here (the replay state), refusing what [`Self::open_message`]
    /// refuses. `Ok(None)` when it does not exist.
    pub fn read_private(&self, name: &str) -> Result<Option<Vec<u8>>, FileRefusal> {
        match self.contains(name) {
            Ok(false) => Ok(None),
            Ok(true) => self.open_message(name).map(Some),
            Err(_) => Err(FileRefusal::Io),
        }
    }

    /// Opens (creating 0600) a lock file here and takes an exclusive `flock` on it, so two
    /// readers of one inbox never drain it at once. Released when the returned fd is dropped.
    pub fn lock(&self, name: &str) -> std::io::Result<OwnedFd> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))?;
        rustix::fs::flock(fd.as_fd(), rustix::fs::FlockOperation::LockExclusive)?;
        Ok(fd)
    }
}

/// `<seq>.dsse.json` → `seq`; anything else (temp files, other names) → `None`.
pub fn parse_message_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(MESSAGE_SUFFIX)?;
    if stem.is_empty() || stem.len() > 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// The file name of directive `seq`.
pub fn message_name(seq: u64) -> String {
    format!("{seq}{MESSAGE_SUFFIX}")
}
