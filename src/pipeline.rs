//! The spine: takes stored events and runs the stages after ingest in order — correlate, then
//! (for an event tied to a session) decide by policy, create the block, and hand the block's
//! directive to the delivery stage. This is the only file that knows the order; [`announce`]
//! is the one block → directive → deliver edge, also used when a block is cleared or expires.
//!
//! Directives become visible to agents only after a store flush: the pipeline enqueues while
//! it works through the rings at hand (at most 1 ms), then flushes the store once and publishes
//! them all (so a `seq` an agent has seen never disappears in a crash). On start it reconciles:
//! a block of an active session whose directive was lost to a crash is announced again.
//!
//! Ingest and the session API only *ring* the pipeline (a bounded queue of ids; a full queue
//! drops the ring and counts it). What the pipeline works on comes from the store: a
//! persistent cursor over the events tree, re-read each second with a small overlap (commits
//! finish out of id order), so every stored event is processed even if a ring was dropped or
//! the broker crashed. Processing is idempotent: an event that already has a correlation is
//! not correlated again, except to bind it late when a matching ledger entry arrives.
//!
//! Runs on its own thread: every step is a blocking sled read or write.

use crate::block::active::{ActiveBlocks, BlockFilter};
use crate::block::{Block, BlockKind, BlockSpec, ScopeKind};
use crate::correlate::{Candidate, Correlator};
use crate::deliver::{Deliver, DeliverError, Enqueued, Origin};
use crate::directive::payload::{Directive, EventFacts};
use crate::event::{Correlation, CorrelationStatus, SecurityEvent};
use crate::policy::{self, EvalInput, LivePolicies};
use crate::sessions::model::{CommandRecord, Session};
use crate::store::{EventQuery, SessionStore, Store, StoreError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// Rings waiting for the pipeline thread; beyond it rings are dropped (the cursor scan still
/// finds the events).
const QUEUE_CAPACITY: usize = 4096;
/// How far behind the cursor each scan starts again: longer than any commit takes.
const SCAN_OVERLAP_MS: i64 = 5_000;
/// Events read per scan step.
const SCAN_PAGE: usize = 512;
/// Unmatched events kept for late binding, newest last.
const MAX_LATE: usize = 10_000;
/// Rings handled before the directives they produced are flushed and published.
const PUBLISH_BATCH: usize = 64;
/// Longest a directive waits for more rings before its batch is flushed and published.
const PUBLISH_AFTER: Duration = Duration::from_millis(1);

/// Waits until everything written before the call is durable (a store flush).
pub type Durability = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// Why the pipeline was rung.
#[derive(Debug, Clone, Copy)]
pub enum Ring {
    /// An event was stored durably.
    Stored(Uuid),
    /// A session's ledger gained a call: unmatched events may now bind to it.
    LedgerChanged(Uuid),
}

/// The sending side, given to ingest and the session API. Cheap to clone; never blocks.
#[derive(Clone)]
pub struct PipelineHandle {
    tx: SyncSender<Ring>,
}

impl PipelineHandle {
    /// A handle whose rings go to the returned receiver, not to a pipeline thread (tests of
    /// the callers that ring).
    #[cfg(test)]
    pub fn channel(capacity: usize) -> (PipelineHandle, Receiver<Ring>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        (PipelineHandle { tx }, rx)
    }

    pub fn ring(&self, ring: Ring) {
        match self.tx.try_send(ring) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                metrics::counter!("haltwire_queue_dropped_total", "queue" => "pipeline").increment(1);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
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
    /// Enqueued but not yet published (waiting for the next flush).
    unpublished: Vec<Enqueued>,
    /// When the oldest of `unpublished` was enqueued.
    unpublished_since: Option<std::time::Instant>,
    rx: Receiver<Ring>,
    /// Recently unmatched or ambiguous events, for late binding.
    late: VecDeque<Uuid>,
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
        let stop = Arc::new(AtomicBool::new(false));
        let mut pipeline = Pipeline {
            store,
            sessions,
            correlator,
            policies,
            blocks,
            deliver,
            durable,
            unpublished: Vec::new(),
            unpublished_since: None,
            rx,
            late: VecDeque::new(),
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("haltwire-pipeline".into())
            .spawn(move || pipeline.run(&flag))?;
        Ok((PipelineHandle { tx }, Running { stop, thread }))
    }

    fn run(&mut self, stop: &AtomicBool) {
        match reconcile(&self.deliver, &*self.store, &*self.sessions, &self.blocks) {
            Ok(enqueued) => self.unpublished.extend(enqueued),
            Err(err) => tracing::warn!(%err, "directive reconciliation failed"),
        }
        self.publish();
        let mut last_scan = std::time::Instant::now() - Duration::from_secs(10);
        while !stop.load(Ordering::Acquire) {
            let mut ring = self.rx.recv_timeout(Duration::from_millis(200));
            // Work through the rings at hand, flushing and publishing their directives once per
            // batch; a batch closes when no ring is waiting, or when its first directive has
            // waited PUBLISH_AFTER (so a steady stream of events does not delay delivery).
            for _ in 0..PUBLISH_BATCH {
                let result = match ring {
                    Ok(Ring::Stored(id)) => self.process(id),
                    Ok(Ring::LedgerChanged(session)) => self.bind_late(session),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => {
                        self.publish();
                        return;
                    }
                };
                if let Err(err) = result {
                    tracing::warn!(%err, "pipeline step failed; the cursor scan retries it");
                }
                if self.unpublished_since.is_some_and(|t| t.elapsed() >= PUBLISH_AFTER) {
                    break;
                }
                ring = self.rx.try_recv().map_err(|e| match e {
                    mpsc::TryRecvError::Empty => RecvTimeoutError::Timeout,
                    mpsc::TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                });
            }
            self.publish();
            if last_scan.elapsed() >= Duration::from_secs(1) {
                let started = std::time::Instant::now();
                if let Err(err) = self.catch_up() {
                    tracing::warn!(%err, "pipeline scan failed");
                }
                tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, "pipeline scan");
                self.publish();
                last_scan = std::time::Instant::now();
            }
        }
        self.publish();
    }

    /// Waits for a flush covering the enqueued directives, then makes them visible. On a
    /// failed flush they stay unpublished and the next publish tries again.
    fn publish(&mut self) {
        if self.unpublished.is_empty() {
            return;
        }
        match (self.durable)() {
            Ok(()) => {
                self.deliver.publish(&std::mem::take(&mut self.unpublished));
                self.unpublished_since = None;
            }
            Err(err) => tracing::warn!(%err, "flush before publishing directives failed"),
        }
    }

    /// Runs the stages for one stored event unless they already ran.
    fn process(&mut self, id: Uuid) -> Result<(), StoreError> {
        if self.sessions.correlation(id)?.is_some() {
            return Ok(());
        }
        let Some(event) = self.store.event(id)? else { return Ok(()) };
        let candidates = self.candidates()?;
        self.correlate_and_store(&event, &candidates)
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
        match announce(&self.deliver, &*self.store, &block, Some(event), now.unix_timestamp()) {
            Ok(enqueued) => self.unpublished.extend(enqueued),
            Err(err) => {
                tracing::warn!(%err, block_id = %block.block_id, "directive not enqueued; reconciled on restart")
            }
        }
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
    fn candidates(&self) -> Result<Vec<(Session, Vec<CommandRecord>)>, StoreError> {
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
            let page = self.store.events(&EventQuery { after, since, limit: SCAN_PAGE })?;
            let Some(last) = page.last().map(|e| e.id) else { break };
            let mut candidates = None;
            for event in &page {
                if self.sessions.correlation(event.id)?.is_none() {
                    if candidates.is_none() {
                        candidates = Some(self.candidates()?);
                    }
                    let loaded = candidates.as_deref().unwrap_or_default();
                    self.correlate_and_store(event, loaded)?;
                }
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
    let directive = Directive::for_block(block, facts);
    let origin = Origin { block_id: block.block_id, kind: directive.kind };
    deliver.enqueue(block.session_id, origin, directive, now)
}

/// Announces again what a crash may have lost between storing a block and enqueuing its
/// directive: for every block of an active session, the directive of its current state.
pub fn reconcile(
    deliver: &Deliver,
    store: &dyn Store,
    sessions: &dyn SessionStore,
    blocks: &ActiveBlocks,
) -> Result<Vec<Enqueued>, DeliverError> {
    use crate::sessions::model::SessionStatus;
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
        let kind = Directive::for_block(&block, EventFacts::default()).kind;
        if deliver.has_origin(Origin { block_id: block.block_id, kind })? {
            continue;
        }
        if let Some(enqueued) = announce(deliver, store, &block, None, now)? {
            tracing::info!(block_id = %block.block_id, "reconciled a missing directive");
            out.push(enqueued);
        }
    }
    Ok(out)
}

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
