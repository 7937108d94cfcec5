//! Static-credential tiers (`Trust::SharedSecret`): `Authorization: Bearer <token>` and
//! `Authorization: Basic <base64(user:pass)>`, for senders that cannot sign (Falcosidekick,
//! Kibana, Wazuh, …).
//!
//! The whole header value is compared as a SHA-256 digest with `subtle`'s constant-time
//! equality (R5, R10): comparing fixed-size digests hides the expected length as well as the
//! content, and only the digest is kept in memory, not the token. The scheme word is matched
//! case-insensitively (RFC 7235) and then hashed in its canonical spelling.
//!
//! Deliberately not here: freshness (these credentials have none; replays are bounded only by
//! the body-hash dedup, R18) and transport security (the deployment's job, R10).

use super::{single_header, AuthFailure};
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Shortest accepted token or password. Nothing rate-limits guesses, so the secret has to.
pub(crate) const MIN_SECRET_BYTES: usize = 16;

const AUTHORIZATION: &str = "authorization";
const BEARER: &str = "Bearer";
const BASIC: &str = "Basic";

/// The one `Authorization` value a source accepts, as a digest.
pub(crate) struct ExpectedAuthorization {
    /// Canonical scheme word, hashed in front of the credentials.
    scheme: &'static str,
    /// SHA-256 of `"<scheme> <credentials>"`.
    digest: Zeroizing<[u8; 32]>,
}

impl ExpectedAuthorization {
    /// `Authorization: Bearer <token>`. The token must be sendable as a header value as is.
    pub(crate) fn bearer(token: &str) -> Result<Self, &'static str> {
        if token.len() < MIN_SECRET_BYTES {
            return Err("is shorter than 16 bytes");
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without spaces");
        }
        Ok(Self::new(BEARER, token.as_bytes()))
    }

    /// `Authorization: Basic base64(user:pass)`. A `:` in the user name would make the pair
    /// ambiguous (RFC 7617), so it is refused.
    pub(crate) fn basic(username: &str, password: &str) -> Result<Self, &'static str> {
        if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
            return Err("user name must be non-empty, without `:` or control characters");
        }
        if password.len() < MIN_SECRET_BYTES {
            return Err("password is shorter than 16 bytes");
        }
        let pair = Zeroizing::new(format!("{username}:{password}"));
        let encoded = Zeroizing::new(STANDARD.encode(pair.as_bytes()));
        Ok(Self::new(BASIC, encoded.as_bytes()))
    }

    fn new(scheme: &'static str, credentials: &[u8]) -> Self {
        ExpectedAuthorization { scheme, digest: Zeroizing::new(digest(scheme, credentials)) }
    }

    /// Accepts exactly one `Authorization` header whose value equals the configured one.
    pub(crate) fn verify(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let value = single_header(headers, AUTHORIZATION)?.as_bytes();
        let credentials = strip_scheme(value, self.scheme).ok_or(AuthFailure::WrongScheme)?;
        let presented = digest(self.scheme, credentials);
        if bool::from(presented.as_slice().ct_eq(self.digest.as_slice())) {
            Ok(())
        } else {
            Err(AuthFailure::BadCredentials)
        }
    }
}

impl std::fmt::Debug for ExpectedAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExpectedAuthorization({} [REDACTED])", self.scheme)
    }
}

fn digest(scheme: &str, credentials: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(scheme.as_bytes());
    hasher.update(b" ");
    hasher.update(credentials);
    hasher.finalize().into()
}

