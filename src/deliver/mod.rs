//! The delivery stage: one durable, ordered, bounded queue of directives per session, and the
//! channels that carry them to the agent (HTTP pull and SSE in `api::directives`, the inbox
//! file writer in [`inbox`]).
//!
//! What a queue entry is: the *unsigned* [`Directive`], the session's next `seq` (strictly
//! increasing, never reused, even after acknowledgment or a drop), a unique `jti`, when it was
//! created, and its push-delivery bookkeeping. Envelopes are signed when served, with a fresh
//! `iat`/`exp` and the entry's unchanged `jti` and `seq`, so a directive that waited longer
//! than the 5-minute envelope lifetime still verifies, and a redelivery is recognisable as one.
//!
//! Guarantees:
//! - **At least once, in `seq` order.** An entry stays pending until the agent acknowledges its
//!   `jti` (`POST …/directives/{jti}/ack`) — or, for a session whose *only* channel is `inbox`,
//!   until the inbox reader has taken its file. Redelivery is normal and harmless: the agent's
//!   verifier refuses a `jti` or `seq` it has seen.
//! - **Visible only once durable.** [`Deliver::enqueue`] writes; [`Deliver::publish`] is called
//!   after a store flush that started after the write, and only then do readers see the entry.
//!   So a `seq` an agent has seen is never handed out again after a crash.
//! - **Enqueue once per origin.** An [`Origin`] (a block and a directive type) is enqueued at
//!   most once, so retried clears and start-up reconciliation do not duplicate directives.
//! - **Bounded.** At most `max_pending` entries per session. Drop policy: when a new entry
//!   would exceed it, the *oldest* pending entries are dropped (the newest state of a block
//!   matters more than an old notice, and the gate enforces every block whether or not its
//!   notice arrived). Every drop is counted in
//!   `haltwire_queue_dropped_total{queue="directives"}`.
//!
//! - **Ended sessions keep nothing.** A directive is addressed to one session (`aud`), so once
//!   the session has ended nothing can deliver it. [`Deliver::drop_session`] removes what is
//!   pending (the session end route, and the session upkeep for reaped sessions and for
//!   directives enqueued after the end), counted in
//!   `haltwire_directives_dropped_total{reason="session_ended"}`. What the SOC reads stays: the
//!   block and the event.
//!
//! Deliberately not here: deciding anything (the pipeline hands over finished directives and
//! does not know channels; this module does not know policies or blocks, nor which sessions
//! have ended), and verifying or rendering (agent side).

pub mod inbox;
mod recent;

use crate::directive::envelope::Envelope;
use crate::directive::payload::{Directive, DirectiveType};
use crate::directive::signer::DirectiveSigner;
use crate::store::deliver::Enqueue;
use crate::store::{DeliverStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use uuid::Uuid;

/// Default bound on pending directives per session.
pub const DEFAULT_MAX_PENDING: usize = 256;
/// Default bound on concurrent SSE streams per session.
pub const DEFAULT_MAX_STREAMS: usize = 4;

/// One queued directive, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuedDirective {
    /// The session it is addressed to (the envelope's `aud`).
    pub session_id: Uuid,
    /// Per-session, strictly increasing; assigned by the store.
    pub seq: u64,
    /// Unique; the acknowledgment key.
    pub jti: String,
    /// What it says (unsigned; signed when served).
    pub directive: Directive,
    /// Unix seconds when it was enqueued.
    pub created_at: i64,
    /// Push-channel delivery attempts so far (inbox writes, including failed ones).
    #[serde(default)]
    pub attempts: u32,
    /// Unix seconds before which a failed push is not tried again (backoff).
    #[serde(default)]
    pub next_attempt_at: i64,
    /// Where its inbox file stands (sessions with the `inbox` channel).
    #[serde(default)]
    pub inbox: InboxState,
}

/// Push state of one entry in a session's inbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case", deny_unknown_fields)]
pub enum InboxState {
    /// No file written yet.
    #[default]
    NotWritten,
    /// `<seq>.dsse.json` was written (and fsynced) at this Unix second.
    Written { at: i64 },
    /// The reader took the file (it is no longer in `inbox/`).
    Taken,
}

/// What a directive is about: enqueued at most once per origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub block_id: Uuid,
    pub kind: DirectiveType,
}

impl Origin {
    /// The origin of a directive: its block and its type. Derived, never passed alongside, so
    /// a pending entry always tells which origin it was enqueued for.
    pub fn of(directive: &Directive) -> Origin {
        Origin { block_id: directive.block_id, kind: directive.kind }
    }

