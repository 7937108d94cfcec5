//! Agent-side code: what runs next to a coding agent (hooks, inbox reader, adapters), not
//! inside the broker.
//!
//! It knows the broker only through its wire contracts (DESIGN §4: HTTP routes, the directive
//! envelope, the inbox layout in [`crate::inbox_dir`]) and never reaches into broker stores,
//! policies or keys, so it could live in a separate binary. Agent-neutral pieces live here so
//! every agent integration reuses them; agent-specific shapes live in their own files.
//!
//! - [`client`]: a blocking client for the session routes.
//! - [`state`]: per-session agent-side state (session token, replay state), hardened files.
//! - [`hook`]: hook logic shared by agents, plus each agent's stdin/stdout shapes.
//! - [`process`]: finding the agent's process above a hook.
//! - [`install`]: merging hook entries into an agent's settings (Claude Code, Codex).
//! - [`inbox`]: drain a session's inbox: verify, move to `done/` or `rejected/`, keep replay state.
//! - [`codex`]: the Codex app-server client and the adapter (`codex run|serve`) built on it.

pub mod client;
pub mod codex;
pub mod hook;
pub mod inbox;
pub mod install;
pub mod process;
pub mod state;
