//! File ingest: tails the files local security tools write (Tetragon's JSON export, osquery
//! results, auditd's log, any JSONL) as reliably as a log shipper: every complete line stored
//! exactly once, across restarts, `kill -9`, rename rotation, copytruncate, partial last lines,
//! files that appear later, and bursts.
//!
//! One task per `[[watch]]`. It wakes on filesystem notifications for the watched directory
//! (inotify via `notify`) or, as a fallback for missed or unavailable notifications, every
//! `rescan_interval_ms`; then it scans the directory ([`tail::Watch::scan`]) and stores batches
//! until the files are read up. Each batch's events and the file's new checkpoint
//! `(device, inode, offset)` are one sled transaction ([`crate::store::Store::put_file_batch`]),
//! and the task waits for the batch's group commit before reading on, so a crash resumes after
//! the last stored line and never stores a line twice. Once a batch is durable the task rings
//! the pipeline once with the ids of the events it stored (a `Ring::Batch` of `Ring::Stored`),
//! as HTTP ingest's group commit does with its batches; a ring that does not fit the queue is
//! dropped, and the pipeline's own scan still finds the events.
//!
//! Events carry trust `local` and source `watch:<name>`. Trust comes from the configuration:
//! only files matched by a `[[watch]]`, in a directory that passes R13, that pass R14 are read.
//!
//! Back-pressure: a watch holds at most one commit slot and one batch in memory; when the commit
//! queue is full it waits (`GroupCommit::reserve_wait`) instead of dropping anything — the file
//! is the buffer. Notifications coalesce into one pending wake-up per watch, so nothing queues.
//!
//! Deliberately not here: HTTP, decoding rules (`decode`), the storage format (`store`).

mod assemble;
mod safety;
mod tail;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::{WatchConfig, WatchFormat};
use crate::decode::mapping::ParserKind;
use crate::decode::{Decoder, Integrations};
use crate::pipeline::{PipelineHandle, Ring};
use crate::store::{GroupCommit, Store};

pub use assemble::MAX_RECORD_BYTES;
pub use safety::DirectoryError;
pub use tail::{LINE_DEDUP_TTL_SECS, MAX_OPEN_FILES};

/// Pause after a store error before trying again, so a broken disk does not spin a core.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// One `[[watch]]`, resolved: everything a tailer needs, fixed at start.
pub struct WatchSpec {
    /// The watch's name: metric label, checkpoint namespace, part of `source`.
    pub name: String,
    /// `watch:<name>`: the events' `source`. The colon keeps it apart from `[[source]]` names.
    pub source: String,
    /// The watched directory (absolute).
    pub dir: PathBuf,
    /// File names in `dir` that are read.
    pub pattern: glob::Pattern,
    /// Lines or audit events.
    pub format: WatchFormat,
    /// Turns each payload into events.
    pub decoder: Decoder,
    /// Fallback scan interval.
    pub rescan: Duration,
    /// How long a renamed-away or deleted file is still read after it last grew.
    pub rotate_wait: Duration,
}

/// Why file ingest cannot start. Every variant names the watch.
#[derive(Debug, thiserror::Error)]
pub enum FileIngestError {
    #[error("watch {name:?}: {source}")]
    Directory {
        name: String,
        #[source]
        source: DirectoryError,
    },
    #[error("watch {name:?}: unknown integration {integration:?} (known: {known})")]
    UnknownIntegration { name: String, integration: String, known: String },
    #[error(
        "watch {name:?}: format {format:?} does not fit integration {integration:?}, which reads {parser}"
    )]
    FormatMismatch { name: String, format: &'static str, integration: String, parser: &'static str },
    #[error("watch {name:?}: {message}")]
    Invalid { name: String, message: String },
    #[error("watch {name:?}: cannot load checkpoints: {source}")]
    Store {
        name: String,
        #[source]
        source: crate::store::StoreError,
    },
}

