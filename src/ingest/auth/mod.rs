//! Webhook authentication for the ingest route: one [`SourceVerifier`] per configured
//! `[[source]]`, built once at startup and asked once per request.
//!
//! Every request is authenticated over the exact raw body bytes before anything parses them
//! (R2), and every scheme fails closed: a missing, duplicated, empty or unparseable credential is
//! a rejection, never a pass (R3). A source without credentials does not start (R4).
//!
//! Deliberately not here: the HTTP answer (always a uniform 401, R12; [`AuthFailure::reason`] is
//! only for metrics and logs), the body-size cap (R1, checked before this runs), the dedup store
//! itself (this module only says *what* to remember and for how long, [`DedupId`]), and any
//! logging: nothing here can leak a secret into a log because nothing here logs.

mod credentials;
mod jwt;
mod shared_secret;
pub mod standard_webhooks;

use crate::config::{scheme_name, AuthScheme, SourceConfig};
use crate::event::Trust;
use axum::http::{HeaderMap, HeaderValue};
use sha2::{Digest as _, Sha256};
use shared_secret::ExpectedAuthorization;
use standard_webhooks::{HmacSecret, KeyError, TrustedKeys};
use std::path::PathBuf;

/// At most this many keys per source. Rotation needs two; the cap bounds the work one
/// unauthenticated request can cause (entries × keys verifications, each over the whole body).
pub const MAX_TRUSTED_KEYS: usize = 4;

/// How long a shared-secret body hash is remembered (R18).
pub const BODY_HASH_TTL_SECS: i64 = 24 * 60 * 60;

/// Authenticates requests for one configured source. Holds key material; its `Debug` shows only
/// the source name, the scheme and how many keys it has.
pub struct SourceVerifier {
    /// The `[[source]] name`; part of every config error and of `Debug`.
    name: String,
    scheme: AuthScheme,
    method: Method,
}

/// The verification each scheme boils down to.
enum Method {
    /// Standard Webhooks `v1` or `v1a`: per-message signature plus timestamp.
    Signed(TrustedKeys),
    /// Bearer or Basic: one fixed `Authorization` value, compared as a digest.
    Static(ExpectedAuthorization),
    Jwt(jwt::JwtVerifier),
}

// The ingest handler shares verifiers across tasks; fail the build, not the deploy, if a
// future field breaks that.
const _: fn() = || {
    fn shared_across_tasks<T: Send + Sync>() {}
    shared_across_tasks::<SourceVerifier>();
};

impl SourceVerifier {
    /// Builds the verifier for one `[[source]]`: re-checks the table (so an unvalidated config
    /// cannot slip through), reads `*_file` credentials (trailing newline trimmed) and validates
    /// every key (R4, R9). Errors name the source and the problem, never the secret.
    pub fn from_config(source: &SourceConfig) -> Result<SourceVerifier, AuthConfigError> {
        let name = source.name.as_str();
        source.validate().map_err(|message| AuthConfigError::Invalid { name: name.to_string(), message })?;
        let scheme = source.auth.ok_or_else(|| AuthConfigError::Invalid {
            name: name.to_string(),
            message: "`auth` is required".to_string(),
        })?;
        let method = match scheme {
            AuthScheme::StandardWebhooks => Method::Signed(TrustedKeys::Hmac(load_hmac_secrets(source)?)),
            AuthScheme::StandardWebhooksEd25519 => {
                Method::Signed(TrustedKeys::Ed25519(load_public_keys(source)?))
            }
            AuthScheme::Bearer => Method::Static(load_bearer(source)?),
            AuthScheme::Basic => Method::Static(load_basic(source)?),
            AuthScheme::Jwt => Method::Jwt(jwt::JwtVerifier::from_config(source)?),
        };
        Ok(SourceVerifier { name: name.to_string(), scheme, method })
    }

    /// Authenticates one request over the exact raw body bytes. No JSON parsing of the body.
    ///
    /// `now_unix` is the broker's clock, passed in so every freshness check in one request uses
    /// the same instant and tests need no sleeping.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<Verified, AuthFailure> {
        let dedup = match &self.method {
            Method::Signed(keys) => {
                let message = standard_webhooks::verify(keys, headers, body, now_unix)?;
                DedupId::MessageId { id: message.id, timestamp: message.timestamp }
            }
            Method::Static(expected) => {
                expected.verify(headers)?;
                DedupId::body_hash(body)
            }
            Method::Jwt(verifier) => {
                verifier.verify(headers, now_unix)?;
                DedupId::body_hash(body)
            }
        };
        Ok(Verified { trust: self.trust(), dedup })
    }

    /// The tier an event from this source is stored with: `Signed` only when each message
    /// carries its own signature and timestamp; a JWT is still a bearer credential.
    pub fn trust(&self) -> Trust {
        match self.method {
            Method::Signed(_) => Trust::Signed,
            Method::Static(_) | Method::Jwt(_) => Trust::SharedSecret,
        }
    }
}

