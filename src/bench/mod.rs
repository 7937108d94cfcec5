//! Measurement tooling, run as `haltwire bench …`: a load generator for the ingest route
//! ([`load`]), the bare "floor" handlers it is compared against ([`floor`]), the verification
//! ceiling without HTTP ([`verify`]), the storage cost without HTTP ([`store`]), a start-up timer
//! ([`startup`]), and the delivery and hook latency benches ([`deliver`], [`hook`]).
//! `scripts/bench.sh` runs the ingest side under fixed CPU pinning; `scripts/perf-report.sh` runs
//! everything and writes `docs/performance.md`.
//!
//! Not part of the broker's data path: `serve` never calls into this module, and nothing here
//! decides anything at run time. The load generator signs with the same
//! [`standard_webhooks`](crate::ingest::auth::standard_webhooks) code the verifier uses, so a
//! clean run is also an end-to-end check that the two agree. Performance claims come from these
//! tools, never from timed assertions in tests.

pub mod deliver;
pub mod floor;
pub mod hook;
pub mod load;
pub mod startup;
mod stats;
pub mod store;
pub mod verify;

pub use stats::Latencies;

/// Why a bench run could not be carried out (as opposed to a run that saw errors, which is a
/// result and is reported in its figures).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot resolve {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("HTTP handshake with {addr} failed: {source}")]
    Handshake { addr: std::net::SocketAddr, source: hyper::Error },
    #[error("{0}")]
    Settings(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("start-up run {run}: {reason}")]
    Startup { run: String, reason: String },
    /// The bench's own sanity check failed (e.g. a message it signed did not verify).
    #[error("{0}")]
    Check(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}
