//! `Authorization: Bearer <JWT>` for senders that mint tokens: one algorithm pinned from config,
//! `exp`, `iss` and `aud` required, `crit` refused (RFC 8725 §3.1, §3.8, §3.9).
//!
//! jsonwebtoken checks the signature, algorithm family, issuer and audience. Expiry and
//! not-before are checked here against the caller's `now_unix` (the same clock as Standard
//! Webhooks freshness), with integer-only claims so a mistyped `exp` is a rejection, never a
//! skipped check (CVE-2026-25537). EdDSA keys are loaded and weak-key-checked with
//! ed25519-dalek first, because jsonwebtoken's rust_crypto backend verifies non-strictly.
//!
//! Deliberately not here: `jti` replay tracking (the body-hash dedup covers resends), `typ`
//! checks (senders do not agree on one), key discovery (`jku`, `x5u`, `kid`: keys come only from
//! config) and `sub`.

use super::credentials::{self, FileLayout};
use super::{check_key_count, single_header, AuthConfigError, AuthFailure, TokenRejection};
use crate::config::SourceConfig;
use axum::http::HeaderMap;
use ed25519_dalek::pkcs8::DecodePublicKey as _;
use ed25519_dalek::VerifyingKey;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use std::str::FromStr as _;

/// Clock skew allowed on `exp` and `nbf` (R32 caps it at 30 s; the library default is 60).
pub(crate) const JWT_LEEWAY_SECS: i64 = 30;

/// Far above any real token; refused before base64 or JSON work.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

const AUTHORIZATION: &str = "authorization";
const BEARER_PREFIX: &str = "Bearer ";

pub(crate) struct JwtVerifier {
    algorithm: Algorithm,
    /// One key, or several HS* secrets during rotation.
    keys: Vec<DecodingKey>,
    validation: Validation,
}

/// The time claims, typed strictly: a string or fractional `exp` fails deserialization.
#[derive(Deserialize)]
struct TimeClaims {
    /// Optional here only so that a missing `exp` is reported by jsonwebtoken's required-claim
    /// check (as `Claims`) rather than as a malformed token.
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
}

impl JwtVerifier {
    pub(crate) fn from_config(source: &SourceConfig) -> Result<Self, AuthConfigError> {
        let algorithm_name = required(source, "algorithm", source.algorithm.as_deref())?;
        let algorithm =
            Algorithm::from_str(algorithm_name).map_err(|_| AuthConfigError::UnsupportedAlgorithm {
                name: source.name.clone(),
                algorithm: algorithm_name.to_string(),
            })?;
        let issuer = required(source, "issuer", source.issuer.as_deref())?;
        let audience = required(source, "audience", source.audience.as_deref())?;
        let keys = match algorithm.family() {
            AlgorithmFamily::Hmac => hmac_keys(source, algorithm)?,
            family => vec![public_key(source, family)?],
        };
        check_key_count(&source.name, keys.len())?;
        for key in &keys {
            probe(source, key, algorithm)?;
        }
        Ok(JwtVerifier { algorithm, keys, validation: validation(algorithm, issuer, audience) })
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn verify(&self, headers: &HeaderMap, now_unix: i64) -> Result<(), AuthFailure> {
        let token = bearer_token(headers)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| reject(TokenRejection::Malformed))?;
        // Unverified header, but only used to refuse: an extension we do not implement must not
        // be silently ignored (RFC 7515 §4.1.11).
        if header.crit.is_some() {
            return Err(reject(TokenRejection::CriticalHeader));
        }
        if header.alg != self.algorithm {
            return Err(reject(TokenRejection::Algorithm));
        }
        for key in &self.keys {
            match jsonwebtoken::decode::<TimeClaims>(token, key, &self.validation) {
                Ok(data) => return check_times(&data.claims, now_unix),
                // Another rotation key may still match.
                Err(error) if matches!(error.kind(), ErrorKind::InvalidSignature) => continue,
                Err(error) => return Err(reject(classify(error.kind()))),
            }
        }
        Err(reject(TokenRejection::Signature))
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("algorithm", &self.algorithm)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

fn reject(rejection: TokenRejection) -> AuthFailure {
    AuthFailure::BadToken(rejection)
}

fn required<'a>(
    source: &SourceConfig,
    key: &'static str,
    value: Option<&'a str>,
) -> Result<&'a str, AuthConfigError> {
    value.filter(|v| !v.is_empty()).ok_or_else(|| AuthConfigError::Invalid {
        name: source.name.clone(),
        message: format!("auth = \"jwt\" requires a non-empty `{key}`"),
    })
}

