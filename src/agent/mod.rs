//! Agent-side commands: the code that runs beside a coding agent, not inside the broker.
//!
//! It talks to the broker only through its HTTP wire contracts and never reaches into broker
//! internals (stores, policies, keys).
//!
//! - [`codex`]: the Codex app-server client and the adapter built on it.

pub mod codex;
