//! `POST /v1/ingest/{source}`: authenticate, decode, store once, wait for the group commit,
//! then answer `202`.
//!
//! The order is the security argument: the body is read as raw bytes under a size cap (413
//! before any crypto, R1), authenticated over exactly those bytes (R2), and only then parsed.
//! Every authentication failure looks the same to the caller (R12). A `202` is sent only after
//! the group commit that writes the event has flushed, so an acknowledged event survives `kill -9`
//! (DESIGN §5.2). The handler does not correlate or evaluate policy.

use crate::api::problem::{Problem, ProblemType};
use crate::decode::{DecodeError, Decoded};
use crate::event::SecurityEvent;
use crate::ingest::auth::Verified;
use crate::ingest::sources::{IngestSource, Sources};
use crate::store::{DedupRecord, GroupCommit, PutOutcome, PutRequest, StoreError};
use crate::telemetry;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// What the ingest handler needs; cloned per request (an `Arc` inside).
#[derive(Clone)]
pub struct IngestState {
    inner: Arc<Inner>,
}

struct Inner {
    /// Configured senders; a name not in here is an authentication failure.
    sources: Sources,
    /// Writes events and makes them durable in batches; also the bounded queue that sheds load.
    /// It hands what it stored to the pipeline once durable, so this handler never rings.
    commit: GroupCommit,
}

impl IngestState {
    pub fn new(sources: Sources, commit: GroupCommit) -> IngestState {
        IngestState { inner: Arc::new(Inner { sources, commit }) }
    }
}

/// The ingest routes, with the body cap applied to them.
pub fn router(state: IngestState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/ingest/{source}", post(ingest))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The `202` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestAccepted {
    /// The stored event's id (for a duplicate: the id stored the first time). For a payload
    /// holding several events (a vendor batch), the first one's.
    pub event_id: Uuid,
    /// True when this message was seen before; nothing new was stored.
    pub duplicate: bool,
    /// Every event's id, in payload order, when the payload held more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_ids: Vec<Uuid>,
}

/// A refused request: the problem sent back and the reason counted in metrics.
struct Refusal {
    problem: Problem,
    /// Stable snake_case label for `haltwire_ingest_rejected_total{reason}` and logs.
    reason: &'static str,
}

impl Refusal {
    fn new(kind: ProblemType, reason: &'static str) -> Refusal {
        Refusal { problem: Problem::new(kind), reason }
    }
}

/// Accepts one event from a configured source.
#[utoipa::path(
    post,
    path = "/v1/ingest/{source}",
    params(("source" = String, Path, description = "configured source name")),
    request_body(content = crate::event::EventBody, content_type = "application/json",
        description = "the source's integration format; `generic` takes haltwire's native event"),
    responses(
        (status = 202, description = "stored durably", body = IngestAccepted),
        (status = 400, description = "not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "authentication failed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "not JSON content type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON not in the integration's format", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "commit queue full", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    tag = "ingest"
)]
pub async fn ingest(
    State(state): State<IngestState>,
    source: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let source_name = source.map(|Path(s)| s).unwrap_or_default();
    let Some(source) = state.inner.sources.get(&source_name).cloned() else {
        telemetry::IngestRejected { source: "_unknown", reason: "unknown_source" }.emit();
        return Problem::new(ProblemType::Unauthorized).into_response();
    };
    match accept(&state, &source, &headers, body).await {
        Ok((accepted, trust)) => {
            telemetry::IngestAccepted {
                source: &source.name,
                series: &source.series,
                trust,
                duplicate: accepted.duplicate,
                event_id: accepted.event_id,
                elapsed: started.elapsed(),
            }
            .emit();
            (StatusCode::ACCEPTED, Json(accepted)).into_response()
        }
        Err(refusal) => {
            telemetry::IngestRejected { source: &source.name, reason: refusal.reason }.emit();
            refusal.problem.into_response()
        }
    }
}

