//! The spine: takes stored events and runs the stages after ingest in order — correlate, then
//! (for an event tied to a session) decide by policy, create the block, and hand the block's
//! directive to the delivery stage. This is the only file that knows the order; [`announce`]
//! is the one block → directive → deliver edge, also used when a block is cleared or expires.
//!
//! Directives become visible to agents only after a store flush: the pipeline works through
//! the batch of rings at hand, enqueues the batch's directives in one store call, then
//! flushes the store once and publishes them all (so a `seq` an agent has seen never
//! disappears in a crash). On start it reconciles:
//! a block of an active session whose directive was lost to a crash is announced again.
//!
//! Ingest and the session API only *ring* the pipeline (a queue bounded in events; a ring that
//! does not fit is dropped and counted). HTTP ingest's group commit rings once per flushed
//! batch ([`OnDurable`]) with the stored events themselves, so the pipeline does not read back
//! what was just written and wakes once per batch, not once per request; file ingest rings
//! with the ids of a file batch. What the pipeline works on is
//! still the store's: a persistent cursor over the events tree, re-read with a small overlap
//! (commits finish out of id order), so every stored event is processed even if a ring was
//! dropped or lost, or the broker crashed. The scan runs every second while a ring may have
//! been missed (at start, after a dropped or lost ring or a failed step) and every
//! [`BACKSTOP_SCAN`] otherwise; it reads keys, and only the events without a correlation.
//! Processing is idempotent: an event that already has a correlation is not correlated again,
//! except to bind it late when a matching ledger entry arrives.
//!
//! Runs on its own thread: every step is a blocking sled read or write. Rings waiting in the
//! queue are taken together, so the sessions and ledgers are loaded once per batch, not once per
//! event.

use crate::block::active::{ActiveBlocks, BlockFilter};
use crate::block::{Block, BlockKind, BlockSpec, ScopeKind};
use crate::correlate::{Candidate, Correlator};
use crate::deliver::{Announcement, Deliver, DeliverError, Enqueued, Origin};
use crate::directive::payload::{Directive, EventFacts};
use crate::event::{Correlation, CorrelationStatus, SecurityEvent};
use crate::policy::{self, EvalInput, LivePolicies};
use crate::sessions::model::{CommandRecord, Session};
use crate::store::{EventQuery, OnDurable, SessionStore, Store, StoreError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use uuid::Uuid;

/// Events (and ledger changes) waiting for the pipeline thread, counted one per event however
/// they are grouped into rings; a ring that would go beyond it is dropped (the cursor scan
/// still finds the events).
const QUEUE_CAPACITY: usize = 4096;
/// Largest `raw` an event may have to travel in a ring; a larger one rings by id, so the
/// queue's memory stays bounded (about `QUEUE_CAPACITY` × twice this).
const MAX_RING_EVENT_RAW: usize = 8 * 1024;
/// Most rings handled as one batch (one load of sessions and ledgers).
const MAX_BATCH: usize = 1024;
/// Pause after a large batch, so that the rings of a busy ingest gather into the next batch
/// instead of waking this thread once per event: each wake-up is a context switch on the core
/// that also serves ingest, and this thread's store reads would interleave with the
/// committer's transactions. It delays correlation (and so directives) by at most this much,
/// never the ingest answer.
const PACE: Duration = Duration::from_millis(1);
/// Batches smaller than this are not followed by a pause: at moderate rates (a thousand
/// events a second gives batches of one to three) the pause would be most of the event →
/// directive latency while saving few wake-ups.
const PACE_FROM_BATCH: usize = 16;
/// How far behind the cursor each scan starts again: longer than any commit takes.
const SCAN_OVERLAP_MS: i64 = 5_000;
/// How often the store is scanned while a ring may have been missed.
const SCAN_SOON: Duration = Duration::from_secs(1);
/// How often the store is scanned when every ring arrived: a backstop for a loss nothing
/// reported.
const BACKSTOP_SCAN: Duration = Duration::from_secs(10);
/// Events read per scan step.
const SCAN_PAGE: usize = 512;
/// Unmatched events kept for late binding, newest last.
const MAX_LATE: usize = 10_000;

/// Waits until everything written before the call is durable (a store flush).
pub type Durability = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// Why the pipeline was rung.
#[derive(Debug)]
pub enum Ring {
    /// An event was stored durably; the pipeline reads it from the store.
    Stored(Uuid),
    /// An event was stored durably and is handed over as written, so that the pipeline need
    /// not read it back. Built by [`Ring::stored`].
    StoredEvent(Box<SecurityEvent>),
    /// A session's ledger gained a call: unmatched events may now bind to it.
    LedgerChanged(Uuid),
    /// Several rings at once (the events of one group commit), handled in order.
    Batch(Vec<Ring>),
}

impl Ring {
    /// The ring for an event that is now durable: the event itself, or only its id when its
    /// original is large (see [`MAX_RING_EVENT_RAW`]).
    pub fn stored(event: SecurityEvent) -> Ring {
        if event.raw.get().len() <= MAX_RING_EVENT_RAW {
            Ring::StoredEvent(Box::new(event))
        } else {
            Ring::Stored(event.id)
        }
    }

    /// The queue places the ring takes: one per event it carries.
    fn weight(&self) -> usize {
        match self {
            Ring::Batch(rings) => rings.iter().map(Ring::weight).sum(),
            _ => 1,
        }
    }
}

/// The sending side, given to ingest and the session API. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: SyncSender<Ring>,
    /// Queue places taken by rings sent and not yet taken by the pipeline (see
    /// [`Ring::weight`]); the channel alone would bound rings, not the events inside them.
    queued: Arc<AtomicUsize>,
    /// Set when a ring was dropped or lost: the pipeline scans the store soon.
    missed: Arc<AtomicBool>,
}

