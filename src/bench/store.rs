//! `haltwire bench store`: what durable storage alone costs per ingested event on this machine —
//! no HTTP, no verification, no pipeline.
//!
//! Two passes over the same events, each on a fresh sled directory, written in group commits of
//! the size the ingest bench produces (one flush per batch, as the committer does):
//! - `sled`: the least a durable, deduplicating ingest can ask of sled 0.34 — per event one
//!   insert of the event's bytes (encoded before the clock starts) under its time-ordered
//!   16-byte id and one insert of its dedup key, then one `flush` per batch. No reads, no
//!   transaction, no count, no encoding. Two entries are the minimum: events are listed in time
//!   order and deduplicated by the sender's key, two orders sled can only keep as two trees.
//! - `store`: [`Store::put_batch`] then [`Store::flush`] per batch on a [`SledStore`]: exactly
//!   what the group committer runs for ingest (dedup check, transaction, event count).
//!
//! Each pass reports the CPU time of the whole process per event — sled's I/O threads included,
//! because on the one core `serve` gets in the ingest bench that is what every event pays — and
//! the wall time beside it. `scripts/perf-report.sh` sets the `sled` figure against the floor
//! handler's time per event: the ratio no sled-backed broker can beat under that floor.
//!
//! Not here: pinning (run it under `taskset`, like the other benches), and judging the figures.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use super::load::{event_body, process_cpu};
use super::BenchError;
use crate::decode::Integrations;
use crate::event::{SecurityEvent, Trust};
use crate::store::{DedupRecord, PutRequest, SledStore, Store};

/// One run's parameters.
pub struct StoreSettings {
    /// Events written per pass.
    pub events: usize,
    /// Events per group commit (one flush each).
    pub batch: usize,
    /// Page cache given to sled, as `[store] cache_bytes` gives it to `serve`.
    pub cache_bytes: u64,
}

/// What one pass measured.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StorePass {
    /// CPU time of the whole process per event, in µs (`None` where /proc is missing).
    pub cpu_us_per_event: Option<f64>,
    /// Wall time per event, in µs.
    pub wall_us_per_event: f64,
}

/// Both passes, printed as one JSON line.
#[derive(Debug, Serialize)]
pub struct StoreReport {
    pub events: usize,
    pub batch: usize,
    /// Bytes sled stores per event (the serialized event).
    pub event_bytes: usize,
    /// The least sled can do: two inserts per event and a flush per batch.
    pub sled: StorePass,
    /// haltwire's store as the group committer drives it.
    pub store: StorePass,
}

