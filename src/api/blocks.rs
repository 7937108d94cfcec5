//! Block routes: the SOC lists and clears blocks; an agent's gate asks whether a proposed tool
//! call is allowed (`POST /v1/sessions/{id}/check`).
//!
//! The gate answer comes from the broker's active blocks only. This module knows the blocks'
//! public functions and the session registry's, nothing about how they are stored.

use super::problem::{Problem, ProblemType};
use super::{require_role, ApiState};
use crate::block::gate::Verdict;
use crate::block::{active::BlockFilter, Block, BlockStatus};
use crate::directive::envelope::Envelope;
use crate::directive::payload::{Directive, EventFacts};
use crate::sessions::model::CommandRecord;
use crate::token::Role;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/blocks", get(list))
        .route("/v1/blocks/{id}", get(show))
        .route("/v1/blocks/{id}/clear", post(clear))
        .route("/v1/sessions/{id}/check", post(check))
        .with_state(state)
}

/// Query of `GET /v1/blocks`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BlocksParams {
    /// Only this session's blocks.
    pub session: Option<Uuid>,
    /// `active`, `cleared` or `expired`.
    pub status: Option<BlockStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockList {
    pub blocks: Vec<Block>,
}

/// A proposed tool call.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The agent's tool name (`Bash`, `Edit`, `Write`, `apply_patch`, `WebFetch`, …).
    pub tool: String,
    /// The tool's raw input object.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GateDecision {
    Allow,
    Deny,
}

/// The gate's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckAnswer {
    pub decision: GateDecision,
    /// The block that denies the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_id: Option<Uuid>,
    /// The SOC's note from the policy (trusted text), when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When denied: the block's directive, signed for this session, so the agent side can
    /// verify it and render the reason (DESIGN §4). Verified without replay bookkeeping.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directive: Option<Envelope>,
}

/// Lists blocks (SOC token).
#[utoipa::path(get, path = "/v1/blocks", params(BlocksParams), responses((status = 200, body = BlockList),
    (status = 401, body = Problem, content_type = "application/problem+json")), security(("bearer" = [])), tag = "blocks")]
pub async fn list(
    State(state): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<BlocksParams>, QueryRejection>,
) -> Result<Json<BlockList>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let Query(params) = params.map_err(|e| invalid(&e.body_text()))?;
    let filter = BlockFilter { session: params.session, status: params.status };
    let blocks = state.blocks.clone();
    let blocks = blocking(move || blocks.list(&filter)).await?;
    Ok(Json(BlockList { blocks }))
}

/// One block (SOC token).
#[utoipa::path(get, path = "/v1/blocks/{id}", params(("id" = Uuid, Path)), responses((status = 200, body = Block),
    (status = 404, body = Problem, content_type = "application/problem+json")), security(("bearer" = [])), tag = "blocks")]
pub async fn show(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Block>, Problem> {
    require_role(&headers, &state.tokens, &[Role::Soc])?;
    let Path(id) = id.map_err(|_| invalid("the block id must be a UUID"))?;
    let blocks = state.blocks.clone();
    blocking(move || blocks.get(id)).await?.map(Json).ok_or_else(|| Problem::new(ProblemType::NotFound))
}

/// Ends a block (SOC token). Clearing an ended block returns it unchanged.
#[utoipa::path(post, path = "/v1/blocks/{id}/clear", params(("id" = Uuid, Path)), responses((status = 200, body = Block),
    (status = 404, body = Problem, content_type = "application/problem+json")), security(("bearer" = [])), tag = "blocks")]
