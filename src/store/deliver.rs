//! Storage for the per-session directive delivery queues.
//!
//! Four trees:
//! - `directives`: session id (16) ‖ seq (u64 BE) → [`QueuedDirective`] JSON, so a prefix scan
//!   of one session yields its pending directives in `seq` order.
//! - `directive_jtis`: jti → session id ‖ seq, to acknowledge by `jti`.
//! - `directive_seqs`: session id → the last `seq` handed out (u64 BE). Never goes down, even
//!   when entries are acknowledged or dropped, so a `seq` is never reused.
//! - `directive_origins`: origin key → jti, so announcing the same thing twice (a retried
//!   clear, the start-up reconciliation) enqueues it once.
//!
//! No sled transactions (each writes out sled's I/O buffer twice, a `pwrite`, a
//! `sync_file_range` and a wake-up of every sled I/O thread each time): the records of one
//! change are written in an order in which any prefix a crash leaves is consistent, since sled
//! recovers a prefix of its log. An enqueue writes the seq, the jti index, the entry, then the
//! origin: a seq taken but unused is a gap, an index entry without its entry points nowhere
//! (gone), and an entry without its origin gets it back from the start-up repair. A removal
//! removes the entry first and its index second. Like the rest of the store, nothing here is
//! durable until a flush; the delivery stage decides when entries become visible.

use super::{SledStore, StoreError};
use crate::deliver::QueuedDirective;
use sled::IVec;
use uuid::Uuid;

/// What [`DeliverStore::enqueue_all`] did with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueue {
    /// Stored under a new `seq`.
    New { seq: u64, jti: String },
    /// The origin was enqueued before (maybe already acknowledged); nothing was written.
    Existing { jti: String },
}

/// What [`DeliverStore::drop_session`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Entries removed.
    pub count: usize,
    /// Their jtis (an entry that does not decode has none to report).
    pub jtis: Vec<String>,
}

pub trait DeliverStore: Send + Sync + 'static {
    /// Appends each entry to its session's queue under the next `seq` (the `seq` it carries is
    /// ignored) unless its origin was enqueued before, also earlier in `items`. Answers in the
    /// order of `items`. Not durable until a flush. Callers serialize enqueues (the delivery
    /// stage holds one lock around them): the `seq` is read, then written, without a
    /// transaction, because each sled transaction writes out its I/O buffer twice.
    fn enqueue_all(&self, items: &[(&[u8], &QueuedDirective)]) -> Result<Vec<Enqueue>, StoreError>;
    /// Pending entries of `session` with `after < seq <= upto`, in `seq` order, at most `limit`.
    fn pending(
        &self,
        session: Uuid,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<QueuedDirective>, StoreError>;
    /// Number of pending entries of `session` (a prefix scan: call only when
    /// [`DeliverStore::first_seq`] says the queue may be over its bound).
    fn pending_count(&self, session: Uuid) -> Result<usize, StoreError>;
    /// The lowest pending `seq` of `session` (one seek).
    fn first_seq(&self, session: Uuid) -> Result<Option<u64>, StoreError>;
    /// Removes the entry with this `jti` if it belongs to `session`; returns it.
    fn remove(&self, session: Uuid, jti: &str) -> Result<Option<QueuedDirective>, StoreError>;
    /// Removes several of `session`'s entries; answers how many were pending (each counted by
    /// the one call that removed it). Used to drop the oldest when the bound is exceeded.
    fn remove_all(&self, session: Uuid, jtis: &[&str]) -> Result<usize, StoreError>;
    /// Replaces a pending entry's delivery bookkeeping (attempts, inbox state). A no-op when the
    /// entry is gone (acknowledged meanwhile).
    fn update(&self, entry: &QueuedDirective) -> Result<(), StoreError>;
    /// The last `seq` handed out per session (everything on disk at start is durable).
    fn last_seqs(&self) -> Result<Vec<(Uuid, u64)>, StoreError>;
    /// Records that `origin` was enqueued as `jti` (the start-up repair of an enqueue a crash
    /// interrupted; [`DeliverStore::enqueue_all`] writes origins itself).
    fn put_origin(&self, origin: &[u8], jti: &str) -> Result<(), StoreError>;
    /// Whether this origin was ever enqueued.
    fn has_origin(&self, origin: &[u8]) -> Result<bool, StoreError>;
    /// Removes every pending entry of `session` (it ended: nothing can deliver them). Its last
    /// `seq` and its origins stay, so a `seq` is never reused and an origin is never enqueued
    /// again. Entries enqueued meanwhile stay for a later call.
    fn drop_session(&self, session: Uuid) -> Result<Dropped, StoreError>;
    /// The sessions that have pending entries, each once, in id order (one seek per session).
    fn queued_sessions(&self) -> Result<Vec<Uuid>, StoreError>;
}

