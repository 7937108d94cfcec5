//! haltwire: a security-signal broker for AI coding agents.
//!
//! Security tools post signed block events; haltwire authenticates them over the raw bytes,
//! stores them durably, ties them to the agent session and tool call that caused them, and
//! turns the SOC's retry policy into a signed, enforced "do not retry" directive.
//!
//! # Layout (the folder tree reads as the data flow; see ARCHITECTURE.md)
//! - [`ingest`]: HTTP ingest routes and webhook authentication tiers.
//! - [`decode`]: integration decoders that turn vendor payloads into [`event::EventBody`].
//! - [`event`]: the normalized [`event::SecurityEvent`].
//! - [`store`]: the durable event store (sled) and its group commit.
//! - [`sessions`]: agent sessions, the command ledger, `/proc` ancestry and the shell parser.
//! - [`correlate`]: which session and tool call caused an event, with evidence.
//! - [`pipeline`]: the spine that runs the stages after ingest, in order.
//! - [`deliver`]: per-session directive queues and the channels that carry them (SSE, inbox).
//! - [`inbox_dir`]: the inbox directory contract shared by the broker's writer and the agent's reader.
//! - [`agent`]: agent-side code (hooks, inbox reader, broker client); the broker's wire contracts only.
//! - [`api`]: SOC read routes, health, metrics and the OpenAPI document.
//! - [`directive`]: the broker's signing key; the only code that reads it.
//! - [`config`](mod@config): `haltwire.toml`.
//! - [`bench`]: measurement tooling (`haltwire bench`); not on the data path.

pub mod agent;
pub mod api;
pub mod bench;
pub mod block;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod deliver;
pub mod directive;
pub mod event;
pub mod http_serve;
pub mod inbox_dir;
pub mod ingest;
pub mod pipeline;
pub mod policy;
pub mod policy_reload;
pub mod secrets;
pub mod server;
pub mod sessions;
pub mod store;
pub mod telemetry;
pub mod token;