fn validation(algorithm: Algorithm, issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(algorithm);
    // Without these, jsonwebtoken skips `iss`/`aud` checks when the claim is simply absent.
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.validate_aud = true;
    validation.leeway = JWT_LEEWAY_SECS.unsigned_abs();
    // The library would read the system clock; `check_times` uses the caller's `now_unix`.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation
}

/// RFC 7518 §3.2: an HS* key at least as long as the hash output.
fn min_hmac_key_bytes(algorithm: Algorithm) -> usize {
    match algorithm {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn hmac_keys(source: &SourceConfig, algorithm: Algorithm) -> Result<Vec<DecodingKey>, AuthConfigError> {
    if source.public_key_file.is_some() {
        return Err(bad(
            source,
            "public_key_file",
            "is for asymmetric algorithms; HS* takes `secret` or `secret_file`",
        ));
    }
    let min = min_hmac_key_bytes(algorithm);
    credentials::secrets(source, FileLayout::Whole)?
        .iter()
        .map(|secret| {
            if secret.len() < min {
                return Err(bad(
                    source,
                    "secret",
                    "is shorter than the algorithm's hash (32/48/64 bytes for HS256/384/512)",
                ));
            }
            Ok(DecodingKey::from_secret(secret.as_bytes()))
        })
        .collect()
}

fn public_key(source: &SourceConfig, family: AlgorithmFamily) -> Result<DecodingKey, AuthConfigError> {
    if source.secret.is_some() || source.secret_file.is_some() {
        return Err(bad(
            source,
            "secret",
            "is for HS* algorithms; asymmetric algorithms take `public_key_file`",
        ));
    }
    let path = source
        .public_key_file
        .as_deref()
        .ok_or_else(|| bad(source, "public_key_file", "is required for asymmetric algorithms"))?;
    let pem = credentials::read_file(&source.name, "public_key_file", path)?;
    match family {
        AlgorithmFamily::Ed => ed25519_key(source, &pem),
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|_| bad(source, "public_key_file", "is not an RSA public key in PEM")),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|_| bad(source, "public_key_file", "is not an EC public key in PEM")),
        AlgorithmFamily::Hmac => Err(bad(source, "algorithm", "HS* has no public key")),
    }
}

/// Parses the SPKI PEM with ed25519-dalek and refuses weak keys, because jsonwebtoken's
/// rust_crypto EdDSA path uses non-strict `verify`, which accepts a universal forgery under a
/// small-order key. jsonwebtoken then gets exactly the 32 raw key bytes (`from_ed_der` takes
/// raw bytes for EdDSA, and would panic on fewer than 32).
fn ed25519_key(source: &SourceConfig, pem: &str) -> Result<DecodingKey, AuthConfigError> {
    let key = VerifyingKey::from_public_key_pem(pem)
        .map_err(|_| bad(source, "public_key_file", "is not an Ed25519 public key in SPKI PEM"))?;
    if key.is_weak() {
        return Err(bad(
            source,
            "public_key_file",
            "is a weak (small-order) Ed25519 key, for which signatures can be forged",
        ));
    }
    Ok(DecodingKey::from_ed_der(key.as_bytes()))
}

/// Builds the library's verifier once at startup so a key that does not fit the algorithm
/// (a P-384 key for ES256, a malformed RSA key) fails the config, not every request.
fn probe(source: &SourceConfig, key: &DecodingKey, algorithm: Algorithm) -> Result<(), AuthConfigError> {
    jsonwebtoken::crypto::verify("", b"", key, algorithm)
        .map(|_| ())
        .map_err(|_| bad(source, "public_key_file", "does not fit the configured algorithm"))
}

fn bad(source: &SourceConfig, what: &'static str, problem: &'static str) -> AuthConfigError {
    AuthConfigError::BadCredential { name: source.name.clone(), what, problem }
}

/// The token from the single `Authorization: Bearer …` header.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let value = single_header(headers, AUTHORIZATION)?
        .to_str()
        .map_err(|_| AuthFailure::MalformedHeader(AUTHORIZATION))?;
    let (word, token) = value.split_at_checked(BEARER_PREFIX.len()).ok_or(AuthFailure::WrongScheme)?;
    if !word.eq_ignore_ascii_case(BEARER_PREFIX) {
        return Err(AuthFailure::WrongScheme);
    }
    if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
        return Err(AuthFailure::MalformedHeader(AUTHORIZATION));
    }
    Ok(token)
}

