//! The SOC-facing HTTP API: reading events, health, metrics and the OpenAPI document.
//!
//! Routes here only read through the store's public trait and check API tokens; they know
//! nothing of webhook authentication or decoding. Errors are RFC 9457 problems ([`problem`]).

pub mod blocks;
pub mod directives;
pub mod openapi;
pub mod problem;
pub mod sessions;

use crate::block::active::ActiveBlocks;
use crate::event::{Correlation, SecurityEvent};
use crate::pipeline::PipelineHandle;
use crate::sessions::registry::Registry;
use crate::store::{EventQuery, GroupCommit, SessionStore, Store};
use crate::token::{Claims, Role, TokenKey};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use problem::{Problem, ProblemType};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest page `GET /v1/events` returns.
pub const MAX_PAGE: usize = 1000;
const DEFAULT_PAGE: usize = 100;

/// What the API routes need.
#[derive(Clone)]
pub struct ApiState {
    /// Read access to stored events.
    pub store: Arc<dyn Store>,
    /// Sessions, ledgers and correlation results.
    pub sessions: Arc<dyn SessionStore>,
    /// The session registry's rules (register, record, end).
    pub registry: Arc<Registry>,
    /// Makes session writes durable before they are acknowledged.
    pub commit: GroupCommit,
    /// Rung when a ledger changes, so unmatched events can bind late.
    pub pipeline: PipelineHandle,
    /// Active blocks and the retry gate.
    pub blocks: Arc<ActiveBlocks>,
    /// The policy set in service and its reload.
    pub policies: Arc<crate::policy_reload::PolicyReloader>,
    /// Checks the bearer tokens of `/v1` routes.
    pub tokens: Arc<TokenKey>,
    /// Renders `/metrics`; `None` when no recorder is installed (library tests).
    pub metrics: Option<PrometheusHandle>,
    /// Cleared when shutdown begins so load balancers stop sending before the socket closes.
    pub ready: Arc<AtomicBool>,
    /// Signs the directive that comes with a gate denial (and, later, queued directives).
    pub signer: Arc<crate::directive::signer::DirectiveSigner>,
    /// The delivery stage: pending directives, SSE, acknowledgments, announcing cleared blocks.
    pub deliver: Arc<crate::deliver::Deliver>,
}

pub fn router(state: ApiState) -> Router {
    let sessions = sessions::router(state.clone());
    let blocks = blocks::router(state.clone());
    let directives = directives::router(state.clone());
    Router::new()
        .route("/v1/events", get(list_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/v1/policies", get(policies))
        .route("/v1/policies/reload", axum::routing::post(reload_policies))
        .with_state(state)
        .merge(sessions)
        .merge(blocks)
        .merge(directives)
}

/// Checks `Authorization: Bearer <token>` for one of `roles`: 401 if absent or invalid, 403
/// if valid but for another role.
pub fn require_role(headers: &HeaderMap, tokens: &TokenKey, roles: &[Role]) -> Result<Claims, Problem> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Problem::new(ProblemType::Unauthorized))?;
    let claims = tokens.verify(token.trim()).map_err(|_| Problem::new(ProblemType::Unauthorized))?;
    if !roles.contains(&claims.role) {
        return Err(Problem::new(ProblemType::Forbidden));
    }
    Ok(claims)
}

/// Query of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// Only events received at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Cursor: only events after this event id (the previous page's `next`).
    pub after: Option<Uuid>,
    /// Page size, 1–1000 (default 100).
    pub limit: Option<usize>,
}

/// A stored event with what the later stages established about it.
#[derive(Debug, Serialize)]
pub struct EventView {
    #[serde(flatten)]
    pub event: SecurityEvent,
    /// Absent until the pipeline has correlated the event (normally within a second).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<Correlation>,
    /// The block a policy created from this event, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_id: Option<Uuid>,
}

/// A page of events, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<EventView>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next: Option<Uuid>,
}

/// Lists stored events (SOC token).
#[utoipa::path(get, path = "/v1/events", params(EventsParams),
    responses(
        (status = 200, body = EventPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])), tag = "soc")]
