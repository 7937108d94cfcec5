//! Standard Webhooks: `v1` (HMAC-SHA256, `whsec_` secrets) and `v1a` (Ed25519, `whsk_`/`whpk_`
//! keys), both the signing side (`haltwire event send`, the load generator) and the verifying side
//! (the ingest route), so the two cannot drift apart.
//!
//! Signed content is `webhook-id + "." + webhook-timestamp + "." + body`, over the exact bytes
//! received. The `svix-` header trio is accepted as an alias of the `webhook-` trio.
//!
//! Deliberately not here: choosing a scheme per source or reading key files (that is
//! [`super::SourceVerifier`]), remembering message ids (the store deduplicates with
//! [`super::DedupId`]) and parsing the body in any way.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac as _};
use rand_core::{OsRng, RngCore as _};
use sha2::digest::{Key, KeyInit};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{single_header, AuthFailure};
use axum::http::HeaderMap;

/// Largest accepted distance between `webhook-timestamp` and the broker's clock, in either
/// direction (R6). Every reference library uses 300 s; the spec itself names no number.
pub const TOLERANCE_SECS: i64 = 300;

/// Most entries accepted in one signature header (R8). Rotation needs two; the cap bounds the
/// verification work an unauthenticated request can cause.
pub const MAX_SIGNATURES: usize = 8;

const SECRET_PREFIX: &str = "whsec_";
const SIGNING_KEY_PREFIX: &str = "whsk_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";

/// Spec range for `v1` secrets (R9): shorter is guessable, longer than the SHA-256 block size
/// would be hashed down by HMAC anyway.
const HMAC_SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// HMAC-SHA256 block size. Keys up to this length are zero-padded to it by HMAC itself.
const HMAC_BLOCK_BYTES: usize = 64;
const HMAC_TAG_BYTES: usize = 32;
const ED25519_KEY_BYTES: usize = 32;
const ED25519_SIGNATURE_BYTES: usize = 64;

const MAX_ID_LEN: usize = 128;
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// Standard alphabet (the spec's and Svix's); `=` padding optional on input because senders
/// differ, canonical trailing bits still required so one signature has one spelling.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a `whsec_`/`whsk_`/`whpk_` string was refused. Never contains the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("does not start with `{0}`")]
    MissingPrefix(&'static str),
    #[error("is not valid base64 (standard alphabet)")]
    NotBase64,
    #[error("decodes to {got} bytes; expected {expected}")]
    WrongLength { got: usize, expected: &'static str },
    #[error("is not a valid Ed25519 public key")]
    InvalidPoint,
    #[error("is a weak (small-order) Ed25519 key, for which signatures can be forged")]
    WeakKey,
}

/// A `v1` secret: 24–64 bytes, kept zero-padded to the HMAC block size.
///
/// Storing the padded form makes keying infallible (`HMAC(K) == HMAC(K || 0…0)` for keys no
/// longer than a block, RFC 2104 step 1), so signing needs no error path and no `unwrap`.
pub struct HmacSecret {
    padded_key: Zeroizing<[u8; HMAC_BLOCK_BYTES]>,
}

impl HmacSecret {
    /// Parses `whsec_<base64>`, or bare base64 as upstream PR #23's shared vectors do.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let encoded = s.strip_prefix(SECRET_PREFIX).unwrap_or(s);
        let bytes = decode_key(encoded)?;
        if !HMAC_SECRET_BYTES.contains(&bytes.len()) {
            return Err(KeyError::WrongLength { got: bytes.len(), expected: "24 to 64" });
        }
        let mut padded_key = Zeroizing::new([0u8; HMAC_BLOCK_BYTES]);
        padded_key[..bytes.len()].copy_from_slice(&bytes);
        Ok(HmacSecret { padded_key })
    }

    /// A fresh `whsec_` secret of 32 random bytes from the OS.
    ///
    /// # Panics
    /// If the OS random source fails: a secret must never be made without it.
    pub fn generate() -> String {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes.as_ref()))
    }

    /// The `v1,<base64>` header entry for one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(msg_id, &timestamp.to_string(), body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }

    /// HMAC state after absorbing the signed content; cloned once per candidate signature so the
    /// (up to 256 KiB) body is hashed once per key, not once per header entry.
    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let key: &Key<Hmac<Sha256>> = (&*self.padded_key).into();
        let mut mac = <Hmac<Sha256> as KeyInit>::new(key);
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