/// All watches, checked and with their checkpoints loaded, not yet running.
pub struct FileIngest {
    /// One per `[[watch]]`, in configuration order.
    watches: Vec<tail::Watch>,
    /// Their specs, for the notification routing and the tasks.
    specs: Vec<Arc<WatchSpec>>,
    /// Where batches go; the tasks reload a watch from it after an unexpected failure.
    store: Arc<dyn Store>,
}

impl FileIngest {
    /// Resolves every watch: decoder, format, pattern, the R13 directory check (a failure
    /// refuses the start), and the stored checkpoints.
    pub fn build(
        configs: &[WatchConfig],
        integrations: &Integrations,
        store: Arc<dyn Store>,
    ) -> Result<FileIngest, FileIngestError> {
        let mut watches = Vec::new();
        let mut specs = Vec::new();
        for config in configs {
            let spec = Arc::new(resolve(config, integrations)?);
            safety::check_directory(&spec.dir)
                .map_err(|source| FileIngestError::Directory { name: spec.name.clone(), source })?;
            let watch = tail::Watch::load(spec.clone(), store.clone())
                .map_err(|source| FileIngestError::Store { name: spec.name.clone(), source })?;
            watches.push(watch);
            specs.push(spec);
        }
        Ok(FileIngest { watches, specs, store })
    }

    /// Watch names, for start-up messages.
    pub fn names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    /// Starts one task per watch and the notification watcher on the current runtime. Each
    /// durable batch's events are rung into `pipeline`.
    pub fn start(self, commit: GroupCommit, pipeline: PipelineHandle) -> RunningFileIngest {
        let (stop, stop_rx) = watch::channel(false);
        let wakes: Vec<Arc<Notify>> = self.specs.iter().map(|_| Arc::new(Notify::new())).collect();
        let watcher = start_notifications(&self.specs, &wakes);
        let tasks = self
            .watches
            .into_iter()
            .zip(self.specs.iter().cloned())
            .zip(wakes)
            .map(|((watch, spec), wake)| {
                let task = WatchTask {
                    spec,
                    store: self.store.clone(),
                    commit: commit.clone(),
                    pipeline: pipeline.clone(),
                    wake,
                    stop: stop_rx.clone(),
                };
                tokio::spawn(task.run(watch))
            })
            .collect();
        RunningFileIngest { stop, tasks, _watcher: watcher }
    }
}

/// Running file ingest; [`RunningFileIngest::shutdown`] stops it.
pub struct RunningFileIngest {
    /// Set to `true` to stop every task after its current batch.
    stop: watch::Sender<bool>,
    /// The watch tasks, awaited at shutdown.
    tasks: Vec<JoinHandle<()>>,
    /// Kept alive for its notifications; dropped last.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl RunningFileIngest {
    /// Stops every watch after the batch it is writing is durable (or abandoned); must run
    /// before the group committer shuts down. Unstored lines are simply read again next start.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::error!(%err, "file watch task failed");
            }
        }
    }
}

fn resolve(config: &WatchConfig, integrations: &Integrations) -> Result<WatchSpec, FileIngestError> {
    let name = config.effective_name();
    let invalid = |message: String| FileIngestError::Invalid { name: name.clone(), message };
    let pattern = config.file_pattern().map_err(invalid)?;
    let dir = std::path::absolute(config.directory()).map_err(|e| invalid(e.to_string()))?;
    let decoder =
        integrations.get(&config.integration).ok_or_else(|| FileIngestError::UnknownIntegration {
            name: name.clone(),
            integration: config.integration.clone(),
            known: integrations.names(),
        })?;
    let parser = match decoder.parser() {
        ParserKind::Json => WatchFormat::Jsonl,
        ParserKind::Audit => WatchFormat::Audit,
    };
    if parser != config.format {
        return Err(FileIngestError::FormatMismatch {
            name,
            format: config.format.as_str(),
            integration: config.integration.clone(),
            parser: parser.as_str(),
        });
    }
    Ok(WatchSpec {
        source: format!("watch:{name}"),
        name,
        dir,
        pattern,
        format: config.format,
        decoder,
        rescan: Duration::from_millis(config.rescan_interval_ms),
        rotate_wait: Duration::from_millis(config.rotate_wait_ms),
    })
}

