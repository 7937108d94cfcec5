//! Group commit: many ingest requests share one sled transaction and one `Store::flush`, so
//! throughput does not collapse to one transaction and one fsync per request (DESIGN §5.2,
//! §5.10).
//!
//! A request first reserves a place in a bounded queue ([`GroupCommit::reserve`]); a full queue
//! is refused before anything is written, which is how back-pressure reaches the sender as a
//! `429`. It then hands its events to the committer ([`CommitSlot::write`]) and waits. The
//! committer takes the first waiter, lets the scheduler run once so that requests already in
//! progress can queue too, drains every waiter queued, and on the blocking pool writes all their
//! events in ONE transaction ([`Store::put_batch`]) and then runs ONE flush, and wakes the whole
//! batch; waiters that arrive meanwhile join the next one. Every waiter's events (and any
//! earlier event its duplicates point to) were written before its flush started, so they are on
//! disk when it wakes.
//!
//! After the flush the committer also tells its [`OnDurable`] (the pipeline) about every event
//! the batch stored, in one notice: the events of a batch become durable at one instant, and
//! one notice per batch instead of one per request is one wake-up of the pipeline thread
//! instead of dozens (on a busy core each wake-up is a context switch away from ingest).
//!
//! Why the committer writes, not each request: sled 0.34 makes every transaction roll and write
//! its I/O buffer, so a transaction per event cost more than the rest of ingest put together.
//!
//! A caller that writes on its own can still hand over an empty slot ([`CommitSlot::durable`])
//! to wait for a flush that starts after its write: file ingest does, because each file batch is
//! its events and the file's checkpoint in one transaction of its own ([`Store::put_file_batch`]),
//! written by the tailer on the blocking pool so that its reading state moves on only once that
//! write has succeeded.
//!
//! Deliberately not here: building events and dedup keys (the caller does), HTTP status
//! mapping, and any timeout (the caller decides how long a request may wait).

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, watch};

use super::{PutOutcome, PutRequest, Store, StoreError};
use crate::event::SecurityEvent;

/// Most events written in one transaction. Bounds how long one transaction holds sled's
/// global write lock (readers of the SOC API wait behind it); a batch larger than this is
/// written as several transactions before its one flush.
const MAX_EVENTS_PER_TRANSACTION: usize = 512;

/// A flush result shared by every waiter of the batch, because one error answers many.
type FlushResult = Result<(), Arc<StoreError>>;

/// What one waiter gets back once its events are durable: the outcome of each request it
/// handed over, in order.
type WriteResult = Result<Vec<PutOutcome>, StoreError>;

/// One request of a waiter after the batch holding it was written.
struct Written {
    /// Stored, or a duplicate of the event stored the first time.
    outcome: PutOutcome,
    /// The request as handed over; for a duplicate, its event was NOT stored.
    request: PutRequest,
}

/// Told what each batch stored once the batch is durable. Called on the committer's task,
/// after every waiter of the batch has its answer; it must not block.
pub trait OnDurable: Send + Sync {
    /// `events` were stored by one batch (duplicates are not among them) and are now durable,
    /// in write order. Never called with an empty list.
    fn stored(&self, events: Vec<SecurityEvent>);
    /// A batch failed to write or to flush: some of its events may be stored all the same, and
    /// no notice names them.
    fn unconfirmed(&self);
}

/// What a queued request leaves for the committer.
struct Waiter {
    /// Events to store once each; empty when the caller only waits for durability.
    writes: Vec<PutRequest>,
    reply: oneshot::Sender<WriteResult>,
}

/// Handle to the committer task. Cheap to clone: every clone feeds the same queue.
#[derive(Clone)]
pub struct GroupCommit {
    /// The bounded queue; a reserved permit is a promise of room for one waiter.
    queue: mpsc::Sender<Waiter>,
    /// Tells the committer to stop taking new slots and finish (graceful shutdown). Shared so any
    /// clone can trigger it; a watch so a late subscriber still sees it.
    stop: Arc<watch::Sender<bool>>,
    /// Becomes `true` after the committer's final flush; `shutdown` waits for it.
    stopped: watch::Receiver<bool>,
}

/// What the committer task owns besides its queue.
struct Committer {
    store: Arc<dyn Store>,
    /// Told what each batch stored; `None` when nobody needs to know (tests, file ingest's own
    /// committer, which tells the pipeline itself).
    notice: Option<Arc<dyn OnDurable>>,
}

