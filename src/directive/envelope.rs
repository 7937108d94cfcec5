//! DSSE envelopes (Dead Simple Signing Envelope v1): the wire form of every directive.
//!
//! The signature covers `PAE(payloadType, body)`, so the type is bound to the bytes and cannot
//! be swapped. Opening an envelope follows the DSSE order: decode, verify the signatures over
//! the PAE with `verify_strict` against the caller's trusted keys, only then check the payload
//! type, and hand back the body bytes — parsing them is the caller's business. `keyid` is an
//! unauthenticated hint and is never used to decide anything: every trusted key is tried.
//!
//! This module knows nothing about what a directive says, about clocks or replay, or where keys
//! come from; it never holds a secret key (signing takes a closure from [`super::signer`]).

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

/// The payload type of haltwire directives (R25). Anything else is rejected.
pub const PAYLOAD_TYPE: &str = "application/vnd.haltwire.directive.v1+json";

/// Largest envelope accepted from the outside: a directive is well under 8 KiB; the inbox cap
/// (R43) is 64 KiB, so nothing larger is worth decoding.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// A signing function paired with the keyid hint to write beside its signature.
pub(crate) type Sealer<'a> = (&'a str, &'a dyn Fn(&[u8]) -> Signature);

/// More signatures than this is not a rotation overlap but an attempt to make us work.
const MAX_SIGNATURES: usize = 8;

/// A DSSE envelope, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Media type of the payload; bound into the signature by the PAE.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The serialized body, base64 (standard when we write; either alphabet accepted).
    pub payload: String,
    /// One signature per signing key (two during a key rotation overlap).
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Hint naming the key (haltwire writes the derived kid); never trusted (DSSE, R21).
    #[serde(default)]
    pub keyid: String,
    /// The Ed25519 signature over the PAE, base64.
    pub sig: String,
}

/// Why an envelope did not open. The variants are reason codes for logs, never model text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope larger than {MAX_ENVELOPE_BYTES} bytes")]
    TooLarge,
    #[error("envelope is not DSSE JSON: {0}")]
    Malformed(String),
    #[error("envelope field `{0}` is not base64")]
    BadBase64(&'static str),
    #[error("envelope has no signatures")]
    NoSignatures,
    #[error("envelope has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("no trusted key verified the envelope")]
    Unverified,
    #[error("payload type is not supported")]
    UnsupportedPayloadType,
}

impl EnvelopeError {
    /// Stable reason code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge => "too_large",
            EnvelopeError::Malformed(_) => "malformed",
            EnvelopeError::BadBase64(_) => "bad_base64",
            EnvelopeError::NoSignatures => "no_signatures",
            EnvelopeError::TooManySignatures => "too_many_signatures",
            EnvelopeError::Unverified => "bad_signature",
            EnvelopeError::UnsupportedPayloadType => "unsupported_payload_type",
        }
    }
}

/// A key an opener may accept signatures from. Building one refuses weak keys (R22).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpeningKey {
    /// The name to report for a signature this key verified (the derived kid for ours).
    pub name: String,
    key: VerifyingKey,
}

impl OpeningKey {
    /// `None` when the 32 bytes are not a point on the curve or are a weak (small-order) key.
    pub fn new(name: impl Into<String>, public: &[u8; 32]) -> Option<OpeningKey> {
        let key = VerifyingKey::from_bytes(public).ok()?;
        if key.is_weak() {
            return None;
        }
        Some(OpeningKey { name: name.into(), key })
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// What opening proved: the body, and which keys signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub body: Vec<u8>,
    /// Names of the distinct trusted keys whose signature verified.
    pub signed_by: Vec<String>,
}

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in bytes.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + payload_type.len() + body.len());
    out.extend_from_slice(
        format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, body.len()).as_bytes(),
    );
    out.extend_from_slice(body);
    out
}

impl Envelope {
    /// Parses an envelope from untrusted bytes, size-capped first.
    pub fn from_slice(raw: &[u8]) -> Result<Envelope, EnvelopeError> {
        if raw.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge);
        }
        serde_json::from_slice(raw).map_err(|e| EnvelopeError::Malformed(e.classify_label()))
    }

    /// Builds an envelope over `body`, signed by each `(keyid, signer)` in turn.
    pub(crate) fn seal(payload_type: &str, body: &[u8], signers: &[Sealer<'_>]) -> Envelope {
        let message = pae(payload_type, body);
        let signatures = signers
            .iter()
            .map(|(keyid, sign)| EnvelopeSignature {
                keyid: (*keyid).to_string(),
                sig: STANDARD.encode(sign(&message).to_bytes()),
            })
            .collect();
        Envelope { payload_type: payload_type.to_string(), payload: STANDARD.encode(body), signatures }
    }

    /// The JSON form, as sent on the wire and written to inbox files.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an envelope of strings always serializes")
    }

    /// Verifies that at least `threshold` distinct trusted keys signed the PAE, then that the
    /// payload type is one the caller supports, and returns the body.
    pub fn open(
        &self,
        supported_types: &[&str],
        keys: &[OpeningKey],
        threshold: usize,
    ) -> Result<Opened, EnvelopeError> {
        if self.signatures.is_empty() {
            return Err(EnvelopeError::NoSignatures);
        }
        if self.signatures.len() > MAX_SIGNATURES {
            return Err(EnvelopeError::TooManySignatures);
        }
        let body = decode_any_base64(&self.payload).ok_or(EnvelopeError::BadBase64("payload"))?;
        let message = pae(&self.payload_type, &body);
        let mut signed_by: Vec<String> = Vec::new();
        for entry in &self.signatures {
            let Some(signature) = decode_signature(&entry.sig) else { continue };
            for key in keys {
                if signed_by.contains(&key.name) {
                    continue;
                }
                if key.key.verify_strict(&message, &signature).is_ok() {
                    signed_by.push(key.name.clone());
                    break;
                }
            }
        }
        if threshold == 0 || signed_by.len() < threshold {
            return Err(EnvelopeError::Unverified);
        }
        if !supported_types.contains(&self.payload_type.as_str()) {
            return Err(EnvelopeError::UnsupportedPayloadType);
        }
        Ok(Opened { body, signed_by })
    }
}

