//! The durable event store: the [`Store`] trait, its value types and the sled implementation.
//!
//! Ingest hands each authenticated, decoded event to a [`GroupCommit`] slot; the committer
//! writes the events of every waiting request exactly once, in one transaction
//! ([`Store::put_batch`] checks and records each sender's dedup key in it), then flushes, so
//! that a `202` means "survives `kill -9`" (DESIGN §5.2, §5.3) without paying one transaction
//! and one fsync per request (§5.10). The SOC API reads events back in arrival order; a background
//! [`run_retention`] loop keeps the store within its age and size limits.
//!
//! File ingest writes a run of decoded lines and the file's new checkpoint in one transaction
//! ([`Store::put_file_batch`]), so a restart resumes exactly after the last stored line, and
//! then waits on an empty [`GroupCommit`] slot for the flush that covers it.
//!
//! Deliberately not here: HTTP, authentication, decoding and policy. The store does not know
//! what an event means or who sent it; it keeps bytes in order, once, and durably.
//!
//! Blocking: every method except [`Store::event_count`] may wait on disk I/O and on sled's global
//! concurrency lock (sled 0.34 holds it for reading during a flush and for writing during a
//! transaction), so async callers must run them on `spawn_blocking`.

pub mod blocks;
mod commit;
pub mod deliver;
mod retention;
pub mod sessions;
mod sled_store;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::Arc;

use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::SecurityEvent;

pub use blocks::BlockStore;
pub use commit::{CommitSlot, GroupCommit, OnDurable, Overloaded};
pub use deliver::DeliverStore;
pub use retention::run_retention;
pub use sessions::SessionStore;
pub use sled_store::SledStore;

/// The storage operations the rest of the broker relies on. A trait so that ingest and the SOC
/// API can be tested against wrappers (counting flushes, injecting failures) without a disk.
pub trait Store: Send + Sync + 'static {
    /// Atomically (one sled transaction over the dedup and events trees): if `dedup.key` is
    /// present and not expired → [`PutOutcome::Duplicate`] with the existing event id and nothing
    /// is written; else the dedup entry (event id + `expires_at`) and the event are inserted.
    ///
    /// NOT durable until a flush. Ingest does not call this: it hands events to
    /// [`CommitSlot::write`], which batches them into [`Store::put_batch`].
    fn put_once(&self, dedup: &DedupRecord, event: &SecurityEvent) -> Result<PutOutcome, StoreError>;

    /// [`Store::put_once`] for each item, in order, all in one transaction: all are written or,
    /// on error, none. An item whose key an earlier item of the batch claimed is a
    /// [`PutOutcome::Duplicate`] of it. One outcome per item. Not durable until a flush.
    fn put_batch(&self, items: &[PutRequest]) -> Result<Vec<PutOutcome>, StoreError>;

    /// One event by id; `None` if it was never stored or was removed by retention.
    fn event(&self, id: Uuid) -> Result<Option<SecurityEvent>, StoreError>;

    /// Oldest first, strictly after `query.after` and at/after `query.since`; at most
    /// `query.limit` events.
    fn events(&self, query: &EventQuery) -> Result<Vec<SecurityEvent>, StoreError>;

    /// The ids [`Store::events`] would return, without reading the events.
    fn event_ids(&self, query: &EventQuery) -> Result<Vec<Uuid>, StoreError> {
        Ok(self.events(query)?.into_iter().map(|e| e.id).collect())
    }

    /// Durability point: everything written before the call survives `kill -9` once it returns.
    fn flush(&self) -> Result<(), StoreError>;

    /// Deletes events older than `retention.max_age_secs`, then the oldest events beyond
    /// `retention.max_events`, then dedup entries that expired at or before `now_unix`.
    fn sweep(&self, now_unix: i64, retention: &Retention) -> Result<SweepReport, StoreError>;

    /// Bytes the store occupies on disk (for the `haltwire_store_disk_bytes` gauge).
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Number of stored events. Cheap: never touches the disk or sled's lock.
    fn event_count(&self) -> u64;

    /// File ingest's unit of progress, atomically (one sled transaction over the dedup, events,
    /// meta and checkpoint trees): each event is stored unless its dedup key is live (exactly as
    /// [`Store::put_once`]), and the file's checkpoint is replaced by `batch.checkpoint`.
    /// A crash therefore leaves either the events and the new checkpoint, or neither.
    ///
    /// Returns one outcome per event, in order. NOT durable until a flush, like `put_once`:
    /// file ingest reserves a [`CommitSlot`] before this call and awaits
    /// [`CommitSlot::durable`] after it, whose flush starts after this write.
    fn put_file_batch(&self, batch: &FileBatch) -> Result<Vec<PutOutcome>, StoreError>;

    /// Every checkpoint stored for `watch`, in key order.
    fn file_checkpoints(&self, watch: &str) -> Result<Vec<(FileId, FileCheckpoint)>, StoreError>;

    /// Forgets a file's checkpoint (the file is gone). Not durable until a flush; losing the
    /// removal to a crash only means it is done again.
    fn remove_file_checkpoint(&self, watch: &str, file: FileId) -> Result<(), StoreError>;
}

/// A file's identity while it exists: device and inode. A rename keeps it; a copy does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// `st_dev`: inode numbers are only unique within one filesystem.
    pub dev: u64,
    /// `st_ino`: follows the file through renames (rename rotation).
    pub ino: u64,
}

