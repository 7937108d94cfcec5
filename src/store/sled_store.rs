//! [`SledStore`]: the [`Store`] on sled 0.34.
//!
//! Three trees:
//! - `events`: 16-byte UUIDv7 id (big-endian, so byte order = arrival order) → `SecurityEvent`
//!   as serde_json. Time bounds become key bounds because a v7 id starts with its Unix ms.
//! - `dedup`: sender dedup key → `[format 1][event id: 16][expires_at: i64 BE]`.
//! - `meta`: `event_count` → u64 BE, updated in the same transactions that add or remove
//!   events, so the count is exact after a crash and costs nothing to load on open.
//! - `file_checkpoints`: `watch name, 0x00, dev: u64 BE, ino: u64 BE` →
//!   `[format 1][offset: u64 BE][line: u64 BE][fingerprint: 16][flags: 1][path bytes]` (flag bit 0:
//!   held copy), written in the same
//!   transaction as the events read up to that offset.
//!
//! Deliberately not here: flushing policy (that is [`super::GroupCommit`]), when to sweep
//! ([`super::run_retention`]), and anything about what an event means.

use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{IVec, Transactional};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    DedupRecord, EventQuery, FileBatch, FileCheckpoint, FileId, PutOutcome, PutRequest, Retention, Store,
    StoreError, SweepReport,
};
use crate::event::SecurityEvent;

const EVENTS_TREE: &str = "events";
const DEDUP_TREE: &str = "dedup";
const META_TREE: &str = "meta";
const CHECKPOINTS_TREE: &str = "file_checkpoints";
const EVENT_COUNT_KEY: &[u8] = b"event_count";

/// First byte of every dedup value, so the layout can change later without guessing.
const DEDUP_FORMAT: u8 = 1;
const DEDUP_VALUE_LEN: usize = 1 + 16 + 8;

/// First byte of every checkpoint value, for the same reason.
const CHECKPOINT_FORMAT: u8 = 1;
/// Checkpoint value bytes before the path.
const CHECKPOINT_FIXED_LEN: usize = 1 + 8 + 8 + 16 + 1;

/// Events removed per sweep transaction. Each transaction holds sled's global write lock, so a
/// small batch keeps ingest from stalling behind a large retention backlog.
const SWEEP_BATCH: usize = 256;

/// Upper bound on the Vec preallocated for a page, so a huge `limit` cannot allocate up front.
const PAGE_PREALLOC: usize = 1024;

/// The largest Unix millisecond value a UUIDv7 can carry (48 bits).
const MAX_V7_MILLIS: i64 = (1 << 48) - 1;

/// The sled-backed event store. Cheap to share behind an `Arc`; sled handles its own locking.
pub struct SledStore {
    /// The database; flush and size are database-wide, not per tree.
    db: sled::Db,
    /// Events keyed by id bytes, in arrival order.
    pub(super) events: sled::Tree,
    /// Dedup keys with the first event's id and an expiry; outlives the events it points to.
    dedup: sled::Tree,
    /// The persistent event count (see the module doc).
    pub(super) meta: sled::Tree,
    /// File ingest checkpoints, per watch and file (see the module doc).
    checkpoints: sled::Tree,
    /// Registered agent sessions: session id (16 bytes) → `Session` JSON.
    pub(super) sessions: sled::Tree,
    /// The command ledger: session id (16 bytes) ‖ call id → `CommandRecord` JSON.
    pub(super) ledger: sled::Tree,
    /// Correlation results beside the events: event id (16 bytes) → `Correlation` JSON.
    pub(super) correlations: sled::Tree,
    /// Blocks: block id (16 bytes) → `Block` JSON.
    pub(super) blocks: sled::Tree,
    /// Which block an event caused: event id → block id.
    pub(super) event_blocks: sled::Tree,
    /// Delivery queues (see `store::deliver`): session ‖ seq → queued directive.
    pub(super) directives: sled::Tree,
    /// jti → session ‖ seq.
    pub(super) directive_jtis: sled::Tree,
    /// session → last seq handed out.
    pub(super) directive_seqs: sled::Tree,
    /// origin → jti (enqueue-once).
    pub(super) directive_origins: sled::Tree,
    /// In-memory mirror of the persistent count so `event_count()` never touches sled (it would
    /// wait behind a flush). Signed: two commits' mirror updates can land out of order, so a
    /// sweep's decrement may briefly precede the increment of the insert it follows; the reader
    /// clamps at zero instead of seeing a wrapped u64.
    count: AtomicI64,
}

