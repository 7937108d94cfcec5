//! Session routes: agents register, record their tool calls and outcomes, and end; the SOC
//! lists sessions and reads ledgers.
//!
//! Registration answers with a session token (a JWT bound to that session); every
//! `/v1/sessions/{id}/…` route needs it (or a SOC token for reads). Registration itself is
//! open to loopback clients only (the hook runs on the agent's machine); from elsewhere it
//! needs a SOC token. Writes wait for the group commit, so an acknowledged ledger entry
//! survives a crash. This module knows the registry's public functions, not its storage.

use super::problem::{Problem, ProblemType};
use super::{require_role, ApiState};
use crate::pipeline::Ring;
use crate::sessions::model::{CommandRecord, EndReason, Outcome, Session};
use crate::sessions::registry::{CommandPost, Registration, RegistryError};
use crate::token::{Claims, Role};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::net::SocketAddr;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// Lifetime of a session token. Long enough for a working day; a re-registration of the same
/// agent session (every `SessionStart`) issues a fresh one.
const SESSION_TOKEN_TTL_SECS: i64 = 7 * 86_400;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/sessions", post(register).get(list))
        .route("/v1/sessions/{id}", get(show))
        .route("/v1/sessions/{id}/commands", post(record_command).get(list_commands))
        .route("/v1/sessions/{id}/commands/{call_id}/outcome", post(record_outcome))
        .route("/v1/sessions/{id}/end", post(end))
        .with_state(state)
}

/// The registration answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub session_id: Uuid,
    /// Bearer token for this session's routes.
    pub token: String,
}

/// A ledger write's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Recorded {
    /// False when this call id was already recorded (a retried post); nothing changed.
    pub recorded: bool,
}

/// A row of `GET /v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

/// Registers an agent session.
#[utoipa::path(post, path = "/v1/sessions", request_body = Registration,
    responses((status = 201, body = Registered),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    tag = "sessions")]
pub async fn register(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Json<Registration>, JsonRejection>,
) -> Result<(StatusCode, Json<Registered>), Problem> {
    if !peer.ip().is_loopback() {
        require_role(&headers, &state.tokens, &[Role::Soc])?;
    }
    let Json(registration) = body.map_err(json_problem)?;
    let registry = state.registry.clone();
    let now = OffsetDateTime::now_utc();
    let session = blocking(move || registry.register(registration, now)).await?;
    durable(&state).await?;
    let token = state
        .tokens
        .issue(
            &session.session_id.to_string(),
            Role::Session,
            Some(session.session_id.to_string()),
            now.unix_timestamp(),
            SESSION_TOKEN_TTL_SECS,
        )
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    tracing::info!(session_id = %session.session_id, agent = ?session.agent, pid = session.pid, "session registered");
    Ok((StatusCode::CREATED, Json(Registered { session_id: session.session_id, token })))
}

/// Lists sessions (SOC token).
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = SessionList),
    (status = 401, body = Problem, content_type = "application/problem+json")), security(("bearer" = [])), tag = "sessions")]
pub async fn list(State(state): State<ApiState>, headers: HeaderMap) -> Result<Json<SessionList>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let store = state.sessions.clone();
    let sessions = blocking(move || store.sessions().map_err(RegistryError::from)).await?;
    Ok(Json(SessionList { sessions }))
}

/// One session (SOC token, or the session's own token).
#[utoipa::path(get, path = "/v1/sessions/{id}", params(("id" = Uuid, Path)),
    responses((status = 200, body = Session), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "sessions")]
pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Session>, Problem> {
    let id = session_id(id)?;
    authorize(&state, &headers, id, true)?;
    let store = state.sessions.clone();
    let session = blocking(move || store.session(id).map_err(RegistryError::from)).await?;
    session.map(Json).ok_or_else(|| Problem::new(ProblemType::NotFound))
}

/// Records one tool call in the session's ledger (session token).
#[utoipa::path(post, path = "/v1/sessions/{id}/commands", params(("id" = Uuid, Path)), request_body = CommandPost,
    responses((status = 201, body = Recorded), (status = 200, body = Recorded),
        (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "sessions")]
pub async fn record_command(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
    body: Result<Json<CommandPost>, JsonRejection>,
) -> Result<(StatusCode, Json<Recorded>), Problem> {
    let id = session_id(id)?;
    authorize(&state, &headers, id, false)?;
    let Json(post) = body.map_err(json_problem)?;
    let registry = state.registry.clone();
    let now = OffsetDateTime::now_utc();
    let (_, new) = blocking(move || registry.record_command(id, post, now)).await?;
    durable(&state).await?;
    if new {
        state.pipeline.ring(Ring::LedgerChanged(id));
    }
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(Recorded { recorded: new })))
}