impl PipelineHandle {
    /// A handle whose rings go to the returned receiver, not to a pipeline thread (tests of
    /// the callers that ring).
    #[cfg(test)]
    pub fn channel(capacity: usize) -> (PipelineHandle, Receiver<Ring>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        (PipelineHandle { tx, queued: Arc::default(), missed: Arc::default() }, rx)
    }

    /// Queues `ring` without blocking; a ring that does not fit is dropped, counted, and the
    /// store scanned soon instead.
    pub fn ring(&self, ring: Ring) {
        let weight = ring.weight();
        if self.queued.fetch_add(weight, Ordering::AcqRel) + weight > QUEUE_CAPACITY {
            self.queued.fetch_sub(weight, Ordering::AcqRel);
            self.dropped();
            return;
        }
        match self.tx.try_send(ring) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.queued.fetch_sub(weight, Ordering::AcqRel);
                self.dropped();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.queued.fetch_sub(weight, Ordering::AcqRel);
            }
        }
    }

    fn dropped(&self) {
        metrics::counter!("haltwire_queue_dropped_total", "queue" => "pipeline").increment(1);
        self.missed();
    }

    /// Says that an event may have been stored without a ring (a caller gave up waiting, or
    /// durability was not confirmed): the pipeline scans the store within a second.
    pub fn missed(&self) {
        self.missed.store(true, Ordering::Release);
    }
}

/// The ingest group commit's notice: each flushed batch becomes one ring.
impl OnDurable for PipelineHandle {
    fn stored(&self, events: Vec<SecurityEvent>) {
        self.ring(Ring::Batch(events.into_iter().map(Ring::stored).collect()));
    }

    fn unconfirmed(&self) {
        self.missed();
    }
}