impl SledStore {
    /// Opens (or creates) the store in `dir` with a `cache_bytes` page cache.
    ///
    /// HighThroughput mode and sled's default 500 ms background flush: durability for ingest
    /// comes from explicit group-commit flushes, the background flush only bounds loss for
    /// everything else.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<SledStore, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let events = db.open_tree(EVENTS_TREE)?;
        let dedup = db.open_tree(DEDUP_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let checkpoints = db.open_tree(CHECKPOINTS_TREE)?;
        let count = load_event_count(&events, &meta)?;
        Ok(SledStore {
            sessions: db.open_tree("sessions")?,
            ledger: db.open_tree("ledger")?,
            correlations: db.open_tree("correlations")?,
            blocks: db.open_tree("blocks")?,
            event_blocks: db.open_tree("event_blocks")?,
            directives: db.open_tree("directives")?,
            directive_jtis: db.open_tree("directive_jtis")?,
            directive_seqs: db.open_tree("directive_seqs")?,
            directive_origins: db.open_tree("directive_origins")?,
            db,
            events,
            dedup,
            meta,
            checkpoints,
            count: AtomicI64::new(i64::try_from(count).unwrap_or(i64::MAX)),
        })
    }

    /// `put_once` for every pair, in order, in ONE transaction. sled 0.34 makes every
    /// transaction roll its I/O buffer and write the log (two `pwrite` + `sync_file_range` on
    /// its I/O threads), so one transaction per event cost more than the rest of ingest put
    /// together; one per group commit amortises it. A later pair sees an earlier pair's dedup
    /// entry (the transaction reads its own writes), so one key is stored once per batch too.
    ///
    /// `checkpoint` (key, value), if given, is written in the same transaction: file ingest's
    /// events and the file's new checkpoint are stored together or not at all.
    fn put_all(
        &self,
        pairs: &[(&DedupRecord, &SecurityEvent)],
        checkpoint: Option<(&[u8], &[u8])>,
    ) -> Result<Vec<PutOutcome>, StoreError> {
        // Encoded outside the closure: sled may run it more than once.
        let encoded = pairs
            .iter()
            .map(|(dedup, event)| {
                let value = serde_json::to_vec(event)
                    .map_err(|source| StoreError::Encode { id: event.id, source })?;
                Ok((IVec::from(value), event_key(event.id), encode_dedup(event.id, dedup.expires_at)))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let now = unix_now();
        let outcomes = (&self.dedup, &self.events, &self.meta, &self.checkpoints)
            .transaction(|(dedup_tx, events_tx, meta_tx, checkpoints_tx)| {
                let mut outcomes = Vec::with_capacity(pairs.len());
                for ((dedup, event), (value, key, dedup_value)) in pairs.iter().zip(&encoded) {
                    if let Some(existing) = dedup_tx.get(&dedup.key)? {
                        let entry = decode_dedup(&dedup.key, &existing)
                            .map_err(ConflictableTransactionError::Abort)?;
                        if entry.expires_at > now {
                            outcomes.push(PutOutcome::Duplicate(entry.id));
                            continue;
                        }
                    }
                    if events_tx.get(key)?.is_some() {
                        return Err(ConflictableTransactionError::Abort(StoreError::IdCollision(event.id)));
                    }
                    dedup_tx.insert(dedup.key.as_slice(), &dedup_value[..])?;
                    events_tx.insert(&key[..], value.clone())?;
                    outcomes.push(PutOutcome::Stored(event.id));
                }
                let stored = outcomes.iter().filter(|o| matches!(o, PutOutcome::Stored(_))).count() as u64;
                if stored > 0 {
                    let count = decode_count(meta_tx.get(EVENT_COUNT_KEY)?.as_deref())
                        .map_err(ConflictableTransactionError::Abort)?;
                    meta_tx.insert(EVENT_COUNT_KEY, &count.saturating_add(stored).to_be_bytes()[..])?;
                }
                if let Some((key, value)) = checkpoint {
                    checkpoints_tx.insert(key, value)?;
                }
                Ok(outcomes)
            })
            .map_err(from_transaction)?;
        let stored = outcomes.iter().filter(|o| matches!(o, PutOutcome::Stored(_))).count();
        self.count.fetch_add(i64::try_from(stored).unwrap_or(i64::MAX), Ordering::Relaxed);
        Ok(outcomes)
    }

    /// Deletes up to `limit` of the oldest events with keys below `upper`; returns how many went.
    fn delete_oldest(&self, upper: Bound<[u8; 16]>, limit: u64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut remaining = limit;
        while remaining > 0 {
            let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(SWEEP_BATCH);
            let keys = self
                .events
                .range::<[u8; 16], _>((Bound::Unbounded, upper))
                .keys()
                .take(take)
                .collect::<Result<Vec<IVec>, _>>()?;
            if keys.is_empty() {
                break;
            }
            deleted += self.remove_events(&keys)?;
            // Count keys seen, not keys removed: a concurrent sweep may have taken some, and
            // the loop must still make progress.
            remaining = remaining.saturating_sub(keys.len() as u64);
        }
        Ok(deleted)
    }

    /// Removes `keys` and lowers the persistent count in one transaction.
    fn remove_events(&self, keys: &[IVec]) -> Result<u64, StoreError> {
        let removed = (&self.events, &self.meta)
            .transaction(|(events, meta)| {
                let mut removed = 0u64;
                for key in keys {
                    if events.remove(key.clone())?.is_some() {
                        removed += 1;
                    }
                }
                let count = decode_count(meta.get(EVENT_COUNT_KEY)?.as_deref())
                    .map_err(ConflictableTransactionError::Abort)?;
                meta.insert(EVENT_COUNT_KEY, &count.saturating_sub(removed).to_be_bytes()[..])?;
                Ok(removed)
            })
            .map_err(from_transaction)?;
        self.count.fetch_sub(i64::try_from(removed).unwrap_or(i64::MAX), Ordering::Relaxed);
        Ok(removed)
    }

    /// Deletes dedup entries that expired at or before `now_unix`.
    ///
    /// A full scan of the dedup tree: entries are ordered by key, not expiry. That is one pass
    /// per sweep interval over entries that live no longer than their TTL; an expiry index
    /// would cost a third tree in every ingest transaction.
    fn delete_expired_dedup(&self, now_unix: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for item in self.dedup.iter() {
            let (key, value) = item?;
            match decode_dedup(&key, &value) {
                Ok(entry) if entry.expires_at <= now_unix => {
                    // Compare-and-swap, not remove: `put_once` may have replaced this expired
                    // entry with a live one since we read it, and erasing that would let a
                    // replay through.
                    let swapped = self.dedup.compare_and_swap(&key, Some(&value), None::<&[u8]>)?;
                    if swapped.is_ok() {
                        deleted += 1;
                    }
                }
                Ok(_) => {}
                // Kept, not deleted: deleting would forget the key, and failing the sweep would
                // stop retention for good. `put_once` on that key reports the corruption.
                Err(err) => tracing::warn!(%err, "retention skipped a corrupt dedup entry"),
            }
        }
        Ok(deleted)
    }
}

impl Store for SledStore {
    fn put_once(&self, dedup: &DedupRecord, event: &SecurityEvent) -> Result<PutOutcome, StoreError> {
        let outcomes = self.put_all(&[(dedup, event)], None)?;
        outcomes.into_iter().next().ok_or_else(|| StoreError::Task("empty transaction result".into()))
    }

    fn put_batch(&self, items: &[PutRequest]) -> Result<Vec<PutOutcome>, StoreError> {
        let pairs: Vec<_> = items.iter().map(|item| (&item.dedup, &item.event)).collect();
        self.put_all(&pairs, None)
    }

    fn event(&self, id: Uuid) -> Result<Option<SecurityEvent>, StoreError> {
        let key = event_key(id);
        match self.events.get(key)? {
            Some(value) => decode_event(&key, &value).map(Some),
            None => Ok(None),
        }
    }

    fn events(&self, query: &EventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut page = Vec::with_capacity(query.limit.min(PAGE_PREALLOC));
        for item in self.events.range(lower_bound(query)..) {
            let (key, value) = item?;
            page.push(decode_event(&key, &value)?);
            if page.len() >= query.limit {
                break;
            }
        }
        Ok(page)
    }

    fn event_ids(&self, query: &EventQuery) -> Result<Vec<Uuid>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let mut page = Vec::with_capacity(query.limit.min(PAGE_PREALLOC));
        for key in self.events.range(lower_bound(query)..).keys() {
            let key = key?;
            let id = Uuid::from_slice(&key).map_err(|err| StoreError::Corrupt {
                tree: EVENTS_TREE,
                key: show_key(&key),
                reason: format!("key is not an id: {err}"),
            })?;
            page.push(id);
            if page.len() >= query.limit {
                break;
            }
        }
        Ok(page)
    }

    /// Writes sled's log up to the last reserved position. That covers `kill -9` (the contract,
    /// DESIGN §5.2). Power loss is weaker: on Linux sled 0.34 syncs with `sync_file_range`,
    /// which flushes neither file metadata nor the device's write cache.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    fn sweep(&self, now_unix: i64, retention: &Retention) -> Result<SweepReport, StoreError> {
        let cutoff_ms = now_unix.saturating_sub(retention.max_age_secs).saturating_mul(1000);
        let by_age = self.delete_oldest(Bound::Excluded(millis_key(cutoff_ms)), u64::MAX)?;
        let excess = self.event_count().saturating_sub(retention.max_events);
        let by_count = self.delete_oldest(Bound::Unbounded, excess)?;
        let dedup_deleted = self.delete_expired_dedup(now_unix)?;
        Ok(SweepReport { events_deleted: by_age + by_count, dedup_deleted })
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    fn event_count(&self) -> u64 {
        u64::try_from(self.count.load(Ordering::Relaxed)).unwrap_or(0)
    }

    fn put_file_batch(&self, batch: &FileBatch) -> Result<Vec<PutOutcome>, StoreError> {
        let pairs: Vec<_> = batch.events.iter().map(|(dedup, event)| (dedup, event)).collect();
        let key = checkpoint_key(&batch.watch, batch.file);
        let value = encode_checkpoint(&batch.checkpoint);
        self.put_all(&pairs, Some((key.as_slice(), value.as_slice())))
    }

    fn file_checkpoints(&self, watch: &str) -> Result<Vec<(FileId, FileCheckpoint)>, StoreError> {
        let prefix = checkpoint_prefix(watch);
        let mut all = Vec::new();
        for item in self.checkpoints.scan_prefix(&prefix) {
            let (key, value) = item?;
            all.push(decode_checkpoint(&prefix, &key, &value)?);
        }
        Ok(all)
    }

    fn remove_file_checkpoint(&self, watch: &str, file: FileId) -> Result<(), StoreError> {
        self.checkpoints.remove(checkpoint_key(watch, file))?;
        Ok(())
    }
}

/// Reads the persistent count. Every store this code creates gets the counter on first open,
/// so the fallback count is a one-time cost for a store written before the counter existed
/// (or with the `meta` tree lost); an empty store counts instantly.
fn load_event_count(events: &sled::Tree, meta: &sled::Tree) -> Result<u64, StoreError> {
    if let Some(value) = meta.get(EVENT_COUNT_KEY)? {
        return decode_count(Some(&value));
    }
    let count = events.len() as u64;
    meta.insert(EVENT_COUNT_KEY, &count.to_be_bytes()[..])?;
    Ok(count)
}

/// The first key a query may return: just after the `after` cursor, or the first key of the
/// `since` millisecond, whichever is later.
fn lower_bound(query: &EventQuery) -> [u8; 16] {
    let since = query.since.map_or([0; 16], |t| millis_key(unix_millis(t)));
    match query.after {
        Some(after) => since.max(key_after(event_key(after))),
        None => since,
    }
}

/// The smallest key strictly greater than `key` (same length), so the range can start there.
fn key_after(mut key: [u8; 16]) -> [u8; 16] {
    for byte in key.iter_mut().rev() {
        if *byte == u8::MAX {
            *byte = 0;
        } else {
            *byte += 1;
            return key;
        }
    }
    [u8::MAX; 16] // `key` was all 0xFF: nothing can follow it; no v7 id looks like this
}

/// The lowest possible v7 key in Unix millisecond `ms` (clamped to the 48-bit range).
fn millis_key(ms: i64) -> [u8; 16] {
    let ms = ms.clamp(0, MAX_V7_MILLIS).to_be_bytes();
    let mut key = [0; 16];
    key[..6].copy_from_slice(&ms[2..]);
    key
}

fn unix_millis(t: OffsetDateTime) -> i64 {
    let ms = t.unix_timestamp_nanos().div_euclid(1_000_000);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `Uuid::as_bytes` is the RFC 9562 byte order, i.e. big-endian: the timestamp comes first.
fn event_key(id: Uuid) -> [u8; 16] {
    *id.as_bytes()
}

fn decode_event(key: &[u8], value: &[u8]) -> Result<SecurityEvent, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { tree: EVENTS_TREE, key: show_key(key), reason };
    let id = Uuid::from_slice(key).map_err(|err| corrupt(format!("key is not an id: {err}")))?;
    let event: SecurityEvent =
        serde_json::from_slice(value).map_err(|err| corrupt(format!("value is not an event: {err}")))?;
    if event.id != id {
        return Err(corrupt(format!("value carries id {}", event.id)));
    }
    Ok(event)
}

/// A decoded dedup value.
struct DedupEntry {
    /// The event stored the first time the key was seen.
    id: Uuid,
    /// Unix seconds; the entry is live while `now < expires_at`.
    expires_at: i64,
}

fn encode_dedup(id: Uuid, expires_at: i64) -> [u8; DEDUP_VALUE_LEN] {
    let mut value = [0; DEDUP_VALUE_LEN];
    value[0] = DEDUP_FORMAT;
    value[1..17].copy_from_slice(id.as_bytes());
    value[17..].copy_from_slice(&expires_at.to_be_bytes());
    value
}

fn decode_dedup(key: &[u8], value: &[u8]) -> Result<DedupEntry, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { tree: DEDUP_TREE, key: show_key(key), reason };
    let (format, rest) = value.split_first().ok_or_else(|| corrupt("empty value".into()))?;
    if *format != DEDUP_FORMAT || value.len() != DEDUP_VALUE_LEN {
        return Err(corrupt(format!("format {format}, {} bytes", value.len())));
    }
    let (id, expires_at) = rest.split_at(16);
    let id = Uuid::from_slice(id).map_err(|err| corrupt(err.to_string()))?;
    let expires_at: [u8; 8] = expires_at.try_into().map_err(|_| corrupt("bad expiry".into()))?;
    Ok(DedupEntry { id, expires_at: i64::from_be_bytes(expires_at) })
}

