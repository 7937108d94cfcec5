//! Agent-side commands: the code that runs next to a coding agent (hooks, adapters) and talks
//! to the broker.
//!
//! It knows the broker only through its HTTP wire contracts (DESIGN §4) — never its stores,
//! registry or gate — so it could live in a separate binary. Agent-neutral parts ([`client`])
//! are shared by every agent integration; agent-specific shapes live in their own files
//! ([`codex`]: the Codex app-server client and the adapter built on it).

pub mod client;
pub mod codex;
pub mod hook;
pub mod install;
pub mod process;
pub mod state;