fn entry_key(session: Uuid, seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(session.as_bytes());
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn corrupt(tree: &'static str, key: &[u8], reason: impl ToString) -> StoreError {
    let key = key.iter().map(|b| format!("{b:02x}")).collect();
    StoreError::Corrupt { tree, key, reason: reason.to_string() }
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<QueuedDirective, StoreError> {
    serde_json::from_slice(value).map_err(|e| corrupt("directives", key, e))
}

fn encode_entry(entry: &QueuedDirective) -> Result<IVec, StoreError> {
    serde_json::to_vec(entry).map(IVec::from).map_err(|e| corrupt("directives", entry.jti.as_bytes(), e))
}

fn decode_seq(value: Option<&[u8]>) -> Result<u64, StoreError> {
    match value {
        None => Ok(0),
        Some(v) => <[u8; 8]>::try_from(v)
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt("directive_seqs", v, "not 8 bytes")),
    }
}

impl SledStore {
    /// The key of `session`'s entry with this `jti`, if the index names one of its entries.
    fn entry_of(&self, session: Uuid, jti: &str) -> Result<Option<IVec>, StoreError> {
        let key = self.directive_jtis.get(jti.as_bytes())?;
        Ok(key.filter(|key| key.len() == 24 && key[..16] == session.as_bytes()[..]))
    }

    /// Removes one entry and then its index entry; answers the entry if this call removed it.
    /// No transaction (each would write out sled's I/O buffer twice): removing the entry is the
    /// one step that decides, so of an acknowledgement racing the bound's drop exactly one gets
    /// the entry back, and a crash between the two steps leaves an index entry that points
    /// nowhere, which every reader already treats as gone.
    fn remove_entry(&self, key: &[u8], jti: &str) -> Result<Option<IVec>, StoreError> {
        let removed = self.directives.remove(key)?;
        self.directive_jtis.remove(jti.as_bytes())?;
        Ok(removed)
    }
}

#[cfg(test)]
impl SledStore {
    /// Forgets every origin record: what a crash between writing entries and their origins
    /// leaves behind, for the tests of the start-up repair.
    pub(crate) fn forget_origins(&self) {
        self.directive_origins.clear().unwrap();
    }
}

impl DeliverStore for SledStore {
    fn enqueue_all(&self, items: &[(&[u8], &QueuedDirective)]) -> Result<Vec<Enqueue>, StoreError> {
        let mut answers = Vec::with_capacity(items.len());
        for (origin, entry) in items {
            if let Some(jti) = self.directive_origins.get(origin)? {
                answers.push(Enqueue::Existing { jti: String::from_utf8_lossy(&jti).into_owned() });
                continue;
            }
            let session = entry.session_id;
            let seq = decode_seq(self.directive_seqs.get(session.as_bytes())?.as_deref())? + 1;
            let mut stored = (*entry).clone();
            stored.seq = seq;
            let key = entry_key(session, seq);
            let value = encode_entry(&stored)?;
            // In this order, so that whatever prefix of these writes a crash leaves is
            // consistent: a seq taken but unused is a gap; an index entry without its entry
            // points nowhere (gone); an entry without its origin is found by its block and
            // type when the origins are repaired at start (`Deliver::repair_origins`).
            self.directive_seqs.insert(session.as_bytes(), &seq.to_be_bytes()[..])?;
            self.directive_jtis.insert(entry.jti.as_bytes(), &key[..])?;
            self.directives.insert(&key[..], value)?;
            self.directive_origins.insert(*origin, entry.jti.as_bytes())?;
            answers.push(Enqueue::New { seq, jti: entry.jti.clone() });
        }
        Ok(answers)
    }

    fn pending(
        &self,
        session: Uuid,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<QueuedDirective>, StoreError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let start = entry_key(session, after.saturating_add(1));
        let end = entry_key(session, upto);
        self.directives
            .range(start..=end)
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                decode_entry(&k, &v)
            })
            .collect()
    }

    fn pending_count(&self, session: Uuid) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.directives.scan_prefix(session.as_bytes()).keys() {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn first_seq(&self, session: Uuid) -> Result<Option<u64>, StoreError> {
        match self.directives.scan_prefix(session.as_bytes()).keys().next() {
            None => Ok(None),
            Some(key) => {
                let key = key?;
                let seq = key.get(16..24).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
                seq.map(Some).ok_or_else(|| corrupt("directives", &key, "key is not session ‖ seq"))
            }
        }
    }

    fn remove(&self, session: Uuid, jti: &str) -> Result<Option<QueuedDirective>, StoreError> {
        let Some(key) = self.entry_of(session, jti)? else { return Ok(None) };
        let removed = self.remove_entry(&key, jti)?;
        removed.map(|value| decode_entry(&key, &value)).transpose()
    }

    fn remove_all(&self, session: Uuid, jtis: &[&str]) -> Result<usize, StoreError> {
        let mut removed = 0;
        for jti in jtis {
            let Some(key) = self.entry_of(session, jti)? else { continue };
            if self.remove_entry(&key, jti)?.is_some() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn update(&self, entry: &QueuedDirective) -> Result<(), StoreError> {
        let key = entry_key(entry.session_id, entry.seq);
        let value = encode_entry(entry)?;
        // Compare-and-swap against "present": an entry acknowledged meanwhile stays gone.
        let _ = self.directives.fetch_and_update(key, |old| old.map(|_| value.to_vec()))?;
        Ok(())
    }

    fn last_seqs(&self) -> Result<Vec<(Uuid, u64)>, StoreError> {
        self.directive_seqs
            .iter()
            .map(|item| {
                let (k, v) = item?;
                let id = Uuid::from_slice(&k).map_err(|e| corrupt("directive_seqs", &k, e))?;
                Ok((id, decode_seq(Some(&v))?))
            })
            .collect()
    }

    fn put_origin(&self, origin: &[u8], jti: &str) -> Result<(), StoreError> {
        self.directive_origins.insert(origin, jti.as_bytes())?;
        Ok(())
    }

    fn has_origin(&self, origin: &[u8]) -> Result<bool, StoreError> {
        Ok(self.directive_origins.contains_key(origin)?)
    }

    fn drop_session(&self, session: Uuid) -> Result<Dropped, StoreError> {
        // Read first, then remove: a queue is bounded, so the list is small. An entry that does
        // not decode is removed all the same; only its jti index (which then points nowhere,
        // and `remove` treats so) cannot be found.
        let mut found: Vec<(IVec, Option<String>)> = Vec::new();
        for item in self.directives.scan_prefix(session.as_bytes()) {
            let (key, value) = item?;
            let jti = decode_entry(&key, &value).ok().map(|e| e.jti);
            found.push((key, jti));
        }
        if found.is_empty() {
            return Ok(Dropped::default());
        }
        let mut dropped = Dropped::default();
        for (key, jti) in &found {
            let removed = match jti {
                Some(jti) => self.remove_entry(key, jti)?,
                None => self.directives.remove(key)?,
            };
            // Gone meanwhile: acknowledged, or dropped by the bound.
            if removed.is_none() {
                continue;
            }
            dropped.jtis.extend(jti.clone());
            dropped.count += 1;
        }
        Ok(dropped)
    }

    fn queued_sessions(&self) -> Result<Vec<Uuid>, StoreError> {
        let mut sessions = Vec::new();
        let mut from = [0u8; 16];
        while let Some(key) = self.directives.range(from..).keys().next() {
            let key = key?;
            let id = key
                .get(..16)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .ok_or_else(|| corrupt("directives", &key, "key is not session ‖ seq"))?;
            sessions.push(Uuid::from_bytes(id));
            // Skip the rest of this session: the next key that can belong to another one.
            match u128::from_be_bytes(id).checked_add(1) {
                Some(next) => from = next.to_be_bytes(),
                None => break,
            }
        }
        Ok(sessions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::{InboxState, QueuedDirective};
    use crate::directive::payload::{Directive, DirectiveType, EventFacts, Retry, ScopeInfo};

    fn entry(session: Uuid) -> QueuedDirective {
        QueuedDirective {
            session_id: session,
            seq: 0,
            jti: Uuid::now_v7().to_string(),
            directive: Directive {
                kind: DirectiveType::DoNotRetry,
                block_id: Uuid::now_v7(),
                event_id: None,
                scope: ScopeInfo {
                    kind: crate::block::ScopeKind::Similar,
                    paths: vec![],
                    hosts: vec![],
                    executables: vec![],
                },
                retry: Retry::Never,
                note: None,
                data: EventFacts::default(),
            },
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
            inbox: InboxState::NotWritten,
        }
    }

    fn enqueue(store: &SledStore, session: Uuid) -> QueuedDirective {
        let mut e = entry(session);
        let Some(Enqueue::New { seq, .. }) = store.enqueue_all(&[(e.jti.as_bytes(), &e)]).unwrap().pop()
        else {
            panic!("a new origin is stored")
        };
        e.seq = seq;
        e
    }

    #[test]
    fn dropping_a_session_removes_its_entries_only_and_keeps_seqs_and_origins() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (ended, other) = (Uuid::now_v7(), Uuid::now_v7());
        let first = enqueue(&store, ended);
        let acked = enqueue(&store, ended);
        let third = enqueue(&store, ended);
        let kept = enqueue(&store, other);
        assert!(store.remove(ended, &acked.jti).unwrap().is_some());
        assert_eq!(store.queued_sessions().unwrap(), [ended, other]);

        let dropped = store.drop_session(ended).unwrap();
        assert_eq!(dropped.count, 2, "the acknowledged entry is not counted");
        assert_eq!(dropped.jtis, [first.jti.clone(), third.jti.clone()]);
        assert!(store.pending(ended, 0, u64::MAX, 100).unwrap().is_empty());
        assert_eq!(store.first_seq(ended).unwrap(), None);
        assert_eq!(store.queued_sessions().unwrap(), [other]);
        assert!(store.remove(ended, &first.jti).unwrap().is_none(), "its jti no longer acknowledges");
        assert_eq!(store.pending(other, 0, u64::MAX, 100).unwrap(), [kept]);
        // Numbering goes on, and a dropped origin is still known (never enqueued again).
        assert!(store.has_origin(first.jti.as_bytes()).unwrap());
        assert_eq!(store.last_seqs().unwrap().into_iter().find(|(s, _)| *s == ended), Some((ended, 3)));
        assert_eq!(enqueue(&store, ended).seq, 4);
        assert_eq!(store.drop_session(ended).unwrap().count, 1);
        assert_eq!(store.drop_session(ended).unwrap(), Dropped::default(), "nothing left to drop");
    }

    #[test]
    fn an_acknowledgement_racing_the_bound_drop_removes_each_entry_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap());
        let session = Uuid::now_v7();
        for _ in 0..50 {
            let queued: Vec<String> = (0..20).map(|_| enqueue(&store, session).jti).collect();
            let acks = {
                let (store, queued) = (std::sync::Arc::clone(&store), queued.clone());
                std::thread::spawn(move || {
                    queued.iter().filter(|j| store.remove(session, j).unwrap().is_some()).count()
                })
            };
            let jtis: Vec<&str> = queued.iter().map(String::as_str).collect();
            let dropped = store.remove_all(session, &jtis).unwrap();
            let acked = acks.join().unwrap();
            assert_eq!(acked + dropped, queued.len(), "every entry removed exactly once");
            assert_eq!(store.first_seq(session).unwrap(), None);
        }
    }

    #[test]
    fn an_index_entry_left_by_a_crash_between_the_two_removes_counts_as_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let session = Uuid::now_v7();
        let entry = enqueue(&store, session);
        // The first step of a removal only: the entry is gone, its index entry remains.
        store.directives.remove(entry_key(session, entry.seq)).unwrap();
        assert!(store.directive_jtis.contains_key(entry.jti.as_bytes()).unwrap());
        assert!(store.remove(session, &entry.jti).unwrap().is_none());
        assert_eq!(store.remove_all(session, &[entry.jti.as_str()]).unwrap(), 0);
        assert_eq!(store.drop_session(session).unwrap(), Dropped::default());
        assert!(store.pending(session, 0, u64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn queued_sessions_lists_each_session_once_at_the_ends_of_the_key_space() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert!(store.queued_sessions().unwrap().is_empty());
        let (low, high) = (Uuid::nil(), Uuid::max());
        for session in [high, low, high, low] {
            enqueue(&store, session);
        }
        assert_eq!(store.queued_sessions().unwrap(), [low, high]);
    }
}