    fn key(&self) -> Vec<u8> {
        let mut key = self.block_id.as_bytes().to_vec();
        key.extend_from_slice(self.kind.as_str().as_bytes());
        key
    }
}

/// A directive to enqueue for a session, once per origin ([`Origin::of`] the directive;
/// [`Deliver::enqueue_all`]).
#[derive(Debug, Clone)]
pub struct Announcement {
    pub session: Uuid,
    pub directive: Directive,
}

/// An entry written but not yet visible: hand it to [`Deliver::publish`] after a flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub session: Uuid,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Limits of the delivery stage (`[deliver]` in `haltwire.toml`).
#[derive(Debug, Clone, Copy)]
pub struct DeliverSettings {
    pub max_pending: usize,
    pub max_streams: usize,
}

impl Default for DeliverSettings {
    fn default() -> Self {
        DeliverSettings { max_pending: DEFAULT_MAX_PENDING, max_streams: DEFAULT_MAX_STREAMS }
    }
}

/// The delivery stage. Shared (`Arc`) by the pipeline, the API and the push workers.
pub struct Deliver {
    store: Arc<dyn DeliverStore>,
    signer: Arc<DirectiveSigner>,
    settings: DeliverSettings,
    /// Per session: the highest durable `seq` (readers see entries up to it), as a watch so SSE
    /// streams wake when it rises.
    visible: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
    /// Open SSE streams per session.
    streams: Mutex<HashMap<Uuid, usize>>,
    /// Pending entries per session, counted once from the store when first needed and kept up
    /// to date by enqueue, ack and drop, so the bound costs no scan per directive.
    counts: Mutex<HashMap<Uuid, usize>>,
    /// The newest entries per session, so that live SSE streams need no store read.
    recent: Mutex<recent::Recent>,
    /// Held across an enqueue's store writes and its recording in `recent`: the store reads and
    /// writes each session's last `seq` without a transaction, so enqueues must not overlap,
    /// and entries are recorded in `seq` order (which `recent` relies on).
    enqueueing: Mutex<()>,
    /// Wakes the push workers when something became visible; never blocks.
    wake: Mutex<Vec<std::sync::mpsc::SyncSender<()>>>,
    /// Set at shutdown: SSE streams end so the server can drain.
    closing: watch::Sender<bool>,
}

impl Deliver {
    /// Loads each session's last `seq`: everything on disk when the broker starts is durable,
    /// so it is all visible.
    pub fn new(
        store: Arc<dyn DeliverStore>,
        signer: Arc<DirectiveSigner>,
        settings: DeliverSettings,
    ) -> Result<Deliver, DeliverError> {
        let visible = store.last_seqs()?.into_iter().map(|(s, seq)| (s, watch::Sender::new(seq))).collect();
        Ok(Deliver {
            store,
            signer,
            settings,
            visible: Mutex::new(visible),
            streams: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            recent: Mutex::new(recent::Recent::default()),
            enqueueing: Mutex::new(()),
            wake: Mutex::new(Vec::new()),
            closing: watch::Sender::new(false),
        })
    }

    /// Writes `directive` for `session` unless its origin was enqueued before. Not visible (and
    /// not durable) until [`Deliver::publish`]. Enforces the bound by dropping the oldest.
    pub fn enqueue(
        &self,
        session: Uuid,
        directive: Directive,
        now: i64,
    ) -> Result<Option<Enqueued>, DeliverError> {
        Ok(self.enqueue_all(vec![Announcement { session, directive }], now)?.pop())
    }

    /// [`Deliver::enqueue`] for many directives in one store call, and one bound check per
    /// session: what the pipeline does with a batch of events. Answers the entries that are
    /// new, in order.
    pub fn enqueue_all(
        &self,
        announcements: Vec<Announcement>,
        now: i64,
    ) -> Result<Vec<Enqueued>, DeliverError> {
        if announcements.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<(Vec<u8>, QueuedDirective)> = announcements
            .into_iter()
            .map(|a| {
                let entry = QueuedDirective {
                    session_id: a.session,
                    seq: 0,
                    jti: Uuid::now_v7().to_string(),
                    directive: a.directive,
                    created_at: now,
                    attempts: 0,
                    next_attempt_at: 0,
                    inbox: InboxState::NotWritten,
                };
                (Origin::of(&entry.directive).key(), entry)
            })
            .collect();
        let items: Vec<(&[u8], &QueuedDirective)> = entries.iter().map(|(o, e)| (o.as_slice(), e)).collect();
        let mut enqueued = Vec::new();
        // Per session: how many entries are new, and the last seq they took.
        let mut added: HashMap<Uuid, (usize, u64)> = HashMap::new();
        {
            let _order = lock(&self.enqueueing);
            let answers = self.store.enqueue_all(&items)?;
            let mut recent = lock(&self.recent);
            for ((_, entry), answer) in entries.into_iter().zip(answers) {
                let Enqueue::New { seq, .. } = answer else { continue };
                metrics::counter!("haltwire_directives_enqueued_total", "type" => entry.directive.kind.as_str())
                    .increment(1);
                let slot = added.entry(entry.session_id).or_default();
                *slot = (slot.0 + 1, seq);
                enqueued.push(Enqueued { session: entry.session_id, seq });
                recent.record(&QueuedDirective { seq, ..entry });
            }
        }
        for (session, (count, last)) in added {
            self.enforce_bound(session, count, last)?;
        }
        Ok(enqueued)
    }