impl std::fmt::Debug for SourceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.method {
            Method::Signed(keys) => keys.len(),
            Method::Static(_) => 1,
            Method::Jwt(verifier) => verifier.key_count(),
        };
        f.debug_struct("SourceVerifier")
            .field("name", &self.name)
            .field("scheme", &scheme_name(self.scheme))
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Set from the scheme that verified, never from the payload.
    pub trust: Trust,
    /// What the store must remember to refuse a replay (R16).
    pub dedup: DedupId,
}

/// The replay key of one accepted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupId {
    /// Standard Webhooks: webhook-id plus its signed timestamp (dedup TTL = max(first_seen+600, ts+300), R17)
    MessageId { id: String, timestamp: i64 },
    /// shared-secret tiers: sha256 of the raw body (R18, 24 h)
    BodyHash([u8; 32]),
}

impl DedupId {
    fn body_hash(body: &[u8]) -> DedupId {
        DedupId::BodyHash(Sha256::digest(body).into())
    }

    /// When the store may forget this entry, given that it is first seen at `now_unix`.
    ///
    /// A message id must outlive the whole window in which its timestamp is acceptable
    /// (`ts ± 300`); `first_seen + 600` alone would reopen it for a message first seen early.
    pub fn expires_at(&self, now_unix: i64) -> i64 {
        match self {
            DedupId::MessageId { timestamp, .. } => now_unix
                .saturating_add(2 * standard_webhooks::TOLERANCE_SECS)
                .max(timestamp.saturating_add(standard_webhooks::TOLERANCE_SECS)),
            DedupId::BodyHash(_) => now_unix.saturating_add(BODY_HASH_TTL_SECS),
        }
    }

    /// The store key: source bytes, `0x00`, then `id:<id>` or `sha256:<32 raw bytes>`. Source
    /// names cannot contain `0x00`, so two sources can never produce the same key.
    pub fn key_for(&self, source: &str) -> Vec<u8> {
        let mut key = Vec::with_capacity(source.len() + 1 + 7 + 128);
        key.extend_from_slice(source.as_bytes());
        key.push(0);
        match self {
            DedupId::MessageId { id, .. } => {
                key.extend_from_slice(b"id:");
                key.extend_from_slice(id.as_bytes());
            }
            DedupId::BodyHash(hash) => {
                key.extend_from_slice(b"sha256:");
                key.extend_from_slice(hash);
            }
        }
        key
    }
}

/// Why a request was refused. The HTTP answer is the same 401 for all of them (R12); the
/// variants exist for [`AuthFailure::reason`]. None carries request data, so `Display` is safe
/// to log as is (R46, R47).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("missing or empty `{0}` header")]
    MissingHeader(&'static str),
    #[error("`{0}` header sent more than once")]
    DuplicateHeader(&'static str),
    #[error("malformed `{0}` header")]
    MalformedHeader(&'static str),
    #[error("timestamp older than the tolerance")]
    TimestampTooOld,
    #[error("timestamp further in the future than the tolerance")]
    TimestampInFuture,
    #[error("more signatures than allowed")]
    TooManySignatures,
    #[error("no signature of the version this source uses")]
    NoSupportedSignature,
    #[error("no signature verifies with a trusted key")]
    NoValidSignature,
    #[error("wrong Authorization scheme")]
    WrongScheme,
    #[error("credentials do not match")]
    BadCredentials,
    #[error("token rejected: {0}")]
    BadToken(TokenRejection),
}

/// Why a JWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("not a well-formed JWT")]
    Malformed,
    #[error("algorithm is not the one configured")]
    Algorithm,
    #[error("`crit` header present")]
    CriticalHeader,
    #[error("signature does not verify")]
    Signature,
    #[error("expired")]
    Expired,
    #[error("not yet valid")]
    NotYetValid,
    #[error("issuer, audience or a required claim is wrong or missing")]
    Claims,
}

impl AuthFailure {
    /// Stable snake_case label for metrics and logs; the HTTP answer is a uniform 401 regardless.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::MissingHeader(_) => "missing_header",
            AuthFailure::DuplicateHeader(_) => "duplicate_header",
            AuthFailure::MalformedHeader(_) => "malformed_header",
            AuthFailure::TimestampTooOld => "timestamp_too_old",
            AuthFailure::TimestampInFuture => "timestamp_in_future",
            AuthFailure::TooManySignatures => "too_many_signatures",
            AuthFailure::NoSupportedSignature => "no_supported_signature",
            AuthFailure::NoValidSignature => "no_valid_signature",
            AuthFailure::WrongScheme => "wrong_scheme",
            AuthFailure::BadCredentials => "bad_credentials",
            AuthFailure::BadToken(rejection) => match rejection {
                TokenRejection::Malformed => "token_malformed",
                TokenRejection::Algorithm => "token_algorithm",
                TokenRejection::CriticalHeader => "token_crit",
                TokenRejection::Signature => "token_signature",
                TokenRejection::Expired => "token_expired",
                TokenRejection::NotYetValid => "token_not_yet_valid",
                TokenRejection::Claims => "token_claims",
            },
        }
    }
}