/// A reserved place in the commit queue. Dropping it unused gives the place back.
#[must_use = "a slot only confirms durability when `durable()` is awaited"]
pub struct CommitSlot {
    /// The queue capacity taken by `reserve`; sending on it cannot fail for lack of room.
    permit: mpsc::OwnedPermit<Waiter>,
}

/// Why [`GroupCommit::reserve`] refused. Either way nothing has been written yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Overloaded {
    /// Every place is taken; the caller should answer 429 with `Retry-After`.
    #[error("commit queue is full")]
    QueueFull,
    /// Shutdown has begun and no new writes are accepted; the caller should answer 503.
    #[error("store is shutting down")]
    ShuttingDown,
}

impl GroupCommit {
    /// Spawns the committer task on the current tokio runtime. `capacity` bounds the requests
    /// holding or waiting in a slot (the batch being flushed has already left the queue, so up
    /// to one more queue's worth can be mid-flush). A zero capacity is raised to one.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`: a wiring bug, not a runtime condition.
    pub fn start(store: Arc<dyn Store>, capacity: usize) -> GroupCommit {
        GroupCommit::spawn(Committer { store, notice: None }, capacity)
    }

    /// [`GroupCommit::start`], and `notice` is told what each batch stored once it is durable.
    pub fn start_with_notice(
        store: Arc<dyn Store>,
        capacity: usize,
        notice: Arc<dyn OnDurable>,
    ) -> GroupCommit {
        GroupCommit::spawn(Committer { store, notice: Some(notice) }, capacity)
    }

    fn spawn(committer: Committer, capacity: usize) -> GroupCommit {
        let (queue, waiters) = mpsc::channel(capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        tokio::spawn(run_committer(committer, waiters, stop_rx, stopped_tx));
        GroupCommit { queue, stop: Arc::new(stop), stopped }
    }

    /// Takes a place in the queue BEFORE the caller writes, so a full queue is refused before
    /// anything is stored. Every refusal is counted in `haltwire_queue_dropped_total`.
    pub fn reserve(&self) -> Result<CommitSlot, Overloaded> {
        match self.queue.clone().try_reserve_owned() {
            Ok(permit) => {
                set_depth(&self.queue);
                Ok(CommitSlot { permit })
            }
            Err(err) => {
                metrics::counter!("haltwire_queue_dropped_total", "queue" => "commit").increment(1);
                Err(match err {
                    mpsc::error::TrySendError::Full(_) => Overloaded::QueueFull,
                    mpsc::error::TrySendError::Closed(_) => Overloaded::ShuttingDown,
                })
            }
        }
    }

    /// Waits for a place in the queue instead of refusing: for file ingest, which reads at its
    /// own pace and has nobody to answer `429` to, so a full queue just slows it down. Nothing
    /// is dropped, so nothing is counted. Refuses only once shutdown has begun.
    pub async fn reserve_wait(&self) -> Result<CommitSlot, Overloaded> {
        match self.queue.clone().reserve_owned().await {
            Ok(permit) => {
                set_depth(&self.queue);
                Ok(CommitSlot { permit })
            }
            Err(_) => Err(Overloaded::ShuttingDown),
        }
    }

    /// Graceful shutdown: refuses new slots, waits until every slot already reserved has been
    /// used or dropped and its batch flushed, then does a final flush. Waits for a slot held
    /// by a stuck caller too; wrap in a timeout if that matters. Safe to call more than once.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let mut stopped = self.stopped.clone();
        // An error means the committer is gone already (e.g. the runtime dropped it): nothing
        // is left to wait for.
        let _ = stopped.wait_for(|done| *done).await;
    }
}

impl CommitSlot {
    /// Hands `writes` to the committer, which stores each event once (in one transaction with
    /// the rest of its batch) and then flushes. Resolves after that flush has completed, with
    /// the outcome of every write, in order; a duplicate's outcome names the event stored the
    /// first time. The stored events go to the committer's [`OnDurable`], even if this future
    /// was dropped meanwhile.
    pub async fn write(self, writes: Vec<PutRequest>) -> WriteResult {
        let (reply, answer) = oneshot::channel();
        self.permit.send(Waiter { writes, reply });
        answer.await.unwrap_or(Err(StoreError::CommitterStopped))
    }

    /// Resolves once a flush that started after this call has completed, so everything the
    /// caller wrote before calling is durable.
    pub async fn durable(self) -> Result<(), StoreError> {
        self.write(Vec::new()).await.map(drop)
    }
}

