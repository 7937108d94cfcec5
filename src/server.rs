//! `haltwire serve`: opens the data directory, prepares keys and sources, and runs the HTTP
//! server and the file watches until SIGINT/SIGTERM, then stops the watches, drains the commit
//! queue and flushes the store.
//!
//! This is wiring only: it knows the order in which parts are built and shut down, not how
//! any of them work.

use crate::api::{self, ApiState};
use crate::config::{Config, StoreConfig, DEFAULT_MAX_BODY_BYTES};
use crate::decode::{Integrations, IntegrationsError};
use crate::directive::keys::BrokerKey;
use crate::ingest::file::{FileIngest, FileIngestError};
use crate::ingest::http::{self as ingest_http, IngestState};
use crate::ingest::sources::Sources;
use crate::secrets;
use crate::store::{self, GroupCommit, Retention, SledStore, Store};
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
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    Sources(#[from] crate::ingest::sources::SourcesError),
    #[error(transparent)]
    Integrations(#[from] IntegrationsError),
    #[error(transparent)]
    Files(#[from] FileIngestError),
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("server: {0}")]
    Serve(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(String),
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
}

/// Opens the data directory, keys, store and sources, and binds the socket.
pub async fn prepare(settings: ServeSettings) -> Result<Prepared, ServeError> {
    let ServeSettings { listen, data_dir, config } = settings;
    let mut created = Vec::new();
    if !data_dir.exists() {
        created.push(Created::DataDir(data_dir.clone()));
    }
    secrets::ensure_private_dir(&data_dir)?;

    let (broker_key, new_key) = BrokerKey::load_or_create(&data_dir)?;
    if new_key {
        let kid = crate::directive::keys::key_id(&broker_key.verifying_key());
        created.push(Created::BrokerKey { path: BrokerKey::path(&data_dir), kid });
    }
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
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&data_dir.join("store"), config.store.cache_bytes)?);
    let commit = GroupCommit::start(store.clone(), config.ingest.commit_queue);
    let files = FileIngest::build(&config.watches, &integrations, store.clone())?;
    let ready = Arc::new(AtomicBool::new(false));

    let max_body = config.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    let app = ingest_http::router(IngestState::new(sources.clone(), store.clone(), commit.clone()), max_body)
        .merge(api::router(ApiState {
            store: store.clone(),
            tokens: Arc::new(tokens),
            metrics: Some(metrics.clone()),
            ready: ready.clone(),
        }))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));

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
    })
}

/// Serves until `shutdown` resolves, then stops accepting, drains the commit queue and flushes.
pub async fn run(
    prepared: Prepared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Prepared { listener, store, commit, files, app, ready, metrics, store_config, .. } = prepared;
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

    let files = files.start(commit.clone());

    ready.store(true, Ordering::Release);
    let ready_flag = ready.clone();
    let graceful = async move {
        shutdown.await;
        ready_flag.store(false, Ordering::Release);
        tracing::info!("shutdown requested: finishing in-flight requests");
    };
    let served = axum::serve(listener, app).with_graceful_shutdown(graceful).await;

    let _ = stop_tx.send(true);
    // Watches first: each finishes the batch it is writing while the committer still runs.
    files.shutdown().await;
    commit.shutdown().await;
    let flushed = tokio::task::spawn_blocking({
        let store = store.clone();
        move || store.flush()
    })
    .await;
    let _ = tokio::join!(sweeper, upkeep);
    served.map_err(ServeError::Serve)?;
    match flushed {
        Ok(result) => result?,
        Err(join) => tracing::error!(error = %join, "final flush task failed"),
    }
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
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
