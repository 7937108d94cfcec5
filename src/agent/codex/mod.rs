//! Codex: driving the real Codex CLI through `codex app-server` (JSON-RPC over stdio).
//!
//! - [`rpc`]: JSON-RPC messages and line framing, tolerant of what the server really sends
//!   (no `jsonrpc` member, id `0`, partial lines).
//! - [`conn`]: a connection over any byte stream: request/response matching, server requests,
//!   notifications, clean errors when the peer dies.
//! - [`protocol`]: the typed requests and answers haltwire uses, from the schema that
//!   `codex app-server generate-json-schema` prints for the pinned version.
//! - [`server`]: spawning `codex app-server`, the handshake and its version check.
//! - [`guard`]: what the drivers ask of haltwire (ledger, approvals, notices).
//! - [`hooks`]: hook trust through `hooks/list` and `config/batchWrite`, and the `-c` gate hook
//!   a driven session gets.
//! - [`adapter`]: the broker-backed guard (session, ledger, gate, verified notices).
//! - [`thread`]: one thread's turn tracking, approvals and steering, shared by the drivers.
//! - [`run`]: `haltwire codex run`, one headless task.
//! - [`proxy`]: `haltwire codex serve`, the JSON-RPC proxy for orchestrators.
//!
//! This module does not decide anything about security: the adapter asks the broker.

pub mod adapter;
pub mod conn;
pub mod guard;
pub mod hooks;
pub mod protocol;
pub mod proxy;
pub mod rpc;
pub mod run;
pub mod server;
pub mod thread;