/// A source that cannot be built. Messages name the source and the problem, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// The `[[source]]` table is inconsistent (the same check as `SourceConfig::validate`).
    #[error("source {name:?}: {message}")]
    Invalid { name: String, message: String },
    #[error("source {name:?}: cannot read `{what}` {}: {error}", .path.display())]
    ReadFile { name: String, what: &'static str, path: PathBuf, error: std::io::Error },
    /// A `whsec_`/`whpk_` value is malformed or weak.
    #[error("source {name:?}: {what} {problem}")]
    BadKey { name: String, what: String, problem: KeyError },
    /// Any other credential problem (too short, unusable characters, wrong key type).
    #[error("source {name:?}: {what} {problem}")]
    BadCredential { name: String, what: &'static str, problem: &'static str },
    #[error("source {name:?}: {count} keys configured; at most {max} are allowed")]
    TooManyKeys { name: String, count: usize, max: usize },
    #[error("source {name:?}: jwt algorithm {algorithm:?} is not supported")]
    UnsupportedAlgorithm { name: String, algorithm: String },
}

/// The single value of a header. Absent or empty is `MissingHeader`; sent twice is refused
/// rather than picking one, because a proxy and the app may pick differently.
pub(crate) fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
) -> Result<&'a HeaderValue, AuthFailure> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(AuthFailure::MissingHeader(name))?;
    if values.next().is_some() {
        return Err(AuthFailure::DuplicateHeader(name));
    }
    if value.is_empty() {
        return Err(AuthFailure::MissingHeader(name));
    }
    Ok(value)
}

fn check_key_count(name: &str, count: usize) -> Result<(), AuthConfigError> {
    if count > MAX_TRUSTED_KEYS {
        return Err(AuthConfigError::TooManyKeys { name: name.to_string(), count, max: MAX_TRUSTED_KEYS });
    }
    Ok(())
}

/// `secret` (one or a rotation list) or `secret_file` (one secret per line).
fn load_hmac_secrets(source: &SourceConfig) -> Result<Vec<HmacSecret>, AuthConfigError> {
    let values = credentials::secrets(source, credentials::FileLayout::OnePerLine)?;
    check_key_count(&source.name, values.len())?;
    values
        .iter()
        .enumerate()
        .map(|(index, value)| {
            HmacSecret::parse(value).map_err(|problem| AuthConfigError::BadKey {
                name: source.name.clone(),
                what: format!("secret #{}", index + 1),
                problem,
            })
        })
        .collect()
}

fn load_public_keys(source: &SourceConfig) -> Result<Vec<ed25519_dalek::VerifyingKey>, AuthConfigError> {
    check_key_count(&source.name, source.public_keys.len())?;
    source
        .public_keys
        .iter()
        .enumerate()
        .map(|(index, value)| {
            standard_webhooks::parse_public_key(value).map_err(|problem| AuthConfigError::BadKey {
                name: source.name.clone(),
                what: format!("public key #{}", index + 1),
                problem,
            })
        })
        .collect()
}

fn load_bearer(source: &SourceConfig) -> Result<ExpectedAuthorization, AuthConfigError> {
    let token = credentials::one_of(
        source,
        ("token", "token_file"),
        source.token.as_deref(),
        source.token_file.as_deref(),
    )?;
    ExpectedAuthorization::bearer(&token).map_err(|problem| AuthConfigError::BadCredential {
        name: source.name.clone(),
        what: "token",
        problem,
    })
}

