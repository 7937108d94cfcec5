//! The newest queue entries of each session, kept in memory so that a live SSE stream is fed
//! without a store read: when a directive becomes visible, the stream's next page is usually
//! exactly the entries just enqueued, and reading them back from sled on the blocking pool
//! costs a thread hand-off and a JSON decode per wake-up on the event → directive path.
//!
//! The invariant that makes a page from here equal to one from the store: for each session,
//! every *pending* entry with `seq >= from` is held, in `seq` order. Entries are recorded in
//! `seq` order (the caller serializes enqueues), removed here whenever they leave the store
//! (acknowledged or dropped by the bound), and trimmed from the front, raising `from`. A reader
//! whose position is older than `from` is answered `None` and reads the store.
//!
//! Deliberately not here: visibility (the caller passes the highest visible `seq`) and push
//! bookkeeping (the inbox worker always reads the store).

use super::QueuedDirective;
use std::collections::{HashMap, VecDeque};
use uuid::Uuid;

/// Entries held per session: a few pages of a live stream.
const PER_SESSION: usize = 64;
/// Sessions held; beyond it one is forgotten (its readers fall back to the store).
const SESSIONS: usize = 1024;
/// The `from` of a session whose entries arrived out of order: nothing is claimed for it.
const GAVE_UP: u64 = u64::MAX;

/// One session's newest entries.
#[derive(Debug)]
struct Tail {
    /// Every pending entry with a `seq` at or above this one is in `entries`.
    from: u64,
    /// In `seq` order.
    entries: VecDeque<QueuedDirective>,
}

/// The newest entries of every session that had one enqueued since start.
#[derive(Debug, Default)]
pub struct Recent {
    tails: HashMap<Uuid, Tail>,
}

impl Recent {
    /// Records a new entry. Must be called in `seq` order per session, for every entry enqueued.
    pub fn record(&mut self, entry: &QueuedDirective) {
        if !self.tails.contains_key(&entry.session_id) && self.tails.len() >= SESSIONS {
            if let Some(victim) = self.tails.keys().next().copied() {
                self.tails.remove(&victim);
            }
        }
        let tail = self
            .tails
            .entry(entry.session_id)
            .or_insert_with(|| Tail { from: entry.seq, entries: VecDeque::new() });
        if tail.from == GAVE_UP {
            return;
        }
        if entry.seq < tail.from || tail.entries.back().is_some_and(|last| last.seq >= entry.seq) {
            // Out of order (a caller bug): what is held can no longer be trusted to be complete,
            // so this session is served from the store from now on.
            *tail = Tail { from: GAVE_UP, entries: VecDeque::new() };
            return;
        }
        tail.entries.push_back(entry.clone());
        while tail.entries.len() > PER_SESSION {
            if let Some(old) = tail.entries.pop_front() {
                tail.from = old.seq + 1;
            }
        }
    }

    /// Forgets an entry that left the store (acknowledged or dropped).
    pub fn remove(&mut self, session: Uuid, jti: &str) {
        if let Some(tail) = self.tails.get_mut(&session) {
            tail.entries.retain(|e| e.jti != jti);
        }
    }

    /// The pending entries of `session` with `after < seq <= upto`, at most `limit`, or `None`
    /// when entries right after `after` may not be held (the caller reads the store).
    pub fn page(&self, session: Uuid, after: u64, upto: u64, limit: usize) -> Option<Vec<QueuedDirective>> {
        let tail = self.tails.get(&session)?;
        if after.saturating_add(1) < tail.from {
            return None;
        }
        Some(tail.entries.iter().filter(|e| e.seq > after && e.seq <= upto).take(limit).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::InboxState;
    use crate::directive::payload::DirectiveType;

    fn entry(session: Uuid, seq: u64) -> QueuedDirective {
        QueuedDirective {
            session_id: session,
            seq,
            jti: format!("jti-{seq}"),
            directive: crate::deliver::tests::directive(DirectiveType::DoNotRetry, u128::from(seq)),
            created_at: 0,
            attempts: 0,
            next_attempt_at: 0,
            inbox: InboxState::NotWritten,
        }
    }

    fn seqs(page: Option<Vec<QueuedDirective>>) -> Option<Vec<u64>> {
        page.map(|p| p.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn a_page_is_what_is_held_after_the_position_up_to_the_visible_seq() {
        let s = Uuid::now_v7();
        let mut recent = Recent::default();
        for seq in 5..=9 {
            recent.record(&entry(s, seq));
        }
        assert_eq!(seqs(recent.page(s, 4, 8, 10)), Some(vec![5, 6, 7, 8]), "not beyond the visible seq");
        assert_eq!(seqs(recent.page(s, 6, 9, 2)), Some(vec![7, 8]), "at most the limit");
        assert_eq!(seqs(recent.page(s, 9, 9, 10)), Some(vec![]), "nothing new is an answer, not a miss");
        assert_eq!(seqs(recent.page(s, 3, 9, 10)), None, "seq 4 may be pending in the store only");
        assert_eq!(seqs(recent.page(Uuid::now_v7(), 0, 9, 10)), None, "an unknown session reads the store");
    }

    #[test]
    fn removed_entries_are_not_served_and_trimming_raises_the_floor() {
        let s = Uuid::now_v7();
        let mut recent = Recent::default();
        for seq in 1..=3 {
            recent.record(&entry(s, seq));
        }
        recent.remove(s, "jti-2");
        assert_eq!(seqs(recent.page(s, 0, 3, 10)), Some(vec![1, 3]));
        for seq in 4..=(PER_SESSION as u64 + 10) {
            recent.record(&entry(s, seq));
        }
        assert_eq!(seqs(recent.page(s, 0, 100, 10)), None, "the oldest were trimmed");
        let floor = PER_SESSION as u64 + 10 - PER_SESSION as u64;
        assert_eq!(seqs(recent.page(s, floor, floor + 2, 10)), Some(vec![floor + 1, floor + 2]));
    }

    #[test]
    fn an_out_of_order_record_sends_the_session_to_the_store_for_good() {
        let s = Uuid::now_v7();
        let mut recent = Recent::default();
        recent.record(&entry(s, 5));
        recent.record(&entry(s, 3));
        recent.record(&entry(s, 6));
        for after in [0, 2, 3, 5, 6] {
            assert_eq!(seqs(recent.page(s, after, 10, 10)), None, "after {after}: seq 5 is no longer held");
        }
    }
}