fn decode_signature(text: &str) -> Option<Signature> {
    let bytes: [u8; 64] = decode_any_base64(text)?.try_into().ok()?;
    Some(Signature::from_bytes(&bytes))
}

/// DSSE verifiers must accept the standard and the URL-safe alphabet, padded or not.
fn decode_any_base64(text: &str) -> Option<Vec<u8>> {
    [&STANDARD, &URL_SAFE, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// serde_json's error category without the message text (which can echo input).
trait ClassifyLabel {
    fn classify_label(&self) -> String;
}

impl ClassifyLabel for serde_json::Error {
    fn classify_label(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "shape",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{kind} error at line {} column {}", self.line(), self.column())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn opener(signing: &SigningKey, name: &str) -> OpeningKey {
        OpeningKey::new(name, signing.verifying_key().as_bytes()).unwrap()
    }

    fn sealed(signing: &SigningKey, body: &[u8]) -> Envelope {
        let sign = |m: &[u8]| signing.sign(m);
        Envelope::seal(PAYLOAD_TYPE, body, &[("k", &sign)])
    }

    #[test]
    fn pae_counts_bytes_not_characters() {
        assert_eq!(pae("té", b"ab"), "DSSEv1 3 té 2 ab".as_bytes());
        assert_eq!(pae("t", b""), b"DSSEv1 1 t 0 ".to_vec());
    }

    #[test]
    fn sealed_envelope_opens_with_its_key_only() {
        let (a, b) = (key(1), key(2));
        let envelope = sealed(&a, b"{\"x\":1}");
        let opened = envelope.open(&[PAYLOAD_TYPE], &[opener(&b, "b"), opener(&a, "a")], 1).unwrap();
        assert_eq!(opened.body, b"{\"x\":1}");
        assert_eq!(opened.signed_by, vec!["a".to_string()]);
        assert_eq!(envelope.open(&[PAYLOAD_TYPE], &[opener(&b, "b")], 1), Err(EnvelopeError::Unverified));
    }

    #[test]
    fn tampered_payload_or_type_fails() {
        let a = key(1);
        let mut envelope = sealed(&a, b"{\"x\":1}");
        envelope.payload = STANDARD.encode(b"{\"x\":2}");
        assert_eq!(envelope.open(&[PAYLOAD_TYPE], &[opener(&a, "a")], 1), Err(EnvelopeError::Unverified));
        let mut envelope = sealed(&a, b"{\"x\":1}");
        envelope.payload_type = "application/json".into();
        let err = envelope.open(&[PAYLOAD_TYPE, "application/json"], &[opener(&a, "a")], 1);
        assert_eq!(err, Err(EnvelopeError::Unverified));
    }

    #[test]
    fn one_key_signing_twice_does_not_meet_a_threshold_of_two() {
        let a = key(1);
        let mut envelope = sealed(&a, b"{}");
        envelope.signatures.push(envelope.signatures[0].clone());
        let keys = [opener(&a, "a"), opener(&key(2), "b")];
        assert_eq!(envelope.open(&[PAYLOAD_TYPE], &keys, 2), Err(EnvelopeError::Unverified));
        assert!(envelope.open(&[PAYLOAD_TYPE], &keys, 1).is_ok());
    }

    #[test]
    fn weak_keys_cannot_be_trusted() {
        // The identity point (y = 1) is a small-order, weak key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(OpeningKey::new("weak", &identity).is_none());
    }

    #[test]
    fn unknown_fields_and_oversize_input_are_refused_before_any_crypto() {
        assert!(matches!(
            Envelope::from_slice(br#"{"payloadType":"t","payload":"","signatures":[],"x":1}"#),
            Err(EnvelopeError::Malformed(_))
        ));
        assert_eq!(Envelope::from_slice(&vec![b' '; MAX_ENVELOPE_BYTES + 1]), Err(EnvelopeError::TooLarge));
    }

    #[test]
    fn malformed_signature_entries_are_skipped_not_fatal() {
        let a = key(1);
        let mut envelope = sealed(&a, b"{}");
        envelope.signatures.insert(0, EnvelopeSignature { keyid: "x".into(), sig: "%%%".into() });
        assert!(envelope.open(&[PAYLOAD_TYPE], &[opener(&a, "a")], 1).is_ok());
    }
}