    /// Writes the origin record of every pending entry that lacks one; answers how many did.
    /// The store writes an enqueue's records in order without a transaction, so a crash can
    /// leave an entry whose origin was not written yet; the start-up reconciliation calls this
    /// before asking [`Deliver::has_origin`], so that such an entry is not enqueued twice.
    pub fn repair_origins(&self) -> Result<usize, DeliverError> {
        let _order = lock(&self.enqueueing);
        let mut repaired = 0;
        for session in self.store.queued_sessions()? {
            for entry in self.store.pending(session, 0, u64::MAX, usize::MAX)? {
                let origin = Origin::of(&entry.directive).key();
                if !self.store.has_origin(&origin)? {
                    self.store.put_origin(&origin, &entry.jti)?;
                    repaired += 1;
                }
            }
        }
        Ok(repaired)
    }

    /// Whether `origin` was ever enqueued (start-up reconciliation).
    pub fn has_origin(&self, origin: Origin) -> Result<bool, DeliverError> {
        Ok(self.store.has_origin(&origin.key())?)
    }

    /// After `added` new entries up to seq `last`: drops the oldest beyond the bound, in one
    /// store call.
    fn enforce_bound(&self, session: Uuid, added: usize, last: u64) -> Result<(), DeliverError> {
        let mut counts = lock(&self.counts);
        let count = match counts.get_mut(&session) {
            Some(count) => {
                *count += added;
                *count
            }
            None => {
                // The span first..=last bounds the count from above: only scan when it could be over.
                let Some(first) = self.store.first_seq(session)? else { return Ok(()) };
                if last.saturating_sub(first) < self.settings.max_pending as u64 {
                    return Ok(());
                }
                let count = self.store.pending_count(session)?;
                counts.insert(session, count);
                count
            }
        };
        if count <= self.settings.max_pending {
            return Ok(());
        }
        let excess = count - self.settings.max_pending;
        let oldest = self.store.pending(session, 0, u64::MAX, excess)?;
        let jtis: Vec<&str> = oldest.iter().map(|e| e.jti.as_str()).collect();
        let removed = self.store.remove_all(session, &jtis)?;
        {
            let mut recent = lock(&self.recent);
            for jti in &jtis {
                recent.remove(session, jti);
            }
        }
        if let Some(count) = counts.get_mut(&session) {
            *count = count.saturating_sub(removed);
        }
        if removed > 0 {
            metrics::counter!("haltwire_queue_dropped_total", "queue" => "directives")
                .increment(removed as u64);
            let (first, last) = (oldest.first().map(|e| e.seq), oldest.last().map(|e| e.seq));
            tracing::warn!(session_id = %session, dropped = removed, ?first, ?last, "directive queue full: dropped the oldest");
        }
        Ok(())
    }

    /// Makes entries visible. Call only after a store flush that started after they were
    /// enqueued: a flush covers every lower `seq` of the session too, since `seq`s are
    /// assigned in write order.
    pub fn publish(&self, enqueued: &[Enqueued]) {
        if enqueued.is_empty() {
            return;
        }
        {
            let mut visible = lock(&self.visible);
            for e in enqueued {
                let tx = visible.entry(e.session).or_insert_with(|| watch::Sender::new(0));
                tx.send_if_modified(|v| {
                    let raise = e.seq > *v;
                    if raise {
                        *v = e.seq;
                    }
                    raise
                });
            }
        }
        for wake in lock(&self.wake).iter() {
            let _ = wake.try_send(());
        }
    }

    /// The highest visible `seq` of `session` (0 when nothing was ever queued).
    pub fn visible_seq(&self, session: Uuid) -> u64 {
        lock(&self.visible).get(&session).map_or(0, |tx| *tx.borrow())
    }