/// How far a watch has durably read one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheckpoint {
    /// Bytes consumed: every line before this offset is stored or was counted as skipped.
    /// Reading resumes here after a restart.
    pub offset: u64,
    /// Lines before `offset`, so log messages can name `file:line` after a restart.
    pub line: u64,
    /// A digest of the bytes just before `offset` (file ingest decides which). It proves the
    /// file still holds what was read: a truncated-and-regrown file or a reused inode fails the
    /// check, and a copy of the file (copytruncate) passes it.
    pub fingerprint: [u8; 16],
    /// The file is a copy of another file being read (copytruncate, before the truncation):
    /// it is not read past `offset` until the original is truncated or the copy diverges.
    /// Stored so a restart does not read the copy's lines a second time.
    pub held_copy: bool,
    /// The file's name when last read; for operators and logs, never for identity.
    pub path: std::path::PathBuf,
}

/// What [`Store::put_file_batch`] writes: the events decoded from a run of lines of one file,
/// and where reading that file stands afterwards.
#[derive(Debug)]
pub struct FileBatch {
    /// The `[[watch]]` name: checkpoints are per watch, so two watches of one file are independent.
    pub watch: String,
    /// The file the lines came from.
    pub file: FileId,
    /// Events with their dedup keys (file ingest keys each on the line's position and digest,
    /// a second guard behind the checkpoint). May be empty: skipped lines still move the
    /// checkpoint.
    pub events: Vec<(DedupRecord, SecurityEvent)>,
    /// The file's checkpoint after these lines.
    pub checkpoint: FileCheckpoint,
}

/// A sender-scoped "have I seen this before" key, kept apart from the event so a replay is
/// recognised even after the event itself has aged out (DESIGN §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupRecord {
    /// What identifies a delivery: typically the source name plus the webhook id or a body hash.
    /// Built by ingest; the store treats it as opaque bytes.
    pub key: Vec<u8>,
    /// Unix seconds after which a delivery with the same key counts as new again. Bounded so the
    /// dedup tree cannot grow without limit.
    pub expires_at: i64,
}

/// One event to store once under its sender's dedup key (an item of [`Store::put_batch`]).
#[derive(Debug, Clone)]
pub struct PutRequest {
    pub dedup: DedupRecord,
    pub event: SecurityEvent,
}

/// What [`Store::put_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The event was written under this id.
    Stored(Uuid),
    /// The dedup key was already live; this is the id of the event stored the first time.
    /// That first write may not be flushed yet (a concurrent request), so the caller must still
    /// await its commit slot before answering.
    Duplicate(Uuid),
}

impl PutOutcome {
    /// The event id the caller should report, whichever way it went.
    pub fn id(self) -> Uuid {
        match self {
            PutOutcome::Stored(id) | PutOutcome::Duplicate(id) => id,
        }
    }
}

/// A page of events for the SOC API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Cursor: the id of the last event of the previous page. Exclusive.
    pub after: Option<Uuid>,
    /// Lower bound on arrival time as recorded in the UUIDv7 id (millisecond precision).
    /// Inclusive. Arrival time rather than the tool's own timestamp because it is the key order,
    /// so the bound costs one seek instead of a scan.
    pub since: Option<OffsetDateTime>,
    /// Page size; the API caps it, the store only honours it.
    pub limit: usize,
}

/// How much history to keep. Built from `[store]` in `haltwire.toml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events whose arrival time is more than this many seconds before `now` are deleted.
    pub max_age_secs: i64,
    /// At most this many events are kept; the oldest are deleted first.
    pub max_events: u64,
}

impl Retention {
    /// The retention described by the `[store]` section.
    pub fn from_config(config: &crate::config::StoreConfig) -> Retention {
        Retention { max_age_secs: i64::from(config.retention_days) * 86_400, max_events: config.max_events }
    }
}

/// What one [`Store::sweep`] removed, for the log line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Events removed by age or by count.
    pub events_deleted: u64,
    /// Expired dedup entries removed.
    pub dedup_deleted: u64,
}

/// Everything that can go wrong in the store. Corrupt bytes on disk become [`StoreError::Corrupt`]
/// rather than a panic, so one bad record fails one request, not the broker.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled reported an I/O or internal error.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The event could not be serialized; nothing was written.
    #[error("cannot encode event {id}: {source}")]
    Encode {
        id: Uuid,
        #[source]
        source: serde_json::Error,
    },
    /// A stored key or value does not have the shape this code writes.
    #[error("corrupt {tree} entry {key}: {reason}")]
    Corrupt { tree: &'static str, key: String, reason: String },
    /// An event with this id is already stored under a different dedup key. Ids are broker
    /// generated UUIDv7s, so this is a bug upstream; overwriting would silently lose an event.
    #[error("event id {0} already exists")]
    IdCollision(Uuid),
    /// The group commit could not write this request's events; nothing of them was stored.
    #[error("write failed: {0}")]
    WriteFailed(#[source] Arc<StoreError>),
    /// The group flush this request waited on failed; shared by every request in the batch.
    #[error("flush failed: {0}")]
    FlushFailed(#[source] Arc<StoreError>),
    /// A blocking store task did not complete (it panicked or the runtime is shutting down).
    #[error("store task failed: {0}")]
    Task(String),
    /// The group committer is not running (shut down), so durability cannot be confirmed.
    #[error("group commit has stopped")]
    CommitterStopped,
}