/// The pipeline thread's state.
pub struct Pipeline {
    store: Arc<dyn Store>,
    sessions: Arc<dyn SessionStore>,
    correlator: Arc<Correlator>,
    /// The policy set in service (swapped atomically on reload).
    policies: Arc<LivePolicies>,
    /// Where decided blocks go; the gate reads them.
    blocks: Arc<ActiveBlocks>,
    /// The delivery stage: block directives are enqueued here.
    deliver: Arc<Deliver>,
    /// Makes enqueued directives durable before they are published.
    durable: Durability,
    /// Directives of the blocks decided in this batch, enqueued together at its end (one store
    /// call and one bound check per session for the batch, not one per block).
    announcements: Vec<Announcement>,
    /// Enqueued but not yet published (waiting for the next flush).
    unpublished: Vec<Enqueued>,
    rx: Receiver<Ring>,
    /// Shared with every [`PipelineHandle`]: queue places taken; given back as rings are taken.
    queued: Arc<AtomicUsize>,
    /// Shared with every [`PipelineHandle`]: a ring may have been missed.
    missed: Arc<AtomicBool>,
    /// Recently unmatched or ambiguous events, for late binding.
    late: VecDeque<Uuid>,
    /// The newest event id a scan has looked at in this run. Only a scan can have correlated
    /// an event before its (single) ring is handled, so for a newer id the stored-correlation
    /// check is skipped.
    scanned_upto: Option<Uuid>,
}

