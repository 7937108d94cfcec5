//! The agent side of the inbox (DESIGN §4, R41–R45), agent-neutral: `haltwire inbox read|watch`
//! use it, and so can any hook or adapter that wants the inbox's notices.
//!
//! [`Inbox::drain`] takes every `<seq>.dsse.json` in `seq` order (temp files and other names
//! are never opened), opens each under R43 (`O_NOFOLLOW|O_NONBLOCK`, then `fstat` on the
//! descriptor: regular, owned by us, private, one link, ≤ 64 KiB), verifies it for exactly
//! this session with the caller's [`Verifier`] and [`ReplayState`], and moves it to `done/`
//! (verified) or `rejected/` (anything else, made 0600) (R45). Only verified directives come
//! back; a rejected file yields a reason code and nothing else, so nothing about it can reach a
//! model. The replay state persists beside the inbox (`replay.json`, 0600, written atomically),
//! and a `flock` keeps two readers of one inbox from draining it at once.
//!
//! Deliberately not here: rendering (the caller renders with `directive::render::notice`), any
//! HTTP or acknowledgment to the broker, and waking up (the caller rescans; see
//! `cli::inbox` for the `watch` loop).

use crate::directive::verify::{ReplayState, VerifiedDirective, Verifier};
use crate::inbox_dir::{self, FileRefusal, InboxDirError, SessionDirs};
use std::path::{Path, PathBuf};

/// The replay state's file name in the session directory.
const REPLAY_FILE: &str = "replay.json";
/// The lock file's name in the session directory.
const LOCK_FILE: &str = ".lock";

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error(transparent)]
    Dir(#[from] InboxDirError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// The replay state exists but cannot be trusted; refusing to verify without it, because
    /// an empty state would let old directives through again.
    #[error("{path}: replay state refused ({reason})")]
    ReplayState { path: PathBuf, reason: String },
}

/// A file that did not verify: where it went, and why (a reason code, never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedFile {
    pub name: String,
    pub reason: &'static str,
}

/// What one drain did.
#[derive(Debug, Default)]
pub struct Drained {
    /// Verified directives, in `seq` order, each moved to `done/`.
    pub accepted: Vec<VerifiedDirective>,
    /// Everything else, moved to `rejected/`.
    pub rejected: Vec<RejectedFile>,
}

/// One session's inbox, opened and checked.
#[derive(Debug)]
pub struct Inbox {
    session: String,
    dirs: SessionDirs,
}

impl Inbox {
    /// The inbox of `session` under the default base (`$XDG_RUNTIME_DIR`, else
    /// `$HOME/.local/state`), created 0700 where missing; refused when not private (R41).
    pub fn open(session: &str) -> Result<Inbox, InboxError> {
        Inbox::open_in(&inbox_dir::default_base()?, session)
    }

    /// The inbox of `session` under `base`.
    pub fn open_in(base: &Path, session: &str) -> Result<Inbox, InboxError> {
        let dirs = SessionDirs::open(base, session)?;
        Ok(Inbox { session: session.to_string(), dirs })
    }

    /// The `inbox/` directory (for file-change watchers and messages).
    pub fn path(&self) -> &Path {
        self.dirs.inbox_path()
    }

    /// Loads the persisted replay state; an absent file is a fresh state. A file that fails the
    /// R43 checks or does not parse is an error (fail closed).
    pub fn load_replay(&self) -> Result<ReplayState, InboxError> {
        let path = self.dirs.session.path().join(REPLAY_FILE);
        match self.dirs.session.read_private(REPLAY_FILE) {
            Ok(None) => Ok(ReplayState::default()),
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map_err(|e| InboxError::ReplayState {
                path,
                reason: format!("line {} column {}", e.line(), e.column()),
            }),
            Err(refusal) => Err(InboxError::ReplayState { path, reason: refusal.code().to_string() }),
        }
    }

    /// Writes the replay state atomically (temp file 0600, fsync, rename, fsync directory).
    pub fn save_replay(&self, replay: &ReplayState) -> Result<(), InboxError> {
        let bytes = serde_json::to_vec(replay).unwrap_or_default();
        self.dirs
            .session
            .write_atomic(REPLAY_FILE, &bytes)
            .map_err(|source| InboxError::Io { path: self.dirs.session.path().join(REPLAY_FILE), source })
    }

    /// Drains the inbox with the given replay state (see the module doc). Never fails as a
    /// whole: a file that cannot be handled is rejected and the drain goes on.
    pub fn drain(&self, verifier: &Verifier, replay: &mut ReplayState, now: i64) -> Drained {
        let mut drained = Drained::default();
        let names = match self.dirs.inbox.messages() {
            Ok(names) => names,
            Err(_) => return drained,
        };
        for (seq, name) in names {
            match self.take(verifier, replay, now, seq, &name) {
                Ok(verified) => {
                    let _ = self.dirs.inbox.move_to(&name, &self.dirs.done);
                    drained.accepted.push(verified);
                }
                Err(reason) => {
                    let _ = self.dirs.inbox.move_to(&name, &self.dirs.rejected);
                    drained.rejected.push(RejectedFile { name, reason });
                }
            }
        }
        drained
    }

    /// [`Inbox::drain`] under the inbox lock, with the persisted replay state loaded before and
    /// saved after.
    pub fn drain_persisted(&self, verifier: &Verifier, now: i64) -> Result<Drained, InboxError> {
        let lock_path = self.dirs.session.path().join(LOCK_FILE);
        let _lock =
            self.dirs.session.lock(LOCK_FILE).map_err(|source| InboxError::Io { path: lock_path, source })?;
        let mut replay = self.load_replay()?;
        let drained = self.drain(verifier, &mut replay, now);
        if !drained.accepted.is_empty() {
            self.save_replay(&replay)?;
        }
        Ok(drained)
    }

    /// Opens, checks and verifies one file.
    fn take(
        &self,
        verifier: &Verifier,
        replay: &mut ReplayState,
        now: i64,
        seq: u64,
        name: &str,
    ) -> Result<VerifiedDirective, &'static str> {
        let bytes = self.dirs.inbox.open_message(name).map_err(FileRefusal::code)?;
        // The name is only a sort key; the signed `seq` must agree with it. Checked on a copy of
        // the state so a mismatching file does not advance it.
        let mut trial = replay.clone();
        let verified = verifier.verify(&bytes, &self.session, now, &mut trial).map_err(|r| r.code())?;
        if verified.payload.seq != seq {
            return Err("name_mismatch");
        }
        *replay = trial;
        Ok(verified)
    }
}

#[cfg(test)]
mod tests;