/// `exp` (required) and `nbf` (if present) against the caller's clock, with the leeway.
fn check_times(claims: &TimeClaims, now_unix: i64) -> Result<(), AuthFailure> {
    let exp = claims.exp.ok_or(reject(TokenRejection::Claims))?;
    if now_unix > exp.saturating_add(JWT_LEEWAY_SECS) {
        return Err(reject(TokenRejection::Expired));
    }
    if claims.nbf.is_some_and(|nbf| nbf > now_unix.saturating_add(JWT_LEEWAY_SECS)) {
        return Err(reject(TokenRejection::NotYetValid));
    }
    Ok(())
}

fn classify(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenRejection::Algorithm
        }
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject => TokenRejection::Claims,
        ErrorKind::InvalidToken
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => TokenRejection::Malformed,
        // Key errors cannot happen after the startup probe; anything else did not verify.
        _ => TokenRejection::Signature,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthScheme, Secrets};
    use axum::http::HeaderValue;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};
    use ed25519_dalek::SigningKey;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::{json, Value};
    use std::path::PathBuf;

    const NOW: i64 = 1_800_000_000;
    const ISSUER: &str = "https://edr.example/";
    const AUDIENCE: &str = "haltwire";
    const HS_SECRET: &str = "0123456789abcdef0123456789abcdef";
    const ES256_PRIVATE: &str = include_str!("testdata/es256-private.pem");
    const ES256_PUBLIC: &str = include_str!("testdata/es256-public.pem");
    const ES384_PUBLIC: &str = include_str!("testdata/es384-public.pem");
    const RS256_PRIVATE: &str = include_str!("testdata/rs256-private.pem");
    const RS256_PUBLIC: &str = include_str!("testdata/rs256-public.pem");

    /// Keeps the temporary key file alive as long as the config that names it.
    struct Fixture {
        config: SourceConfig,
        _dir: tempfile::TempDir,
    }

    fn base(algorithm: &str) -> SourceConfig {
        SourceConfig {
            name: "edr-jwt".into(),
            auth: Some(AuthScheme::Jwt),
            algorithm: Some(algorithm.into()),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..SourceConfig::default()
        }
    }

    fn hs_source(algorithm: &str, secrets: &[&str]) -> SourceConfig {
        let secrets = secrets.iter().map(|s| s.to_string()).collect();
        SourceConfig { secret: Some(Secrets::Many(secrets)), ..base(algorithm) }
    }

    fn pem_source(algorithm: &str, pem: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("key.pem");
        std::fs::write(&path, pem).unwrap();
        Fixture { config: SourceConfig { public_key_file: Some(path), ..base(algorithm) }, _dir: dir }
    }

    fn ed25519_pair() -> (EncodingKey, String) {
        let key = SigningKey::from_bytes(&[42u8; 32]);
        let private = EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes());
        let public = key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
        (private, public)
    }

    fn claims() -> Value {
        json!({ "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "sub": "sensor-1" })
    }

    fn token(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
    }

    fn hs256(claims: &Value) -> String {
        token(Algorithm::HS256, &EncodingKey::from_secret(HS_SECRET.as_bytes()), claims)
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        headers
    }

    fn check(config: &SourceConfig, token: &str) -> Result<(), AuthFailure> {
        JwtVerifier::from_config(config).unwrap().verify(&bearer(token), NOW)
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    fn config_problem(config: &SourceConfig) -> String {
        JwtVerifier::from_config(config).unwrap_err().to_string()
    }

    #[test]
    fn good_tokens_verify_for_each_algorithm_family() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        assert_eq!(check(&hs, &hs256(&claims())), Ok(()));

        let (ed_private, ed_public) = ed25519_pair();
        let ed = pem_source("EdDSA", &ed_public);
        assert_eq!(check(&ed.config, &token(Algorithm::EdDSA, &ed_private, &claims())), Ok(()));

        let es = pem_source("ES256", ES256_PUBLIC);
        let es_private = EncodingKey::from_ec_pem(ES256_PRIVATE.as_bytes()).unwrap();
        assert_eq!(check(&es.config, &token(Algorithm::ES256, &es_private, &claims())), Ok(()));

        let rs = pem_source("RS256", RS256_PUBLIC);
        let rs_private = EncodingKey::from_rsa_pem(RS256_PRIVATE.as_bytes()).unwrap();
        assert_eq!(check(&rs.config, &token(Algorithm::RS256, &rs_private, &claims())), Ok(()));
    }

    #[test]
    fn expiry_is_checked_against_the_given_clock_with_at_most_30_s_leeway() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        let expired = Err(AuthFailure::BadToken(TokenRejection::Expired));
        assert_eq!(check(&hs, &hs256(&with(claims(), "exp", json!(NOW - 31)))), expired);
        assert_eq!(check(&hs, &hs256(&with(claims(), "exp", json!(NOW - 30)))), Ok(()));
        assert_eq!(check(&hs, &hs256(&with(claims(), "exp", json!(1)))), expired);
    }

    #[test]
    fn future_not_before_is_rejected() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        let early = Err(AuthFailure::BadToken(TokenRejection::NotYetValid));
        assert_eq!(check(&hs, &hs256(&with(claims(), "nbf", json!(NOW + 31)))), early);
        assert_eq!(check(&hs, &hs256(&with(claims(), "nbf", json!(NOW + 30)))), Ok(()));
    }

    #[test]
    fn issuer_audience_and_expiry_are_required_and_must_match() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        let claims_problem = Err(AuthFailure::BadToken(TokenRejection::Claims));
        for bad in [
            with(claims(), "iss", json!("https://attacker.example/")),
            with(claims(), "aud", json!("someone-else")),
            with(claims(), "aud", json!(["someone-else"])),
            with(claims(), "aud", json!(7)),
            without(claims(), "iss"),
            without(claims(), "aud"),
            without(claims(), "exp"),
        ] {
            assert_eq!(check(&hs, &hs256(&bad)), claims_problem, "{bad}");
        }
        assert_eq!(check(&hs, &hs256(&with(claims(), "aud", json!([AUDIENCE, "other"])))), Ok(()));
    }

    #[test]
    fn mistyped_time_claims_are_rejected_not_skipped() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        for exp in [json!("1800000300"), json!(1_800_000_300.5), json!(null), json!({})] {
            let result = check(&hs, &hs256(&with(claims(), "exp", exp.clone())));
            assert!(
                matches!(
                    result,
                    Err(AuthFailure::BadToken(TokenRejection::Malformed | TokenRejection::Claims))
                ),
                "{exp}: {result:?}"
            );
        }
        let result = check(&hs, &hs256(&with(claims(), "nbf", json!("later"))));
        assert_eq!(result, Err(AuthFailure::BadToken(TokenRejection::Malformed)));
    }

    #[test]
    fn algorithm_swaps_are_rejected_in_both_directions() {
        let (ed_private, ed_public) = ed25519_pair();
        let ed = pem_source("EdDSA", &ed_public);
        // The classic confusion: an HMAC token keyed with the verifier's public key.
        let confused = token(Algorithm::HS256, &EncodingKey::from_secret(ed_public.as_bytes()), &claims());
        assert_eq!(check(&ed.config, &confused), Err(AuthFailure::BadToken(TokenRejection::Algorithm)));
        assert_eq!(
            check(&ed.config, &hs256(&claims())),
            Err(AuthFailure::BadToken(TokenRejection::Algorithm))
        );

        let hs = hs_source("HS256", &[HS_SECRET]);
        let eddsa = token(Algorithm::EdDSA, &ed_private, &claims());
        assert_eq!(check(&hs, &eddsa), Err(AuthFailure::BadToken(TokenRejection::Algorithm)));
        let hs512 = token(Algorithm::HS512, &EncodingKey::from_secret(HS_SECRET.as_bytes()), &claims());
        assert_eq!(check(&hs, &hs512), Err(AuthFailure::BadToken(TokenRejection::Algorithm)));
    }

    #[test]
    fn alg_none_and_unsigned_tokens_are_rejected() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
        for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"typ":"JWT"}"#] {
            let unsigned = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(header));
            assert_eq!(
                check(&hs, &unsigned),
                Err(AuthFailure::BadToken(TokenRejection::Malformed)),
                "{header}"
            );
        }
        let empty_signature = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256"}"#));
        assert_eq!(check(&hs, &empty_signature), Err(AuthFailure::BadToken(TokenRejection::Signature)));
    }

    #[test]
    fn crit_header_is_rejected_even_when_signed() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".into()]);
        let signed =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(HS_SECRET.as_bytes()))
                .unwrap();
        assert_eq!(check(&hs, &signed), Err(AuthFailure::BadToken(TokenRejection::CriticalHeader)));
    }

    #[test]
    fn wrong_key_tampering_and_garbage_are_rejected() {
        let hs = hs_source("HS256", &[HS_SECRET]);
        let other = token(Algorithm::HS256, &EncodingKey::from_secret(&[1u8; 32]), &claims());
        assert_eq!(check(&hs, &other), Err(AuthFailure::BadToken(TokenRejection::Signature)));

        let good = hs256(&claims());
        let (head, rest) = good.split_once('.').unwrap();
        let (_, signature) = rest.rsplit_once('.').unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("root")).to_string());
        let tampered = format!("{head}.{forged_payload}.{signature}");
        assert_eq!(check(&hs, &tampered), Err(AuthFailure::BadToken(TokenRejection::Signature)));

        for garbage in ["x", "a.b", "a.b.c.d", "....", "eyJ.eyJ.", &"A".repeat(9000)] {
            assert!(check(&hs, garbage).is_err(), "{garbage:.20}");
        }
    }

    #[test]
    fn authorization_header_must_be_one_bearer_value() {
        let verifier = JwtVerifier::from_config(&hs_source("HS256", &[HS_SECRET])).unwrap();
        let good = hs256(&claims());
        assert_eq!(verifier.verify(&HeaderMap::new(), NOW), Err(AuthFailure::MissingHeader(AUTHORIZATION)));
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Basic {good}")).unwrap());
        assert_eq!(verifier.verify(&basic, NOW), Err(AuthFailure::WrongScheme));
        let mut twice = bearer(&good);
        twice.append(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {good}")).unwrap());
        assert_eq!(verifier.verify(&twice, NOW), Err(AuthFailure::DuplicateHeader(AUTHORIZATION)));
    }

    #[test]
    fn any_configured_hmac_secret_verifies_during_rotation() {
        let next = "fedcba9876543210fedcba9876543210";
        let rotating = hs_source("HS256", &[next, HS_SECRET]);
        assert_eq!(check(&rotating, &hs256(&claims())), Ok(()));
        let expired = hs256(&with(claims(), "exp", json!(NOW - 100)));
        assert_eq!(check(&rotating, &expired), Err(AuthFailure::BadToken(TokenRejection::Expired)));
    }

    #[test]
    fn weak_eddsa_key_is_refused_at_config() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = VerifyingKey::from_bytes(&identity).unwrap();
        let fixture = pem_source("EdDSA", &weak.to_public_key_pem(LineEnding::LF).unwrap());
        assert!(config_problem(&fixture.config).contains("weak"));
    }

    #[test]
    fn short_hmac_secrets_are_refused_at_config() {
        assert!(config_problem(&hs_source("HS256", &[&HS_SECRET[..31]])).contains("shorter"));
        assert!(config_problem(&hs_source("HS384", &[HS_SECRET])).contains("shorter"));
        assert!(JwtVerifier::from_config(&hs_source("HS384", &[&"k".repeat(48)])).is_ok());
    }

    #[test]
    fn keys_that_do_not_fit_the_algorithm_are_refused_at_config() {
        let (_, ed_public) = ed25519_pair();
        for (algorithm, pem) in [
            ("ES384", ES256_PUBLIC),
            ("ES256", ES384_PUBLIC),
            ("EdDSA", ES256_PUBLIC),
            ("RS256", ES256_PUBLIC),
            ("ES256", ed_public.as_str()),
            ("RS256", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
        ] {
            let fixture = pem_source(algorithm, pem);
            assert!(JwtVerifier::from_config(&fixture.config).is_err(), "{algorithm}");
        }
        let hs_with_pem = pem_source("HS256", ES256_PUBLIC);
        assert!(config_problem(&hs_with_pem.config).contains("asymmetric"));
        let es_with_secret = SourceConfig { secret: Some(Secrets::One(HS_SECRET.into())), ..base("ES256") };
        assert!(config_problem(&es_with_secret).contains("public_key_file"));
    }

    #[test]
    fn unknown_algorithms_and_missing_claims_config_are_refused() {
        for algorithm in ["none", "HS257", "ES512", "eddsa", ""] {
            let problem = config_problem(&hs_source(algorithm, &[HS_SECRET]));
            assert!(problem.contains("edr-jwt"), "{problem}");
        }
        let no_audience = SourceConfig { audience: Some(String::new()), ..hs_source("HS256", &[HS_SECRET]) };
        assert!(config_problem(&no_audience).contains("audience"));
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let verifier = JwtVerifier::from_config(&hs_source("HS256", &[HS_SECRET])).unwrap();
        let shown = format!("{verifier:?} {verifier:#?}");
        assert!(!shown.contains(HS_SECRET) && !shown.contains("0123456789"), "{shown}");
        let short = "abcdefghijklmnop";
        assert!(!config_problem(&hs_source("HS256", &[short])).contains(short));
    }
}
