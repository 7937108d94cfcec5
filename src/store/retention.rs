//! The retention loop: runs [`Store::sweep`] every interval and publishes the store's size.
//!
//! Deliberately not here: what to delete (that is `Store::sweep`) and config parsing (the
//! caller builds the [`Retention`] and interval from `[store]`).

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::{Retention, Store, StoreError, SweepReport};

/// Never sweep more often than this, whatever the config says: a zero interval would panic in
/// tokio and a tiny one would keep sled's write lock busy.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Sweeps once at start and then every `interval` until `shutdown` becomes `true` (or its sender
/// is dropped). Sets `haltwire_store_disk_bytes` and `haltwire_store_events` after every sweep
/// and logs one line per sweep that deleted something. Errors are logged and retried next time.
pub async fn run_retention(
    store: Arc<dyn Store>,
    retention: Retention,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval.max(MIN_INTERVAL));
    // After a long sweep, wait a full interval rather than sweeping again at once.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = ticker.tick() => {}
        }
        match sweep_once(&store, retention).await {
            Ok((report, disk_bytes)) => publish(store.event_count(), disk_bytes, report),
            Err(err) => tracing::warn!(%err, "retention sweep failed"),
        }
    }
}

/// One sweep on the blocking pool (it walks trees and takes sled's write lock), then the size on
/// disk (it reads directory metadata). A failed measurement does not hide a good sweep.
async fn sweep_once(
    store: &Arc<dyn Store>,
    retention: Retention,
) -> Result<(SweepReport, Result<u64, StoreError>), StoreError> {
    let store = Arc::clone(store);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let joined = tokio::task::spawn_blocking(move || {
        let report = store.sweep(now, &retention)?;
        Ok((report, store.size_on_disk()))
    })
    .await;
    joined.map_err(|err| StoreError::Task(err.to_string()))?
}

/// Gauges after a sweep, and a log line if it changed anything.
fn publish(events: u64, disk_bytes: Result<u64, StoreError>, report: SweepReport) {
    metrics::gauge!("haltwire_store_events").set(events as f64);
    match disk_bytes {
        Ok(bytes) => metrics::gauge!("haltwire_store_disk_bytes").set(bytes as f64),
        Err(err) => tracing::warn!(%err, "cannot measure the store's size on disk"),
    }
    if report.events_deleted > 0 || report.dedup_deleted > 0 {
        tracing::info!(
            events_deleted = report.events_deleted,
            dedup_deleted = report.dedup_deleted,
            events_left = events,
            "retention sweep"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{dedup, event_at, Probe};

    #[tokio::test]
    async fn sweeps_at_start_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = Probe::new(dir.path(), false);
        let now_ms = OffsetDateTime::now_utc().unix_timestamp() as u64 * 1000;
        let keep = event_at(now_ms);
        probe.store.put_once(&dedup("old", i64::MAX), &event_at(now_ms - 10_000_000)).unwrap();
        probe.store.put_once(&dedup("new", i64::MAX), &keep).unwrap();

        let (stop, shutdown) = watch::channel(false);
        let retention = Retention { max_age_secs: 3_600, max_events: 100 };
        // A zero interval must not panic (tokio rejects it); it is raised to MIN_INTERVAL.
        let task = tokio::spawn(run_retention(probe.store.clone(), retention, Duration::ZERO, shutdown));

        let report = probe.swept.recv().await.unwrap();
        assert_eq!(report.events_deleted, 1);
        assert_eq!(probe.store.event_count(), 1);
        assert!(probe.store.event(keep.id).unwrap().is_some());

        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    }
}