/// A running pipeline: stop it with [`Running::stop`].
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Running {
    /// Asks the thread to finish its current step and waits for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

impl Pipeline {
    /// Starts the pipeline thread.
    pub fn start(
        store: Arc<dyn Store>,
        sessions: Arc<dyn SessionStore>,
        correlator: Arc<Correlator>,
        policies: Arc<LivePolicies>,
        blocks: Arc<ActiveBlocks>,
        deliver: Arc<Deliver>,
        durable: Durability,
    ) -> std::io::Result<(PipelineHandle, Running)> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let queued = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        // A fresh start may follow a crash that lost rings: the first scan runs at once.
        let missed = Arc::new(AtomicBool::new(true));
        let mut pipeline = Pipeline {
            store,
            sessions,
            correlator,
            policies,
            blocks,
            deliver,
            durable,
            announcements: Vec::new(),
            unpublished: Vec::new(),
            rx,
            queued: queued.clone(),
            missed: missed.clone(),
            late: VecDeque::new(),
            scanned_upto: None,
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("haltwire-pipeline".into())
            .spawn(move || pipeline.run(&flag))?;
        Ok((PipelineHandle { tx, queued, missed }, Running { stop, thread }))
    }

    fn run(&mut self, stop: &AtomicBool) {
        match reconcile(&self.deliver, &*self.store, &*self.sessions, &self.blocks) {
            Ok(enqueued) => self.unpublished.extend(enqueued),
            Err(err) => tracing::warn!(%err, "directive reconciliation failed"),
        }
        self.publish();
        let mut last_scan: Option<Instant> = None;
        while !stop.load(Ordering::Acquire) {
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(first) => {
                    let mut batch = Vec::new();
                    self.take(first, &mut batch);
                    while batch.len() < MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(ring) => self.take(ring, &mut batch),
                            Err(_) => break,
                        }
                    }
                    metrics::histogram!("haltwire_pipeline_batch_size").record(batch.len() as f64);
                    let pace = batch.len() >= PACE_FROM_BATCH;
                    let started = Instant::now();
                    self.handle(batch);
                    metrics::histogram!("haltwire_pipeline_stage_seconds", "stage" => "decide")
                        .record(started.elapsed().as_secs_f64());
                    // Flush and publish the batch's directives once, before pausing.
                    self.publish();
                    if pace {
                        std::thread::sleep(PACE);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let every = if self.missed.load(Ordering::Acquire) { SCAN_SOON } else { BACKSTOP_SCAN };
            if last_scan.is_none_or(|at| at.elapsed() >= every) {
                // Cleared before scanning: a ring lost during the scan is caught by the next one.
                self.missed.store(false, Ordering::Release);
                if let Err(err) = self.catch_up() {
                    tracing::warn!(%err, "pipeline scan failed");
                    self.missed.store(true, Ordering::Release);
                }
                self.publish();
                last_scan = Some(Instant::now());
            }
        }
        self.publish();
    }

    /// Adds a ring taken from the queue to `batch`, a batch ring as its parts, and gives its
    /// queue places back.
    fn take(&self, ring: Ring, batch: &mut Vec<Ring>) {
        self.queued.fetch_sub(ring.weight(), Ordering::AcqRel);
        match ring {
            Ring::Batch(rings) => batch.extend(rings),
            single => batch.push(single),
        }
    }

    /// Enqueues the directives of the blocks decided since the last call, then waits for a
    /// flush covering every enqueued directive and makes them visible. On a failed flush they
    /// stay unpublished and the next publish tries again.
    fn publish(&mut self) {
        self.enqueue_announcements();
        if self.unpublished.is_empty() {
            return;
        }
        let started = Instant::now();
        let flushed = (self.durable)();
        metrics::histogram!("haltwire_pipeline_stage_seconds", "stage" => "flush")
            .record(started.elapsed().as_secs_f64());
        match flushed {
            Ok(()) => {
                self.deliver.publish(&std::mem::take(&mut self.unpublished));
            }
            Err(err) => tracing::warn!(%err, "flush before publishing directives failed"),
        }
    }

    /// Enqueues the batch's block directives in one go. A failure leaves the blocks without a
    /// directive until the start-up reconciliation (the gate enforces them all the same).
    fn enqueue_announcements(&mut self) {
        if self.announcements.is_empty() {
            return;
        }
        let announcements = std::mem::take(&mut self.announcements);
        let count = announcements.len();
        match self.deliver.enqueue_all(announcements, OffsetDateTime::now_utc().unix_timestamp()) {
            Ok(enqueued) => self.unpublished.extend(enqueued),
            Err(err) => tracing::warn!(%err, count, "block directives not enqueued; reconciled on restart"),
        }
    }

    /// Runs the stages for a batch of rings, in order. Sessions and ledgers are loaded once,
    /// after every ring of the batch was queued, and again after a ledger change.
    fn handle(&mut self, batch: Vec<Ring>) {
        let mut candidates = None;
        for ring in batch {
            let result = match ring {
                Ring::Stored(id) => self.process(id, &mut candidates),
                Ring::StoredEvent(event) => self.process_event(&event, &mut candidates),
                Ring::LedgerChanged(session) => {
                    candidates = None;
                    self.bind_late(session)
                }
                // `take` unpacks batches; one built elsewhere is handled the same way.
                Ring::Batch(rings) => {
                    self.handle(rings);
                    Ok(())
                }
            };
            if let Err(err) = result {
                tracing::warn!(%err, "pipeline step failed; the cursor scan retries it");
                self.missed.store(true, Ordering::Release);
            }
        }
    }

    /// Runs the stages for one stored event, read from the store, unless they already ran.
    fn process(&mut self, id: Uuid, candidates: &mut Option<Candidates>) -> Result<(), StoreError> {
        if self.done_before(id)? {
            return Ok(());
        }
        let Some(event) = self.store.event(id)? else { return Ok(()) };
        self.correlate_with(&event, candidates)
    }

    /// Runs the stages for one stored event unless they already ran.
    fn process_event(
        &mut self,
        event: &SecurityEvent,
        candidates: &mut Option<Candidates>,
    ) -> Result<(), StoreError> {
        if self.done_before(event.id)? {
            return Ok(());
        }
        // Receipt → pipeline: the ingest commit and flush, the ring queue and the pause
        // between batches (the first share of event → directive).
        let waited = OffsetDateTime::now_utc() - event.received_at;
        metrics::histogram!("haltwire_pipeline_stage_seconds", "stage" => "since_received")
            .record(waited.as_seconds_f64().max(0.0));
        self.correlate_with(event, candidates)
    }

    /// Whether the event already has its correlation. Every event is rung once, so only a scan
    /// can have got there first, and only for an id it has seen; newer ids skip the store.
    fn done_before(&self, id: Uuid) -> Result<bool, StoreError> {
        if self.scanned_upto.is_none_or(|upto| id > upto) {
            return Ok(false);
        }
        self.sessions.has_correlation(id)
    }

    /// Correlates with the batch's candidates, loading them on first use.
    fn correlate_with(
        &mut self,
        event: &SecurityEvent,
        candidates: &mut Option<Candidates>,
    ) -> Result<(), StoreError> {
        let loaded = match candidates {
            Some(loaded) => loaded,
            None => candidates.insert(self.candidates()?),
        };
        self.correlate_and_store(event, loaded)
    }

    /// Correlates one event against already loaded candidates (loaded once per batch: each
    /// load reads every session's ledger).
    fn correlate_and_store(
        &mut self,
        event: &SecurityEvent,
        candidates: &[(Session, Vec<CommandRecord>)],
    ) -> Result<(), StoreError> {
        let refs: Vec<Candidate<'_>> =
            candidates.iter().map(|(s, c)| Candidate { session: s, commands: c }).collect();
        let correlation = self.correlator.correlate(event, &refs, OffsetDateTime::now_utc());
        metrics::counter!("haltwire_correlations_total", "status" => status_label(correlation.status))
            .increment(1);
        if correlation.status != CorrelationStatus::Matched {
            self.late.push_back(event.id);
            if self.late.len() > MAX_LATE {
                self.late.pop_front();
            }
        }
        tracing::debug!(event_id = %event.id, status = status_label(correlation.status), "correlated");
        self.sessions.put_correlation(event.id, &correlation)?;
        if correlation.status == CorrelationStatus::Matched {
            self.decide(event, &correlation, candidates)?;
        }
        Ok(())
    }

    /// The policy stage, then the block stage: for an event tied to a session, evaluate the
    /// policy set and turn a restricting decision into a block. At most one block per event.
    fn decide(
        &mut self,
        event: &SecurityEvent,
        correlation: &Correlation,
        candidates: &[(Session, Vec<CommandRecord>)],
    ) -> Result<(), StoreError> {
        let Some((session, ledger)) =
            candidates.iter().find(|(s, _)| Some(s.session_id) == correlation.session_id)
        else {
            return Ok(());
        };
        if self.blocks.block_of_event(event.id)?.is_some() {
            return Ok(());
        }
        let command = correlation.call_id.as_ref().and_then(|id| ledger.iter().find(|c| &c.call_id == id));
        let prior_blocks = self.blocks.count_for_session(session.session_id);
        let policies = self.policies.current();
        let input = EvalInput {
            event,
            correlation: Some(correlation),
            session: Some(session),
            command,
            prior_blocks,
        };
        let Some(decision) = policies.evaluate(&input) else { return Ok(()) };
        let now = OffsetDateTime::now_utc();
        let Some(spec) = block_spec(&decision, policies.hash(), now) else {
            tracing::debug!(event_id = %event.id, policy = %decision.policy_id, "policy decided to ignore");
            return Ok(());
        };
        let block = self.blocks.create(Block::new(spec, session, event, command, now))?;
        self.announcements.push(announcement(&block, EventFacts::of_event(event)));
        tracing::info!(
            event_id = %event.id,
            block_id = %block.block_id,
            session_id = %session.session_id,
            policy = %block.policy_id,
            scope = ?block.scope,
            "block created"
        );
        Ok(())
    }

    /// Every session with its ledger. The correlator filters by host and lifetime.
    fn candidates(&self) -> Result<Candidates, StoreError> {
        self.sessions
            .sessions()?
            .into_iter()
            .map(|s| {
                let commands = self.sessions.commands(s.session_id)?;
                Ok((s, commands))
            })
            .collect()
    }

    /// A ledger changed: correlate the recent unmatched events again; keep those still unmatched.
    fn bind_late(&mut self, _session: Uuid) -> Result<(), StoreError> {
        let pending: Vec<Uuid> = self.late.drain(..).collect();
        if pending.is_empty() {
            return Ok(());
        }
        let candidates = self.candidates()?;
        for id in pending {
            let Some(event) = self.store.event(id)? else { continue };
            if (OffsetDateTime::now_utc() - event.time()) > self.correlator.thresholds.window_after {
                continue;
            }
            self.correlate_and_store(&event, &candidates)?;
        }
        Ok(())
    }

    /// Processes every stored event after the cursor (minus the overlap) that has no result yet.
    fn catch_up(&mut self) -> Result<(), StoreError> {
        let since = self.sessions.pipeline_cursor()?.map(|cursor| {
            let ms = cursor.get_timestamp().map_or(0, |t| {
                let (secs, nanos) = t.to_unix();
                i64::try_from(secs).unwrap_or(0) * 1000 + i64::from(nanos / 1_000_000)
            });
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms - SCAN_OVERLAP_MS) * 1_000_000)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        });
        let mut after = None;
        loop {
            // Ids first: nearly every event in the overlap has its correlation already, and
            // reading only the key and the correlation's presence is far cheaper than the event.
            let page = self.store.event_ids(&EventQuery { after, since, limit: SCAN_PAGE })?;
            let Some(&last) = page.last() else { break };
            // Before processing: `process` must check the store for every id of this page.
            self.scanned_upto = self.scanned_upto.max(Some(last));
            let mut candidates = None;
            for &id in &page {
                self.process(id, &mut candidates)?;
            }
            self.sessions.set_pipeline_cursor(last)?;
            after = Some(last);
            if page.len() < SCAN_PAGE {
                break;
            }
        }
        Ok(())
    }
}

