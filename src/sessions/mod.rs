//! Agent sessions: registry, command ledger, process ancestry and command normalization.
//!
//! - [`model`]: session and ledger records.
//! - [`registry`]: registering, recording calls, ending and reaping sessions.
//! - [`procfs`]: process facts from `/proc`.
//! - [`shell`]: the shell-word parser, wrapper unwrapping and object extraction shared by
//!   correlation and the retry gate.

pub mod model;
pub mod procfs;
pub mod registry;
pub mod shell;