/// The committer loop: one batch per iteration until shutdown has drained the queue.
async fn run_committer(
    committer: Committer,
    mut waiters: mpsc::Receiver<Waiter>,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let mut stopping = false;
    loop {
        let first = if stopping {
            waiters.recv().await
        } else {
            tokio::select! {
                first = waiters.recv() => first,
                // Also taken when every handle is dropped (the watch closes): nobody can reserve
                // again, so finishing is right either way.
                _ = stop.wait_for(|stop| *stop) => {
                    // close() refuses new reservations; recv() keeps returning what is queued
                    // and only yields None once every outstanding permit is used or dropped.
                    waiters.close();
                    stopping = true;
                    continue;
                }
            }
        };
        let Some(first) = first else { break };
        // One scheduler pass first: requests that are already runnable reach the queue and
        // share this transaction and flush instead of each forcing the next one. Under light
        // load nothing else is runnable and this costs one pass; it never waits on a timer.
        tokio::task::yield_now().await;
        let batch = drain(first, &mut waiters);
        commit_batch(&committer, batch).await;
    }
    if let Err(err) = flush_once(&committer.store).await {
        tracing::error!(%err, "final flush at shutdown failed");
    }
    stopped.send_replace(true);
}

/// The first waiter plus every waiter already queued behind it.
fn drain(first: Waiter, waiters: &mut mpsc::Receiver<Waiter>) -> Vec<Waiter> {
    let mut batch = vec![first];
    while let Ok(waiter) = waiters.try_recv() {
        batch.push(waiter);
    }
    metrics::gauge!("haltwire_queue_depth", "queue" => "commit")
        .set((waiters.max_capacity() - waiters.capacity()) as f64);
    batch
}

/// One transaction and one flush for the whole batch, then every waiter gets its answer, then
/// the notice learns what the batch stored.
async fn commit_batch(committer: &Committer, batch: Vec<Waiter>) {
    metrics::histogram!("haltwire_store_commit_batch_size").record(batch.len() as f64);
    let (replies, writes): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.reply, w.writes)).unzip();
    let store = Arc::clone(&committer.store);
    let waiters = replies.len();
    let results = tokio::task::spawn_blocking(move || write_and_flush(store.as_ref(), writes)).await;
    let results = results.unwrap_or_else(|err| {
        let message = err.to_string();
        (0..waiters).map(|_| Err(StoreError::Task(message.clone()))).collect()
    });
    let mut stored = Vec::new();
    let mut unconfirmed = false;
    for (reply, result) in replies.into_iter().zip(results) {
        let answer = result.map(|written| {
            written
                .into_iter()
                .map(|Written { outcome, request }| {
                    if let PutOutcome::Stored(_) = outcome {
                        stored.push(request.event);
                    }
                    outcome
                })
                .collect()
        });
        unconfirmed |= answer.is_err();
        // A closed receiver means the request gave up waiting; its write is durable anyway.
        let _ = reply.send(answer);
    }
    if let Some(notice) = &committer.notice {
        if unconfirmed {
            notice.unconfirmed();
        }
        if !stored.is_empty() {
            notice.stored(stored);
        }
    }
}

/// A waiter's result as the committer keeps it until the replies go out: with the requests,
/// whose stored events go to the notice.
type Kept = Result<Vec<Written>, StoreError>;

/// On the blocking pool: every waiter's events, then ONE flush. One result per waiter.
fn write_and_flush(store: &dyn Store, writes: Vec<Vec<PutRequest>>) -> Vec<Kept> {
    let mut results = write_batch(store, writes);
    let flushed = timed_flush(store).map_err(Arc::new);
    if let Err(err) = &flushed {
        tracing::error!(%err, batch = results.len(), "group commit flush failed");
        for result in results.iter_mut().filter(|r| r.is_ok()) {
            *result = Err(StoreError::FlushFailed(Arc::clone(err)));
        }
    }
    results
}

/// Writes the waiters' events in transactions of about [`MAX_EVENTS_PER_TRANSACTION`],
/// never splitting one waiter's events.
fn write_batch(store: &dyn Store, writes: Vec<Vec<PutRequest>>) -> Vec<Kept> {
    let mut results = Vec::with_capacity(writes.len());
    let mut chunk = Vec::new();
    let mut events = 0;
    for group in writes {
        events += group.len();
        chunk.push(group);
        if events >= MAX_EVENTS_PER_TRANSACTION {
            results.extend(write_chunk(store, std::mem::take(&mut chunk)));
            events = 0;
        }
    }
    results.extend(write_chunk(store, chunk));
    results
}

