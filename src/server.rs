//! `haltwire serve`: opens the data directory, prepares keys and sources, and runs the HTTP
//! server and the file watches until SIGINT/SIGTERM, then stops the watches, drains the commit
//! queue and flushes the store.
//!
//! This is wiring only: it knows the order in which parts are built and shut down, not how
//! any of them work.

use crate::api::{self, ApiState};
use crate::block::active::ActiveBlocks;
use crate::config::{Config, StoreConfig, DEFAULT_MAX_BODY_BYTES};
use crate::correlate::tracker::Tracker;
use crate::correlate::Correlator;
use crate::decode::{Integrations, IntegrationsError};
use crate::deliver::inbox::{InboxSettings, InboxWorker};
use crate::deliver::{Deliver, DeliverError, DeliverSettings};
use crate::directive::keys::BrokerKey;
use crate::directive::signer::DirectiveSigner;
use crate::http_serve::ConnectionLimits;
use crate::ingest::file::{FileIngest, FileIngestError};
use crate::ingest::http::{self as ingest_http, IngestState};
use crate::ingest::sources::Sources;
use crate::pipeline::Pipeline;
use crate::policy_reload::PolicyReloader;
use crate::secrets;
use crate::sessions::procfs::Procfs;
use crate::sessions::registry::{Registry, RegistryError};
use crate::store::{self, GroupCommit, Retention, SessionStore, SledStore, Store};
use crate::token::TokenKey;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` needs after flags, environment and file were merged.
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub config: Config,
}

/// Something the first start created, reported to the operator once.
#[derive(Debug)]
pub enum Created {
    DataDir(PathBuf),
    BrokerKey { path: PathBuf, kid: String },
    TokenKey(PathBuf),
    GenericSecret(PathBuf),
}

impl std::fmt::Display for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Created::DataDir(p) => write!(f, "created data directory {} (mode 0700)", p.display()),
            Created::BrokerKey { path, kid } => write!(
                f,
                "created broker signing key {} (ed25519, PKCS#8, mode 0600, kid {kid})",
                path.display()
            ),
            Created::TokenKey(p) => {
                write!(f, "created API token key {} (mode 0600; `haltwire token issue` uses it)", p.display())
            }
            Created::GenericSecret(p) => write!(
                f,
                "created webhook secret for source \"generic\" {} (mode 0600; `haltwire event send` uses it)",
                p.display()
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Secret(#[from] secrets::SecretFileError),
    #[error(transparent)]
    Key(#[from] crate::directive::keys::KeyError),
    #[error(transparent)]
    Signer(#[from] crate::directive::signer::SignerError),
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    Sources(#[from] crate::ingest::sources::SourcesError),
    #[error(transparent)]
    Integrations(#[from] IntegrationsError),
    #[error(transparent)]
    Files(#[from] FileIngestError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("delivery: {0}")]
    Deliver(#[from] DeliverError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("the policy folder has errors:\n{0}")]
    Policies(crate::policy::Diagnostics),
    #[error("cannot watch the policy folder: {0}")]
    Watch(String),
}

/// A broker that has opened everything and bound its socket but not yet served a request.
pub struct Prepared {
    pub created: Vec<Created>,
    pub local_addr: SocketAddr,
    pub source_names: Vec<String>,
    pub watch_names: Vec<String>,
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    commit: GroupCommit,
    /// The `[[watch]]` tailers, checked (R13) and with checkpoints loaded; started by `run`.
    files: FileIngest,
    app: axum::Router,
    ready: Arc<AtomicBool>,
    metrics: PrometheusHandle,
    store_config: StoreConfig,
    /// Connection cap and header deadline for the accept loop.
    limits: ConnectionLimits,
    /// The stages after ingest, on their own thread.
    pipeline_thread: crate::pipeline::Running,
    /// Rung by file ingest once a batch is durable (HTTP ingest and the API hold their own).
    pipeline: crate::pipeline::PipelineHandle,
    /// Reaps dead sessions and tracks agent process trees.
    upkeep: SessionUpkeep,
    /// The delivery stage (closed at shutdown so SSE streams end).
    deliver: Arc<Deliver>,
    /// Writes inbox files for sessions with the `inbox` channel.
    inbox: Option<InboxWorker>,
    /// Keeps the policy folder watched while the broker runs.
    _policy_watcher: Option<notify::RecommendedWatcher>,
}

/// Opens the data directory, keys, store and sources, and binds the socket.
pub async fn prepare(settings: ServeSettings) -> Result<Prepared, ServeError> {
    let ServeSettings { listen, data_dir, config } = settings;
    let mut created = Vec::new();
    if !data_dir.exists() {
        created.push(Created::DataDir(data_dir.clone()));
    }
    secrets::ensure_private_dir(&data_dir)?;

    let (signer, new_key) =
        DirectiveSigner::load_or_create(&data_dir, time::OffsetDateTime::now_utc().unix_timestamp())?;
    if new_key {
        created.push(Created::BrokerKey { path: BrokerKey::path(&data_dir), kid: signer.kid().to_string() });
    }
    let signer = Arc::new(signer);
    let (tokens, new_token_key) = TokenKey::load_or_create(&data_dir)?;
    if new_token_key {
        created.push(Created::TokenKey(TokenKey::path(&data_dir)));
    }
    let integrations = Integrations::load(config.integrations_dir().as_deref())?;
    let (sources, new_generic) = Sources::build(&config.sources, &integrations, &data_dir)?;
    if let Some(path) = new_generic {
        created.push(Created::GenericSecret(path));
    }

    let metrics = install_metrics()?;
    let sled = Arc::new(SledStore::open(&data_dir.join("store"), config.store.cache_bytes)?);
    let store: Arc<dyn Store> = sled.clone();
    let session_store: Arc<dyn SessionStore> = sled.clone();
    let blocks = Arc::new(ActiveBlocks::load(sled.clone())?);
    let deliver_store: Arc<dyn crate::store::DeliverStore> = sled.clone();
    let deliver = Arc::new(Deliver::new(
        deliver_store,
        signer.clone(),
        DeliverSettings {
            max_pending: config.deliver.max_pending.max(1),
            max_streams: config.deliver.max_streams.max(1),
        },
    )?);
    let durable = durability(store.clone());
    let files = FileIngest::build(&config.watches, &integrations, store.clone())?;
    let ready = Arc::new(AtomicBool::new(false));

    let local_host = local_hostname();
    let registry = Arc::new(Registry::new(
        session_store.clone(),
        Procfs::default(),
        local_host.clone(),
        time::Duration::seconds(i64::try_from(config.sessions.idle_timeout_secs).unwrap_or(i64::MAX)),
    ));
    let tracker = Tracker::default();
    let correlator = Arc::new(Correlator::new(Procfs::default(), local_host, tracker.clone()));
    let policies = Arc::new(PolicyReloader::start(config.policies_dir()).map_err(ServeError::Policies)?);
    let policy_watcher = policies.watch().map_err(|e| ServeError::Watch(e.to_string()))?;
    let (pipeline, pipeline_thread) = Pipeline::start(
        store.clone(),
        session_store.clone(),
        correlator,
        policies.live(),
        blocks.clone(),
        deliver.clone(),
        durable.clone(),
    )
    .map_err(ServeError::Serve)?;
    let commit =
        GroupCommit::start_with_notice(store.clone(), config.ingest.commit_queue, Arc::new(pipeline.clone()));
    let upkeep = SessionUpkeep::start(
        registry.clone(),
        tracker,
        blocks.clone(),
        Announcer { deliver: deliver.clone(), store: store.clone(), durable },
    )
    .map_err(ServeError::Serve)?;
    let inbox_base = match &config.deliver.inbox_base {
        Some(base) => Some(base.clone()),
        None => crate::inbox_dir::default_base().ok(),
    };
    let inbox = match inbox_base {
        Some(base) => Some(
            InboxWorker::start(
                deliver.clone(),
                session_store.clone(),
                InboxSettings { base, doorbell: config.deliver.inbox_doorbell },
            )
            .map_err(ServeError::Serve)?,
        ),
        None => {
            tracing::warn!(
                "no inbox base directory (XDG_RUNTIME_DIR and HOME unset): the inbox channel is off"
            );
            None
        }
    };

    let max_body = config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let app = ingest_http::router(IngestState::new(sources.clone(), commit.clone()), max_body)
        .merge(api::router(ApiState {
            store: store.clone(),
            sessions: session_store,
            registry,
            commit: commit.clone(),
            pipeline: pipeline.clone(),
            blocks,
            policies: policies.clone(),
            tokens: Arc::new(tokens),
            metrics: Some(metrics.clone()),
            ready: ready.clone(),
            signer,
            deliver: deliver.clone(),
        }))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs.max(1)),
        ))
        .layer(axum::middleware::from_fn(crate::api::problem::problem_for_bare_errors));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Bind { addr: listen, source })?;
    let local_addr = listener.local_addr().map_err(ServeError::Serve)?;
    Ok(Prepared {
        created,
        local_addr,
        source_names: sources.names(),
        watch_names: files.names(),
        listener,
        store,
        commit,
        files,
        app,
        ready,
        metrics,
        store_config: config.store,
        limits: ConnectionLimits {
            max_connections: config.http.max_connections,
            header_read_timeout: Duration::from_secs(config.http.header_read_timeout_secs.max(1)),
        },
        pipeline_thread,
        pipeline,
        upkeep,
        deliver,
        inbox,
        _policy_watcher: policy_watcher,
    })
}

/// Serves until `shutdown` resolves, then stops accepting, drains the commit queue and flushes.
pub async fn run(
    prepared: Prepared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Prepared {
        listener,
        store,
        commit,
        files,
        app,
        ready,
        metrics,
        store_config,
        limits,
        pipeline_thread,
        pipeline,
        upkeep: session_upkeep,
        deliver,
        inbox,
        ..
    } = prepared;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let retention = Retention {
        max_age_secs: i64::from(store_config.retention_days) * 86_400,
        max_events: store_config.max_events,
    };
    let sweeper = tokio::spawn(store::run_retention(
        store.clone(),
        retention,
        Duration::from_secs(store_config.sweep_interval_secs.max(1)),
        stop_rx.clone(),
    ));
    let upkeep = tokio::spawn(metrics_upkeep(metrics, stop_rx));

    let files = files.start(commit.clone(), pipeline);

    ready.store(true, Ordering::Release);
    let ready_flag = ready.clone();
    let graceful = async move {
        shutdown.await;
        ready_flag.store(false, Ordering::Release);
        deliver.close();
        tracing::info!("shutdown requested: finishing in-flight requests");
    };
    crate::http_serve::serve(listener, app, limits, graceful).await;

    let _ = stop_tx.send(true);
    // Watches first: each finishes the batch it is writing while the committer still runs
    // (and rings the pipeline, which therefore stops after them).
    files.shutdown().await;
    session_upkeep.stop();
    pipeline_thread.stop();
    if let Some(inbox) = inbox {
        inbox.stop();
    }
    commit.shutdown().await;
    let flushed = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.flush()
    })
    .await;
    let _ = tokio::join!(sweeper, upkeep);
    match flushed {
        Ok(result) => result?,
        Err(join) => tracing::error!(error = %join, "final flush task failed"),
    }
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: call it before announcing that the broker is up, so a signal sent
/// right after that announcement is a graceful shutdown rather than the default (death).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let wait = |installed: std::io::Result<tokio::signal::unix::Signal>| async move {
            match installed {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(interrupt) => {},
            _ = wait(terminate) => {},
        }
    }
}

/// This machine's name, as sessions and events carry it.
fn local_hostname() -> String {
    hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".to_string())
}

/// A background thread that ends sessions whose agent is gone, expires blocks whose time ran
/// out, and feeds the process tracker.
/// A thread, not a task: both jobs read `/proc` and sled, which block.
pub struct SessionUpkeep {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl SessionUpkeep {
    /// How often agent process trees are sampled: short-lived children are caught if they live
    /// at least this long.
    const TRACK_EVERY: Duration = Duration::from_millis(200);
    /// How often dead or idle sessions are reaped.
    const REAP_EVERY: Duration = Duration::from_secs(2);

    fn start(
        registry: Arc<Registry>,
        tracker: Tracker,
        blocks: Arc<ActiveBlocks>,
        announcer: Announcer,
    ) -> std::io::Result<SessionUpkeep> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("haltwire-sessions".into()).spawn(move || {
            let procfs = Procfs::default();
            let mut last_reap = std::time::Instant::now();
            while !flag.load(Ordering::Acquire) {
                if let Ok(roots) = registry.local_roots() {
                    tracker.scan(&procfs, &roots);
                }
                if last_reap.elapsed() >= Self::REAP_EVERY {
                    match registry.reap(time::OffsetDateTime::now_utc()) {
                        Ok(ended) => {
                            for (id, reason) in ended {
                                tracing::info!(session_id = %id, ?reason, "session ended");
                            }
                        }
                        Err(err) => tracing::warn!(%err, "session reaping failed"),
                    }
                    drop_ended_queues(&registry, &announcer.deliver);
                    match blocks.expire_lapsed(time::OffsetDateTime::now_utc()) {
                        Ok(expired) => {
                            for block in &expired {
                                tracing::info!(block_id = %block.block_id, "block expired");
                            }
                            announcer.ended(&expired);
                        }
                        Err(err) => tracing::warn!(%err, "block expiry failed"),
                    }
                    last_reap = std::time::Instant::now();
                }
                std::thread::sleep(Self::TRACK_EVERY);
            }
        })?;
        Ok(SessionUpkeep { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Announces blocks that ended outside a request (expiry): enqueue, flush, publish.
/// Drops the pending directives of every ended session that has any: sessions just reaped, and
/// directives enqueued after a session ended (a late event's block, a clear). They can never be
/// delivered.
fn drop_ended_queues(registry: &Registry, deliver: &Deliver) {
    let queued = match deliver.queued_sessions() {
        Ok(queued) => queued,
        Err(err) => return tracing::warn!(%err, "cannot list the directive queues"),
    };
    for id in queued {
        if !matches!(registry.active(id), Err(RegistryError::Ended)) {
            continue;
        }
        if let Err(err) = deliver.drop_session(id) {
            tracing::warn!(session_id = %id, %err, "cannot drop the ended session's directives");
        }
    }
}

struct Announcer {
    deliver: Arc<Deliver>,
    store: Arc<dyn Store>,
    durable: crate::pipeline::Durability,
}

impl Announcer {
    fn ended(&self, blocks: &[crate::block::Block]) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut enqueued = Vec::new();
        for block in blocks {
            match crate::pipeline::announce(&self.deliver, &*self.store, block, None, now) {
                Ok(e) => enqueued.extend(e),
                Err(err) => {
                    tracing::warn!(%err, block_id = %block.block_id, "cleared directive not enqueued")
                }
            }
        }
        if enqueued.is_empty() {
            return;
        }
        match (self.durable)() {
            Ok(()) => self.deliver.publish(&enqueued),
            Err(err) => tracing::warn!(%err, "flush before publishing directives failed"),
        }
    }
}

/// A blocking flush for the pipeline and upkeep threads (never called on a runtime thread).
/// They flush the store themselves rather than through the group committer: they are blocking
/// threads already, a flush with little dirty data is cheap, and handing over to the committer
/// costs several thread wake-ups per batch, which on a busy machine dominated the time from
/// event to delivered directive.
fn durability(store: Arc<dyn Store>) -> crate::pipeline::Durability {
    Arc::new(move || store.flush())
}

fn install_metrics() -> Result<PrometheusHandle, ServeError> {
    PrometheusBuilder::new().install_recorder().map_err(|e| ServeError::Metrics(e.to_string()))
}

/// The exporter's histograms need periodic upkeep to stay bounded in memory.
async fn metrics_upkeep(handle: PrometheusHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
            _ = stop.changed() => return,
        }
    }
}