/// The block → directive → deliver edge: enqueues the directive announcing a new block
/// (`do_not_retry` / `halt_session`) or its end (`cleared`, for a cleared or expired block),
/// once per block and type. Event facts come from `event`, else from the store. The result
/// must be published after a flush ([`Deliver::publish`]).
pub fn announce(
    deliver: &Deliver,
    store: &dyn Store,
    block: &Block,
    event: Option<&SecurityEvent>,
    now: i64,
) -> Result<Option<Enqueued>, DeliverError> {
    let facts = match event {
        Some(event) => EventFacts::of_event(event),
        None => store.event(block.event_id)?.map(|e| EventFacts::of_event(&e)).unwrap_or_default(),
    };
    Ok(deliver.enqueue_all(vec![announcement(block, facts)], now)?.pop())
}

/// The directive of `block`'s current state, addressed to its session.
fn announcement(block: &Block, facts: EventFacts) -> Announcement {
    let directive = Directive::for_block(block, facts);
    Announcement { session: block.session_id, directive }
}

/// Announces again what a crash may have lost between storing a block and enqueuing its
/// directive: for every block of an active session, the directive of its current state.
/// First restores the origins of pending entries, so that an entry a crash left without
/// its origin record is not enqueued a second time.
pub fn reconcile(
    deliver: &Deliver,
    store: &dyn Store,
    sessions: &dyn SessionStore,
    blocks: &ActiveBlocks,
) -> Result<Vec<Enqueued>, DeliverError> {
    use crate::sessions::model::SessionStatus;
    let repaired = deliver.repair_origins()?;
    if repaired > 0 {
        tracing::info!(repaired, "restored the origin records of pending directives");
    }
    let active: std::collections::HashSet<Uuid> = sessions
        .sessions()?
        .into_iter()
        .filter(|s| s.status == SessionStatus::Active)
        .map(|s| s.session_id)
        .collect();
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut out = Vec::new();
    for block in blocks.list(&BlockFilter::default())? {
        if !active.contains(&block.session_id) {
            continue;
        }
        if deliver.has_origin(Origin::of(&Directive::for_block(&block, EventFacts::default())))? {
            continue;
        }
        if let Some(enqueued) = announce(deliver, store, &block, None, now)? {
            tracing::info!(block_id = %block.block_id, "reconciled a missing directive");
            out.push(enqueued);
        }
    }
    Ok(out)
}

