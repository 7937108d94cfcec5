//! Agent sessions: registry, command ledger, process ancestry and command normalization.

pub mod model;
pub mod procfs;
pub mod registry;
