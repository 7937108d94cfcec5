//! Agent sessions: registry, command ledger, process ancestry and command normalization.

pub mod shell;
