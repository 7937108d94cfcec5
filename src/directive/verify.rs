//! The agent-side verifier: envelope bytes in, a [`VerifiedDirective`] or a reason code out.
//!
//! In order: open the DSSE envelope against the trust store's keys valid now (R21–R26), parse
//! the payload strictly (R11, R27, R31), check the audience is exactly this session (R28), the
//! time window (R29) and — for notices — replay by `jti` and `seq` (R30). Only a
//! `VerifiedDirective` can be rendered, so nothing unverified ever produces model text (R34).
//!
//! Replay state belongs to the caller ([`ReplayState`] is plain serde): a hook is a fresh
//! process per call and keeps it in its session state file. This module never panics on input
//! (fuzzed), does no I/O and never logs payload text.

use super::envelope::{Envelope, EnvelopeError, PAYLOAD_TYPE};
use super::payload::{DirectivePayload, MAX_LIFETIME_SECS};
use super::trust::TrustStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Clock skew tolerated on `iat` and `exp` (R29).
pub const SKEW_SECS: i64 = 30;

/// Most `jti`s remembered per session; old ones fall out once expired, and `seq` still guards.
const MAX_REMEMBERED_JTIS: usize = 1024;

/// A directive that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedDirective {
    pub payload: DirectivePayload,
    /// Kids of the trusted keys whose signatures verified.
    pub signed_by: Vec<String>,
}

/// Why a directive was refused. Codes go to logs and metrics; nothing here reaches a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    #[error("payload does not match the directive schema: {0}")]
    Payload(String),
    #[error("addressed to another session")]
    WrongAudience,
    #[error("lifetime longer than {MAX_LIFETIME_SECS} s")]
    LifetimeTooLong,
    #[error("issued in the future")]
    NotYetValid,
    #[error("expired")]
    Expired,
    #[error("already seen (jti)")]
    Replayed,
    #[error("out of order (seq not above the last accepted)")]
    OutOfOrder,
}

impl Rejection {
    /// Stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Envelope(e) => e.code(),
            Rejection::Payload(_) => "bad_payload",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::LifetimeTooLong => "lifetime_too_long",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::Expired => "expired",
            Rejection::Replayed => "replayed",
            Rejection::OutOfOrder => "out_of_order",
        }
    }
}

/// What a session's verifier remembers between calls (R30).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayState {
    /// Highest `seq` accepted so far.
    #[serde(default)]
    pub last_seq: u64,
    /// Accepted `jti`s and their `exp`, kept until `exp + skew`.
    #[serde(default)]
    pub seen: BTreeMap<String, i64>,
}

impl ReplayState {
    fn forget_expired(&mut self, now: i64) {
        self.seen.retain(|_, exp| exp.saturating_add(SKEW_SECS) >= now);
        while self.seen.len() > MAX_REMEMBERED_JTIS {
            let oldest = self.seen.iter().min_by_key(|(_, exp)| **exp).map(|(j, _)| j.clone());
            match oldest {
                Some(jti) => self.seen.remove(&jti),
                None => break,
            };
        }
    }
}

/// Verifies directives against one trust store.
#[derive(Debug, Clone)]
pub struct Verifier {
    trust: TrustStore,
}

impl Verifier {
    pub fn new(trust: TrustStore) -> Verifier {
        Verifier { trust }
    }

    /// Full verification for a notice: signature, schema, audience, time, then replay. On
    /// success the directive is recorded in `replay`, so the same bytes never render twice.
    pub fn verify(
        &self,
        raw: &[u8],
        audience: &str,
        now: i64,
        replay: &mut ReplayState,
    ) -> Result<VerifiedDirective, Rejection> {
        let verified = self.verify_addressed(raw, audience, now)?;
        let payload = &verified.payload;
        replay.forget_expired(now);
        if replay.seen.contains_key(&payload.jti) {
            return Err(Rejection::Replayed);
        }
        if payload.seq <= replay.last_seq {
            return Err(Rejection::OutOfOrder);
        }
        replay.last_seq = payload.seq;
        replay.seen.insert(payload.jti.clone(), payload.exp);
        Ok(verified)
    }

    /// Verification without replay bookkeeping, for the reason text of a gate denial: the
    /// broker re-sends the block's directive with every denial, and the deny is enforced
    /// whether or not the model saw the notice before. Signature, audience and time still hold.
    pub fn verify_addressed(
        &self,
        raw: &[u8],
        audience: &str,
        now: i64,
    ) -> Result<VerifiedDirective, Rejection> {
        let envelope = Envelope::from_slice(raw)?;
        let opened = envelope.open(&[PAYLOAD_TYPE], &self.trust.keys_at(now), 1)?;
        let payload: DirectivePayload =
            serde_json::from_slice(&opened.body).map_err(|e| Rejection::Payload(payload_error(&e)))?;
        if payload.aud != audience {
            return Err(Rejection::WrongAudience);
        }
        if payload.exp.saturating_sub(payload.iat) > MAX_LIFETIME_SECS || payload.exp < payload.iat {
            return Err(Rejection::LifetimeTooLong);
        }
        if payload.iat > now.saturating_add(SKEW_SECS) {
            return Err(Rejection::NotYetValid);
        }
        if now > payload.exp.saturating_add(SKEW_SECS) {
            return Err(Rejection::Expired);
        }
        Ok(VerifiedDirective { payload, signed_by: opened.signed_by })
    }
}

/// The error's position and category, without echoing payload text.
fn payload_error(e: &serde_json::Error) -> String {
    format!("{:?} at line {} column {}", e.classify(), e.line(), e.column())
}