/// inotify on each watched directory; an event in a directory wakes the watches of it. Without
/// notifications (e.g. the inotify limit is reached) the rescan interval still finds everything.
fn start_notifications(
    specs: &[Arc<WatchSpec>],
    wakes: &[Arc<Notify>],
) -> Option<notify::RecommendedWatcher> {
    use notify::event::{AccessKind, EventKind};
    use notify::Watcher;
    if specs.is_empty() {
        return None;
    }
    let routes: Vec<(PathBuf, Arc<Notify>)> =
        specs.iter().zip(wakes).map(|(s, w)| (s.dir.clone(), w.clone())).collect();
    let handler = move |event: notify::Result<notify::Event>| match event {
        // Our own opens and reads are not news.
        Ok(event) if matches!(event.kind, EventKind::Access(AccessKind::Open(_) | AccessKind::Read)) => {}
        Ok(event) => {
            for (dir, wake) in &routes {
                if event.paths.iter().any(|p| p.parent() == Some(dir.as_path()) || p == dir) {
                    wake.notify_one();
                }
            }
        }
        // Lost events (queue overflow): let every watch rescan.
        Err(_) => routes.iter().for_each(|(_, wake)| wake.notify_one()),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!(%err, "file notifications unavailable; relying on rescans");
            return None;
        }
    };
    let mut dirs: Vec<&PathBuf> = specs.iter().map(|s| &s.dir).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        if let Err(err) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = ?dir, %err, "cannot watch directory; relying on rescans");
        }
    }
    Some(watcher)
}

/// One watch's loop: scan, store until read up, wait for a notification or the rescan tick.
struct WatchTask {
    /// The watch's configuration.
    spec: Arc<WatchSpec>,
    /// To reload the watch's checkpoints after an unexpected failure.
    store: Arc<dyn Store>,
    /// Durability for each batch, and back-pressure.
    commit: GroupCommit,
    /// Rung with each durable batch's stored events.
    pipeline: PipelineHandle,
    /// Notifications for this watch's directory, coalesced.
    wake: Arc<Notify>,
    /// Becomes `true` at shutdown.
    stop: watch::Receiver<bool>,
}