    /// Wakes when `session`'s visible `seq` rises.
    pub fn subscribe(&self, session: Uuid) -> watch::Receiver<u64> {
        lock(&self.visible).entry(session).or_insert_with(|| watch::Sender::new(0)).subscribe()
    }

    /// Visible pending entries of `session` above `after`, in `seq` order, at most `limit`.
    /// Blocks on sled.
    pub fn pending(
        &self,
        session: Uuid,
        after: u64,
        limit: usize,
    ) -> Result<Vec<QueuedDirective>, DeliverError> {
        let upto = self.visible_seq(session);
        Ok(self.store.pending(session, after, upto, limit)?)
    }

    /// Like [`Deliver::pending`], from memory and without blocking, when the entries right
    /// after `after` are among the newest held; `None` means: read the store.
    pub fn pending_recent(&self, session: Uuid, after: u64, limit: usize) -> Option<Vec<QueuedDirective>> {
        let upto = self.visible_seq(session);
        lock(&self.recent).page(session, after, upto, limit)
    }

    /// The entry signed now: fresh `iat`/`exp`, its own `jti` and `seq`.
    pub fn sign(&self, entry: &QueuedDirective, now: i64) -> Envelope {
        self.signer.sign(&entry.session_id.to_string(), &entry.jti, entry.seq, &entry.directive, now)
    }

    /// Acknowledges `jti` for `session`; `false` when it is not pending (never queued, already
    /// acknowledged, dropped, or another session's). Durable after the next flush; a lost
    /// acknowledgment only means one more redelivery.
    pub fn ack(&self, session: Uuid, jti: &str, by: &'static str) -> Result<bool, DeliverError> {
        let removed = self.store.remove(session, jti)?;
        lock(&self.recent).remove(session, jti);
        if removed.is_some() {
            if let Some(count) = lock(&self.counts).get_mut(&session) {
                *count = count.saturating_sub(1);
            }
            metrics::counter!("haltwire_directives_acked_total", "by" => by).increment(1);
        }
        Ok(removed.is_some())
    }

    /// Drops every pending directive of `session`, which has ended; returns how many. Each is
    /// counted in `haltwire_directives_dropped_total{reason="session_ended"}`. Durable after the
    /// next flush; one that comes back after a crash is dropped again by the next call.
    pub fn drop_session(&self, session: Uuid) -> Result<usize, DeliverError> {
        // Under the counts lock, so the bound's count for this session is not computed from a
        // queue half dropped.
        let mut counts = lock(&self.counts);
        let dropped = self.store.drop_session(session)?;
        counts.remove(&session);
        {
            // Live streams read the newest entries from memory: forget them there too.
            let mut recent = lock(&self.recent);
            for jti in &dropped.jtis {
                recent.remove(session, jti);
            }
        }
        drop(counts);
        if dropped.count > 0 {
            metrics::counter!("haltwire_directives_dropped_total", "reason" => "session_ended")
                .increment(dropped.count as u64);
            tracing::info!(session_id = %session, dropped = dropped.count, "session ended: dropped its pending directives");
        }
        Ok(dropped.count)
    }

    /// The sessions with pending directives (visible or not).
    pub fn queued_sessions(&self) -> Result<Vec<Uuid>, DeliverError> {
        Ok(self.store.queued_sessions()?)
    }

    /// Saves an entry's push bookkeeping.
    pub fn update(&self, entry: &QueuedDirective) -> Result<(), DeliverError> {
        Ok(self.store.update(entry)?)
    }

    /// Ends every SSE stream (graceful shutdown: open streams would keep the server up).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` at shutdown.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Registers a push worker's doorbell.
    pub fn add_waker(&self, wake: std::sync::mpsc::SyncSender<()>) {
        lock(&self.wake).push(wake);
    }

    /// Takes one of `session`'s SSE stream places; `None` when all are in use.
    pub fn open_stream(self: &Arc<Self>, session: Uuid) -> Option<StreamPlace> {
        let mut streams = lock(&self.streams);
        let open = streams.entry(session).or_insert(0);
        if *open >= self.settings.max_streams {
            metrics::counter!("haltwire_queue_dropped_total", "queue" => "sse_streams").increment(1);
            return None;
        }
        *open += 1;
        metrics::gauge!("haltwire_sse_streams").increment(1.0);
        Some(StreamPlace { deliver: self.clone(), session })
    }
}

/// A held SSE stream place; released on drop.
pub struct StreamPlace {
    deliver: Arc<Deliver>,
    session: Uuid,
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut streams = lock(&self.deliver.streams);
        if let Some(open) = streams.get_mut(&self.session) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                streams.remove(&self.session);
            }
        }
        metrics::gauge!("haltwire_sse_streams").decrement(1.0);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