async fn accept(
    state: &IngestState,
    source: &IngestSource,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(IngestAccepted, crate::event::Trust), Refusal> {
    let body = body.map_err(body_refusal)?;
    let now = OffsetDateTime::now_utc();
    let verified = source
        .verifier
        .verify(headers, &body, now.unix_timestamp())
        .map_err(|failure| Refusal::new(ProblemType::Unauthorized, failure.reason()))?;
    if !is_json_content_type(headers) {
        return Err(Refusal::new(ProblemType::UnsupportedMediaType, "content_type"));
    }
    let decoded = source.decoder.decode(&body).map_err(decode_refusal)?;
    if decoded.is_empty() {
        return Err(Refusal {
            problem: Problem::new(ProblemType::InvalidEvent).detail("the payload holds no event"),
            reason: "empty_payload",
        });
    }
    // The slot is taken before writing so that a full queue refuses the request before
    // anything is stored: no event is ever written without an answer that says so.
    let slot = state
        .inner
        .commit
        .reserve()
        .map_err(|_| Refusal::new(ProblemType::Overloaded, "commit_queue_full"))?;
    let writes = to_store(source, &verified, decoded, now);
    // The committer writes the events of every waiting request in one transaction, then
    // flushes; this answers once that flush is done. The committer, not this request, tells
    // the pipeline, so an abandoned request (client gone, timeout) leaves no event unrung.
    let outcomes = slot.write(writes).await.map_err(|err| match err {
        StoreError::FlushFailed(_) => Refusal::new(ProblemType::StorageUnavailable, "flush_failed"),
        _ => Refusal::new(ProblemType::StorageUnavailable, "store_write_failed"),
    })?;
    let event_id = outcomes
        .first()
        .map(|o| o.id())
        .ok_or_else(|| Refusal::new(ProblemType::InvalidEvent, "empty_payload"))?;
    let accepted = IngestAccepted {
        event_id,
        // A retried batch of which some events were stored before is not a duplicate: the
        // retry stored the rest.
        duplicate: outcomes.iter().all(|o| matches!(o, PutOutcome::Duplicate(_))),
        event_ids: if outcomes.len() > 1 { outcomes.iter().map(|o| o.id()).collect() } else { Vec::new() },
    };
    Ok((accepted, verified.trust))
}

/// One event to store per decoded event. A payload with several events dedups each under its
/// own index, so a retried batch fills in what is missing and duplicates nothing.
fn to_store(
    source: &IngestSource,
    verified: &Verified,
    decoded: Vec<Decoded>,
    now: OffsetDateTime,
) -> Vec<PutRequest> {
    let base_key = verified.dedup.key_for(&source.name);
    let expires_at = verified.dedup.expires_at(now.unix_timestamp());
    let several = decoded.len() > 1;
    decoded
        .into_iter()
        .enumerate()
        .map(|(index, Decoded { body, raw })| {
            let mut key = base_key.clone();
            if several {
                key.extend_from_slice(format!("#{index}").as_bytes());
            }
            let event = SecurityEvent {
                id: Uuid::now_v7(),
                source: source.name.clone(),
                integration: source.decoder.name().to_string(),
                trust: verified.trust,
                received_at: now,
                body,
                raw,
            };
            PutRequest { dedup: DedupRecord { key, expires_at }, event }
        })
        .collect()
}

fn body_refusal(rejection: BytesRejection) -> Refusal {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Refusal::new(ProblemType::PayloadTooLarge, "body_too_large")
    } else {
        Refusal::new(ProblemType::InvalidRequest, "body_unreadable")
    }
}

fn decode_refusal(error: DecodeError) -> Refusal {
    // The decoder's message names the field at fault; it is haltwire's text about the
    // structure (serde's messages quote field names, not values), so it is safe to return.
    match error {
        DecodeError::Syntax(message) => Refusal {
            problem: Problem::new(ProblemType::MalformedJson).detail(message),
            reason: "malformed_json",
        },
        other => Refusal {
            problem: Problem::new(ProblemType::InvalidEvent).detail(other.to_string()),
            reason: "invalid_event",
        },
    }
}

/// `application/json` or any `+json` type, parameters ignored. A missing header is refused:
/// senders that cannot say what they send are misconfigured.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("application/cloudevents+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json_content_type(&headers), ok, "{value}");
        }
        headers.remove(header::CONTENT_TYPE);
        assert!(!is_json_content_type(&headers));
    }
}
