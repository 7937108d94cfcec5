//! Keeps the policy set in service in step with the policy folder: a file watcher (notify) and
//! `POST /v1/policies/reload` both come here.
//!
//! A reload compiles the whole folder and swaps it in only if every file is valid
//! ([`LivePolicies::reload`]); otherwise the last good set stays and every diagnostic is
//! logged and returned. Each outcome is counted, and the hash of the set in service is
//! exported as `haltwire_policy_set_info{hash}` so a decision can be traced to exact files.
//! This module decides when to reload; it does not know the policy language.

use crate::policy::{Diagnostics, LivePolicies, PolicySet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where policies come from and the set in service.
pub struct PolicyReloader {
    live: Arc<LivePolicies>,
    /// The watched folder; `None` when the broker runs on the built-in default policy.
    dir: Option<PathBuf>,
    /// The hash last exported, so its info gauge can be zeroed when the set changes.
    exported: Mutex<Option<String>>,
}

/// The result of one reload.
#[derive(Debug)]
pub enum Reloaded {
    /// The folder was valid and is now in service.
    Applied { hash: String, policies: usize },
    /// The folder has errors; the previous set stays in service.
    Rejected(Diagnostics),
    /// There is no folder to reload (built-in policy in service).
    NoFolder,
}

impl PolicyReloader {
    /// Loads the initial set: the folder if there is one (its errors stop the broker), else
    /// the built-in default.
    pub fn start(dir: Option<PathBuf>) -> Result<PolicyReloader, Diagnostics> {
        let set = match &dir {
            Some(dir) => PolicySet::load_dir(dir)?,
            None => PolicySet::built_in(),
        };
        let reloader =
            PolicyReloader { live: Arc::new(LivePolicies::new(set)), dir, exported: Mutex::new(None) };
        reloader.export();
        Ok(reloader)
    }

    pub fn live(&self) -> Arc<LivePolicies> {
        self.live.clone()
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Recompiles the folder; all or nothing.
    pub fn reload(&self, trigger: &'static str) -> Reloaded {
        let Some(dir) = &self.dir else { return Reloaded::NoFolder };
        match self.live.reload(dir) {
            Ok(set) => {
                metrics::counter!("haltwire_policy_reloads_total", "outcome" => "applied", "trigger" => trigger).increment(1);
                tracing::info!(hash = set.hash(), policies = set.len(), trigger, "policy set reloaded");
                self.export();
                Reloaded::Applied { hash: set.hash().to_string(), policies: set.len() }
            }
            Err(diagnostics) => {
                metrics::counter!("haltwire_policy_reloads_total", "outcome" => "rejected", "trigger" => trigger).increment(1);
                for d in &diagnostics.0 {
                    tracing::warn!(diagnostic = %d, "policy reload rejected; the previous set stays in service");
                }
                Reloaded::Rejected(diagnostics)
            }
        }
    }

    /// Exports the current set's hash as an info metric (1 for the set in service, 0 for the
    /// one it replaced).
    fn export(&self) {
        let current = self.live.current();
        let hash = current.hash().to_string();
        let mut exported = self.exported.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = exported.as_ref().filter(|old| **old != hash) {
            metrics::gauge!("haltwire_policy_set_info", "hash" => old.clone()).set(0.0);
        }
        metrics::gauge!("haltwire_policy_set_info", "hash" => hash.clone()).set(1.0);
        metrics::gauge!("haltwire_policies").set(current.len() as f64);
        *exported = Some(hash);
    }

    /// Watches the folder and reloads after changes settle. The watcher lives as long as the
    /// returned guard.
    pub fn watch(self: &Arc<Self>) -> Result<Option<notify::RecommendedWatcher>, notify::Error> {
        use notify::Watcher;
        let Some(dir) = self.dir.clone() else { return Ok(None) };
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| changes_content(&e.kind)) {
                let _ = tx.send(());
            }
        })?;
        watcher.watch(&dir, notify::RecursiveMode::Recursive)?;
        let reloader = self.clone();
        std::thread::Builder::new()
            .name("haltwire-policy-watch".into())
            .spawn(move || {
                // Editors write a file in several steps; wait for quiet before compiling.
                while rx.recv().is_ok() {
                    while rx.recv_timeout(Duration::from_millis(300)).is_ok() {}
                    reloader.reload("watch");
                }
            })
            .map_err(notify::Error::io)?;
        Ok(Some(watcher))
    }
}

/// Whether a watch event can change what the folder compiles to. Reading the files (which
/// every reload does) raises access events; reacting to those made the broker reload its
/// policies in a loop, every debounce interval, for as long as it ran.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::EventKind;
    matches!(kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any)
        && !matches!(
            kind,
            EventKind::Modify(notify::event::ModifyKind::Metadata(notify::event::MetadataKind::AccessTime))
        )
}