pub async fn clear(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
) -> Result<Json<Block>, Problem> {
    let claims = require_role(&headers, &state.tokens, &[Role::Soc])?;
    let Path(id) = id.map_err(|_| invalid("the block id must be a UUID"))?;
    let blocks = state.blocks.clone();
    let now = OffsetDateTime::now_utc();
    let block = blocking(move || blocks.clear(id, &claims.sub, now))
        .await?
        .ok_or_else(|| Problem::new(ProblemType::NotFound))?;
    // Announce the end to the session; enqueued once per block, so a retried clear that failed
    // here completes it. Made durable by the same flush as the clear, then published.
    let (deliver, store, ended) = (state.deliver.clone(), state.store.clone(), block.clone());
    let enqueued = tokio::task::spawn_blocking(move || {
        crate::pipeline::announce(&deliver, &*store, &ended, None, now.unix_timestamp())
    })
    .await
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    let slot = state.commit.reserve().map_err(|_| Problem::new(ProblemType::Overloaded))?;
    slot.durable().await.map_err(|_| Problem::new(ProblemType::StorageUnavailable))?;
    state.deliver.publish(&enqueued.into_iter().collect::<Vec<_>>());
    tracing::info!(block_id = %block.block_id, by = %block.cleared_by.as_deref().unwrap_or(""), "block cleared");
    Ok(Json(block))
}

/// The retry gate: may this session make this tool call now? (session token)
#[utoipa::path(post, path = "/v1/sessions/{id}/check", params(("id" = Uuid, Path)), request_body = CheckRequest,
    responses((status = 200, body = CheckAnswer), (status = 409, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])), tag = "sessions")]
pub async fn check(
    State(state): State<ApiState>,
    headers: HeaderMap,
    id: Result<Path<Uuid>, PathRejection>,
    body: Result<Json<CheckRequest>, JsonRejection>,
) -> Result<Json<CheckAnswer>, Problem> {
    let Path(id) = id.map_err(|_| invalid("the session id must be a UUID"))?;
    let claims = require_role(&headers, &state.tokens, &[Role::Session])?;
    if claims.sid.as_deref() != Some(id.to_string().as_str()) {
        return Err(Problem::new(ProblemType::Forbidden).detail("the token belongs to another session"));
    }
    let Json(request) = body.map_err(|e| Problem::new(ProblemType::InvalidEvent).detail(e.body_text()))?;
    if !request.input.is_object() {
        return Err(Problem::new(ProblemType::InvalidEvent).detail("`input` must be the tool's input object"));
    }
    let (registry, blocks) = (state.registry.clone(), state.blocks.clone());
    let verdict = tokio::task::spawn_blocking(move || {
        let session = registry.active(id)?;
        let now = OffsetDateTime::now_utc();
        let call = CommandRecord {
            session_id: id,
            call_id: String::new(),
            tool: request.tool,
            input: request.input,
            time: now,
            outcome: None,
        };
        Ok::<_, crate::sessions::registry::RegistryError>(blocks.check(id, &call, &session.cwd, now))
    })
    .await
    .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
    .map_err(|e| match e {
        crate::sessions::registry::RegistryError::Ended => Problem::new(ProblemType::SessionEnded),
        crate::sessions::registry::RegistryError::NotFound => Problem::new(ProblemType::NotFound),
        _ => Problem::new(ProblemType::StorageUnavailable),
    })?;
    Ok(Json(match verdict {
        Verdict::Allow => {
            CheckAnswer { decision: GateDecision::Allow, block_id: None, note: None, directive: None }
        }
        Verdict::Deny(block) => {
            let directive = Some(deny_directive(&state, id, &block).await);
            CheckAnswer {
                decision: GateDecision::Deny,
                block_id: Some(block.block_id),
                note: block.note.clone(),
                directive,
            }
        }
    }))
}

/// The denying block's directive, signed now. Its `jti` and `seq` are those of the block's
/// announcement (`seq` 0 when unknown here): the agent uses it for the reason text only.
async fn deny_directive(state: &ApiState, session: Uuid, block: &Block) -> Envelope {
    let store = state.store.clone();
    let event_id = block.event_id;
    let facts = tokio::task::spawn_blocking(move || store.event(event_id))
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
        .map(|event| EventFacts::of_event(&event))
        .unwrap_or_default();
    let directive = Directive::for_block(block, facts);
    let now = OffsetDateTime::now_utc().unix_timestamp();
    state.signer.sign(&session.to_string(), &format!("deny-{}", block.block_id), 0, &directive, now)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))?
        .map_err(|_| Problem::new(ProblemType::StorageUnavailable))
}

fn invalid(detail: &str) -> Problem {
    let detail: String = detail.chars().take(200).collect();
    Problem::new(ProblemType::InvalidRequest).detail(detail)
}