impl WatchTask {
    async fn run(mut self, watch: tail::Watch) {
        tracing::info!(watch = %self.spec.name, dir = ?self.spec.dir, pattern = %self.spec.pattern, "watching");
        let mut state = Some(watch);
        while !self.stopping() {
            let watch = match state.take() {
                Some(watch) => watch,
                None => match self.reload().await {
                    Some(watch) => watch,
                    None => continue,
                },
            };
            state = self.cycle(watch).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.spec.rescan) => {}
                _ = self.stop.wait_for(|stop| *stop) => {}
            }
        }
    }

    /// Shutdown was asked for (or its sender is gone, which means the same).
    fn stopping(&self) -> bool {
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    /// One scan, then batches until nothing is left. Returns the state, or `None` if a blocking
    /// step died (it is reloaded from the store).
    async fn cycle(&mut self, watch: tail::Watch) -> Option<tail::Watch> {
        let mut watch = self.blocking(watch, |w| w.scan(Instant::now())).await?.0;
        loop {
            if self.stopping() {
                return Some(watch);
            }
            let slot = tokio::select! {
                slot = self.commit.reserve_wait() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return Some(watch), // shutting down
                },
                _ = self.stop.wait_for(|stop| *stop) => return Some(watch),
            };
            let (next, result) = self.blocking(watch, |w| w.write_next_batch(Instant::now())).await?;
            watch = next;
            match result {
                Ok(tail::Progress::Wrote(stored)) => match slot.durable().await {
                    Ok(()) => {
                        // One ring for the file batch: one wake-up of the pipeline thread.
                        self.pipeline.ring(Ring::Batch(stored.into_iter().map(Ring::Stored).collect()));
                    }
                    Err(err) => {
                        // Not rung: the pipeline's scan finds the events if they did persist.
                        self.pipeline.missed();
                        tracing::error!(watch = %self.spec.name, %err, "file batch not confirmed durable");
                        self.pause().await;
                    }
                },
                Ok(tail::Progress::Idle) => return Some(watch),
                Err(_) => {
                    drop(slot);
                    self.pause().await;
                    return Some(watch);
                }
            }
        }
    }

    /// Runs `op` on the blocking pool with the watch moved in and back out.
    async fn blocking<T: Send + 'static>(
        &mut self,
        mut watch: tail::Watch,
        op: impl FnOnce(&mut tail::Watch) -> T + Send + 'static,
    ) -> Option<(tail::Watch, T)> {
        let joined = tokio::task::spawn_blocking(move || {
            let out = op(&mut watch);
            (watch, out)
        })
        .await;
        match joined {
            Ok(done) => Some(done),
            Err(err) => {
                tracing::error!(watch = %self.spec.name, %err, "file watch step failed; reloading from checkpoints");
                self.pause().await;
                None
            }
        }
    }

    /// A fresh state from the stored checkpoints.
    async fn reload(&mut self) -> Option<tail::Watch> {
        let (spec, store) = (self.spec.clone(), self.store.clone());
        match tokio::task::spawn_blocking(move || tail::Watch::load(spec, store)).await {
            Ok(Ok(watch)) => Some(watch),
            Ok(Err(err)) => {
                tracing::error!(watch = %self.spec.name, %err, "cannot load checkpoints");
                self.pause().await;
                None
            }
            Err(err) => {
                tracing::error!(watch = %self.spec.name, %err, "cannot load checkpoints");
                self.pause().await;
                None
            }
        }
    }

    async fn pause(&mut self) {
        tokio::select! {
            _ = tokio::time::sleep(RETRY_AFTER_ERROR) => {}
            _ = self.stop.wait_for(|stop| *stop) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WatchConfig;
    use crate::store::{EventQuery, SledStore};
    use std::os::unix::fs::PermissionsExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_durable_batch_rings_the_pipeline_with_the_events_it_stored() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config: WatchConfig =
            toml::from_str(&format!("path = {:?}\nrescan_interval_ms = 20", logs.join("a.log"))).unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("store"), 8 << 20).unwrap());
        let integrations = Integrations::built_in().unwrap();
        let ingest = FileIngest::build(&[config], &integrations, store.clone()).unwrap();
        let commit = GroupCommit::start(store.clone(), 16);
        let (pipeline, rings) = PipelineHandle::channel(16);
        let running = ingest.start(commit.clone(), pipeline);
        std::fs::write(logs.join("a.log"), "{\"vendor_id\":\"a\"}\n{\"vendor_id\":\"b\"}\n").unwrap();

        let rung = tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            while ids.len() < 2 {
                match rings.recv_timeout(Duration::from_secs(10)) {
                    Ok(Ring::Batch(batch)) => {
                        for ring in batch {
                            match ring {
                                Ring::Stored(id) => ids.push(id),
                                other => panic!("unexpected ring {other:?} in a batch"),
                            }
                        }
                    }
                    Ok(other) => panic!("unexpected ring {other:?}"),
                    Err(err) => panic!("rung {} of 2: {err}", ids.len()),
                }
            }
            ids
        })
        .await
        .unwrap();
        running.shutdown().await;
        commit.shutdown().await;
        let stored: Vec<_> = store
            .events(&EventQuery { limit: 10, ..EventQuery::default() })
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(rung, stored, "every stored event rung once, after it was durable");
    }
}
