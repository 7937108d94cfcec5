//! Agent-side code: what runs next to a coding agent, not inside the broker.
//!
//! It knows the broker only through its wire contracts (DESIGN §4: HTTP routes, the directive
//! envelope, the inbox layout in [`crate::inbox_dir`]) and never reaches into broker stores,
//! policies or keys. Agent-neutral pieces live here so every agent integration reuses them.
//!
//! - [`inbox`]: drain a session's inbox: verify, move to `done/` or `rejected/`, keep replay state.

pub mod inbox;
