//! Typed internal events: each observable occurrence is one struct whose `emit` writes the log
//! line and the metrics together, so logs and metrics cannot drift apart.
//!
//! Log fields carry only validated identifiers (source names, reason codes, ids); request
//! bodies, signatures and secrets are never logged (R46), and anything attacker-chosen is
//! formatted with `Debug` so newlines and escapes cannot forge log lines (R47).
//! Metric names here are a contract documented in docs/operations.md.

use crate::event::Trust;
use metrics::{Counter, Histogram};
use std::sync::OnceLock;
use std::time::Duration;
use uuid::Uuid;

/// The per-source series of accepted requests, registered on a source's first accepted request
/// and reused after, so that a request neither builds label strings nor looks the series up.
/// Taken from the recorder installed at that first use (`serve` installs it before serving).
#[derive(Default)]
pub struct SourceSeries {
    handles: OnceLock<AcceptedHandles>,
}

struct AcceptedHandles {
    received: Counter,
    duplicates: Counter,
    accepted: Counter,
    duration: Histogram,
}

impl SourceSeries {
    /// `trust` is the source's tier: every event of one source has the same.
    fn handles(&self, source: &str, trust: Trust) -> &AcceptedHandles {
        self.handles.get_or_init(|| {
            let source = source.to_string();
            AcceptedHandles {
                received: metrics::counter!("haltwire_ingest_received_total", "source" => source.clone()),
                duplicates: metrics::counter!("haltwire_ingest_duplicates_total", "source" => source.clone()),
                accepted: metrics::counter!("haltwire_ingest_accepted_total", "source" => source.clone(), "trust" => trust.as_str()),
                duration: metrics::histogram!("haltwire_ingest_duration_seconds", "source" => source),
            }
        })
    }
}

/// An event was authenticated and is durably stored (or was a duplicate of one that is).
pub struct IngestAccepted<'a> {
    pub source: &'a str,
    /// The source's series (see [`SourceSeries`]).
    pub series: &'a SourceSeries,
    pub trust: Trust,
    pub duplicate: bool,
    pub event_id: Uuid,
    pub elapsed: Duration,
}

impl IngestAccepted<'_> {
    pub fn emit(self) {
        let series = self.series.handles(self.source, self.trust);
        series.received.increment(1);
        if self.duplicate {
            series.duplicates.increment(1);
        } else {
            series.accepted.increment(1);
        }
        series.duration.record(self.elapsed.as_secs_f64());
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

/// Lines of a watched file reached an outcome: `stored`, `duplicate`, `undecodable`,
/// `no_event`, `too_long`, `blank` or `partial`. An audit event counts each of its lines.
pub struct FileLines<'a> {
    pub watch: &'a str,
    pub outcome: &'static str,
    pub lines: u64,
}

impl FileLines<'_> {
    pub fn emit(self) {
        metrics::counter!("haltwire_file_lines_total", "watch" => self.watch.to_string(), "outcome" => self.outcome)
            .increment(self.lines);
    }
}

/// A line (or audit event) of a watched file was skipped: undecodable or too long. The line's
/// content is never logged, only where it is.
pub struct FileLineSkipped<'a> {
    pub watch: &'a str,
    pub path: &'a std::path::Path,
    /// 1-based line number of the record's first line.
    pub line: u64,
    /// `syntax`, `schema` or `too_long`.
    pub reason: &'static str,
}

impl FileLineSkipped<'_> {
    pub fn emit(self) {
        tracing::warn!(watch = self.watch, file = ?self.path, line = self.line, reason = self.reason, "line skipped");
    }
}

/// A file in a watched directory was not opened (R14): `symlink`, `not_regular`,
/// `wrong_owner`, `hard_link`, `io_error` or `too_many_files`. Reported once per file.
pub struct FileRefused<'a> {
    pub watch: &'a str,
    pub path: &'a std::path::Path,
    pub reason: &'static str,
    /// Human-readable specifics (owner uid, link count, OS error).
    pub detail: &'a dyn std::fmt::Display,
}

impl FileRefused<'_> {
    pub fn emit(self) {
        metrics::counter!("haltwire_file_refused_total", "watch" => self.watch.to_string(), "reason" => self.reason)
            .increment(1);
        tracing::warn!(watch = self.watch, file = ?self.path, reason = self.reason, detail = %self.detail, "file refused");
    }
}

/// A watched directory failed the R13 check after start; nothing new is opened until it passes.
pub struct FileDirectoryRefused<'a> {
    pub watch: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl FileDirectoryRefused<'_> {
    pub fn emit(self) {
        metrics::counter!("haltwire_file_refused_total", "watch" => self.watch.to_string(), "reason" => "directory")
            .increment(1);
        tracing::error!(watch = self.watch, error = %self.error, "watched directory refused");
    }
}

/// A watched file was rotated: `rename`, `moved_or_deleted`, `truncate`, `copy` (the
/// lines lost to a truncation are read from its copy) or `copy_seen`.
pub struct FileRotated<'a> {
    pub watch: &'a str,
    pub path: &'a std::path::Path,
    pub kind: &'static str,
}

impl FileRotated<'_> {
    pub fn emit(self) {
        metrics::counter!("haltwire_file_rotations_total", "watch" => self.watch.to_string(), "kind" => self.kind)
            .increment(1);
        tracing::info!(watch = self.watch, file = ?self.path, kind = self.kind, "file rotated");
    }
}

/// File ingest could not do `op` (`read`, `stat`, `list`, `put_file_batch`, …); it retries.
pub struct FileError<'a> {
    pub watch: &'a str,
    pub op: &'static str,
    pub path: &'a std::path::Path,
    pub error: &'a dyn std::fmt::Display,
}

impl FileError<'_> {
    pub fn emit(self) {
        metrics::counter!("haltwire_file_errors_total", "watch" => self.watch.to_string(), "op" => self.op)
            .increment(1);
        tracing::error!(watch = self.watch, op = self.op, file = ?self.path, error = %self.error, "file ingest error");
    }
}

/// Per-watch gauges, refreshed every scan.
pub struct FileGauges<'a> {
    pub watch: &'a str,
    /// Files open for reading.
    pub open_files: usize,
    /// Bytes in open files beyond their stored checkpoints.
    pub lag_bytes: u64,
}

impl FileGauges<'_> {
    pub fn emit(self) {
        metrics::gauge!("haltwire_file_open", "watch" => self.watch.to_string()).set(self.open_files as f64);
        metrics::gauge!("haltwire_file_lag_bytes", "watch" => self.watch.to_string())
            .set(self.lag_bytes as f64);
    }
}