pub async fn list_events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Json<EventPage>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let Query(params) = params.map_err(|e| invalid(&e.body_text()))?;
    let since = params
        .since
        .as_deref()
        .map(|s| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339))
        .transpose()
        .map_err(|_| invalid("`since` must be an RFC 3339 time, e.g. 2026-11-22T10:00:00Z"))?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(invalid("`limit` must be between 1 and 1000"));
    }
    let query = EventQuery { after: params.after, since, limit };
    let (store, sessions, blocks) = (state.store.clone(), state.sessions.clone(), state.blocks.clone());
    let events = tokio::task::spawn_blocking(move || -> Result<Vec<EventView>, crate::store::StoreError> {
        store.events(&query)?.into_iter().map(|event| view(&*sessions, &blocks, event)).collect()
    })
    .await
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    let next = (events.len() == limit).then(|| events.last().map(|e| e.event.id)).flatten();
    Ok(Json(EventPage { events, next }))
}

/// One stored event with everything the broker knows about it (SOC token).
#[utoipa::path(get, path = "/v1/events/{id}",
    params(("id" = Uuid, Path, description = "event id")),
    responses(
        (status = 200, body = Object),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])), tag = "soc")]
pub async fn get_event(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<EventView>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let Path(id) = id.map_err(|_| invalid("the event id must be a UUID"))?;
    let (store, sessions, blocks) = (state.store.clone(), state.sessions.clone(), state.blocks.clone());
    let event = tokio::task::spawn_blocking(move || {
        store.event(id)?.map(|e| view(&*sessions, &blocks, e)).transpose()
    })
    .await
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    event.map(Json).ok_or_else(|| Problem::new(ProblemType::NotFound))
}

fn view(
    sessions: &dyn SessionStore,
    blocks: &ActiveBlocks,
    event: SecurityEvent,
) -> Result<EventView, crate::store::StoreError> {
    let correlation = sessions.correlation(event.id)?;
    let block_id = blocks.block_of_event(event.id)?;
    Ok(EventView { event, correlation, block_id })
}

/// The policy set in service.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyStatus {
    /// Identifies the exact policy files in service; recorded on every block.
    pub hash: String,
    pub policies: usize,
    /// The watched folder; absent when the built-in default policy is in service.
    pub dir: Option<String>,
}

/// The policy set in service (SOC token).
#[utoipa::path(get, path = "/v1/policies", responses((status = 200, body = PolicyStatus)), security(("bearer" = [])), tag = "soc")]
pub async fn policies(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<PolicyStatus>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let current = state.policies.live().current();
    Ok(Json(PolicyStatus {
        hash: current.hash().to_string(),
        policies: current.len(),
        dir: state.policies.dir().map(|d| d.display().to_string()),
    }))
}

/// Recompiles the policy folder and swaps it in only if every file is valid (SOC token). On
/// errors the previous set stays in service and the answer lists every diagnostic.
#[utoipa::path(post, path = "/v1/policies/reload", responses((status = 200, body = PolicyStatus),
    (status = 422, body = Problem, content_type = "application/problem+json")), security(("bearer" = [])), tag = "soc")]
pub async fn reload_policies(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<PolicyStatus>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let reloader = state.policies.clone();
    let outcome = tokio::task::spawn_blocking(move || reloader.reload("api"))
        .await
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    match outcome {
        crate::policy_reload::Reloaded::Applied { hash, policies } => Ok(Json(PolicyStatus {
            hash,
            policies,
            dir: state.policies.dir().map(|d| d.display().to_string()),
        })),
        crate::policy_reload::Reloaded::NoFolder => Err(Problem::new(ProblemType::InvalidRequest)
            .detail("no policy folder is configured; the built-in default policy is in service")),
        crate::policy_reload::Reloaded::Rejected(diagnostics) => {
            let detail: String = diagnostics.to_string().chars().take(8000).collect();
            Err(Problem::new(ProblemType::InvalidPolicies).detail(detail))
        }
    }
}

/// Liveness: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "alive")), tag = "ops")]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the store is open and the broker is not shutting down.
#[utoipa::path(get, path = "/readyz", responses((status = 200, description = "ready"),
    (status = 503, body = Problem, content_type = "application/problem+json")), tag = "ops")]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        Problem::new(ProblemType::ShuttingDown).into_response()
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")), tag = "ops")]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    let body = state.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body)
        .into_response()
}

fn invalid(detail: &str) -> Problem {
    // Query parse errors from serde name the parameter; cap them so a huge query string is
    // never reflected whole.
    let detail: String = detail.chars().take(200).collect();
    Problem::new(ProblemType::InvalidRequest).detail(detail)
}
