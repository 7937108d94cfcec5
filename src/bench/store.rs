//! `haltwire bench store`: what durable storage alone costs per ingested event on this machine —
//! no HTTP, no verification, no pipeline.
//!
//! Four passes over the same events, each on a fresh sled directory, written in group commits of
//! the size the ingest bench produces (one flush per batch, as the committer does). The first
//! three ask bare sled 0.34 for the least each possible layout of a durable, deduplicating ingest
//! needs — values encoded before the clock starts, no reads, no transaction, no count:
//! - `sled`: per event one insert of the event's bytes under its time-ordered 16-byte id and one
//!   insert of its dedup key: one entry per event in each of the two orders the store keeps
//!   (events by time, dedup keys by sender key).
//! - `sled_batched`: one value holding the whole batch's events, and per event only the dedup
//!   insert — fewer entries for events, at the price of reading a batch to read one event.
//! - `sled_append`: one value per batch and nothing per event. The cheapest durable write sled
//!   offers; a store built on it must keep its dedup index outside sled.
//! - `store`: [`Store::put_batch`] then [`Store::flush`] per batch on a [`SledStore`]: exactly
//!   what the group committer runs for ingest (dedup check, transaction, event count).
//!
//! Each pass reports the CPU time of the whole process per event — sled's I/O threads included,
//! because on the one core `serve` gets in the ingest bench that is what every event pays — and
//! the wall time beside it. `scripts/perf-report.sh` sets the bare figures against the floor
//! handler's time per event: the ratio no broker storing that way in sled can beat under that floor.
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
    /// Bare sled, one entry per event in each order: two inserts per event, a flush per batch.
    pub sled: StorePass,
    /// Bare sled, events packed one value per batch, one dedup insert per event, a flush per batch.
    pub sled_batched: StorePass,
    /// Bare sled, one value per batch and nothing per event, a flush per batch.
    pub sled_append: StorePass,
    /// haltwire's store as the group committer drives it.
    pub store: StorePass,
}

impl StoreReport {
    pub fn summary(&self) -> String {
        let cpu = |p: &StorePass| p.cpu_us_per_event.map_or("n/a".to_string(), |c| format!("{c:.1} µs"));
        format!(
            "store: {} events of {} bytes in batches of {}\n  bare sled, 2 entries per event:      {} CPU, {:.1} µs wall per event\n  bare sled, batch value + dedup key:  {} CPU, {:.1} µs wall per event\n  bare sled, batch value only:         {} CPU, {:.1} µs wall per event\n  haltwire store (put_batch + flush):  {} CPU, {:.1} µs wall per event",
            self.events,
            self.event_bytes,
            self.batch,
            cpu(&self.sled),
            self.sled.wall_us_per_event,
            cpu(&self.sled_batched),
            self.sled_batched.wall_us_per_event,
            cpu(&self.sled_append),
            self.sled_append.wall_us_per_event,
            cpu(&self.store),
            self.store.wall_us_per_event,
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs the four passes in `scratch` (each in a directory of its own, removed afterwards).
pub fn run(settings: &StoreSettings, scratch: &Path) -> Result<StoreReport, BenchError> {
    if settings.events == 0 || settings.batch == 0 {
        return Err(BenchError::Settings("--events and --batch must be positive".into()));
    }
    let requests = requests(settings.events)?;
    let event_bytes = serde_json::to_vec(&requests[0].event).map(|v| v.len()).unwrap_or(0);
    let bare = |layout| bare_sled_pass(&requests, settings, layout, &scratch.join("sled"));
    let sled = bare(Layout::EntryPerEvent)?;
    let sled_batched = bare(Layout::BatchValueAndDedupKeys)?;
    let sled_append = bare(Layout::BatchValueOnly)?;
    let store = store_pass(&requests, settings, &scratch.join("store"))?;
    Ok(StoreReport {
        events: settings.events,
        batch: settings.batch,
        event_bytes,
        sled,
        sled_batched,
        sled_append,
        store,
    })
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

/// How a bare-sled pass lays the events out.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// The event under its id and its dedup key, one entry each.
    EntryPerEvent,
    /// The batch's events in one value under the batch's first id; each dedup key an entry.
    BatchValueAndDedupKeys,
    /// The batch's events in one value; nothing per event.
    BatchValueOnly,
}

fn bare_sled_pass(
    requests: &[PutRequest],
    settings: &StoreSettings,
    layout: Layout,
    dir: &Path,
) -> Result<StorePass, BenchError> {
    let io = |context: &str| {
        let context = context.to_string();
        move |e: sled::Error| BenchError::Io { context: context.clone(), source: e.into() }
    };
    // The configuration `SledStore::open` uses, so the passes differ only in what they write.
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
        .map(|r| serde_json::to_vec(&r.event))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Check(e.to_string()))?;
    let batches: Vec<(&[PutRequest], sled::IVec)> = requests
        .chunks(settings.batch)
        .zip(encoded.chunks(settings.batch))
        .map(|(batch, values)| (batch, sled::IVec::from(values.concat())))
        .collect();
    let singles: Vec<sled::IVec> = encoded.into_iter().map(sled::IVec::from).collect();
    let pass = timed(requests.len(), || {
        let mut single = singles.iter();
        for (batch, packed) in &batches {
            if layout == Layout::EntryPerEvent {
                for (request, value) in batch.iter().zip(single.by_ref()) {
                    events.insert(request.event.id.as_bytes(), value.clone()).map_err(io("insert"))?;
                }
            } else {
                events.insert(batch[0].event.id.as_bytes(), packed.clone()).map_err(io("insert"))?;
            }
            if layout != Layout::BatchValueOnly {
                for request in batch.iter() {
                    dedup.insert(request.dedup.key.as_slice(), &dedup_value[..]).map_err(io("insert"))?;
                }
            }
            db.flush().map_err(io("flush"))?;
        }
        Ok(())
    })?;
    let expected = if layout == Layout::EntryPerEvent { requests.len() } else { batches.len() };
    if events.len() != expected {
        return Err(BenchError::Check(format!("sled holds {} of {expected} event entries", events.len())));
    }
    let expected_keys = if layout == Layout::BatchValueOnly { 0 } else { requests.len() };
    if dedup.len() != expected_keys {
        return Err(BenchError::Check(format!("sled holds {} of {expected_keys} dedup keys", dedup.len())));
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
    fn every_pass_stores_every_event_and_reports_a_cost() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = StoreSettings { events: 64, batch: 8, cache_bytes: 8 << 20 };
        let report = run(&settings, scratch.path()).unwrap();
        assert!(report.event_bytes > 100, "{report:?}");
        for pass in [report.sled, report.sled_batched, report.sled_append, report.store] {
            assert!(pass.wall_us_per_event > 0.0, "{report:?}");
        }
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["batch"], 8);
        assert!(json["sled_batched"]["wall_us_per_event"].is_number(), "{json}");
        assert!(std::fs::read_dir(scratch.path()).unwrap().next().is_none(), "scratch left clean");
    }

    #[test]
    fn zero_events_or_batch_is_a_settings_error() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = StoreSettings { events: 0, batch: 8, cache_bytes: 8 << 20 };
        assert!(matches!(run(&settings, scratch.path()), Err(BenchError::Settings(_))));
    }
}
