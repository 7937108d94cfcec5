//! The HTTP accept loop: the broker's axum router served by hyper, with the limits that
//! `axum::serve` does not offer.
//!
//! - A cap on connections served at once: each served connection holds a permit; a
//!   connection arriving when none is free gets an immediate `503` problem with
//!   `Retry-After` and is closed (counted), so a flood neither costs memory nor leaves
//!   legitimate clients hanging in the backlog.
//! - A deadline for request headers (slow-loris): hyper closes a connection whose headers do
//!   not arrive in time, which also bounds idle keep-alive connections holding a permit.
//! - Graceful shutdown: stop accepting, let in-flight requests finish.
//!
//! Per-request time limits, body limits and error bodies are the router's layers; this module
//! knows nothing about routes.

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// How long shutdown waits for in-flight requests before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits (from `[http]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client gets to send a request's headers.
    pub header_read_timeout: Duration,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        let connection = serve_connection(stream, peer, app.clone(), limits.header_read_timeout);
        let connection = graceful.watch(connection);
        metrics::gauge!("haltwire_http_connections").increment(1.0);
        tokio::spawn(async move {
            let _ = connection.await;
            metrics::gauge!("haltwire_http_connections").decrement(1.0);
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests did not finish within the drain timeout");
    }
}

/// One connection: HTTP/1.1 with a header deadline; the peer address is offered to handlers
/// as axum's `ConnectInfo<SocketAddr>`.
fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: axum::Router,
    header_read_timeout: Duration,
) -> impl hyper_util::server::graceful::GracefulConnection {
    let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder.serve_connection(TokioIo::new(stream), service)
}

/// The problem body for a connection over the cap.
const OVER_CAPACITY_BODY: &str =
    r#"{"type":"urn:haltwire:problem:overloaded","title":"Too many connections","status":503}"#;

/// The whole answer to a connection over the cap. Written without reading the request:
/// reading would be the work the cap exists to avoid.
fn over_capacity_response() -> String {
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{OVER_CAPACITY_BODY}",
        OVER_CAPACITY_BODY.len()
    )
}

/// Answers 503 and closes, off the accept loop, with a short deadline.
fn refuse(mut stream: tokio::net::TcpStream) {
    metrics::counter!("haltwire_http_connections_refused_total").increment(1);
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt as _;
        let write = async {
            stream.write_all(over_capacity_response().as_bytes()).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    });
}

/// Accept errors are usually resource exhaustion (EMFILE): count, wait a little, go on.
async fn accept_failed(error: &std::io::Error) {
    metrics::counter!("haltwire_http_accept_errors_total").increment(1);
    tracing::warn!(error = %error, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