/// The credentials after `<scheme> `, with the scheme word matched case-insensitively.
fn strip_scheme<'a>(value: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let (word, rest) = value.split_at_checked(scheme.len())?;
    let credentials = rest.strip_prefix(b" ")?;
    word.eq_ignore_ascii_case(scheme.as_bytes()).then_some(credentials)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "hw_0123456789abcdefghijklmnop";
    const USER: &str = "kibana";
    const PASSWORD: &str = "correct horse battery staple";

    fn with_authorization(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn basic_value(user: &str, password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
    }

    #[test]
    fn bearer_accepts_exactly_the_configured_token() {
        let expected = ExpectedAuthorization::bearer(TOKEN).unwrap();
        assert_eq!(expected.verify(&with_authorization(&[&format!("Bearer {TOKEN}")])), Ok(()));
        // The scheme word is case-insensitive (RFC 7235); the token is not.
        assert_eq!(expected.verify(&with_authorization(&[&format!("bearer {TOKEN}")])), Ok(()));
        let upper = format!("Bearer {}", TOKEN.to_uppercase());
        assert_eq!(expected.verify(&with_authorization(&[&upper])), Err(AuthFailure::BadCredentials));
    }

    #[test]
    fn bearer_rejects_wrong_prefixed_extended_and_padded_tokens() {
        let expected = ExpectedAuthorization::bearer(TOKEN).unwrap();
        for value in [
            format!("Bearer {}x", TOKEN),
            format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
            format!("Bearer  {TOKEN}"),
            format!("Bearer {TOKEN} "),
            "Bearer hw_wrongwrongwrongwrongwrong".to_string(),
            "Bearer ".to_string(),
        ] {
            let result = expected.verify(&with_authorization(&[&value]));
            assert_eq!(result, Err(AuthFailure::BadCredentials), "{value:?}");
        }
    }

    #[test]
    fn bearer_rejects_missing_empty_duplicated_and_wrong_scheme() {
        let expected = ExpectedAuthorization::bearer(TOKEN).unwrap();
        assert_eq!(expected.verify(&HeaderMap::new()), Err(AuthFailure::MissingHeader(AUTHORIZATION)));
        assert_eq!(
            expected.verify(&with_authorization(&[""])),
            Err(AuthFailure::MissingHeader(AUTHORIZATION))
        );
        let good = format!("Bearer {TOKEN}");
        assert_eq!(
            expected.verify(&with_authorization(&[&good, &good])),
            Err(AuthFailure::DuplicateHeader(AUTHORIZATION))
        );
        for value in [
            TOKEN.to_string(),
            format!("Token {TOKEN}"),
            format!("Bearer{TOKEN}"),
            format!("Digest {TOKEN}"),
            basic_value(USER, TOKEN),
        ] {
            assert_eq!(
                expected.verify(&with_authorization(&[&value])),
                Err(AuthFailure::WrongScheme),
                "{value}"
            );
        }
    }

    #[test]
    fn basic_accepts_exactly_the_configured_pair() {
        let expected = ExpectedAuthorization::basic(USER, PASSWORD).unwrap();
        assert_eq!(expected.verify(&with_authorization(&[&basic_value(USER, PASSWORD)])), Ok(()));
        for (user, password) in [(USER, "correct horse battery stapl"), ("Kibana", PASSWORD), ("", PASSWORD)]
        {
            let result = expected.verify(&with_authorization(&[&basic_value(user, password)]));
            assert_eq!(result, Err(AuthFailure::BadCredentials), "{user}:{password}");
        }
        assert_eq!(expected.verify(&HeaderMap::new()), Err(AuthFailure::MissingHeader(AUTHORIZATION)));
        let bearer = format!("Bearer {PASSWORD}");
        assert_eq!(expected.verify(&with_authorization(&[&bearer])), Err(AuthFailure::WrongScheme));
    }

    #[test]
    fn weak_or_unsendable_credentials_are_refused() {
        assert!(ExpectedAuthorization::bearer("short").is_err());
        assert!(ExpectedAuthorization::bearer("0123456789abcde").is_err());
        assert!(ExpectedAuthorization::bearer("0123456789abcdef").is_ok());
        assert!(ExpectedAuthorization::bearer("0123456789 abcdef").is_err());
        assert!(ExpectedAuthorization::bearer("0123456789abcdef\n").is_err());
        assert!(ExpectedAuthorization::basic("", PASSWORD).is_err());
        assert!(ExpectedAuthorization::basic("a:b", PASSWORD).is_err());
        assert!(ExpectedAuthorization::basic(USER, "short").is_err());
    }

    #[test]
    fn only_a_digest_is_kept_and_debug_shows_none_of_it() {
        let bearer = ExpectedAuthorization::bearer(TOKEN).unwrap();
        let basic = ExpectedAuthorization::basic(USER, PASSWORD).unwrap();
        let shown = format!("{bearer:?} {basic:?} {bearer:#?}");
        assert!(!shown.contains(TOKEN) && !shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains(&STANDARD.encode(format!("{USER}:{PASSWORD}"))), "{shown}");
        assert_eq!(format!("{bearer:?}"), "ExpectedAuthorization(Bearer [REDACTED])");
    }
}