fn load_basic(source: &SourceConfig) -> Result<ExpectedAuthorization, AuthConfigError> {
    let username = source.username.as_deref().unwrap_or_default();
    let password = credentials::one_of(
        source,
        ("password", "password_file"),
        source.password.as_deref(),
        source.password_file.as_deref(),
    )?;
    ExpectedAuthorization::basic(username, &password).map_err(|problem| AuthConfigError::BadCredential {
        name: source.name.clone(),
        what: "basic credentials",
        problem,
    })
}

#[cfg(test)]
mod tests {
    use super::standard_webhooks::Ed25519Secret;
    use super::*;
    use crate::config::Secrets;
    use axum::http::HeaderValue;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const TOKEN: &str = "hw_0123456789abcdefghijklmnop";
    const PASSWORD: &str = "correct horse battery staple";
    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"disposition": "blocked"}"#;

    fn source(auth: AuthScheme) -> SourceConfig {
        SourceConfig { name: "edr".into(), auth: Some(auth), ..SourceConfig::default() }
    }

    fn hmac_source(secrets: Secrets) -> SourceConfig {
        SourceConfig { secret: Some(secrets), ..source(AuthScheme::StandardWebhooks) }
    }

    fn bearer_source() -> SourceConfig {
        SourceConfig { token: Some(TOKEN.into()), ..source(AuthScheme::Bearer) }
    }

    fn basic_source() -> SourceConfig {
        SourceConfig {
            username: Some("kibana".into()),
            password: Some(PASSWORD.into()),
            ..source(AuthScheme::Basic)
        }
    }

    fn signed_headers(signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("msg_1"));
        headers.insert("webhook-timestamp", HeaderValue::from_str(&NOW.to_string()).unwrap());
        headers.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
        headers
    }

    fn authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        headers
    }

    fn build_error(config: &SourceConfig) -> String {
        SourceVerifier::from_config(config).unwrap_err().to_string()
    }

    fn write_temp(contents: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credential");
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[test]
    fn hmac_source_verifies_and_dedups_by_message_id() {
        let verifier = SourceVerifier::from_config(&hmac_source(Secrets::One(SECRET.into()))).unwrap();
        let signature = HmacSecret::parse(SECRET).unwrap().sign("msg_1", NOW, BODY);
        let verified = verifier.verify(&signed_headers(&signature), BODY, NOW).unwrap();
        assert_eq!(verified.trust, Trust::Signed);
        assert_eq!(verified.dedup, DedupId::MessageId { id: "msg_1".into(), timestamp: NOW });
        assert_eq!(verifier.trust(), Trust::Signed);
        assert_eq!(
            verifier.verify(&signed_headers(&signature), b"{}", NOW),
            Err(AuthFailure::NoValidSignature)
        );
    }

    #[test]
    fn ed25519_source_verifies_with_signed_trust() {
        let (private, public) = Ed25519Secret::generate();
        let config =
            SourceConfig { public_keys: vec![public], ..source(AuthScheme::StandardWebhooksEd25519) };
        let verifier = SourceVerifier::from_config(&config).unwrap();
        let signature = Ed25519Secret::parse(&private).unwrap().sign("msg_1", NOW, BODY);
        let verified = verifier.verify(&signed_headers(&signature), BODY, NOW).unwrap();
        assert_eq!(verified.trust, Trust::Signed);
        assert_eq!(verifier.trust(), Trust::Signed);
    }

    #[test]
    fn static_credential_sources_have_shared_secret_trust_and_body_hash_dedup() {
        let bearer = SourceVerifier::from_config(&bearer_source()).unwrap();
        let verified = bearer.verify(&authorization(&format!("Bearer {TOKEN}")), BODY, NOW).unwrap();
        assert_eq!(verified.trust, Trust::SharedSecret);
        assert_eq!(verified.dedup, DedupId::BodyHash(Sha256::digest(BODY).into()));
        assert_eq!(
            bearer.verify(&HeaderMap::new(), BODY, NOW),
            Err(AuthFailure::MissingHeader("authorization"))
        );

        let basic = SourceVerifier::from_config(&basic_source()).unwrap();
        let value = format!("Basic {}", STANDARD.encode(format!("kibana:{PASSWORD}")));
        assert_eq!(basic.verify(&authorization(&value), BODY, NOW).unwrap().trust, Trust::SharedSecret);
        assert_eq!(basic.trust(), Trust::SharedSecret);
        assert_eq!(
            basic.verify(&authorization(&format!("Bearer {TOKEN}")), BODY, NOW),
            Err(AuthFailure::WrongScheme)
        );
    }

    #[test]
    fn jwt_source_has_shared_secret_trust() {
        let config = SourceConfig {
            algorithm: Some("HS256".into()),
            secret: Some(Secrets::One("k".repeat(32))),
            issuer: Some("edr".into()),
            audience: Some("haltwire".into()),
            ..source(AuthScheme::Jwt)
        };
        let verifier = SourceVerifier::from_config(&config).unwrap();
        assert_eq!(verifier.trust(), Trust::SharedSecret);
        let claims = serde_json::json!({ "iss": "edr", "aud": "haltwire", "exp": NOW + 60 });
        let key = jsonwebtoken::EncodingKey::from_secret("k".repeat(32).as_bytes());
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
        let verified = verifier.verify(&authorization(&format!("Bearer {token}")), BODY, NOW).unwrap();
        assert_eq!(verified.trust, Trust::SharedSecret);
        assert!(matches!(verified.dedup, DedupId::BodyHash(_)));
    }

    #[test]
    fn credentials_are_read_from_files_with_trailing_newlines_trimmed() {
        let (_dir, path) = write_temp(&format!("{TOKEN}\r\n"));
        let config = SourceConfig { token_file: Some(path), ..source(AuthScheme::Bearer) };
        let verifier = SourceVerifier::from_config(&config).unwrap();
        assert!(verifier.verify(&authorization(&format!("Bearer {TOKEN}")), BODY, NOW).is_ok());

        let (_dir, path) = write_temp(&format!("{PASSWORD}\n"));
        let config = SourceConfig {
            username: Some("kibana".into()),
            password_file: Some(path),
            ..source(AuthScheme::Basic)
        };
        let verifier = SourceVerifier::from_config(&config).unwrap();
        let value = format!("Basic {}", STANDARD.encode(format!("kibana:{PASSWORD}")));
        assert!(verifier.verify(&authorization(&value), BODY, NOW).is_ok());
    }

    #[test]
    fn secret_file_holds_one_secret_per_line_for_rotation() {
        let next = HmacSecret::generate();
        let (_dir, path) = write_temp(&format!("{next}\n\n{SECRET}\n"));
        let config = SourceConfig { secret_file: Some(path), ..source(AuthScheme::StandardWebhooks) };
        let verifier = SourceVerifier::from_config(&config).unwrap();
        for key in [&next, SECRET] {
            let signature = HmacSecret::parse(key).unwrap().sign("msg_1", NOW, BODY);
            assert!(verifier.verify(&signed_headers(&signature), BODY, NOW).is_ok());
        }
    }

    #[test]
    fn unreadable_empty_or_oversized_files_are_config_errors() {
        let missing = SourceConfig {
            secret_file: Some("/nonexistent/haltwire-secret".into()),
            ..source(AuthScheme::StandardWebhooks)
        };
        let message = build_error(&missing);
        assert!(message.contains("\"edr\"") && message.contains("secret_file"), "{message}");
        let (_dir, empty) = write_temp("\n");
        let with_file =
            |path| SourceConfig { secret_file: Some(path), ..source(AuthScheme::StandardWebhooks) };
        assert!(build_error(&with_file(empty)).contains("empty"));
        let (_dir, big) = write_temp(&"a".repeat(64 * 1024 + 1));
        assert!(build_error(&with_file(big)).contains("64 KiB"));
    }

    #[test]
    fn short_hmac_secret_is_refused_at_config() {
        let short = format!("whsec_{}", STANDARD.encode([5u8; 23]));
        let message = build_error(&hmac_source(Secrets::Many(vec![SECRET.into(), short.clone()])));
        assert!(message.contains("secret #2") && message.contains("23 bytes"), "{message}");
        assert!(!message.contains(&short[6..]), "{message}");
    }

    #[test]
    fn weak_public_key_is_refused_at_config() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = format!("whpk_{}", STANDARD.encode(identity));
        let config = SourceConfig { public_keys: vec![weak], ..source(AuthScheme::StandardWebhooksEd25519) };
        let message = build_error(&config);
        assert!(message.contains("public key #1") && message.contains("weak"), "{message}");
    }

    #[test]
    fn sources_without_credentials_or_scheme_do_not_build() {
        assert!(build_error(&SourceConfig { name: "edr".into(), ..SourceConfig::default() })
            .contains("`auth` is required"));
        assert!(build_error(&source(AuthScheme::StandardWebhooks)).contains("exactly one of"));
        assert!(build_error(&source(AuthScheme::StandardWebhooksEd25519)).contains("exactly one of"));
        assert!(build_error(&source(AuthScheme::Bearer)).contains("exactly one of"));
        assert!(build_error(&hmac_source(Secrets::Many(vec![]))).contains("empty"));
        let weak_token = SourceConfig { token: Some("short".into()), ..source(AuthScheme::Bearer) };
        assert!(build_error(&weak_token).contains("16 bytes"));
    }

    #[test]
    fn more_than_four_keys_are_refused() {
        let keys: Vec<String> = (0..5).map(|_| HmacSecret::generate()).collect();
        assert!(build_error(&hmac_source(Secrets::Many(keys.clone()))).contains("at most 4"));
        assert!(SourceVerifier::from_config(&hmac_source(Secrets::Many(keys[..4].to_vec()))).is_ok());
    }

    #[test]
    fn debug_of_every_verifier_hides_its_credentials() {
        let (_, public) = Ed25519Secret::generate();
        let configs = [
            hmac_source(Secrets::One(SECRET.into())),
            SourceConfig { public_keys: vec![public], ..source(AuthScheme::StandardWebhooksEd25519) },
            bearer_source(),
            basic_source(),
        ];
        for config in configs {
            let verifier = SourceVerifier::from_config(&config).unwrap();
            let shown = format!("{verifier:?} {verifier:#?}");
            for secret in [&SECRET[6..], TOKEN, PASSWORD] {
                assert!(!shown.contains(secret), "{shown}");
            }
            assert!(shown.contains("\"edr\""), "{shown}");
        }
    }

    #[test]
    fn message_id_dedup_outlives_the_whole_acceptance_window() {
        let id = DedupId::MessageId { id: "msg_1".into(), timestamp: NOW };
        // First seen at the earliest acceptable moment: must survive until ts + 300.
        assert_eq!(id.expires_at(NOW - 300), NOW + 300);
        // First seen late: first_seen + 600 dominates.
        assert_eq!(id.expires_at(NOW + 300), NOW + 900);
        assert_eq!(id.expires_at(i64::MAX), i64::MAX);
    }

    #[test]
    fn body_hash_dedup_lasts_24_hours() {
        assert_eq!(DedupId::BodyHash([7; 32]).expires_at(NOW), NOW + 86_400);
    }

    #[test]
    fn dedup_keys_are_source_nul_then_tagged_id() {
        let id = DedupId::MessageId { id: "msg_1".into(), timestamp: NOW };
        assert_eq!(id.key_for("edr"), b"edr\0id:msg_1".to_vec());
        let hash = DedupId::BodyHash(Sha256::digest(BODY).into());
        let mut expected = b"edr\0sha256:".to_vec();
        expected.extend_from_slice(&Sha256::digest(BODY));
        assert_eq!(hash.key_for("edr"), expected);
        assert_ne!(id.key_for("a"), DedupId::MessageId { id: "msg_1".into(), timestamp: 0 }.key_for("b"));
    }

    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let failures = [
            AuthFailure::MissingHeader("x"),
            AuthFailure::DuplicateHeader("x"),
            AuthFailure::MalformedHeader("x"),
            AuthFailure::TimestampTooOld,
            AuthFailure::TimestampInFuture,
            AuthFailure::TooManySignatures,
            AuthFailure::NoSupportedSignature,
            AuthFailure::NoValidSignature,
            AuthFailure::WrongScheme,
            AuthFailure::BadCredentials,
            AuthFailure::BadToken(TokenRejection::Malformed),
            AuthFailure::BadToken(TokenRejection::Algorithm),
            AuthFailure::BadToken(TokenRejection::CriticalHeader),
            AuthFailure::BadToken(TokenRejection::Signature),
            AuthFailure::BadToken(TokenRejection::Expired),
            AuthFailure::BadToken(TokenRejection::NotYetValid),
            AuthFailure::BadToken(TokenRejection::Claims),
        ];
        let reasons: std::collections::HashSet<_> = failures.iter().map(AuthFailure::reason).collect();
        assert_eq!(reasons.len(), failures.len());
        assert!(reasons.iter().all(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}
