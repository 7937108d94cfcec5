//! Ingest: the first stage. Authenticates what security tools send, decodes it, stores it
//! durably and only then acknowledges.
//!
//! - [`auth`]: the webhook authentication tiers, over raw bytes.
//! - [`sources`]: the configured senders (and the `generic` source every install has).
//! - [`http`]: `POST /v1/ingest/{source}`.
//! - [`file`]: `[[watch]]`: tailing local files with checkpoints.
//!
//! Ingest knows nothing of policies, sessions or agents: it stores and acknowledges, and the
//! pipeline moves stored events along.

pub mod auth;
pub mod file;
pub mod http;
pub mod sources;