impl std::fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSecret([REDACTED])")
    }
}

/// A `v1a` signing key: `whsk_` + base64 of the 32-byte Ed25519 seed (as both open upstream
/// PRs #253 and #304 define it; the spec does not pin it). `SigningKey` zeroizes on drop.
pub struct Ed25519Secret {
    key: SigningKey,
}

impl Ed25519Secret {
    /// Parses `whsk_<base64 of 32-byte seed>`. The prefix is required: unlike `whsec_`, no
    /// upstream vector omits it, and guessing the key type is how keys get misused.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let encoded =
            s.strip_prefix(SIGNING_KEY_PREFIX).ok_or(KeyError::MissingPrefix(SIGNING_KEY_PREFIX))?;
        let bytes = decode_key(encoded)?;
        let seed: Zeroizing<[u8; ED25519_KEY_BYTES]> = Zeroizing::new(
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::WrongLength { got: bytes.len(), expected: "32" })?,
        );
        Ok(Ed25519Secret { key: SigningKey::from_bytes(&seed) })
    }

    /// A fresh key pair as `(whsk_…, whpk_…)`.
    ///
    /// # Panics
    /// If the OS random source fails: a key must never be made without it.
    pub fn generate() -> (String, String) {
        let secret = Ed25519Secret { key: SigningKey::generate(&mut OsRng) };
        let seed = Zeroizing::new(secret.key.to_bytes());
        (format!("{SIGNING_KEY_PREFIX}{}", STANDARD.encode(seed.as_ref())), secret.public_key())
    }

    /// The matching `whpk_` public key, for the receiver's `public_keys`.
    pub fn public_key(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.key.verifying_key().as_bytes()))
    }

    /// The `v1a,<base64>` header entry for one message (plain Ed25519, no pre-hash).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let content = signed_content(msg_id, &timestamp.to_string(), body);
        format!("v1a,{}", STANDARD.encode(self.key.sign(&content).to_bytes()))
    }
}

impl std::fmt::Debug for Ed25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Secret([REDACTED])")
    }
}

/// Parses a trusted `whpk_` key (R9): exactly 32 bytes, a valid point, and not of small order,
/// because a weak key lets one signature verify for any message.
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, KeyError> {
    let encoded = s.strip_prefix(PUBLIC_KEY_PREFIX).ok_or(KeyError::MissingPrefix(PUBLIC_KEY_PREFIX))?;
    let bytes = decode_key(encoded)?;
    let bytes: [u8; ED25519_KEY_BYTES] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::WrongLength { got: bytes.len(), expected: "32" })?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidPoint)?;
    if key.is_weak() {
        return Err(KeyError::WeakKey);
    }
    Ok(key)
}

fn decode_key(encoded: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    BASE64_ANY_PADDING.decode(encoded).map(Zeroizing::new).map_err(|_| KeyError::NotBase64)
}

