//! The broker side of directives: turns a decided restriction into a signed envelope.
//!
//! The signer owns the broker's directive key (and, during a rotation overlap, the outgoing
//! key too), stamps `iss`, `iat` and `exp`, and publishes the public halves to the trust store
//! the agent-side verifiers load. It does not choose `seq` or `jti` (the delivery queue owns a
//! session's sequence), does not store or send anything, and never renders text.

use super::envelope::{Envelope, Sealer, PAYLOAD_TYPE};
use super::keys::{key_id, BrokerKey, KeyError};
use super::payload::{Directive, DirectivePayload, MAX_LIFETIME_SECS};
use super::trust::{self, TrustError, TrustStore, TrustedKeyFile};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// Lifetime of every directive envelope: the longest R29 allows. A queued directive that
/// waits longer is re-signed with a fresh window when delivered; its `jti` and `seq` stay.
pub const DIRECTIVE_LIFETIME_SECS: i64 = MAX_LIFETIME_SECS;

/// Signs directives for one broker.
pub struct DirectiveSigner {
    /// The key every envelope is signed with.
    current: BrokerKey,
    /// Its kid, written as the (unauthenticated) DSSE keyid hint.
    current_kid: String,
    /// The outgoing key of the last rotation and the end of its overlap window.
    previous: Option<(BrokerKey, String, i64)>,
    /// `iss` of every payload.
    issuer: String,
}

impl DirectiveSigner {
    /// Loads (or on first start creates) the broker key, loads a rotated-out key still in its
    /// overlap, and publishes both public keys for verifiers. Returns whether a key was created.
    pub fn load_or_create(data_dir: &Path, now: i64) -> Result<(DirectiveSigner, bool), SignerError> {
        let (current, created) = BrokerKey::load_or_create(data_dir)?;
        let previous = BrokerKey::load_previous(data_dir)?.filter(|(_, until)| now < *until);
        let signer = DirectiveSigner::new(current, previous, issuer_name());
        signer.publish(data_dir)?;
        Ok((signer, created))
    }

    /// A signer from keys in hand.
    pub fn new(current: BrokerKey, previous: Option<(BrokerKey, i64)>, issuer: String) -> DirectiveSigner {
        let current_kid = key_id(&current.verifying_key());
        let previous = previous.map(|(key, until)| {
            let kid = key_id(&key.verifying_key());
            (key, kid, until)
        });
        DirectiveSigner { current, current_kid, previous, issuer }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current key's id.
    pub fn kid(&self) -> &str {
        &self.current_kid
    }

    /// Signs `directive` for session `audience` as number `seq`, valid from `now` for
    /// [`DIRECTIVE_LIFETIME_SECS`].
    pub fn sign(&self, audience: &str, jti: &str, seq: u64, directive: &Directive, now: i64) -> Envelope {
        let payload = DirectivePayload {
            iss: self.issuer.clone(),
            aud: audience.to_string(),
            iat: now,
            exp: now + DIRECTIVE_LIFETIME_SECS,
            jti: jti.to_string(),
            seq,
            directive: directive.clone(),
        };
        let body = serde_json::to_vec(&payload).expect("directive payloads always serialize");
        let sign_current = |m: &[u8]| self.current.sign(m);
        let mut signers: Vec<Sealer<'_>> = vec![(self.current_kid.as_str(), &sign_current)];
        let sign_previous;
        if let Some((key, kid, until)) = &self.previous {
            if now < *until {
                sign_previous = |m: &[u8]| key.sign(m);
                signers.push((kid.as_str(), &sign_previous));
            }
        }
        Envelope::seal(PAYLOAD_TYPE, &body, &signers)
    }

    /// The verifiers' view of this signer's keys, without touching the disk.
    pub fn trust_store(&self) -> TrustStore {
        let mut keys = vec![(self.current.verifying_key(), None, None)];
        if let Some((key, _, until)) = &self.previous {
            keys.push((key.verifying_key(), None, Some(*until)));
        }
        TrustStore::from_keys(&keys)
    }

    /// Writes `<data_dir>/keys/trusted/<kid>.json` for the current and the previous key.
    fn publish(&self, data_dir: &Path) -> Result<(), TrustError> {
        trust::publish(data_dir, &key_file(&self.current, None))?;
        if let Some((key, _, until)) = &self.previous {
            trust::publish(data_dir, &key_file(key, Some(*until)))?;
        }
        Ok(())
    }
}

fn key_file(key: &BrokerKey, not_after: Option<i64>) -> TrustedKeyFile {
    let public = key.verifying_key();
    TrustedKeyFile {
        kid: key_id(&public),
        public_key: STANDARD.encode(public.as_bytes()),
        not_before: None,
        not_after,
    }
}

/// `haltwire@<hostname>`: names the issuing broker in logs and in `haltwire verify` output.
fn issuer_name() -> String {
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    format!("haltwire@{host}")
}
