//! Typed internal events: each observable occurrence is one struct whose `emit` writes the log
//! line and the metrics together, so logs and metrics cannot drift apart.
//!
//! Log fields carry only validated identifiers (source names, reason codes, ids); request
//! bodies, signatures and secrets are never logged (R46), and anything attacker-chosen is
//! formatted with `Debug` so newlines and escapes cannot forge log lines (R47).
//! Metric names here are a contract documented in docs/operations.md.

use crate::event::Trust;
use std::time::Duration;
use uuid::Uuid;

/// An event was authenticated and is durably stored (or was a duplicate of one that is).
pub struct IngestAccepted<'a> {
    pub source: &'a str,
    pub trust: Trust,
    pub duplicate: bool,
    pub event_id: Uuid,
    pub elapsed: Duration,
}

impl IngestAccepted<'_> {
    pub fn emit(self) {
        let source = self.source.to_string();
        metrics::counter!("haltwire_ingest_received_total", "source" => source.clone()).increment(1);
        if self.duplicate {
            metrics::counter!("haltwire_ingest_duplicates_total", "source" => source.clone()).increment(1);
        } else {
            metrics::counter!("haltwire_ingest_accepted_total", "source" => source.clone(), "trust" => self.trust.as_str())
                .increment(1);
        }
        metrics::histogram!("haltwire_ingest_duration_seconds", "source" => source)
            .record(self.elapsed.as_secs_f64());
        tracing::debug!(
            source = self.source,
            event_id = %self.event_id,
            trust = self.trust.as_str(),
            duplicate = self.duplicate,
            "event accepted"
        );
    }
}

/// A request was refused; `reason` is a stable snake_case code.
pub struct IngestRejected<'a> {
    pub source: &'a str,
    pub reason: &'static str,
}

impl IngestRejected<'_> {
    pub fn emit(self) {
        let source = self.source.to_string();
        metrics::counter!("haltwire_ingest_received_total", "source" => source.clone()).increment(1);
        metrics::counter!("haltwire_ingest_rejected_total", "source" => source, "reason" => self.reason)
            .increment(1);
        tracing::info!(source = self.source, reason = self.reason, "ingest refused");
    }
}