impl StoreReport {
    pub fn summary(&self) -> String {
        let cpu = |p: &StorePass| p.cpu_us_per_event.map_or("n/a".to_string(), |c| format!("{c:.1} µs"));
        format!(
            "store: {} events of {} bytes in batches of {}\n  bare sled (2 inserts + flush/batch): {} CPU, {:.1} µs wall per event\n  haltwire store (put_batch + flush):   {} CPU, {:.1} µs wall per event",
            self.events,
            self.event_bytes,
            self.batch,
            cpu(&self.sled),
            self.sled.wall_us_per_event,
            cpu(&self.store),
            self.store.wall_us_per_event,
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs both passes in `scratch` (each in a directory of its own, removed afterwards).
pub fn run(settings: &StoreSettings, scratch: &Path) -> Result<StoreReport, BenchError> {
    if settings.events == 0 || settings.batch == 0 {
        return Err(BenchError::Settings("--events and --batch must be positive".into()));
    }
    let requests = requests(settings.events)?;
    let event_bytes = serde_json::to_vec(&requests[0].event).map(|v| v.len()).unwrap_or(0);
    let sled = bare_sled_pass(&requests, settings, &scratch.join("sled"))?;
    let store = store_pass(&requests, settings, &scratch.join("store"))?;
    Ok(StoreReport { events: settings.events, batch: settings.batch, event_bytes, sled, store })
}

/// The events the ingest bench would store: its bodies, decoded by the `generic` integration.
fn requests(count: usize) -> Result<Vec<PutRequest>, BenchError> {
    let integrations = Integrations::built_in().map_err(|e| BenchError::Check(e.to_string()))?;
    let decoder =
        integrations.get("generic").ok_or_else(|| BenchError::Check("no generic decoder".into()))?;
    let now = OffsetDateTime::now_utc();
    (0..count)
        .map(|i| {
            let marker = format!("bench-store-{i:08}");
            let decoded =
                decoder.decode(&event_body(&marker, 0)).map_err(|e| BenchError::Check(e.to_string()))?;
            let first =
                decoded.into_iter().next().ok_or_else(|| BenchError::Check("no event decoded".into()))?;
            let event = SecurityEvent {
                id: Uuid::now_v7(),
                source: "bench".into(),
                integration: decoder.name().to_string(),
                trust: Trust::Signed,
                received_at: now,
                body: first.body,
                raw: first.raw,
            };
            let key = format!("bench\0msg_{marker}").into_bytes();
            Ok(PutRequest { dedup: DedupRecord { key, expires_at: i64::MAX }, event })
        })
        .collect()
}

fn bare_sled_pass(
    requests: &[PutRequest],
    settings: &StoreSettings,
    dir: &Path,
) -> Result<StorePass, BenchError> {
    let io = |context: &str| {
        let context = context.to_string();
        move |e: sled::Error| BenchError::Io { context: context.clone(), source: e.into() }
    };
    // The configuration `SledStore::open` uses, so the two passes differ only in what they write.
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(settings.cache_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(io("opening sled"))?;
    let events = db.open_tree("events").map_err(io("opening a tree"))?;
    let dedup = db.open_tree("dedup").map_err(io("opening a tree"))?;
    let dedup_value = [0u8; 25];
    let encoded = requests
        .iter()
        .map(|r| serde_json::to_vec(&r.event).map(sled::IVec::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Check(e.to_string()))?;
    let pass = timed(requests.len(), || {
        for (batch, values) in requests.chunks(settings.batch).zip(encoded.chunks(settings.batch)) {
            for (request, value) in batch.iter().zip(values) {
                events.insert(request.event.id.as_bytes(), value.clone()).map_err(io("insert"))?;
                dedup.insert(request.dedup.key.as_slice(), &dedup_value[..]).map_err(io("insert"))?;
            }
            db.flush().map_err(io("flush"))?;
        }
        Ok(())
    })?;
    if events.len() != requests.len() {
        return Err(BenchError::Check(format!("sled holds {} of {} events", events.len(), requests.len())));
    }
    drop((events, dedup, db));
    remove(dir)?;
    Ok(pass)
}

fn store_pass(
    requests: &[PutRequest],
    settings: &StoreSettings,
    dir: &Path,
) -> Result<StorePass, BenchError> {
    let check = |e: crate::store::StoreError| BenchError::Check(e.to_string());
    let store = SledStore::open(dir, settings.cache_bytes).map_err(check)?;
    let pass = timed(requests.len(), || {
        for batch in requests.chunks(settings.batch) {
            store.put_batch(batch).map_err(check)?;
            store.flush().map_err(check)?;
        }
        Ok(())
    })?;
    if store.event_count() != requests.len() as u64 {
        return Err(BenchError::Check(format!(
            "stored {} of {} events",
            store.event_count(),
            requests.len()
        )));
    }
    drop(store);
    remove(dir)?;
    Ok(pass)
}

/// Runs `work` once, measuring process CPU and wall time per event.
fn timed(events: usize, work: impl FnOnce() -> Result<(), BenchError>) -> Result<StorePass, BenchError> {
    let (cpu_before, started) = (process_cpu(), Instant::now());
    work()?;
    let wall = started.elapsed();
    let cpu = process_cpu().zip(cpu_before).map(|(after, before)| after.saturating_sub(before));
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events as f64;
    Ok(StorePass { cpu_us_per_event: cpu.map(per_event), wall_us_per_event: per_event(wall) })
}

fn remove(dir: &Path) -> Result<(), BenchError> {
    std::fs::remove_dir_all(dir)
        .map_err(|source| BenchError::Io { context: format!("removing {}", dir.display()), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_passes_store_every_event_and_report_a_cost() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = StoreSettings { events: 64, batch: 8, cache_bytes: 8 << 20 };
        let report = run(&settings, scratch.path()).unwrap();
        assert!(report.event_bytes > 100, "{report:?}");
        assert!(report.sled.wall_us_per_event > 0.0 && report.store.wall_us_per_event > 0.0);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["batch"], 8);
        assert!(std::fs::read_dir(scratch.path()).unwrap().next().is_none(), "scratch left clean");
    }

    #[test]
    fn zero_events_or_batch_is_a_settings_error() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = StoreSettings { events: 0, batch: 8, cache_bytes: 8 << 20 };
        assert!(matches!(run(&settings, scratch.path()), Err(BenchError::Settings(_))));
    }
}