/// A session's ledger (SOC token, or the session's own token).
#[utoipa::path(get, path = "/v1/sessions/{id}/commands", params(("id" = Uuid, Path)),
    responses((status = 200, body = Vec<CommandRecord>)), security(("bearer" = [])), tag = "sessions")]
pub async fn list_commands(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Vec<CommandRecord>>, Problem> {
    let id = session_id(id)?;
    authorize(&state, &headers, id, true)?;
    let store = state.sessions.clone();
    Ok(Json(blocking(move || store.commands(id).map_err(RegistryError::from)).await?))
}

/// Records what happened when a call ran (session token).
#[utoipa::path(post, path = "/v1/sessions/{id}/commands/{call_id}/outcome",
    params(("id" = Uuid, Path), ("call_id" = String, Path)), request_body = Outcome,
    responses((status = 200, body = Recorded), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "sessions")]
pub async fn record_outcome(
    State(state): State<ApiState>,
    headers: HeaderMap,
    path: Result<Path<(Uuid, String)>, PathRejection>,
    body: Result<Json<Outcome>, JsonRejection>,
) -> Result<Json<Recorded>, Problem> {
    let Path((id, call_id)) = path.map_err(|_| invalid("the session id must be a UUID"))?;
    authorize(&state, &headers, id, false)?;
    let Json(outcome) = body.map_err(json_problem)?;
    let registry = state.registry.clone();
    let now = OffsetDateTime::now_utc();
    blocking(move || registry.record_outcome(id, &call_id, outcome, now)).await?;
    durable(&state).await?;
    state.pipeline.ring(Ring::LedgerChanged(id));
    Ok(Json(Recorded { recorded: true }))
}

/// Ends the session (session token or SOC token) and drops its pending directives.
#[utoipa::path(post, path = "/v1/sessions/{id}/end", params(("id" = Uuid, Path)),
    responses((status = 200, body = Session)), security(("bearer" = [])), tag = "sessions")]
pub async fn end(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Session>, Problem> {
    let id = session_id(id)?;
    authorize(&state, &headers, id, true)?;
    let registry = state.registry.clone();
    let now = OffsetDateTime::now_utc();
    let session = blocking(move || registry.end(id, EndReason::Explicit, now)).await?;
    drop_directives(&state, id).await;
    durable(&state).await?;
    Ok(Json(session))
}

/// An ended session's pending directives can never be delivered: drop them now, in the same
/// flush as the end. A failure only logs; the session upkeep drops them on its next round.
async fn drop_directives(state: &ApiState, id: Uuid) {
    let deliver = state.deliver.clone();
    let outcome = tokio::task::spawn_blocking(move || deliver.drop_session(id)).await;
    if let Err(err) = outcome.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())) {
        tracing::warn!(session_id = %id, %err, "cannot drop the ended session's directives");
    }
}

/// The caller must hold this session's token, or (when `soc_ok`) a SOC token.
pub(super) fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    id: Uuid,
    soc_ok: bool,
) -> Result<Claims, Problem> {
    let roles: &[Role] = if soc_ok { &[Role::Session, Role::Soc] } else { &[Role::Session] };
    let claims = require_role(headers, &state.tokens, roles)?;
    if claims.role == Role::Session && claims.sid.as_deref() != Some(id.to_string().as_str()) {
        return Err(Problem::new(ProblemType::Forbidden).detail("the token belongs to another session"));
    }
    Ok(claims)
}

fn session_id(id: Result<Path<Uuid>, PathRejection>) -> Result<Uuid, Problem> {
    id.map(|Path(id)| id).map_err(|_| invalid("the session id must be a UUID"))
}

async fn durable(state: &ApiState) -> Result<(), Problem> {
    let slot = state.commit.reserve().map_err(|_| Problem::new(ProblemType::Overloaded))?;
    slot.durable().await.map_err(|_| Problem::new(ProblemType::StorageUnavailable))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
        .map_err(registry_problem)
}

fn registry_problem(err: RegistryError) -> Problem {
    match err {
        RegistryError::Invalid(m) => Problem::new(ProblemType::InvalidEvent).detail(m),
        RegistryError::NotFound => Problem::new(ProblemType::NotFound),
        RegistryError::Ended => Problem::new(ProblemType::SessionEnded),
        RegistryError::Store(_) => Problem::new(ProblemType::StorageUnavailable),
    }
}

fn json_problem(rejection: JsonRejection) -> Problem {
    let kind = match rejection {
        JsonRejection::MissingJsonContentType(_) => ProblemType::UnsupportedMediaType,
        JsonRejection::JsonSyntaxError(_) => ProblemType::MalformedJson,
        _ => ProblemType::InvalidEvent,
    };
    let detail: String = rejection.body_text().chars().take(300).collect();
    Problem::new(kind).detail(detail)
}

fn invalid(detail: &str) -> Problem {
    Problem::new(ProblemType::InvalidRequest).detail(detail.to_string())
}