/// One transaction for the chunk. If it fails, each waiter's events are retried alone, so a
/// request that cannot be written (a corrupt dedup entry, say) fails only itself.
fn write_chunk(store: &dyn Store, groups: Vec<Vec<PutRequest>>) -> Vec<Kept> {
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    let all: Vec<PutRequest> = groups.into_iter().flatten().collect();
    if all.is_empty() {
        return sizes.iter().map(|_| Ok(Vec::new())).collect();
    }
    match store.put_batch(&all) {
        Ok(outcomes) => split(written(outcomes, all), &sizes).into_iter().map(Ok).collect(),
        Err(err) => {
            tracing::warn!(%err, waiters = sizes.len(), "batched write failed; writing each request alone");
            let mut rest = all.into_iter();
            sizes.iter().map(|&len| write_alone(store, rest.by_ref().take(len).collect())).collect()
        }
    }
}

fn write_alone(store: &dyn Store, own: Vec<PutRequest>) -> Kept {
    if own.is_empty() {
        return Ok(Vec::new());
    }
    match store.put_batch(&own) {
        Ok(outcomes) => Ok(written(outcomes, own)),
        Err(err) => Err(StoreError::WriteFailed(Arc::new(err))),
    }
}

/// Pairs each request with its outcome (the store returns one outcome per request, in order).
fn written(outcomes: Vec<PutOutcome>, requests: Vec<PutRequest>) -> Vec<Written> {
    outcomes.into_iter().zip(requests).map(|(outcome, request)| Written { outcome, request }).collect()
}

/// Cuts the batch's results back into one list per waiter.
fn split(all: Vec<Written>, sizes: &[usize]) -> Vec<Vec<Written>> {
    let mut rest = all.into_iter();
    sizes.iter().map(|&len| rest.by_ref().take(len).collect()).collect()
}

/// `Store::flush`, recording how long it took.
fn timed_flush(store: &dyn Store) -> Result<(), StoreError> {
    let started = Instant::now();
    let result = store.flush();
    metrics::histogram!("haltwire_store_flush_seconds").record(started.elapsed().as_secs_f64());
    result
}

/// Runs [`timed_flush`] on the blocking pool (it fsyncs); used for the final flush.
async fn flush_once(store: &Arc<dyn Store>) -> FlushResult {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || timed_flush(store.as_ref())).await {
        Ok(result) => result.map_err(Arc::new),
        Err(err) => Err(Arc::new(StoreError::Task(err.to_string()))),
    }
}

