//! The directive payload (DESIGN §4): who it is for, how long it is good for, its place in the
//! session's sequence, and what it restricts.
//!
//! The set of directive types is closed and every type restricts (R31, R40): there is no
//! field that grants a permission or asks the agent to run anything. Event facts travel only in
//! [`EventFacts`], which is sanitized here when built and again when rendered.
//!
//! This module does not sign, verify or render; it does not know blocks or events beyond the
//! plain values the pipeline hands it.

use crate::block::ScopeKind;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest a directive is valid: `exp - iat` above this is rejected (R29).
pub const MAX_LIFETIME_SECS: i64 = 300;

/// Cap on each string in [`EventFacts`] as signed; the renderer caps the whole slot again.
pub const MAX_FACT_CHARS: usize = 160;

/// The signed body of a directive envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectivePayload {
    /// The broker that issued it (`haltwire@<host>`).
    pub iss: String,
    /// Exactly one haltwire session id; verifiers compare it with their own (R28).
    pub aud: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds; at most [`MAX_LIFETIME_SECS`] after `iat`.
    pub exp: i64,
    /// Unique per directive; a redelivery keeps it, so an agent can recognize a repeat.
    pub jti: String,
    /// Per-session, strictly increasing; an agent refuses anything not above its last (R30).
    pub seq: u64,
    /// What is restricted.
    pub directive: Directive,
}

/// The restriction itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Directive {
    /// Which fixed template renders it.
    #[serde(rename = "type")]
    pub kind: DirectiveType,
    /// The block this directive announces, clears or halts by.
    pub block_id: Uuid,
    /// The security event behind the block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// How widely the restriction reaches.
    pub scope: ScopeInfo,
    /// When, if ever, a retry becomes acceptable again.
    pub retry: Retry,
    /// Text written by the SOC in the policy (trusted, still length-capped when rendered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Sanitized facts from the (untrusted) event, for the renderer's data slot.
    #[serde(default)]
    pub data: EventFacts,
}

/// The closed set of directive types (R31). All of them restrict (R40).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DirectiveType {
    /// Do not retry the blocked action or its variants within the scope.
    DoNotRetry,
    /// A block was lifted; the earlier notice no longer applies. Grants nothing by itself: the
    /// gate decides from the broker's state.
    Cleared,
    /// The whole session is halted; every further tool call will be denied.
    HaltSession,
}

impl DirectiveType {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectiveType::DoNotRetry => "do_not_retry",
            DirectiveType::Cleared => "cleared",
            DirectiveType::HaltSession => "halt_session",
        }
    }
}

/// The reach of a restriction: the kind, and the objects it was built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeInfo {
    /// Which objects count (same command, same files, hosts, program, whole session).
    pub kind: ScopeKind,
    /// Files the restriction is about (never rendered as instructions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Hosts the restriction is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Executables the restriction is about.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executables: Vec<String>,
}

/// When a retry becomes acceptable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Retry {
    /// Not in this session, unless the SOC clears the block.
    Never,
    /// Not before this time.
    After {
        #[serde(with = "time::serde::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        at: OffsetDateTime,
    },
}

/// Facts from the event for the renderer's single data slot. Built only through
/// [`EventFacts::new`]-style setters that sanitize, so even the signed form carries no control,
/// bidi, zero-width or tag characters and no markup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFacts {
    /// The integration that reported it (`falco`, `crowdstrike`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// What the control did (`blocked`, `killed`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
    /// The vendor rule name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The blocked process's command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The file, host or URL the event names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl EventFacts {
    /// Sanitizes and caps one fact; empty results are dropped.
    pub fn fact(value: Option<&str>) -> Option<String> {
        let clean = super::render::sanitize(value?, MAX_FACT_CHARS);
        (!clean.is_empty()).then_some(clean)
    }
}

impl EventFacts {
    /// The facts worth showing from a normalized event, sanitized and capped.
    pub fn of_event(event: &crate::event::SecurityEvent) -> EventFacts {
        let body = &event.body;
        let rule = body.rule.as_ref().and_then(|r| r.name.as_deref().or(r.id.as_deref()));
        let command = body.process.as_ref().and_then(|p| p.cmd_line.as_deref().or(p.exe.as_deref()));
        let target =
            body.target.as_ref().and_then(|t| t.file.as_deref().or(t.url.as_deref()).or(t.host.as_deref()));
        EventFacts {
            source: EventFacts::fact(Some(&event.integration)),
            disposition: EventFacts::fact(Some(body.disposition.as_str())),
            rule: EventFacts::fact(rule),
            command: EventFacts::fact(command),
            target: EventFacts::fact(target),
        }
    }
}

impl Directive {
    /// The directive announcing (`DoNotRetry`, `HaltSession`) or lifting (`Cleared`) a block.
    pub fn for_block(block: &crate::block::Block, facts: EventFacts) -> Directive {
        use crate::block::{BlockKind, BlockStatus};
        let kind = match (block.status, block.kind) {
            (BlockStatus::Cleared | BlockStatus::Expired, _) => DirectiveType::Cleared,
            (BlockStatus::Active, BlockKind::HaltSession) => DirectiveType::HaltSession,
            (BlockStatus::Active, BlockKind::DoNotRetry) => DirectiveType::DoNotRetry,
        };
        let objects = &block.objects;
        let cap = |list: &[String]| list.iter().take(8).filter_map(|s| EventFacts::fact(Some(s))).collect();
        Directive {
            kind,
            block_id: block.block_id,
            event_id: Some(block.event_id),
            scope: ScopeInfo {
                kind: block.scope,
                paths: cap(&objects.paths),
                hosts: cap(&objects.hosts),
                executables: cap(&objects.executables),
            },
            retry: match block.retry_after {
                Some(at) => Retry::After { at },
                None => Retry::Never,
            },
            note: block.note.clone(),
            data: facts,
        }
    }
}
