//! API bearer tokens: short JWTs that say who may call which `/v1` route.
//!
//! Tokens are HS256 JWTs signed with a 32-byte key the broker generates on first start
//! (`<data_dir>/secrets/api-token.key`, mode 0600). The algorithm is pinned, `iss`, `aud`,
//! `sub` and `exp` are required (jsonwebtoken skips absent `aud`/`iss` unless told), and the
//! role is a closed enum. This key is unrelated to webhook credentials and to the directive
//! signing key, so a leak of one does not forge the others (RFC 8725 §3.12).
//! This module does not know which route needs which role; the API layer decides that.

use crate::secrets::{self, SecretFileError};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// `iss` of every token this broker issues.
pub const ISSUER: &str = "haltwire";
/// `aud` of API tokens (kept distinct from any other JWT the broker might ever mint).
pub const AUDIENCE: &str = "haltwire-api";
/// Clock skew tolerated on `exp` (R32: at most 30 s).
const LEEWAY_SECS: u64 = 30;

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SOC analyst or operator: read events, manage blocks and policies.
    Soc,
    /// One agent session: only that session's routes (`sid` names it).
    Session,
}

/// The claims of an API token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// Who the token was issued to (an operator name or a session id).
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    /// For `Role::Session`: the session this token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{0}: the API token key must be exactly 32 bytes")]
    BadKeyLength(PathBuf),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
}

/// The HS256 key that signs and checks API tokens. Deliberately not `Debug`.
pub struct TokenKey {
    secret: Zeroizing<Vec<u8>>,
}

impl TokenKey {
    /// Where the key lives inside a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("secrets").join("api-token.key")
    }

    /// Loads the key, creating it on first start. Returns whether it was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(TokenKey, bool), TokenError> {
        let path = Self::path(data_dir);
        if path.exists() {
            return Ok((Self::load(data_dir)?, false));
        }
        let mut secret = Zeroizing::new(vec![0u8; 32]);
        OsRng.fill_bytes(&mut secret);
        secrets::create_secret_file(&path, &secret)?;
        Ok((TokenKey { secret }, true))
    }

    /// Loads an existing key (CLI commands that must not create one).
    pub fn load(data_dir: &Path) -> Result<TokenKey, TokenError> {
        let path = Self::path(data_dir);
        let secret = secrets::read_secret_file(&path)?;
        if secret.len() != 32 {
            return Err(TokenError::BadKeyLength(path));
        }
        Ok(TokenKey { secret })
    }

    /// Signs a token for `sub` with `role`, valid for `ttl_secs` from `now`.
    pub fn issue(
        &self,
        sub: &str,
        role: Role,
        sid: Option<String>,
        now: i64,
        ttl_secs: i64,
    ) -> Result<String, TokenError> {
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: sub.into(),
            role,
            iat: now,
            exp: now + ttl_secs,
            sid,
        };
        let key = EncodingKey::from_secret(&self.secret);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Verifies signature, algorithm, issuer, audience and expiry; returns the claims.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = LEEWAY_SECS;
        let key = DecodingKey::from_secret(&self.secret);
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| TokenError::Invalid(e.kind_name()))
    }
}

/// A short, secret-free name for a jsonwebtoken error (the error's Display can include input).
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> String {
        use jsonwebtoken::errors::ErrorKind as K;
        match self.kind() {
            K::ExpiredSignature => "expired",
            K::InvalidSignature => "bad signature",
            K::InvalidAlgorithm => "algorithm not allowed",
            K::InvalidIssuer => "wrong issuer",
            K::InvalidAudience => "wrong audience",
            K::MissingRequiredClaim(_) => "missing claim",
            _ => "malformed",
        }
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> (tempfile::TempDir, TokenKey) {
        let dir = tempfile::tempdir().unwrap();
        let (key, created) = TokenKey::load_or_create(dir.path()).unwrap();
        assert!(created);
        (dir, key)
    }

    fn now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    #[test]
    fn issued_token_verifies_with_its_role() {
        let (_dir, key) = key();
        let token = key.issue("alice", Role::Soc, None, now(), 600).unwrap();
        let claims = key.verify(&token).unwrap();
        assert_eq!(claims.role, Role::Soc);
        assert_eq!(claims.sub, "alice");
    }

    #[test]
    fn key_survives_reload() {
        let (dir, key) = key();
        let token = key.issue("alice", Role::Soc, None, now(), 600).unwrap();
        let (again, created) = TokenKey::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert!(again.verify(&token).is_ok());
    }

    #[test]
    fn expired_token_is_rejected() {
        let (_dir, key) = key();
        let token = key.issue("alice", Role::Soc, None, now() - 3600, 60).unwrap();
        assert!(key.verify(&token).is_err());
    }

    #[test]
    fn token_from_another_key_is_rejected() {
        let (_d1, k1) = key();
        let (_d2, k2) = key();
        let token = k1.issue("alice", Role::Soc, None, now(), 600).unwrap();
        assert!(k2.verify(&token).is_err());
    }

    #[test]
    fn token_without_audience_is_rejected() {
        let (_dir, key) = key();
        #[derive(Serialize)]
        struct NoAud {
            iss: &'static str,
            sub: &'static str,
            role: Role,
            exp: i64,
        }
        let claims = NoAud { iss: ISSUER, sub: "x", role: Role::Soc, exp: now() + 600 };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&key.secret),
        )
        .unwrap();
        assert!(key.verify(&token).is_err());
    }

    #[test]
    fn unsigned_token_is_rejected() {
        let (_dir, key) = key();
        let token = key.issue("alice", Role::Soc, None, now(), 600).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        // {"alg":"none","typ":"JWT"}
        parts[0] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let forged = format!("{}.{}.", parts[0], parts[1]);
        assert!(key.verify(&forged).is_err());
    }
}
