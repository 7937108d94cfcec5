//! The normalized security event: the one type every stage after `decode` speaks.
//!
//! Field names follow OCSF where it has one (DESIGN §4). This module only defines the shape and
//! its small invariants (closed enums, id format); it does not parse vendor formats (that is
//! `decode`), store anything (`store`) or decide anything (`policy`).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

/// How much the broker trusts the channel an event arrived on.
///
/// Policies may require a minimum tier before they take strong actions, so the tier is set by the
/// broker from the authentication that actually succeeded and never read from the event body.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// A file the broker tails locally; authenticity rests on file ownership and mode.
    Local,
    /// A static bearer token, basic credentials or a JWT: no freshness guarantee.
    SharedSecret,
    /// A per-message signature with a timestamp (Standard Webhooks v1 or v1a).
    Signed,
}

impl Trust {
    /// The label used in metrics and logs (same spelling as the JSON form).
    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Local => "local",
            Trust::SharedSecret => "shared-secret",
            Trust::Signed => "signed",
        }
    }
}

/// What the security tool did. Only the first five mean the action was actually stopped;
/// `detected` means it was merely observed, and policies depend on that difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Blocked,
    Killed,
    Quarantined,
    Prevented,
    Denied,
    Detected,
    #[default]
    Unknown,
}

impl Disposition {
    /// The wire name (`blocked`, `killed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Blocked => "blocked",
            Disposition::Killed => "killed",
            Disposition::Quarantined => "quarantined",
            Disposition::Prevented => "prevented",
            Disposition::Denied => "denied",
            Disposition::Detected => "detected",
            Disposition::Unknown => "unknown",
        }
    }

    /// True when the tool stopped the action (as opposed to only observing it).
    pub fn stopped_the_action(self) -> bool {
        matches!(
            self,
            Disposition::Blocked
                | Disposition::Killed
                | Disposition::Quarantined
                | Disposition::Prevented
                | Disposition::Denied
        )
    }
}

/// OCSF severity names, ordered so that policies can compare them.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Unknown,
    Informational,
    Low,
    Medium,
    High,
    Critical,
    Fatal,
}

/// The detection rule that fired, as the vendor names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A process ancestor (parent, grandparent, …) as far as the tool reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_line: Option<String>,
}

/// The process the tool acted on. `pid` is always an OS process id, never a vendor's own id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Process {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ProcessRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<ProcessRef>,
}

/// What the blocked action was aimed at, where the tool says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The normalized facts a decoder extracts from one vendor event.
///
/// This is also haltwire's native wire format (the `generic` integration), which is why it
/// rejects unknown fields: a sender cannot smuggle `trust` or `id` in, because the broker sets
/// those from what it verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// When the tool observed the action; the broker's receive time if the sender gives none.
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub time: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub disposition: Disposition,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<Rule>,
    /// MITRE ATT&CK technique ids (`T1059.004`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attacks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// The vendor's own id for this alert or detection (never an OS pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
}

/// A stored, normalized event: the decoder's facts plus what the broker itself established.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityEvent {
    /// Broker-assigned, time-ordered (UUIDv7) so that the store's key order is arrival order.
    pub id: Uuid,
    /// The configured source (`[[source]] name`) or watch that delivered it.
    pub source: String,
    /// The decoder that produced `body`.
    pub integration: String,
    /// Set from the authentication that succeeded, never from the payload.
    pub trust: Trust,
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    #[serde(flatten)]
    pub body: EventBody,
    /// The original event exactly as received, kept for analysts and re-decoding.
    pub raw: Box<RawValue>,
}

impl SecurityEvent {
    /// The time the action happened: the tool's timestamp, else when the broker received it.
    pub fn time(&self) -> OffsetDateTime {
        self.body.time.unwrap_or(self.received_at)
    }
}

/// How an event was tied to an agent session (DESIGN §4): stored beside the event by the
/// correlation stage and shown with it, so an analyst sees *why*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Correlation {
    pub status: CorrelationStatus,
    /// The session the event belongs to, when matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    /// The agent's own tool-call id of the command that caused it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The winning candidate's score (0–1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// Why: one line per piece of evidence, strongest first.
    pub evidence: Vec<Evidence>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub correlated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CorrelationStatus {
    Matched,
    /// Two candidates scored too close to call; neither is chosen.
    Ambiguous,
    Unmatched,
}

/// One reason for (or against) a candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Evidence {
    /// `ancestry`, `command`, `time`, `cwd`, `target`, `host`, `candidate`.
    pub kind: String,
    /// Human-readable, written by haltwire (event text appears only quoted and capped).
    pub detail: String,
    /// Contribution to the score.
    pub weight: f64,
}
