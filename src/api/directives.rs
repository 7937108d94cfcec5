//! Directive delivery routes (session token): the pending list, the SSE stream and the
//! acknowledgment. Every envelope is signed when it is served (fresh `iat`/`exp`, the entry's
//! own `jti` and `seq`).
//!
//! The SSE stream sends `id: <seq>`, `event: directive`, `data: <envelope JSON>` for every
//! pending directive above `Last-Event-ID` (all of them without it), then each new one as it
//! becomes visible, with keep-alive comments in between. A connection holds at most one page
//! of entries in memory and the number of streams per session is bounded, so a slow or idle
//! client costs the broker a fixed amount. Acknowledgment is separate and explicit: the stream
//! never removes anything.
//!
//! This module knows the delivery stage's public functions only.

use super::problem::{Problem, ProblemType};
use super::sessions::authorize;
use super::ApiState;
use crate::deliver::{Deliver, QueuedDirective, StreamPlace};
use crate::directive::envelope::Envelope;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Entries read from the store per page (also the per-connection buffer bound of SSE).
const PAGE: usize = 32;
/// Largest pending list one `GET` returns.
const MAX_LIST: usize = 1024;
/// Interval of SSE keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/sessions/{id}/directives", get(list))
        .route("/v1/sessions/{id}/directives/stream", get(stream))
        .route("/v1/sessions/{id}/directives/{jti}/ack", post(ack))
        .with_state(state)
}

/// One pending directive.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingDirective {
    /// The session's sequence number (also inside the signed payload).
    pub seq: u64,
    /// The acknowledgment key (also inside the signed payload).
    pub jti: String,
    /// The DSSE envelope, signed now; verify it before using `seq` or `jti`.
    pub envelope: Envelope,
}

/// The session's pending directives, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingList {
    pub directives: Vec<PendingDirective>,
}

/// An acknowledgment's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Acked {
    pub acked: bool,
}

/// Pending directives of this session, in `seq` order (session token).
#[utoipa::path(get, path = "/v1/sessions/{id}/directives", params(("id" = Uuid, Path)),
    responses((status = 200, body = PendingList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "directives")]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<PendingList>, Problem> {
    let id = session_id(id)?;
    authorize(&state, &headers, id, false)?;
    let deliver = state.deliver.clone();
    let entries = blocking(move || deliver.pending(id, 0, MAX_LIST)).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let directives = entries
        .iter()
        .map(|e| PendingDirective { seq: e.seq, jti: e.jti.clone(), envelope: state.deliver.sign(e, now) })
        .collect();
    Ok(Json(PendingList { directives }))
}

/// Server-sent events: pending and new directives of this session (session token). Resume with
/// `Last-Event-ID: <seq>`.
#[utoipa::path(get, path = "/v1/sessions/{id}/directives/stream", params(("id" = Uuid, Path),
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this seq")),
    responses((status = 200, description = "`text/event-stream`: `id: <seq>`, `event: directive`, `data: <envelope JSON>`", content_type = "text/event-stream"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "directives")]
pub async fn stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, Problem> {
    let id = session_id(id)?;
    authorize(&state, &headers, id, false)?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| invalid("`Last-Event-ID` must be a seq (a non-negative integer)"))?,
    };
    let place = state
        .deliver
        .open_stream(id)
        .ok_or_else(|| Problem::new(ProblemType::Overloaded).detail("too many streams for this session"))?;
    let cursor = Cursor {
        deliver: state.deliver.clone(),
        session: id,
        after,
        visible: state.deliver.subscribe(id),
        closing: state.deliver.closing(),
        buffer: VecDeque::new(),
        _place: place,
    };
    let events = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let entry = cursor.next().await?;
        let envelope = cursor.deliver.sign(&entry, OffsetDateTime::now_utc().unix_timestamp());
        let event = Event::default().id(entry.seq.to_string()).event("directive").data(envelope.to_json());
        Some((Ok(event), cursor))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// One SSE connection's position.
struct Cursor {
    deliver: Arc<Deliver>,
    session: Uuid,
    /// Highest `seq` sent (or the client's `Last-Event-ID`).
    after: u64,
    visible: tokio::sync::watch::Receiver<u64>,
    closing: tokio::sync::watch::Receiver<bool>,
    /// At most one page of entries not yet sent.
    buffer: VecDeque<QueuedDirective>,
    _place: StreamPlace,
}

impl Cursor {
    /// The next entry to send; waits until one is visible. `None` ends the stream (shutdown or
    /// a store failure; the client reconnects with `Last-Event-ID`).
    async fn next(&mut self) -> Option<QueuedDirective> {
        loop {
            if let Some(entry) = self.buffer.pop_front() {
                self.after = entry.seq;
                return Some(entry);
            }
            if *self.closing.borrow() {
                return None;
            }
            // Mark the current value seen before reading, so a publish during the read wakes us.
            self.visible.borrow_and_update();
            let page = match self.deliver.pending_recent(self.session, self.after, PAGE) {
                Some(page) => page,
                None => {
                    let (deliver, session, after) = (self.deliver.clone(), self.session, self.after);
                    tokio::task::spawn_blocking(move || deliver.pending(session, after, PAGE))
                        .await
                        .ok()?
                        .ok()?
                }
            };
            if page.is_empty() {
                tokio::select! {
                    changed = self.visible.changed() => changed.ok()?,
                    _ = self.closing.changed() => return None,
                }
            }
            self.buffer.extend(page);
        }
    }
}

/// Acknowledges one directive by `jti` (session token). `404` when it is not pending.
#[utoipa::path(post, path = "/v1/sessions/{id}/directives/{jti}/ack", params(("id" = Uuid, Path), ("jti" = String, Path)),
    responses((status = 200, body = Acked),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "directives")]
pub async fn ack(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<(Uuid, String)>, PathRejection>,
) -> Result<Json<Acked>, Problem> {
    let Path((id, jti)) = path.map_err(|_| invalid("the session id must be a UUID"))?;
    authorize(&state, &headers, id, false)?;
    if jti.is_empty() || jti.len() > 64 {
        return Err(Problem::new(ProblemType::NotFound));
    }
    let deliver = state.deliver.clone();
    let acked = blocking(move || deliver.ack(id, &jti, "api")).await?;
    if !acked {
        return Err(Problem::new(ProblemType::NotFound).detail("no pending directive with this jti"));
    }
    let slot = state.commit.reserve().map_err(|_| Problem::new(ProblemType::Overloaded))?;
    slot.durable().await.map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    Ok(Json(Acked { acked: true }))
}

fn session_id(id: Result<Path<Uuid>, PathRejection>) -> Result<Uuid, Problem> {
    id.map(|Path(id)| id).map_err(|_| invalid("the session id must be a UUID"))
}

fn invalid(detail: &str) -> Problem {
    Problem::new(ProblemType::InvalidRequest).detail(detail.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::deliver::DeliverError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))
}
