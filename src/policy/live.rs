//! The policy set in service, and its all-or-nothing reload.
//!
//! Readers take an `Arc` of the current set and keep using it for as long as they like; a
//! reload compiles the whole folder first and swaps the `Arc` only when every file is valid. A
//! broken folder leaves the last good set in place and returns every diagnostic.
//!
//! This module does not watch files, log or count: the caller decides when to reload (signal,
//! API, file watcher) and records the outcome and [`PolicySet::hash`] in its metrics.

use super::{Diagnostics, PolicySet};
use std::path::Path;
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct LivePolicies {
    current: RwLock<Arc<PolicySet>>,
}

impl LivePolicies {
    pub fn new(initial: PolicySet) -> LivePolicies {
        LivePolicies { current: RwLock::new(Arc::new(initial)) }
    }

    /// The set in service now.
    pub fn current(&self) -> Arc<PolicySet> {
        // A poisoned lock still holds a whole `Arc` (the swap is one assignment), so use it.
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Compiles `dir` and, only if it is entirely valid, makes it the current set. On error
    /// the previous set stays in service.
    pub fn reload(&self, dir: &Path) -> Result<Arc<PolicySet>, Diagnostics> {
        let next = Arc::new(PolicySet::load_dir(dir)?);
        self.replace(next.clone());
        Ok(next)
    }

    /// Puts an already compiled set in service.
    pub fn replace(&self, next: Arc<PolicySet>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = next;
    }
}
