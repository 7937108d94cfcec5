//! The inbox push channel (DESIGN §4, R41–R42): for every active session registered with the
//! `inbox` channel, a broker thread writes each visible pending directive, signed at write
//! time, to `<inbox>/<seq>.dsse.json` through [`crate::inbox_dir`] (temp file with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` 0600, fsync, `renameat`, fsync of the directory).
//!
//! Redelivery and backoff: a failed write (a refused or missing directory, a full disk) is
//! tried again after 1, 2, 4 … 60 s, counting attempts in the entry. A file still unread when
//! its envelope nears expiry is re-signed and replaced under the same name (same `jti` and
//! `seq`), so a reader that comes back late still finds a valid one. A file the reader has
//! taken (no longer in `inbox/`) is not written again; for a session whose only channel is the
//! inbox, that counts as its acknowledgment.
//!
//! Doorbell: with `[deliver] inbox_doorbell = true`, after writing new files the worker sends
//! `SIGUSR1` to the session's registered agent pid — only when `/proc` still shows the same
//! process (pid and start time), so a reused pid is never signalled. The signal is only a
//! wake-up; readers rescan anyway.
//!
//! Deliberately not here: reading, verifying or rendering (agent side, `agent::inbox`), and any
//! HTTP.

use super::{Deliver, InboxState, QueuedDirective};
use crate::inbox_dir::{message_name, SessionDirs};
use crate::sessions::model::{Channel, Session, SessionStatus};
use crate::sessions::procfs::Procfs;
use crate::store::SessionStore;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// An unread file is re-signed this long after it was written (envelopes live 300 s).
pub const REFRESH_AFTER_SECS: i64 = 240;
/// Longest backoff between failed writes.
const MAX_BACKOFF_SECS: i64 = 60;
/// Entries looked at per session per pass.
const PASS_LIMIT: usize = 256;
/// Rescan period when nothing rings.
const IDLE_PASS: Duration = Duration::from_millis(500);

/// Settings of the inbox channel.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// Base directory (normally `$XDG_RUNTIME_DIR`, see `inbox_dir::default_base`).
    pub base: PathBuf,
    /// Send `SIGUSR1` to the agent pid after new files.
    pub doorbell: bool,
}

/// The running inbox worker; stop it with [`InboxWorker::stop`].
pub struct InboxWorker {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl InboxWorker {
    pub fn start(
        deliver: Arc<Deliver>,
        sessions: Arc<dyn SessionStore>,
        settings: InboxSettings,
    ) -> std::io::Result<InboxWorker> {
        let (tx, rx) = mpsc::sync_channel(1);
        deliver.add_waker(tx);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("haltwire-inbox".into()).spawn(move || {
            let procfs = Procfs::default();
            while !flag.load(Ordering::Acquire) {
                match rx.recv_timeout(IDLE_PASS) {
                    Ok(()) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                match sessions.sessions() {
                    Ok(all) => {
                        for session in all.iter().filter(|s| wants_inbox(s)) {
                            pass(&deliver, session, &settings, &procfs, now);
                        }
                    }
                    Err(err) => tracing::warn!(%err, "inbox worker: cannot list sessions"),
                }
            }
        })?;
        Ok(InboxWorker { stop, thread })
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

fn wants_inbox(session: &Session) -> bool {
    session.status == SessionStatus::Active && session.channels.contains(&Channel::Inbox)
}

/// One pass over one session's pending directives.
pub fn pass(deliver: &Deliver, session: &Session, settings: &InboxSettings, procfs: &Procfs, now: i64) {
    let id = session.session_id;
    if deliver.visible_seq(id) == 0 {
        return;
    }
    let pending = match deliver.pending(id, 0, PASS_LIMIT) {
        Ok(p) => p,
        Err(err) => return tracing::warn!(%err, session_id = %id, "inbox worker: cannot read the queue"),
    };
    if pending.is_empty() {
        return;
    }
    let dirs = SessionDirs::open(&settings.base, &id.to_string());
    let inbox_only = session.channels.iter().all(|c| *c == Channel::Inbox);
    let mut rang = false;
    for mut entry in pending {
        let changed = match &dirs {
            Ok(dirs) => step(deliver, dirs, &mut entry, inbox_only, now, &mut rang),
            Err(err) => {
                if entry.inbox == InboxState::NotWritten && entry.next_attempt_at <= now {
                    if entry.attempts == 0 {
                        tracing::warn!(session_id = %id, error = %err, "inbox directory refused");
                    }
                    failed(&mut entry, now);
                    true
                } else {
                    false
                }
            }
        };
        if changed {
            if let Err(err) = deliver.update(&entry) {
                tracing::warn!(%err, "inbox worker: cannot save delivery state");
            }
        }
    }
    if rang && settings.doorbell && procfs.is_same_process(session.pid, session.pid_start_time) {
        ring_doorbell(session.pid);
    }
}

/// Moves one entry along; returns whether its state changed (and must be saved).
fn step(
    deliver: &Deliver,
    dirs: &SessionDirs,
    entry: &mut QueuedDirective,
    inbox_only: bool,
    now: i64,
    rang: &mut bool,
) -> bool {
    let name = message_name(entry.seq);
    match entry.inbox {
        InboxState::Taken => false,
        InboxState::Written { at } => match dirs.inbox.contains(&name) {
            Ok(false) => {
                if inbox_only {
                    let _ = deliver.ack(entry.session_id, &entry.jti, "inbox");
                    false
                } else {
                    entry.inbox = InboxState::Taken;
                    true
                }
            }
            Ok(true) if now - at >= REFRESH_AFTER_SECS => write(deliver, dirs, entry, &name, now),
            _ => false,
        },
        InboxState::NotWritten if entry.next_attempt_at <= now => {
            let wrote = write(deliver, dirs, entry, &name, now);
            *rang |= entry.inbox != InboxState::NotWritten;
            wrote
        }
        InboxState::NotWritten => false,
    }
}

/// Signs now and writes atomically; records success or schedules a retry.
fn write(deliver: &Deliver, dirs: &SessionDirs, entry: &mut QueuedDirective, name: &str, now: i64) -> bool {
    let envelope = deliver.sign(entry, now);
    entry.attempts = entry.attempts.saturating_add(1);
    match dirs.inbox.write_atomic(name, envelope.to_json().as_bytes()) {
        Ok(()) => {
            entry.inbox = InboxState::Written { at: now };
            metrics::counter!("haltwire_directive_pushes_total", "channel" => "inbox", "outcome" => "written")
                .increment(1);
        }
        Err(err) => {
            tracing::warn!(session_id = %entry.session_id, seq = entry.seq, error = %err, "inbox write failed; will retry");
            entry.attempts = entry.attempts.saturating_sub(1);
            failed(entry, now);
        }
    }
    true
}

/// Counts a failed attempt and sets the backoff: 1, 2, 4 … 60 s.
fn failed(entry: &mut QueuedDirective, now: i64) {
    entry.attempts = entry.attempts.saturating_add(1);
    entry.next_attempt_at = now + backoff_secs(entry.attempts);
    metrics::counter!("haltwire_directive_pushes_total", "channel" => "inbox", "outcome" => "failed")
        .increment(1);
}

/// Seconds to wait after the `attempts`-th failure.
pub fn backoff_secs(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(6);
    (1i64 << exp).min(MAX_BACKOFF_SECS)
}

fn ring_doorbell(pid: u32) {
    let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else { return };
    if rustix::process::kill_process(pid, rustix::process::Signal::USR1).is_ok() {
        metrics::counter!("haltwire_inbox_doorbells_total").increment(1);
    }
}