/// `watch, 0x00`: watch names never contain NUL (paths cannot), so prefixes never overlap.
fn checkpoint_prefix(watch: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(watch.len() + 1);
    prefix.extend_from_slice(watch.as_bytes());
    prefix.push(0);
    prefix
}

fn checkpoint_key(watch: &str, file: FileId) -> Vec<u8> {
    let mut key = checkpoint_prefix(watch);
    key.extend_from_slice(&file.dev.to_be_bytes());
    key.extend_from_slice(&file.ino.to_be_bytes());
    key
}

fn encode_checkpoint(checkpoint: &FileCheckpoint) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let path = checkpoint.path.as_os_str().as_bytes();
    let mut value = Vec::with_capacity(CHECKPOINT_FIXED_LEN + path.len());
    value.push(CHECKPOINT_FORMAT);
    value.extend_from_slice(&checkpoint.offset.to_be_bytes());
    value.extend_from_slice(&checkpoint.line.to_be_bytes());
    value.extend_from_slice(&checkpoint.fingerprint);
    value.push(u8::from(checkpoint.held_copy));
    value.extend_from_slice(path);
    value
}

fn decode_checkpoint(
    prefix: &[u8],
    key: &[u8],
    value: &[u8],
) -> Result<(FileId, FileCheckpoint), StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let corrupt = |reason: String| StoreError::Corrupt { tree: CHECKPOINTS_TREE, key: show_key(key), reason };
    let id = key.get(prefix.len()..).filter(|id| id.len() == 16).ok_or_else(|| corrupt("bad key".into()))?;
    let u64_at = |bytes: &[u8], at: usize| -> Option<u64> {
        bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes)
    };
    let file = FileId {
        dev: u64_at(id, 0).ok_or_else(|| corrupt("bad key".into()))?,
        ino: u64_at(id, 8).ok_or_else(|| corrupt("bad key".into()))?,
    };
    if value.first() != Some(&CHECKPOINT_FORMAT) || value.len() < CHECKPOINT_FIXED_LEN {
        return Err(corrupt(format!("format {:?}, {} bytes", value.first(), value.len())));
    }
    let bad = || corrupt("short value".into());
    let fingerprint: [u8; 16] = value.get(17..33).and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let checkpoint = FileCheckpoint {
        offset: u64_at(value, 1).ok_or_else(bad)?,
        line: u64_at(value, 9).ok_or_else(bad)?,
        fingerprint,
        held_copy: value.get(33).is_some_and(|flags| flags & 1 == 1),
        path: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&value[CHECKPOINT_FIXED_LEN..])),
    };
    Ok((file, checkpoint))
}