/// Every session with its ledger, as the correlator takes them.
type Candidates = Vec<(Session, Vec<CommandRecord>)>;

/// What a decision means for the block stage; `None` for `ignore`.
fn block_spec(decision: &policy::Decision, hash: &str, now: OffsetDateTime) -> Option<BlockSpec> {
    let after = |d: std::time::Duration| now + time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    let (kind, scope, retry_after, expires_at) = match &decision.action {
        policy::Action::Ignore => return None,
        policy::Action::HaltSession => (BlockKind::HaltSession, ScopeKind::Session, None, None),
        policy::Action::DoNotRetry { scope, retry, expiry } => {
            let retry_after = match retry {
                policy::Retry::Never => None,
                policy::Retry::After(d) => Some(after(*d)),
            };
            let expires_at = match expiry {
                policy::Expiry::UntilCleared => None,
                policy::Expiry::Ttl(d) => Some(after(*d)),
            };
            (BlockKind::DoNotRetry, scope_kind(*scope), retry_after, expires_at)
        }
    };
    Some(BlockSpec {
        kind,
        scope,
        retry_after,
        expires_at,
        policy_id: decision.policy_id.clone(),
        policy_hash: hash.to_string(),
        note: decision.note.clone(),
    })
}

fn scope_kind(scope: policy::Scope) -> ScopeKind {
    match scope {
        policy::Scope::Command => ScopeKind::Command,
        policy::Scope::Similar => ScopeKind::Similar,
        policy::Scope::Path => ScopeKind::Path,
        policy::Scope::Host => ScopeKind::Host,
        policy::Scope::Binary => ScopeKind::Binary,
        policy::Scope::Session => ScopeKind::Session,
    }
}

