//! Test helpers shared by the store's unit tests: event builders and a [`ProbeStore`] that
//! counts and gates flushes so group-commit tests need no wall-clock sleeps.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    DedupRecord, EventQuery, FileBatch, FileCheckpoint, FileId, PutOutcome, PutRequest, Retention, SledStore,
    Store, StoreError, SweepReport,
};
use crate::event::{EventBody, SecurityEvent, Trust};

pub(crate) fn open(dir: &Path) -> SledStore {
    SledStore::open(dir, 8 << 20).unwrap()
}

pub(crate) fn dedup(key: &str, expires_at: i64) -> DedupRecord {
    DedupRecord { key: key.as_bytes().to_vec(), expires_at }
}

/// An event whose v7 id carries Unix millisecond `ms`; ids are unique within the test binary.
pub(crate) fn event_at(ms: u64) -> SecurityEvent {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let mut tail = [0; 10];
    tail[2..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let id = uuid::Builder::from_unix_timestamp_millis(ms, &tail).into_uuid();
    SecurityEvent {
        id,
        source: "test".into(),
        integration: "generic".into(),
        trust: Trust::Signed,
        received_at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap(),
        body: EventBody { host: Some("build-1".into()), ..EventBody::default() },
        raw: RawValue::from_string(r#"{"rule":"curl|sh","n":[1,2]}"#.into()).unwrap(),
    }
}

/// A [`SledStore`] wrapper that counts flushes, can hold each flush until the test allows it,
/// can fail flushes, and reports sweeps.
pub(crate) struct ProbeStore {
    /// The real store every call is delegated to, so tests exercise sled, not a fake.
    inner: SledStore,
    /// Flushes started so far: the group-commit tests assert on it.
    pub flushes: AtomicUsize,
    /// Makes every flush fail, to test error fan-out.
    pub fail_flush: AtomicBool,
    /// Announces each flush as it starts, so tests know a flush is in progress.
    flush_started: mpsc::UnboundedSender<usize>,
    /// When present, each flush waits for one ticket (a std channel: flush runs on a blocking
    /// thread). A Mutex because the receiver is not Sync.
    gate: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
    /// Reports each sweep, so the retention test waits for an event rather than a clock.
    swept: mpsc::UnboundedSender<SweepReport>,
}

/// The test's side of a [`ProbeStore`].
pub(crate) struct Probe {
    /// The store to hand to the code under test.
    pub store: Arc<ProbeStore>,
    /// The number of each flush as it starts (1, 2, …).
    pub flush_started: mpsc::UnboundedReceiver<usize>,
    /// One ticket lets one gated flush finish; dropping it lets every flush through.
    pub tickets: Option<std::sync::mpsc::Sender<()>>,
    /// Each sweep's report.
    pub swept: mpsc::UnboundedReceiver<SweepReport>,
}

impl Probe {
    pub(crate) fn new(dir: &Path, gated: bool) -> Probe {
        let (started_tx, flush_started) = mpsc::unbounded_channel();
        let (swept_tx, swept) = mpsc::unbounded_channel();
        let (tickets, gate) = if gated {
            let (tx, rx) = std::sync::mpsc::channel();
            (Some(tx), Some(Mutex::new(rx)))
        } else {
            (None, None)
        };
        let store = Arc::new(ProbeStore {
            inner: open(dir),
            flushes: AtomicUsize::new(0),
            fail_flush: AtomicBool::new(false),
            flush_started: started_tx,
            gate,
            swept: swept_tx,
        });
        Probe { store, flush_started, tickets, swept }
    }

    pub(crate) fn flushes(&self) -> usize {
        self.store.flushes.load(Ordering::SeqCst)
    }
}

impl Store for ProbeStore {
    fn put_once(&self, dedup: &DedupRecord, event: &SecurityEvent) -> Result<PutOutcome, StoreError> {
        self.inner.put_once(dedup, event)
    }
    fn put_batch(&self, items: &[PutRequest]) -> Result<Vec<PutOutcome>, StoreError> {
        self.inner.put_batch(items)
    }
    fn event(&self, id: Uuid) -> Result<Option<SecurityEvent>, StoreError> {
        self.inner.event(id)
    }
    fn events(&self, query: &EventQuery) -> Result<Vec<SecurityEvent>, StoreError> {
        self.inner.events(query)
    }
    fn event_ids(&self, query: &EventQuery) -> Result<Vec<Uuid>, StoreError> {
        self.inner.event_ids(query)
    }
    fn flush(&self) -> Result<(), StoreError> {
        let n = self.flushes.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.flush_started.send(n);
        if let Some(gate) = &self.gate {
            // Err = the ticket sender was dropped: ungated from now on.
            let _ = gate.lock().unwrap().recv();
        }
        if self.fail_flush.load(Ordering::SeqCst) {
            return Err(StoreError::Sled(sled::Error::Unsupported("injected".into())));
        }
        self.inner.flush()
    }
    fn sweep(&self, now_unix: i64, retention: &Retention) -> Result<SweepReport, StoreError> {
        let report = self.inner.sweep(now_unix, retention)?;
        let _ = self.swept.send(report);
        Ok(report)
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }
    fn event_count(&self) -> u64 {
        self.inner.event_count()
    }
    fn put_file_batch(&self, batch: &FileBatch) -> Result<Vec<PutOutcome>, StoreError> {
        self.inner.put_file_batch(batch)
    }
    fn file_checkpoints(&self, watch: &str) -> Result<Vec<(FileId, FileCheckpoint)>, StoreError> {
        self.inner.file_checkpoints(watch)
    }
    fn remove_file_checkpoint(&self, watch: &str, file: FileId) -> Result<(), StoreError> {
        self.inner.remove_file_checkpoint(watch, file)
    }
}