/// Reserved plus queued places, as seen from a sender.
fn set_depth(queue: &mpsc::Sender<Waiter>) {
    metrics::gauge!("haltwire_queue_depth", "queue" => "commit")
        .set((queue.max_capacity() - queue.capacity()) as f64);
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::task::Poll;

    use super::*;
    use crate::store::testing::{dedup, event_at, Probe};
    use uuid::Uuid;

    /// Polls once: proves a future is still waiting (and, for `durable`, that its waiter is now
    /// in the queue) without sleeping.
    async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
    }

    #[tokio::test]
    async fn many_waiters_share_one_flush() {
        const N: usize = 64;
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Probe::new(dir.path(), true);
        let commit = GroupCommit::start(probe.store.clone(), N + 1);

        let first = tokio::spawn(commit.reserve().unwrap().durable());
        assert_eq!(probe.flush_started.recv().await, Some(1));
        // Flush 1 is held; these all queue behind it.
        let mut rest = Vec::new();
        for _ in 0..N {
            let mut durable = Box::pin(commit.reserve().unwrap().durable());
            assert!(poll_once(&mut durable).await.is_pending());
            rest.push(tokio::spawn(durable));
        }
        drop(probe.tickets.take()); // let every flush through
        first.await.unwrap().unwrap();
        for waiter in rest {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(probe.flushes(), 2, "{} waiters, one flush each batch", N + 1);
    }

    #[tokio::test]
    async fn slot_queued_during_a_flush_waits_for_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Probe::new(dir.path(), true);
        let tickets = probe.tickets.take().unwrap();
        let commit = GroupCommit::start(probe.store.clone(), 8);

        let early = tokio::spawn(commit.reserve().unwrap().durable());
        assert_eq!(probe.flush_started.recv().await, Some(1));
        let mut late = Box::pin(commit.reserve().unwrap().durable());
        assert!(poll_once(&mut late).await.is_pending());

        tickets.send(()).unwrap(); // flush 1 completes
        early.await.unwrap().unwrap();
        assert_eq!(probe.flush_started.recv().await, Some(2));
        assert!(poll_once(&mut late).await.is_pending(), "flush 1 must not answer a late waiter");

        tickets.send(()).unwrap(); // flush 2 completes
        late.await.unwrap();
        assert_eq!(probe.flushes(), 2);
    }

    #[tokio::test]
    async fn reserve_wait_waits_for_room_and_stops_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::new(dir.path(), false);
        let commit = GroupCommit::start(probe.store.clone(), 1);
        let held = commit.reserve().unwrap();
        let mut waiting = Box::pin(commit.reserve_wait());
        assert!(poll_once(&mut waiting).await.is_pending(), "the queue is full");
        drop(held);
        let slot = waiting.await.unwrap();
        slot.durable().await.unwrap();
        commit.shutdown().await;
        assert_eq!(commit.reserve_wait().await.err(), Some(Overloaded::ShuttingDown));
    }

    #[tokio::test]
    async fn queued_writes_share_one_transaction_and_flush_and_a_bad_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Probe::new(dir.path(), true);
        let notice = Arc::new(Notices::default());
        let commit = GroupCommit::start_with_notice(probe.store.clone(), 8, notice.clone());
        let first = tokio::spawn(commit.reserve().unwrap().durable());
        assert_eq!(probe.flush_started.recv().await, Some(1));
        // Flush 1 is held; the three writes below queue into the next batch.
        let taken = event_at(1_000);
        probe.store.put_once(&dedup("taken", i64::MAX), &taken).unwrap();
        let (a, b) = (event_at(2_000), event_at(3_000));
        let mut writes = Vec::new();
        for (key, event) in [("k", &a), ("k", &b), ("reused-id", &taken)] {
            let put = PutRequest { dedup: dedup(key, i64::MAX), event: event.clone() };
            let mut write = Box::pin(commit.reserve().unwrap().write(vec![put]));
            assert!(poll_once(&mut write).await.is_pending());
            writes.push(tokio::spawn(write));
        }
        drop(probe.tickets.take());
        first.await.unwrap().unwrap();
        let mut results = Vec::new();
        for write in writes {
            results.push(write.await.unwrap());
        }
        assert_eq!(results[0].as_ref().unwrap(), &vec![PutOutcome::Stored(a.id)]);
        assert_eq!(results[1].as_ref().unwrap(), &vec![PutOutcome::Duplicate(a.id)]);
        assert!(
            matches!(&results[2], Err(StoreError::WriteFailed(e)) if matches!(**e, StoreError::IdCollision(_)))
        );
        assert_eq!(probe.flushes(), 2, "one flush for the whole batch");
        assert_eq!(probe.store.event_count(), 2);
        // One notice for the batch, naming only what it stored; and the failed write is told.
        assert_eq!(notice.batches(), vec![vec![a.id]]);
        assert_eq!(notice.unconfirmed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_notice_hears_of_a_batch_only_after_its_flush_and_not_of_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Probe::new(dir.path(), true);
        let notice = Arc::new(Notices::default());
        let commit = GroupCommit::start_with_notice(probe.store.clone(), 8, notice.clone());

        let event = event_at(1_000);
        let put = PutRequest { dedup: dedup("k", i64::MAX), event: event.clone() };
        // Queued, then abandoned: the notice must not depend on anyone waiting for the answer.
        let mut write = Box::pin(commit.reserve().unwrap().write(vec![put]));
        assert!(poll_once(&mut write).await.is_pending());
        drop(write);
        assert_eq!(probe.flush_started.recv().await, Some(1));
        assert!(notice.batches().is_empty(), "stored but not yet durable");
        drop(probe.tickets.take()); // let every flush through
                                    // The committer takes the next batch only after it has given the previous notice.
        commit.reserve().unwrap().durable().await.unwrap();
        assert_eq!(notice.batches(), vec![vec![event.id]]);
        assert_eq!(notice.unconfirmed.load(Ordering::SeqCst), 0);

        probe.store.fail_flush.store(true, Ordering::SeqCst);
        let other = PutRequest { dedup: dedup("other", i64::MAX), event: event_at(2_000) };
        let failed = commit.reserve().unwrap().write(vec![other]).await;
        assert!(matches!(failed, Err(StoreError::FlushFailed(_))));
        probe.store.fail_flush.store(false, Ordering::SeqCst);
        commit.reserve().unwrap().durable().await.unwrap();
        assert_eq!(notice.batches().len(), 1, "a failed flush confirms nothing");
        assert_eq!(notice.unconfirmed.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn full_queue_is_refused_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::new(dir.path(), false);
        let commit = GroupCommit::start(probe.store.clone(), 2);
        let held = (commit.reserve().unwrap(), commit.reserve().unwrap());

        let recorder = DropRecorder::default();
        let refused = metrics::with_local_recorder(&recorder, || commit.reserve());
        assert_eq!(refused.err(), Some(Overloaded::QueueFull));
        assert_eq!(recorder.dropped.load(Ordering::SeqCst), 1);

        drop(held.0); // an unused slot gives its place back
        let again = commit.reserve().unwrap();
        again.durable().await.unwrap();
        held.1.durable().await.unwrap();
    }

    #[tokio::test]
    async fn flush_failure_reaches_every_waiter() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Probe::new(dir.path(), true);
        probe.store.fail_flush.store(true, Ordering::SeqCst);
        let commit = GroupCommit::start(probe.store.clone(), 8);

        let first = tokio::spawn(commit.reserve().unwrap().durable());
        assert_eq!(probe.flush_started.recv().await, Some(1));
        let mut second = Box::pin(commit.reserve().unwrap().durable());
        assert!(poll_once(&mut second).await.is_pending());
        drop(probe.tickets.take());

        assert!(matches!(first.await.unwrap(), Err(StoreError::FlushFailed(_))));
        assert!(matches!(second.await, Err(StoreError::FlushFailed(_))));
    }

    #[tokio::test]
    async fn shutdown_satisfies_reserved_slots_then_flushes_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::new(dir.path(), false);
        let commit = GroupCommit::start(probe.store.clone(), 8);
        let slot = commit.reserve().unwrap();

        let (durable, ()) = tokio::join!(slot.durable(), commit.shutdown());
        durable.unwrap();
        assert_eq!(probe.flushes(), 2, "the slot's batch, then the final flush");
        assert_eq!(commit.reserve().err(), Some(Overloaded::ShuttingDown));
        commit.shutdown().await; // idempotent
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_ingest_through_group_commit() {
        const N: u64 = 100;
        let dir = tempfile::tempdir().unwrap();
        let probe = Probe::new(dir.path(), false);
        let store: Arc<dyn Store> = probe.store.clone();
        let commit = GroupCommit::start(store.clone(), N as usize);
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let (store, commit) = (store.clone(), commit.clone());
                tokio::spawn(async move {
                    // The ingest pattern: reserve, write on the blocking pool, then wait.
                    let slot = commit.reserve().unwrap();
                    let outcome = tokio::task::spawn_blocking(move || {
                        store.put_once(&dedup(&i.to_string(), i64::MAX), &event_at(1_000 + i))
                    })
                    .await
                    .unwrap()
                    .unwrap();
                    slot.durable().await.unwrap();
                    outcome
                })
            })
            .collect();
        for task in tasks {
            assert!(matches!(task.await.unwrap(), PutOutcome::Stored(_)));
        }
        assert_eq!(store.event_count(), N);
        assert!(probe.flushes() as u64 <= N, "{} flushes", probe.flushes());
        commit.shutdown().await;
    }

    /// Records every notice the committer gives.
    #[derive(Default)]
    struct Notices {
        stored: std::sync::Mutex<Vec<Vec<Uuid>>>,
        unconfirmed: AtomicU64,
    }

    impl Notices {
        fn batches(&self) -> Vec<Vec<Uuid>> {
            self.stored.lock().unwrap().clone()
        }
    }

    impl OnDurable for Notices {
        fn stored(&self, events: Vec<SecurityEvent>) {
            self.stored.lock().unwrap().push(events.iter().map(|e| e.id).collect());
        }
        fn unconfirmed(&self) {
            self.unconfirmed.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Counts `haltwire_queue_dropped_total{queue="commit"}`; every other metric is a no-op.
    #[derive(Default)]
    struct DropRecorder {
        dropped: Arc<AtomicU64>,
    }

    impl metrics::Recorder for DropRecorder {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
            let commit_queue = key.labels().any(|l| l.key() == "queue" && l.value() == "commit");
            if key.name() == "haltwire_queue_dropped_total" && commit_queue {
                metrics::Counter::from_arc(Arc::clone(&self.dropped))
            } else {
                metrics::Counter::noop()
            }
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }
}