/// `None` only before the counter was first written; open always writes it.
fn decode_count(value: Option<&[u8]>) -> Result<u64, StoreError> {
    let Some(value) = value else { return Ok(0) };
    let bytes: [u8; 8] = value.try_into().map_err(|_| StoreError::Corrupt {
        tree: META_TREE,
        key: show_key(EVENT_COUNT_KEY),
        reason: format!("{} bytes, want 8", value.len()),
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// Hex of (at most the first 32 bytes of) a key, for error messages.
fn show_key(key: &[u8]) -> String {
    let mut shown: String = key.iter().take(32).map(|b| format!("{b:02x}")).collect();
    if key.len() > 32 {
        shown.push('…');
    }
    shown
}

fn from_transaction(err: TransactionError<StoreError>) -> StoreError {
    match err {
        TransactionError::Abort(err) => err,
        TransactionError::Storage(err) => StoreError::Sled(err),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::store::testing::{dedup, event_at, open};

    const DAY: i64 = 86_400;

    fn far_future() -> i64 {
        unix_now() + DAY
    }

    fn all(store: &SledStore) -> Vec<Uuid> {
        let query = EventQuery { limit: usize::MAX, ..EventQuery::default() };
        store.events(&query).unwrap().into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn event_and_dedup_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = event_at(1_000);
        {
            let store = open(dir.path());
            let stored = store.put_once(&dedup("k", far_future()), &first).unwrap();
            assert_eq!(stored, PutOutcome::Stored(first.id));
            store.flush().unwrap();
        }
        let store = open(dir.path());
        let back = store.event(first.id).unwrap().expect("event present after reopen");
        assert_eq!(back.id, first.id);
        assert_eq!(back.raw.get(), first.raw.get());
        assert_eq!(back.body, first.body);
        assert_eq!(store.event_count(), 1);
        let again = store.put_once(&dedup("k", far_future()), &event_at(2_000)).unwrap();
        assert_eq!(again, PutOutcome::Duplicate(first.id));
    }

    #[test]
    fn duplicate_returns_first_id_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (first, second) = (event_at(1_000), event_at(2_000));
        let expires = far_future();
        store.put_once(&dedup("k", expires), &first).unwrap();
        let outcome = store.put_once(&dedup("k", expires + 100), &second).unwrap();
        assert_eq!(outcome, PutOutcome::Duplicate(first.id));
        assert!(store.event(second.id).unwrap().is_none());
        assert_eq!(all(&store), vec![first.id]);
        assert_eq!(store.event_count(), 1);
        // The entry keeps its first expiry: a replay must not extend its own dedup window.
        let entry = store.dedup.get("k").unwrap().unwrap();
        assert_eq!(&entry[..], &encode_dedup(first.id, expires)[..]);
    }

    #[test]
    fn expired_dedup_entry_allows_a_new_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (old, new, replay) = (event_at(1_000), event_at(2_000), event_at(3_000));
        store.put_once(&dedup("k", unix_now() - 1), &old).unwrap();
        assert_eq!(store.put_once(&dedup("k", far_future()), &new).unwrap(), PutOutcome::Stored(new.id));
        assert_eq!(
            store.put_once(&dedup("k", far_future()), &replay).unwrap(),
            PutOutcome::Duplicate(new.id)
        );
        assert_eq!(store.event_count(), 2);
    }

    #[test]
    fn concurrent_put_once_of_one_key_stores_exactly_once() {
        const THREADS: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()));
        let start = Arc::new(Barrier::new(THREADS));
        let outcomes: Vec<PutOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|i| {
                    let (store, start) = (Arc::clone(&store), Arc::clone(&start));
                    scope.spawn(move || {
                        let event = event_at(1_000 + i as u64);
                        start.wait();
                        store.put_once(&dedup("same", far_future()), &event).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let stored: Vec<Uuid> = outcomes
            .iter()
            .filter_map(|o| match o {
                PutOutcome::Stored(id) => Some(*id),
                PutOutcome::Duplicate(_) => None,
            })
            .collect();
        assert_eq!(stored.len(), 1, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| o.id() == stored[0]), "{outcomes:?}");
        assert_eq!(store.event_count(), 1);
        assert_eq!(all(&store), stored);
    }

    #[test]
    fn events_are_oldest_first_with_cursor_since_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let events: Vec<SecurityEvent> = (1..=5).map(|s| event_at(s * 1_000)).collect();
        // Inserted out of order: the key, not insertion order, decides.
        for i in [3, 0, 4, 1, 2] {
            store.put_once(&dedup(&i.to_string(), far_future()), &events[i]).unwrap();
        }
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let page = |after: Option<usize>, since_ms: Option<i64>, limit: usize| -> Vec<Uuid> {
            let query = EventQuery {
                after: after.map(|i| ids[i]),
                since: since_ms
                    .map(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()),
                limit,
            };
            store.events(&query).unwrap().into_iter().map(|e| e.id).collect()
        };
        assert_eq!(page(None, None, 10), ids);
        assert_eq!(page(None, None, 2), ids[..2]);
        assert_eq!(page(Some(1), None, 2), ids[2..4]);
        assert_eq!(page(Some(4), None, 10), Vec::<Uuid>::new());
        assert_eq!(page(None, Some(3_000), 10), ids[2..]);
        assert_eq!(page(None, Some(2_500), 10), ids[2..]);
        assert_eq!(page(Some(3), Some(2_500), 10), ids[4..]);
        assert_eq!(page(Some(0), Some(4_000), 10), ids[3..]);
        assert_eq!(page(None, Some(-5_000), 10), ids);
        assert_eq!(page(None, None, 0), Vec::<Uuid>::new());
    }

    #[test]
    fn sweep_by_age_deletes_the_oldest_and_keeps_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let now = 100 * DAY;
        let ages = [50, 31, 29, 1];
        let ids: Vec<Uuid> = {
            let store = open(dir.path());
            let ids = ages
                .iter()
                .map(|days| {
                    let event = event_at(((now - days * DAY) * 1000) as u64);
                    store.put_once(&dedup(&days.to_string(), far_future()), &event).unwrap().id()
                })
                .collect();
            let retention = Retention { max_age_secs: 30 * DAY, max_events: 100 };
            let report = store.sweep(now, &retention).unwrap();
            assert_eq!(report, SweepReport { events_deleted: 2, dedup_deleted: 0 });
            assert_eq!(store.event_count(), 2);
            assert_eq!(store.sweep(now, &retention).unwrap(), SweepReport::default());
            ids
        };
        let store = open(dir.path());
        assert_eq!(store.event_count(), 2, "the count is persistent");
        assert_eq!(all(&store), ids[2..]);
    }

    #[test]
    fn sweep_by_count_deletes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let ids: Vec<Uuid> = (1..=5)
            .map(|s| store.put_once(&dedup(&s.to_string(), far_future()), &event_at(s * 1_000)).unwrap().id())
            .collect();
        let retention = Retention { max_age_secs: i64::MAX, max_events: 2 };
        let report = store.sweep(10, &retention).unwrap();
        assert_eq!(report.events_deleted, 3);
        assert_eq!(store.event_count(), 2);
        assert_eq!(all(&store), ids[3..]);
    }

    #[test]
    fn sweep_deletes_only_expired_dedup_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let now = unix_now();
        store.put_once(&dedup("expired", now - 10), &event_at(1_000)).unwrap();
        let live = store.put_once(&dedup("live", now + 3_600), &event_at(2_000)).unwrap().id();
        let retention = Retention { max_age_secs: i64::MAX, max_events: u64::MAX };
        let report = store.sweep(now, &retention).unwrap();
        assert_eq!(report, SweepReport { events_deleted: 0, dedup_deleted: 1 });
        assert!(store.dedup.get("expired").unwrap().is_none());
        let replay = store.put_once(&dedup("live", now + 3_600), &event_at(3_000)).unwrap();
        assert_eq!(replay, PutOutcome::Duplicate(live));
    }

    #[test]
    fn corrupt_values_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let garbage = event_at(1_000).id;
        store.events.insert(garbage.as_bytes(), &b"not json"[..]).unwrap();
        let wrong_id = event_at(2_000);
        let other = serde_json::to_vec(&event_at(3_000)).unwrap();
        store.events.insert(wrong_id.id.as_bytes(), other).unwrap();

        assert!(matches!(store.event(garbage), Err(StoreError::Corrupt { tree: "events", .. })));
        assert!(matches!(store.event(wrong_id.id), Err(StoreError::Corrupt { .. })));
        assert!(matches!(
            store.events(&EventQuery { limit: 10, ..EventQuery::default() }),
            Err(StoreError::Corrupt { .. })
        ));

        store.dedup.insert("bad", &b"\x01short"[..]).unwrap();
        let fresh = event_at(4_000);
        let put = store.put_once(&dedup("bad", far_future()), &fresh);
        assert!(matches!(put, Err(StoreError::Corrupt { tree: "dedup", .. })), "{put:?}");
        assert!(store.events.get(fresh.id.as_bytes()).unwrap().is_none(), "nothing written");
        // Retention skips it rather than failing or forgetting the key.
        let retention = Retention { max_age_secs: i64::MAX, max_events: u64::MAX };
        assert_eq!(store.sweep(unix_now(), &retention).unwrap().dedup_deleted, 0);
        assert!(store.dedup.get("bad").unwrap().is_some());
    }

    #[test]
    fn reused_event_id_is_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let event = event_at(1_000);
        store.put_once(&dedup("a", far_future()), &event).unwrap();
        let again = store.put_once(&dedup("b", far_future()), &event);
        assert!(matches!(again, Err(StoreError::IdCollision(id)) if id == event.id));
        assert!(store.dedup.get("b").unwrap().is_none(), "the transaction rolled back");
        assert_eq!(store.event_count(), 1);
    }

    #[test]
    fn a_batch_is_one_transaction_that_sees_its_own_dedup_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let (a, b, c) = (event_at(1_000), event_at(2_000), event_at(3_000));
        let put = |key: &str, event: &SecurityEvent| PutRequest {
            dedup: dedup(key, far_future()),
            event: event.clone(),
        };
        let outcomes = store.put_batch(&[put("k", &a), put("k", &b), put("other", &c)]).unwrap();
        assert_eq!(
            outcomes,
            vec![PutOutcome::Stored(a.id), PutOutcome::Duplicate(a.id), PutOutcome::Stored(c.id)]
        );
        assert!(store.event(b.id).unwrap().is_none());
        assert_eq!(store.event_count(), 2);
        // All or nothing: one bad item leaves no trace of the others.
        let d = event_at(4_000);
        let failed = store.put_batch(&[put("new", &d), put("again", &a)]);
        assert!(matches!(failed, Err(StoreError::IdCollision(id)) if id == a.id), "{failed:?}");
        assert!(store.event(d.id).unwrap().is_none());
        assert!(store.dedup.get("new").unwrap().is_none());
        let persistent = decode_count(store.meta.get(EVENT_COUNT_KEY).unwrap().as_deref()).unwrap();
        assert_eq!(persistent, 2, "the persistent count moves with the batch");
    }

    #[test]
    fn key_after_carries() {
        let mut key = [0; 16];
        key[15] = 0xFF;
        key[14] = 0x01;
        let next = key_after(key);
        assert_eq!(next[14..], [0x02, 0x00]);
    }

    fn file_batch(
        watch: &str,
        ino: u64,
        offset: u64,
        events: Vec<(DedupRecord, SecurityEvent)>,
    ) -> FileBatch {
        FileBatch {
            watch: watch.into(),
            file: FileId { dev: 7, ino },
            events,
            checkpoint: FileCheckpoint {
                offset,
                line: offset / 10,
                fingerprint: [offset as u8; 16],
                held_copy: offset % 2 == 1,
                path: format!("/var/log/{watch}.log").into(),
            },
        }
    }

    #[test]
    fn file_batch_stores_events_and_checkpoint_together_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (event_at(1_000), event_at(2_000));
        {
            let store = open(dir.path());
            let batch = file_batch(
                "w",
                42,
                100,
                vec![(dedup("line-a", far_future()), a.clone()), (dedup("line-b", far_future()), b.clone())],
            );
            let outcomes = store.put_file_batch(&batch).unwrap();
            assert_eq!(outcomes, vec![PutOutcome::Stored(a.id), PutOutcome::Stored(b.id)]);
            store.put_file_batch(&file_batch("other", 42, 5, vec![])).unwrap();
            store.flush().unwrap();
        }
        let store = open(dir.path());
        assert_eq!(store.event_count(), 2);
        assert_eq!(all(&store), vec![a.id, b.id]);
        let checkpoints = store.file_checkpoints("w").unwrap();
        assert_eq!(
            checkpoints,
            vec![(FileId { dev: 7, ino: 42 }, file_batch("w", 42, 100, vec![]).checkpoint)]
        );
        assert_eq!(store.file_checkpoints("other").unwrap()[0].1.offset, 5);
        assert!(store.file_checkpoints("other").unwrap()[0].1.held_copy, "flags round-trip");
        assert!(store.file_checkpoints("ot").unwrap().is_empty(), "prefixes do not overlap");

        // A replayed line is a duplicate; the checkpoint still moves.
        let again = store
            .put_file_batch(&file_batch("w", 42, 150, vec![(dedup("line-b", far_future()), event_at(3_000))]))
            .unwrap();
        assert_eq!(again, vec![PutOutcome::Duplicate(b.id)]);
        assert_eq!(store.event_count(), 2);
        assert_eq!(store.file_checkpoints("w").unwrap()[0].1.offset, 150);

        store.remove_file_checkpoint("w", FileId { dev: 7, ino: 42 }).unwrap();
        assert!(store.file_checkpoints("w").unwrap().is_empty());
        assert_eq!(store.file_checkpoints("other").unwrap().len(), 1);
    }

    #[test]
    fn failed_file_batch_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let taken = event_at(1_000);
        store.put_once(&dedup("x", far_future()), &taken).unwrap();
        store.put_file_batch(&file_batch("w", 1, 10, vec![])).unwrap();
        let batch = file_batch(
            "w",
            1,
            99,
            vec![(dedup("new", far_future()), event_at(2_000)), (dedup("y", far_future()), taken)],
        );
        assert!(matches!(store.put_file_batch(&batch), Err(StoreError::IdCollision(_))));
        assert_eq!(store.file_checkpoints("w").unwrap()[0].1.offset, 10, "checkpoint rolled back");
        assert!(store.dedup.get("new").unwrap().is_none(), "first event rolled back");
        assert_eq!(store.event_count(), 1);
    }

    #[test]
    fn corrupt_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.checkpoints.insert(checkpoint_key("w", FileId { dev: 1, ino: 2 }), &b"\x01short"[..]).unwrap();
        assert!(matches!(
            store.file_checkpoints("w"),
            Err(StoreError::Corrupt { tree: "file_checkpoints", .. })
        ));
    }
}