fn status_label(status: CorrelationStatus) -> &'static str {
    match status {
        CorrelationStatus::Matched => "matched",
        CorrelationStatus::Ambiguous => "ambiguous",
        CorrelationStatus::Unmatched => "unmatched",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Ring {
        Ring::Batch((0..n).map(|_| Ring::Stored(Uuid::now_v7())).collect())
    }

    #[test]
    fn the_ring_queue_is_bounded_in_events_not_rings() {
        let (handle, rx) = PipelineHandle::channel(QUEUE_CAPACITY);
        handle.ring(ids(QUEUE_CAPACITY + 1));
        assert!(rx.try_recv().is_err(), "a batch larger than the whole queue is dropped");
        assert!(handle.missed.swap(false, Ordering::AcqRel), "and the drop asks for a scan");

        handle.ring(ids(QUEUE_CAPACITY - 1));
        handle.ring(Ring::LedgerChanged(Uuid::now_v7()));
        handle.ring(ids(1));
        assert!(handle.missed.load(Ordering::Acquire), "the queue was full with one ring left over");
        assert_eq!(handle.queued.load(Ordering::Acquire), QUEUE_CAPACITY);
        assert!(matches!(rx.try_recv(), Ok(Ring::Batch(b)) if b.len() == QUEUE_CAPACITY - 1));
        assert!(matches!(rx.try_recv(), Ok(Ring::LedgerChanged(_))));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_stored_batch_becomes_one_ring_and_a_large_event_rings_by_id() {
        let (handle, rx) = PipelineHandle::channel(8);
        let mut small = crate::store::testing::event_at(1_000);
        small.raw = serde_json::value::RawValue::from_string("{}".into()).unwrap();
        let mut large = crate::store::testing::event_at(2_000);
        large.raw = serde_json::value::to_raw_value(&"x".repeat(MAX_RING_EVENT_RAW)).unwrap();
        OnDurable::stored(&handle, vec![small.clone(), large.clone()]);
        let Ok(Ring::Batch(rings)) = rx.try_recv() else { panic!("one batch ring expected") };
        assert!(matches!(&rings[0], Ring::StoredEvent(e) if e.id == small.id));
        assert!(matches!(&rings[1], Ring::Stored(id) if *id == large.id));
        assert!(rx.try_recv().is_err(), "one ring for the whole batch");
        assert_eq!(handle.queued.load(Ordering::Acquire), 2);

        OnDurable::unconfirmed(&handle);
        assert!(handle.missed.load(Ordering::Acquire));
    }
}
