//! The broker's Ed25519 directive signing key: generated on first start, stored as PKCS#8 PEM
//! with mode 0600, refused when other users could read it (R19), never printed (R20).
//!
//! Rotation keeps the outgoing key as `directive.previous.pem` with the end of its overlap
//! window beside it: the signer adds its signature until then, so agents that have not yet
//! loaded the new public key keep verifying. Only [`super::signer`] can sign with a key. This
//! module never touches webhook credentials: directive keys and webhook keys are disjoint
//! sets (R24).

use crate::secrets::{self, SecretFileError};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{0}: not an Ed25519 PKCS#8 PEM private key")]
    Malformed(PathBuf),
    #[error("{0}: already exists; pass --force to replace it (old directives then stop verifying)")]
    Exists(PathBuf),
    #[error("cannot encode key: {0}")]
    Encode(String),
}

/// The broker's directive signing key. No `Debug`, no `Clone`: the secret half stays here.
pub struct BrokerKey {
    signing: SigningKey,
}

/// Public facts about a key that are safe to print and to hand to agents.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublicKeyInfo {
    /// `hex(sha256(public key))[..16]`, recomputed by verifiers rather than trusted (R21).
    pub kid: String,
    /// The 32-byte public key, standard base64.
    pub public_key: String,
    /// The same key as SPKI PEM, for tools that want a file.
    pub public_key_pem: String,
    /// Where the private key is stored.
    pub path: PathBuf,
}

impl BrokerKey {
    /// Where the key lives inside a data directory.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("directive.pem")
    }

    /// Loads the key, generating it on first start. Returns whether it was created.
    pub fn load_or_create(data_dir: &Path) -> Result<(BrokerKey, bool), KeyError> {
        let path = Self::path(data_dir);
        if path.exists() {
            return Ok((Self::load(data_dir)?, false));
        }
        Ok((Self::generate(data_dir, false)?, true))
    }

    /// Loads an existing key, checking its file mode and owner first.
    pub fn load(data_dir: &Path) -> Result<BrokerKey, KeyError> {
        let path = Self::path(data_dir);
        let pem = secrets::read_secret_text(&path)?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Malformed(path))?;
        Ok(BrokerKey { signing })
    }

    /// Generates a fresh key. Refuses to replace an existing one unless `force`.
    pub fn generate(data_dir: &Path, force: bool) -> Result<BrokerKey, KeyError> {
        let path = Self::path(data_dir);
        if path.exists() {
            if !force {
                return Err(KeyError::Exists(path));
            }
            std::fs::remove_file(&path)
                .map_err(|source| SecretFileError::Io { path: path.clone(), source })?;
        }
        let signing = SigningKey::generate(&mut rand_core::OsRng);
        let pem = signing.to_pkcs8_pem(Default::default()).map_err(|e| KeyError::Encode(e.to_string()))?;
        secrets::create_secret_file(&path, pem.as_bytes())?;
        Ok(BrokerKey { signing })
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs a message. Visible to the directive module only: nothing else may sign (R20).
    pub(super) fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer as _;
        self.signing.sign(message)
    }

    /// Where the outgoing key of the last rotation lives, and the file holding the end of its
    /// overlap window (Unix seconds).
    pub fn previous_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
        let dir = data_dir.join("keys");
        (dir.join("directive.previous.pem"), dir.join("directive.previous.until"))
    }

    /// Replaces the key, keeping the old one signing alongside until `overlap_until`.
    pub fn rotate(data_dir: &Path, overlap_until: i64) -> Result<BrokerKey, KeyError> {
        let current = Self::path(data_dir);
        let (previous, until) = Self::previous_paths(data_dir);
        Self::load(data_dir)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::File(SecretFileError::Io { path, source })
        };
        let _ = std::fs::remove_file(&until);
        std::fs::rename(&current, &previous).map_err(io(&current))?;
        secrets::create_secret_file(&until, overlap_until.to_string().as_bytes())?;
        Self::generate(data_dir, false)
    }

    /// The previous key and the end of its overlap, if a rotation left one.
    pub fn load_previous(data_dir: &Path) -> Result<Option<(BrokerKey, i64)>, KeyError> {
        let (previous, until) = Self::previous_paths(data_dir);
        if !previous.exists() {
            return Ok(None);
        }
        let pem = secrets::read_secret_text(&previous)?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyError::Malformed(previous.clone()))?;
        let until_text = secrets::read_secret_text(&until)?;
        let until = until_text.trim().parse().map_err(|_| KeyError::Malformed(until.clone()))?;
        Ok(Some((BrokerKey { signing }, until)))
    }

    /// What may be shown about this key.
    pub fn public_info(&self, data_dir: &Path) -> Result<PublicKeyInfo, KeyError> {
        use base64::Engine as _;
        let public = self.verifying_key();
        let pem =
            public.to_public_key_pem(Default::default()).map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(PublicKeyInfo {
            kid: key_id(&public),
            public_key: base64::engine::general_purpose::STANDARD.encode(public.as_bytes()),
            public_key_pem: pem,
            path: Self::path(data_dir),
        })
    }
}

/// The key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn first_start_creates_an_owner_only_pkcs8_key_that_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (key, created) = BrokerKey::load_or_create(dir.path()).unwrap();
        assert!(created);
        let path = BrokerKey::path(dir.path());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(std::fs::read_to_string(&path).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));
        let (again, created) = BrokerKey::load_or_create(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(key.verifying_key(), again.verifying_key());
    }

    #[test]
    fn world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        BrokerKey::load_or_create(dir.path()).unwrap();
        let path = BrokerKey::path(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(BrokerKey::load(dir.path()).is_err());
    }

    #[test]
    fn generate_never_replaces_a_key_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = BrokerKey::load_or_create(dir.path()).unwrap();
        assert!(matches!(BrokerKey::generate(dir.path(), false), Err(KeyError::Exists(_))));
        let second = BrokerKey::generate(dir.path(), true).unwrap();
        assert_ne!(first.verifying_key(), second.verifying_key());
    }

    #[test]
    fn key_id_is_derived_from_the_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = BrokerKey::load_or_create(dir.path()).unwrap();
        let info = key.public_info(dir.path()).unwrap();
        assert_eq!(info.kid.len(), 16);
        assert_eq!(info.kid, key_id(&key.verifying_key()));
        let text = format!("{info:?}");
        assert!(!text.contains("PRIVATE"), "public info must not carry the secret");
    }
}