/// `id.timestamp.body` as one buffer, for Ed25519 (which cannot be fed incrementally without
/// the `hazmat` feature). Built once per request, not once per key or entry.
fn signed_content(msg_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(msg_id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(msg_id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The keys one source trusts. A source speaks exactly one version: a `v1` source skips `v1a`
/// entries and vice versa, so a key of one kind can never stand in for the other.
pub(crate) enum TrustedKeys {
    Hmac(Vec<HmacSecret>),
    Ed25519(Vec<VerifyingKey>),
}

impl TrustedKeys {
    pub(crate) fn len(&self) -> usize {
        match self {
            TrustedKeys::Hmac(keys) => keys.len(),
            TrustedKeys::Ed25519(keys) => keys.len(),
        }
    }
}

/// What a verified message established: its id and signed timestamp, for deduplication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedMessage {
    pub(crate) id: String,
    pub(crate) timestamp: i64,
}

/// Authenticates one request: headers well-formed (R3, R7), timestamp fresh (R6), then any
/// entry verifying with any trusted key (R8). Cheap checks come first so stale or malformed
/// requests cost no cryptography.
pub(crate) fn verify(
    keys: &TrustedKeys,
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<VerifiedMessage, AuthFailure> {
    let message = read_headers(headers)?;
    check_freshness(message.timestamp, now_unix)?;
    let entries = split_entries(message.signatures)?;
    match keys {
        TrustedKeys::Hmac(secrets) => verify_hmac(secrets, &message, &entries, body)?,
        TrustedKeys::Ed25519(public_keys) => verify_ed25519(public_keys, &message, &entries, body)?,
    }
    Ok(VerifiedMessage { id: message.id.to_string(), timestamp: message.timestamp })
}

/// Header names of one spelling of the scheme.
struct HeaderNames {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const WEBHOOK_HEADERS: HeaderNames =
    HeaderNames { id: "webhook-id", timestamp: "webhook-timestamp", signature: "webhook-signature" };
const SVIX_HEADERS: HeaderNames =
    HeaderNames { id: "svix-id", timestamp: "svix-timestamp", signature: "svix-signature" };

/// The three headers after validation, borrowed from the request.
struct SignedHeaders<'a> {
    id: &'a str,
    /// The exact text that was signed; leading zeros are signed as sent.
    timestamp_text: &'a str,
    timestamp: i64,
    signatures: &'a str,
}

/// Reads one trio, never mixing them: if any `webhook-` header is present the `webhook-` trio
/// must be complete, otherwise the `svix-` trio must be. A request cannot borrow an id from one
/// spelling and a signature from the other.
fn read_headers(headers: &HeaderMap) -> Result<SignedHeaders<'_>, AuthFailure> {
    let names = if [WEBHOOK_HEADERS.id, WEBHOOK_HEADERS.timestamp, WEBHOOK_HEADERS.signature]
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        &WEBHOOK_HEADERS
    } else {
        &SVIX_HEADERS
    };
    let id = header_text(headers, names.id)?;
    let timestamp_text = header_text(headers, names.timestamp)?;
    let signatures = header_text(headers, names.signature)?;
    if !valid_id(id) {
        return Err(AuthFailure::MalformedHeader(names.id));
    }
    let timestamp = parse_timestamp(timestamp_text).ok_or(AuthFailure::MalformedHeader(names.timestamp))?;
    Ok(SignedHeaders { id, timestamp_text, timestamp, signatures })
}

fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, AuthFailure> {
    single_header(headers, name)?.to_str().map_err(|_| AuthFailure::MalformedHeader(name))
}

/// R7: `^[A-Za-z0-9_-]{1,128}$`. Above all no `.`, which would make `id.ts.body` ambiguous.
fn valid_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// R7: `^[0-9]{1,12}$`; no sign, no spaces, so the signed text has one reading.
fn parse_timestamp(text: &str) -> Option<i64> {
    if !(1..=MAX_TIMESTAMP_DIGITS).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// R6: both directions. Saturating so an absurd `now` cannot overflow into acceptance.
fn check_freshness(timestamp: i64, now_unix: i64) -> Result<(), AuthFailure> {
    if timestamp < now_unix.saturating_sub(TOLERANCE_SECS) {
        return Err(AuthFailure::TimestampTooOld);
    }
    if timestamp > now_unix.saturating_add(TOLERANCE_SECS) {
        return Err(AuthFailure::TimestampInFuture);
    }
    Ok(())
}

/// One `version,base64` entry of the signature header, not yet decoded.
struct Entry<'a> {
    version: &'a str,
    encoded: &'a str,
}

/// Splits the space-delimited list (R8). More than [`MAX_SIGNATURES`] entries is a rejection,
/// counted before any decoding; an entry without a comma is skipped, never fatal.
fn split_entries(header: &str) -> Result<Vec<Entry<'_>>, AuthFailure> {
    let raw: Vec<&str> = header.split(' ').filter(|entry| !entry.is_empty()).collect();
    if raw.len() > MAX_SIGNATURES {
        return Err(AuthFailure::TooManySignatures);
    }
    Ok(raw
        .into_iter()
        .filter_map(|entry| entry.split_once(','))
        .map(|(version, encoded)| Entry { version, encoded })
        .collect())
}

