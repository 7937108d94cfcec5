//! `haltwire bench floor`: the bare handler haltwire's ingest is compared against.
//!
//! It does only what any broker must do for a `standard-webhooks-ed25519` sender: read the body
//! as bytes, check the three `webhook-*` headers and the timestamp window, verify the `v1a`
//! signature over `id.timestamp.body` with one trusted key (`verify_strict`), parse the JSON,
//! and answer `202` with no body. Same axum, same route shape and the same runtime as `serve`,
//! so the ratio between the two is the price of everything haltwire adds on top: decoding into
//! the native schema, the sled write, the group-commit flush, metrics and logs.
//!
//! With `--only-read-body` ([`FloorMode::ReadBody`]) it does even less: it reads the body and
//! answers `202` without looking at headers or bytes. That is the framework's own floor (axum,
//! hyper, the runtime, the socket); the gap between the two modes is the price of
//! authentication and parsing, and the gap to `serve` the price of everything haltwire adds.
//!
//! Not a broker: it stores nothing, does not deduplicate, accepts exactly one `v1a` entry (or,
//! reading only the body, accepts anything), and must never face a network; it exists to be
//! measured.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};

use super::BenchError;
use crate::ingest::auth::standard_webhooks::TOLERANCE_SECS;

/// What the floor handler does with each request.
pub enum FloorMode {
    /// Check the headers, verify the `v1a` signature with this key, parse the JSON (issue #2's
    /// reference for the 0.8 × target).
    VerifyAndParse(VerifyingKey),
    /// Read the whole body and answer `202`: the bare framework, no authentication, no parsing.
    ReadBody,
}

/// The floor's router: `POST /v1/ingest/{source}` (any source name) → what `mode` says, `202`.
pub fn router(mode: FloorMode) -> Router {
    match mode {
        FloorMode::VerifyAndParse(key) => {
            Router::new().route("/v1/ingest/{source}", post(ingest)).with_state(Arc::new(key))
        }
        FloorMode::ReadBody => Router::new().route("/v1/ingest/{source}", post(read_body)),
    }
}

/// Binds `listen`, prints `haltwire listening on http://ADDR` (the line scripts wait for, as
/// with `serve`) and serves until SIGINT/SIGTERM. Builds the same runtime `serve` builds, so
/// under the same CPU pinning both get the same worker threads.
pub fn run(listen: SocketAddr, mode: FloorMode) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io { context: "building the runtime".into(), source })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| BenchError::Bind { addr: listen, source })?;
        let local = listener.local_addr().map_err(BenchError::Serve)?;
        println!("haltwire listening on http://{local}");
        axum::serve(listener, router(mode))
            .with_graceful_shutdown(crate::server::shutdown_signal())
            .await
            .map_err(BenchError::Serve)
    })
}

/// Axum has read the whole body into `Bytes` before this runs; that is all this mode does.
async fn read_body(_body: Bytes) -> StatusCode {
    StatusCode::ACCEPTED
}

async fn ingest(State(key): State<Arc<VerifyingKey>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    match check(&key, &headers, &body, now) {
        Ok(()) => StatusCode::ACCEPTED,
        Err(status) => status,
    }
}

/// Headers, timestamp window, signature, then JSON — the order any receiver must keep.
fn check(key: &VerifyingKey, headers: &HeaderMap, body: &[u8], now: i64) -> Result<(), StatusCode> {
    let id = header(headers, "webhook-id")?;
    let timestamp = header(headers, "webhook-timestamp")?;
    let entry = header(headers, "webhook-signature")?;
    let unix: i64 = timestamp.parse().map_err(|_| StatusCode::UNAUTHORIZED)?;
    if unix.abs_diff(now) > TOLERANCE_SECS.unsigned_abs() {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let encoded = entry.strip_prefix("v1a,").ok_or(StatusCode::UNAUTHORIZED)?;
    let bytes = STANDARD.decode(encoded).map_err(|_| StatusCode::UNAUTHORIZED)?;
    let signature = Signature::from_slice(&bytes).map_err(|_| StatusCode::UNAUTHORIZED)?;
    let mut signed = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    key.verify_strict(&signed, &signature).map_err(|_| StatusCode::UNAUTHORIZED)?;
    serde_json::from_slice::<serde_json::Value>(body).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, StatusCode> {
    headers.get(name).and_then(|v| v.to_str().ok()).ok_or(StatusCode::UNAUTHORIZED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::auth::standard_webhooks::{parse_public_key, Ed25519Secret};

    fn signed_headers(secret: &Ed25519Secret, id: &str, ts: i64, body: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", ts.to_string().parse().unwrap());
        headers.insert("webhook-signature", secret.sign(id, ts, body).parse().unwrap());
        headers
    }

    #[test]
    fn accepts_a_signed_json_body_and_refuses_tampering_staleness_and_non_json() {
        let (private, public) = Ed25519Secret::generate();
        let secret = Ed25519Secret::parse(&private).unwrap();
        let key = parse_public_key(&public).unwrap();
        let body = br#"{"disposition":"blocked"}"#;
        let headers = signed_headers(&secret, "msg_1", 1_700_000_000, body);
        assert_eq!(check(&key, &headers, body, 1_700_000_000), Ok(()));
        assert_eq!(
            check(&key, &headers, br#"{"disposition":"allowed"}"#, 1_700_000_000),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(check(&key, &headers, body, 1_700_000_301), Err(StatusCode::UNAUTHORIZED));
        let not_json = b"not json";
        let headers = signed_headers(&secret, "msg_2", 1_700_000_000, not_json);
        assert_eq!(check(&key, &headers, not_json, 1_700_000_000), Err(StatusCode::BAD_REQUEST));
    }

    /// Posts `body` without any webhook headers to a fresh router in `mode`.
    async fn post_unsigned(mode: FloorMode, body: &'static [u8]) -> StatusCode {
        use tower::ServiceExt as _;
        let request = axum::http::Request::post("/v1/ingest/any").body(axum::body::Body::from(body)).unwrap();
        router(mode).oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn read_body_mode_accepts_what_the_verifying_mode_refuses() {
        let (_, public) = Ed25519Secret::generate();
        let key = parse_public_key(&public).unwrap();
        assert_eq!(
            post_unsigned(FloorMode::VerifyAndParse(key), b"not json").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(post_unsigned(FloorMode::ReadBody, b"not json").await, StatusCode::ACCEPTED);
    }
}