/// Decodes the entries of one version into fixed-size signatures, skipping any whose length or
/// base64 is wrong. The length is checked on the text first so a huge entry allocates nothing.
fn decode_entries<const N: usize>(entries: &[Entry<'_>], version: &str) -> Vec<[u8; N]> {
    let max_encoded = N.div_ceil(3) * 4;
    entries
        .iter()
        .filter(|entry| entry.version == version && entry.encoded.len() <= max_encoded)
        .filter_map(|entry| BASE64_ANY_PADDING.decode(entry.encoded).ok())
        .filter_map(|bytes| <[u8; N]>::try_from(bytes.as_slice()).ok())
        .collect()
}

/// `v1`: any entry matching any secret. `verify_slice` compares in constant time (R5).
fn verify_hmac(
    secrets: &[HmacSecret],
    message: &SignedHeaders<'_>,
    entries: &[Entry<'_>],
    body: &[u8],
) -> Result<(), AuthFailure> {
    let candidates = decode_entries::<HMAC_TAG_BYTES>(entries, "v1");
    if candidates.is_empty() {
        return Err(AuthFailure::NoSupportedSignature);
    }
    for secret in secrets {
        let mac = secret.mac(message.id, message.timestamp_text, body);
        if candidates.iter().any(|tag| mac.clone().verify_slice(tag).is_ok()) {
            return Ok(());
        }
    }
    Err(AuthFailure::NoValidSignature)
}

/// `v1a`: any entry matching any trusted key, with `verify_strict` (rejects small-order `R` and
/// `A`; weak keys were already refused at load, this is the second line).
fn verify_ed25519(
    public_keys: &[VerifyingKey],
    message: &SignedHeaders<'_>,
    entries: &[Entry<'_>],
    body: &[u8],
) -> Result<(), AuthFailure> {
    let candidates: Vec<Signature> =
        decode_entries::<ED25519_SIGNATURE_BYTES>(entries, "v1a").iter().map(Signature::from_bytes).collect();
    if candidates.is_empty() {
        return Err(AuthFailure::NoSupportedSignature);
    }
    let content = signed_content(message.id, message.timestamp_text, body);
    for key in public_keys {
        if candidates.iter().any(|sig| key.verify_strict(&content, sig).is_ok()) {
            return Ok(());
        }
    }
    Err(AuthFailure::NoValidSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::Value;

    const V1_VECTORS: &str =
        include_str!("../../../../shared/samples/vectors/standard-webhooks/v1-hmac-upstream.json");
    const V1A_VECTOR: &str =
        include_str!("../../../../shared/samples/vectors/standard-webhooks/v1a-ed25519-derived.json");

    /// One known-answer case: key string, id, timestamp, body and the expected header entry.
    struct Vector {
        key: String,
        id: String,
        timestamp: i64,
        body: Vec<u8>,
        signature: String,
    }

    fn vector_from(v: &Value, key_field: &str) -> Vector {
        Vector {
            key: v[key_field].as_str().unwrap().to_string(),
            id: v["msg_id"].as_str().unwrap().to_string(),
            timestamp: v["timestamp"].as_i64().unwrap(),
            body: v["payload"].as_str().unwrap().as_bytes().to_vec(),
            signature: v["signature"].as_str().unwrap().to_string(),
        }
    }

    fn v1_vectors() -> Vec<Vector> {
        let file: Value = serde_json::from_str(V1_VECTORS).unwrap();
        file["vectors"].as_array().unwrap().iter().map(|v| vector_from(v, "secret")).collect()
    }

    fn v1a_vector() -> Vector {
        vector_from(&serde_json::from_str(V1A_VECTOR).unwrap(), "whsk")
    }

    fn v1a_public_key() -> String {
        let file: Value = serde_json::from_str(V1A_VECTOR).unwrap();
        file["whpk"].as_str().unwrap().to_string()
    }

    fn negative_signatures() -> Vec<String> {
        let file: Value = serde_json::from_str(V1_VECTORS).unwrap();
        file["negative_signature_strings_from_upstream_tests"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    }

    fn hmac_keys(secrets: &[&str]) -> TrustedKeys {
        TrustedKeys::Hmac(secrets.iter().map(|s| HmacSecret::parse(s).unwrap()).collect())
    }

    fn ed25519_keys(public_keys: &[&str]) -> TrustedKeys {
        TrustedKeys::Ed25519(public_keys.iter().map(|k| parse_public_key(k).unwrap()).collect())
    }

    fn headers_with(prefix: &str, id: &str, timestamp: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in [("id", id), ("timestamp", timestamp), ("signature", signature)] {
            let name = axum::http::HeaderName::from_bytes(format!("{prefix}-{name}").as_bytes()).unwrap();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn headers(id: &str, timestamp: i64, signature: &str) -> HeaderMap {
        headers_with("webhook", id, &timestamp.to_string(), signature)
    }

    fn check(
        keys: &TrustedKeys,
        v: &Vector,
        signature: &str,
        now: i64,
    ) -> Result<VerifiedMessage, AuthFailure> {
        verify(keys, &headers(&v.id, v.timestamp, signature), &v.body, now)
    }

    #[test]
    fn all_upstream_v1_vectors_verify_at_their_timestamp() {
        let vectors = v1_vectors();
        assert_eq!(vectors.len(), 3);
        for v in &vectors {
            let keys = hmac_keys(&[&v.key]);
            let verified = check(&keys, v, &v.signature, v.timestamp).unwrap();
            assert_eq!(verified, VerifiedMessage { id: v.id.clone(), timestamp: v.timestamp });
        }
    }

    #[test]
    fn signing_reproduces_the_upstream_v1_vectors() {
        for v in v1_vectors() {
            assert_eq!(HmacSecret::parse(&v.key).unwrap().sign(&v.id, v.timestamp, &v.body), v.signature);
        }
    }

    #[test]
    fn derived_v1a_vector_verifies_and_signing_reproduces_it() {
        let v = v1a_vector();
        let secret = Ed25519Secret::parse(&v.key).unwrap();
        assert_eq!(secret.public_key(), v1a_public_key());
        assert_eq!(secret.sign(&v.id, v.timestamp, &v.body), v.signature);
        let keys = ed25519_keys(&[&v1a_public_key()]);
        assert!(check(&keys, &v, &v.signature, v.timestamp).is_ok());
    }

    #[test]
    fn every_upstream_negative_signature_is_rejected() {
        let vectors = v1_vectors();
        let negatives = negative_signatures();
        assert_eq!(negatives.len(), 6);
        // They target the first two vectors; none may pass for either.
        for v in &vectors[..2] {
            let keys = hmac_keys(&[&v.key]);
            for negative in &negatives {
                let result = check(&keys, v, negative, v.timestamp);
                assert!(
                    matches!(result, Err(AuthFailure::NoValidSignature | AuthFailure::NoSupportedSignature)),
                    "{negative:?} gave {result:?}"
                );
            }
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_rejected_at_301_seconds_but_not_300() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        assert_eq!(check(&keys, v, &v.signature, v.timestamp + 301), Err(AuthFailure::TimestampTooOld));
        assert_eq!(check(&keys, v, &v.signature, v.timestamp - 301), Err(AuthFailure::TimestampInFuture));
        assert!(check(&keys, v, &v.signature, v.timestamp + 300).is_ok());
        assert!(check(&keys, v, &v.signature, v.timestamp - 300).is_ok());
    }

    #[test]
    fn extreme_clock_values_do_not_overflow_into_acceptance() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        assert_eq!(check(&keys, v, &v.signature, i64::MAX), Err(AuthFailure::TimestampTooOld));
        assert_eq!(check(&keys, v, &v.signature, i64::MIN), Err(AuthFailure::TimestampInFuture));
    }

    #[test]
    fn tampered_body_is_rejected() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let mut body = v.body.clone();
        body[10] ^= 1;
        let result = verify(&keys, &headers(&v.id, v.timestamp, &v.signature), &body, v.timestamp);
        assert_eq!(result, Err(AuthFailure::NoValidSignature));
    }

    #[test]
    fn reserialized_body_with_the_same_json_is_rejected() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let value: Value = serde_json::from_slice(&v.body).unwrap();
        let reserialized = serde_json::to_vec(&value).unwrap();
        assert_ne!(reserialized, v.body, "the vector's spacing must differ from serde's");
        assert_eq!(serde_json::from_slice::<Value>(&reserialized).unwrap(), value);
        let result = verify(&keys, &headers(&v.id, v.timestamp, &v.signature), &reserialized, v.timestamp);
        assert_eq!(result, Err(AuthFailure::NoValidSignature));
    }

    #[test]
    fn signature_from_another_key_is_rejected() {
        let v = &v1_vectors()[0];
        let other = hmac_keys(&[&v1_vectors()[1].key]);
        assert_eq!(check(&other, v, &v.signature, v.timestamp), Err(AuthFailure::NoValidSignature));
        let (_, other_public) = Ed25519Secret::generate();
        let va = v1a_vector();
        let other = ed25519_keys(&[&other_public]);
        assert_eq!(check(&other, &va, &va.signature, va.timestamp), Err(AuthFailure::NoValidSignature));
    }

    #[test]
    fn unknown_version_is_skipped_even_with_valid_bytes() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let relabelled = v.signature.replacen("v1,", "v2,", 1);
        assert_eq!(check(&keys, v, &relabelled, v.timestamp), Err(AuthFailure::NoSupportedSignature));
        // The same entry next to a known-version one is simply skipped.
        let both = format!("{relabelled} {}", v.signature);
        assert!(check(&keys, v, &both, v.timestamp).is_ok());
    }

    #[test]
    fn nine_entries_are_rejected_even_when_one_is_valid_and_eight_are_fine() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let junk = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let eight = format!("{} {}", [junk; 7].join(" "), v.signature);
        assert!(check(&keys, v, &eight, v.timestamp).is_ok());
        let nine = format!("{} {}", [junk; 8].join(" "), v.signature);
        assert_eq!(check(&keys, v, &nine, v.timestamp), Err(AuthFailure::TooManySignatures));
    }

    #[test]
    fn malformed_entries_are_skipped_not_fatal() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let malformed = [
            "v1",
            "v1,",
            "v1,!!!!",
            "v1,AAAA",
            ",",
            "v1,,",
            "v1a,AAAA",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=AAAA",
        ];
        for entry in malformed {
            assert!(check(&keys, v, entry, v.timestamp).is_err(), "{entry}");
            let with_valid = format!("{entry} {}", v.signature);
            assert!(check(&keys, v, &with_valid, v.timestamp).is_ok(), "{entry}");
        }
    }

    #[test]
    fn padded_and_unpadded_signatures_are_both_accepted() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let unpadded = v.signature.trim_end_matches('=');
        assert!(check(&keys, v, unpadded, v.timestamp).is_ok());
    }

    #[test]
    fn garbage_signature_headers_never_panic_and_never_pass() {
        let v = &v1_vectors()[0];
        let va = v1a_vector();
        let hmac = hmac_keys(&[&v.key]);
        let ed = ed25519_keys(&[&v1a_public_key()]);
        let long = "A".repeat(100_000);
        let cases = [
            ",,,,",
            "v1,=",
            "v1,====",
            "v1a,",
            "v1,\u{00e9}",
            "   ",
            "v1, v1a, v1,,,",
            "v1,AA==,AA==",
            &format!("v1,{long}"),
            &format!("v1a,{long}"),
            &long,
        ];
        for case in cases {
            let bytes = case.as_bytes();
            let Ok(value) = HeaderValue::from_bytes(bytes) else {
                continue;
            };
            let mut h = headers(&v.id, v.timestamp, "x");
            h.insert("webhook-signature", value);
            assert!(verify(&hmac, &h, &v.body, v.timestamp).is_err(), "{case:.40}");
            assert!(verify(&ed, &h, &va.body, va.timestamp).is_err(), "{case:.40}");
        }
    }

    #[test]
    fn id_containing_a_dot_is_rejected_even_when_correctly_signed() {
        let v = &v1_vectors()[0];
        let secret = HmacSecret::parse(&v.key).unwrap();
        let id = "msg.1";
        let signature = secret.sign(id, v.timestamp, &v.body);
        let result =
            verify(&hmac_keys(&[&v.key]), &headers(id, v.timestamp, &signature), &v.body, v.timestamp);
        assert_eq!(result, Err(AuthFailure::MalformedHeader("webhook-id")));
    }

    #[test]
    fn ids_outside_the_allowed_alphabet_or_length_are_rejected() {
        assert!(valid_id("msg_p5jXN8AQM9LWM0D4loKWxJek"));
        assert!(valid_id(&"a".repeat(128)));
        for id in ["", "a.b", "a b", "a/b", "a:b", "\u{00e9}", &"a".repeat(129)] {
            assert!(!valid_id(id), "{id:?}");
        }
    }

    #[test]
    fn timestamps_that_are_not_1_to_12_digits_are_rejected() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        for ts in [
            "1614265330a",
            "a1614265330",
            "-1614265330",
            "+1614265330",
            "1614265330.0",
            "0x60383a72",
            "1234567890123",
        ] {
            let result =
                verify(&keys, &headers_with("webhook", &v.id, ts, &v.signature), &v.body, v.timestamp);
            assert_eq!(result, Err(AuthFailure::MalformedHeader("webhook-timestamp")), "{ts}");
        }
        assert_eq!(parse_timestamp("000000000001"), Some(1));
    }

    #[test]
    fn each_missing_or_empty_header_is_rejected() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = headers(&v.id, v.timestamp, &v.signature);
            h.remove(name);
            assert_eq!(verify(&keys, &h, &v.body, v.timestamp), Err(AuthFailure::MissingHeader(name)));
            h.insert(name, HeaderValue::from_static(""));
            assert_eq!(verify(&keys, &h, &v.body, v.timestamp), Err(AuthFailure::MissingHeader(name)));
        }
        assert_eq!(
            verify(&keys, &HeaderMap::new(), &v.body, v.timestamp),
            Err(AuthFailure::MissingHeader("svix-id"))
        );
    }

    #[test]
    fn duplicated_header_is_rejected() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let mut h = headers(&v.id, v.timestamp, &v.signature);
        h.append("webhook-signature", HeaderValue::from_str(&v.signature).unwrap());
        assert_eq!(
            verify(&keys, &h, &v.body, v.timestamp),
            Err(AuthFailure::DuplicateHeader("webhook-signature"))
        );
    }

    #[test]
    fn svix_headers_are_accepted_but_never_mixed_with_webhook_headers() {
        let v = &v1_vectors()[0];
        let keys = hmac_keys(&[&v.key]);
        let svix = headers_with("svix", &v.id, &v.timestamp.to_string(), &v.signature);
        assert!(verify(&keys, &svix, &v.body, v.timestamp).is_ok());
        let mut mixed = svix.clone();
        mixed.remove("svix-id");
        mixed.insert("webhook-id", HeaderValue::from_str(&v.id).unwrap());
        assert_eq!(
            verify(&keys, &mixed, &v.body, v.timestamp),
            Err(AuthFailure::MissingHeader("webhook-timestamp"))
        );
    }

    #[test]
    fn any_configured_key_may_verify_during_rotation() {
        let v = &v1_vectors()[0];
        let (old, new) = (&v1_vectors()[1].key, &v.key);
        assert!(check(&hmac_keys(&[old, new]), v, &v.signature, v.timestamp).is_ok());
        // Sender signs with both keys; receiver still knows only one of them.
        let old_signature = HmacSecret::parse(old).unwrap().sign(&v.id, v.timestamp, &v.body);
        let both = format!("{old_signature} {}", v.signature);
        assert!(check(&hmac_keys(&[new]), v, &both, v.timestamp).is_ok());
        assert!(check(&hmac_keys(&[old]), v, &both, v.timestamp).is_ok());

        let va = v1a_vector();
        let (_, other_public) = Ed25519Secret::generate();
        assert!(check(&ed25519_keys(&[&other_public, &v1a_public_key()]), &va, &va.signature, va.timestamp)
            .is_ok());
    }

    #[test]
    fn a_source_only_accepts_its_own_version() {
        let v = &v1_vectors()[0];
        let va = v1a_vector();
        assert_eq!((v.id.as_str(), v.timestamp, &v.body), (va.id.as_str(), va.timestamp, &va.body));
        let both = format!("{} {}", v.signature, va.signature);
        let hmac = hmac_keys(&[&v.key]);
        let ed = ed25519_keys(&[&v1a_public_key()]);
        assert_eq!(check(&hmac, v, &va.signature, v.timestamp), Err(AuthFailure::NoSupportedSignature));
        assert_eq!(check(&ed, v, &v.signature, v.timestamp), Err(AuthFailure::NoSupportedSignature));
        assert!(check(&hmac, v, &both, v.timestamp).is_ok());
        assert!(check(&ed, v, &both, v.timestamp).is_ok());
    }

    #[test]
    fn weak_and_malformed_public_keys_are_refused() {
        let identity = format!(
            "whpk_{}",
            STANDARD.encode({
                let mut bytes = [0u8; 32];
                bytes[0] = 1;
                bytes
            })
        );
        assert_eq!(parse_public_key(&identity).unwrap_err(), KeyError::WeakKey);
        let short = format!("whpk_{}", STANDARD.encode([7u8; 31]));
        assert!(matches!(parse_public_key(&short), Err(KeyError::WrongLength { got: 31, .. })));
        let bare = v1a_public_key().replacen("whpk_", "", 1);
        assert_eq!(parse_public_key(&bare).unwrap_err(), KeyError::MissingPrefix("whpk_"));
        assert_eq!(parse_public_key("whpk_not base64").unwrap_err(), KeyError::NotBase64);
        assert!(parse_public_key(&v1a_public_key()).is_ok());
    }

    #[test]
    fn universal_forgery_under_a_weak_key_fails_even_if_the_key_got_past_parsing() {
        // Identity public key with R = identity, S = 0: plain `verify` accepts this for every
        // message; `verify_strict` must not. Built directly to test the second line of defence.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = TrustedKeys::Ed25519(vec![VerifyingKey::from_bytes(&identity).unwrap()]);
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let signature = format!("v1a,{}", STANDARD.encode(forged));
        let v = v1a_vector();
        assert!(VerifyingKey::from_bytes(&identity)
            .unwrap()
            .verify_strict(b"x", &Signature::from_bytes(&forged))
            .is_err());
        assert_eq!(check(&weak, &v, &signature, v.timestamp), Err(AuthFailure::NoValidSignature));
    }

    #[test]
    fn hmac_secrets_must_decode_to_24_to_64_bytes() {
        for (len, ok) in [(0, false), (23, false), (24, true), (32, true), (64, true), (65, false)] {
            let secret = format!("whsec_{}", STANDARD.encode(vec![9u8; len]));
            assert_eq!(HmacSecret::parse(&secret).is_ok(), ok, "{len} bytes");
        }
        assert_eq!(HmacSecret::parse("whsec_***").unwrap_err(), KeyError::NotBase64);
    }

    #[test]
    fn generated_keys_round_trip_through_parse_sign_and_verify() {
        let secret = HmacSecret::generate();
        assert!(secret.starts_with("whsec_"));
        let parsed = HmacSecret::parse(&secret).unwrap();
        let body = br#"{"disposition":"blocked"}"#;
        let signature = parsed.sign("msg_1", 1_700_000_000, body);
        let keys = hmac_keys(&[&secret]);
        assert!(verify(&keys, &headers("msg_1", 1_700_000_000, &signature), body, 1_700_000_000).is_ok());
        assert_ne!(HmacSecret::generate(), secret);

        let (private, public) = Ed25519Secret::generate();
        assert!(private.starts_with("whsk_") && public.starts_with("whpk_"));
        let signing = Ed25519Secret::parse(&private).unwrap();
        assert_eq!(signing.public_key(), public);
        let signature = signing.sign("msg_1", 1_700_000_000, body);
        let keys = ed25519_keys(&[&public]);
        assert!(verify(&keys, &headers("msg_1", 1_700_000_000, &signature), body, 1_700_000_000).is_ok());
    }

    #[test]
    fn debug_output_never_contains_key_material() {
        let v = &v1_vectors()[0];
        let secret = HmacSecret::parse(&v.key).unwrap();
        let shown = format!("{secret:?}");
        assert_eq!(shown, "HmacSecret([REDACTED])");

        let va = v1a_vector();
        let seed_b64 = va.key.trim_start_matches("whsk_");
        let signing = Ed25519Secret::parse(&va.key).unwrap();
        let shown = format!("{signing:?} {:#?}", signing);
        assert!(!shown.contains(seed_b64) && !shown.contains("WEBHOOK"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }

    #[test]
    fn signed_content_is_id_dot_timestamp_dot_body() {
        let v = v1a_vector();
        let file: Value = serde_json::from_str(V1A_VECTOR).unwrap();
        let expected = file["signed_content"].as_str().unwrap().as_bytes();
        assert_eq!(signed_content(&v.id, &v.timestamp.to_string(), &v.body), expected);
    }
}
