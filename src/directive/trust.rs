//! The verifier's trust store: which public keys may sign directives.
//!
//! The broker publishes each directive key it signs with as `<data_dir>/keys/trusted/<kid>.json`
//! (public key, validity window); a `revoked` file lists kids to refuse. Agent-side commands run
//! as the same user on the same machine and load this directory. Loading refuses what R21–R23
//! refuse: a symlinked or group/world-writable directory or file, another owner, a kid that
//! does not match the key it names, duplicate kids, weak keys. Keys are never taken from a
//! message, and webhook keys never live here (R24).
//!
//! This module does not sign and holds no secret.

use super::envelope::OpeningKey;
use super::keys::key_id;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Largest key file worth reading.
const MAX_KEY_FILE_BYTES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}: refusing a symlink in the trust store")]
    Symlink(PathBuf),
    #[error("{0}: must be owned by uid {1} and not writable by group or others")]
    Permissions(PathBuf, u32),
    #[error("{0}: not a trusted-key file ({1})")]
    Malformed(PathBuf, String),
    #[error("{0}: key id does not match the key (expected {1})")]
    KidMismatch(PathBuf, String),
    #[error("{0}: weak or invalid Ed25519 public key")]
    WeakKey(PathBuf),
    #[error("{0}: duplicate key id")]
    Duplicate(String),
    #[error("{0}: no trusted directive keys (has `haltwire serve` run with this data dir?)")]
    Empty(PathBuf),
}

/// One published key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyFile {
    /// `hex(sha256(public_key))[..16]`; recomputed on load (R21).
    pub kid: String,
    /// The raw 32-byte key, standard base64.
    pub public_key: String,
    /// Unix seconds before which signatures by this key are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// Unix seconds from which signatures by this key are refused (set when a key is rotated
    /// out: the end of its overlap window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
}

/// A loaded, checked key with its validity window.
#[derive(Debug, Clone)]
struct TrustedKey {
    opening: OpeningKey,
    not_before: Option<i64>,
    not_after: Option<i64>,
}

/// The set of keys a verifier accepts.
#[derive(Debug, Clone)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    revoked: Vec<String>,
}

impl TrustStore {
    /// The trust-store directory inside a broker data directory.
    pub fn dir(data_dir: &Path) -> PathBuf {
        data_dir.join("keys").join("trusted")
    }

    /// Loads and checks every `*.json` key in `<data_dir>/keys/trusted/`.
    pub fn load(data_dir: &Path) -> Result<TrustStore, TrustError> {
        let dir = Self::dir(data_dir);
        check_owner_and_mode(&dir)?;
        let revoked = read_revoked(&dir)?;
        let mut keys: Vec<TrustedKey> = Vec::new();
        let entries =
            std::fs::read_dir(&dir).map_err(|source| TrustError::Io { path: dir.clone(), source })?;
        for entry in entries {
            let path = entry.map_err(|source| TrustError::Io { path: dir.clone(), source })?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let key = load_key_file(&path)?;
            if keys.iter().any(|k| k.opening.name == key.opening.name) {
                return Err(TrustError::Duplicate(key.opening.name));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(TrustError::Empty(dir));
        }
        Ok(TrustStore { keys, revoked })
    }

    /// A store from keys held in memory (tests and the broker's own checks).
    pub fn from_keys(keys: &[(VerifyingKey, Option<i64>, Option<i64>)]) -> TrustStore {
        let keys = keys
            .iter()
            .filter_map(|(key, not_before, not_after)| {
                let opening = OpeningKey::new(key_id(key), key.as_bytes())?;
                Some(TrustedKey { opening, not_before: *not_before, not_after: *not_after })
            })
            .collect();
        TrustStore { keys, revoked: Vec::new() }
    }

    /// The keys usable at `now`: inside their window and not revoked (R22, R23).
    pub fn keys_at(&self, now: i64) -> Vec<OpeningKey> {
        self.keys
            .iter()
            .filter(|k| k.not_before.is_none_or(|t| now >= t) && k.not_after.is_none_or(|t| now < t))
            .filter(|k| !self.revoked.contains(&k.opening.name))
            .map(|k| k.opening.clone())
            .collect()
    }

    /// Kids in the store, for `haltwire verify` and diagnostics.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.opening.name.clone()).collect()
    }
}

/// Writes (or refreshes) a key's published file; used by the broker's signer.
pub fn publish(data_dir: &Path, file: &TrustedKeyFile) -> Result<(), TrustError> {
    let dir = TrustStore::dir(data_dir);
    crate::secrets::ensure_private_dir(&dir)
        .map_err(|e| TrustError::Malformed(dir.clone(), e.to_string()))?;
    let path = dir.join(format!("{}.json", file.kid));
    let tmp = dir.join(format!(".{}.json.tmp", file.kid));
    let body = serde_json::to_vec_pretty(file).expect("key files serialize");
    let io = |source| TrustError::Io { path: path.clone(), source };
    let _ = std::fs::remove_file(&tmp);
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)
}

fn load_key_file(path: &Path) -> Result<TrustedKey, TrustError> {
    check_owner_and_mode(path)?;
    let meta = std::fs::metadata(path).map_err(|source| TrustError::Io { path: path.into(), source })?;
    if !meta.is_file() || meta.len() > MAX_KEY_FILE_BYTES {
        return Err(TrustError::Malformed(path.into(), "not a small regular file".into()));
    }
    let text = std::fs::read(path).map_err(|source| TrustError::Io { path: path.into(), source })?;
    let file: TrustedKeyFile =
        serde_json::from_slice(&text).map_err(|e| TrustError::Malformed(path.into(), e.to_string()))?;
    let bytes: [u8; 32] =
        STANDARD.decode(file.public_key.as_bytes()).ok().and_then(|b| b.try_into().ok()).ok_or_else(
            || TrustError::Malformed(path.into(), "public_key is not 32 bytes of base64".into()),
        )?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| TrustError::WeakKey(path.into()))?;
    let kid = key_id(&key);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if kid != file.kid || stem != kid {
        return Err(TrustError::KidMismatch(path.into(), kid));
    }
    let opening = OpeningKey::new(kid, &bytes).ok_or_else(|| TrustError::WeakKey(path.into()))?;
    Ok(TrustedKey { opening, not_before: file.not_before, not_after: file.not_after })
}

fn read_revoked(dir: &Path) -> Result<Vec<String>, TrustError> {
    let path = dir.join("revoked");
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(TrustError::Io { path, source }),
        Ok(_) => check_owner_and_mode(&path)?,
    }
    let text =
        std::fs::read_to_string(&path).map_err(|source| TrustError::Io { path: path.clone(), source })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// No symlinks, owned by us, not writable by group or others.
fn check_owner_and_mode(path: &Path) -> Result<(), TrustError> {
    let meta =
        std::fs::symlink_metadata(path).map_err(|source| TrustError::Io { path: path.into(), source })?;
    if meta.file_type().is_symlink() {
        return Err(TrustError::Symlink(path.into()));
    }
    let uid = crate::secrets::current_uid();
    if meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(TrustError::Permissions(path.into(), uid));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use std::os::unix::fs::PermissionsExt;

    fn published(dir: &Path, seed: u8) -> TrustedKeyFile {
        let key = SigningKey::from_bytes(&[seed; 32]).verifying_key();
        let file = TrustedKeyFile {
            kid: key_id(&key),
            public_key: STANDARD.encode(key.as_bytes()),
            not_before: None,
            not_after: None,
        };
        publish(dir, &file).unwrap();
        file
    }

    #[test]
    fn published_keys_load_and_respect_their_window_and_revocation() {
        let tmp = tempfile::tempdir().unwrap();
        let a = published(tmp.path(), 1);
        let mut b = published(tmp.path(), 2);
        b.not_after = Some(100);
        publish(tmp.path(), &b).unwrap();
        let store = TrustStore::load(tmp.path()).unwrap();
        assert_eq!(store.keys_at(50).len(), 2);
        assert_eq!(store.keys_at(100).len(), 1, "a rotated-out key stops at its not_after");
        std::fs::write(TrustStore::dir(tmp.path()).join("revoked"), format!("{}\n", a.kid)).unwrap();
        let store = TrustStore::load(tmp.path()).unwrap();
        assert!(store.keys_at(50).iter().all(|k| k.name != a.kid));
    }

    #[test]
    fn a_key_file_whose_kid_does_not_match_its_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = published(tmp.path(), 1);
        let b = published(tmp.path(), 2);
        let forged = TrustedKeyFile { kid: a.kid.clone(), public_key: b.public_key, ..a.clone() };
        std::fs::remove_file(TrustStore::dir(tmp.path()).join(format!("{}.json", b.kid))).unwrap();
        publish(tmp.path(), &forged).unwrap();
        assert!(matches!(TrustStore::load(tmp.path()), Err(TrustError::KidMismatch(..))));
    }

    #[test]
    fn group_writable_or_symlinked_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = published(tmp.path(), 1);
        let path = TrustStore::dir(tmp.path()).join(format!("{}.json", a.kid));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(TrustStore::load(tmp.path()), Err(TrustError::Permissions(..))));
        std::fs::remove_file(&path).unwrap();
        let elsewhere = tmp.path().join("elsewhere.json");
        std::fs::write(&elsewhere, "{}").unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(matches!(TrustStore::load(tmp.path()), Err(TrustError::Symlink(..))));
    }

    #[test]
    fn an_empty_store_is_an_error_not_an_open_door() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(TrustStore::dir(tmp.path())).unwrap();
        std::fs::set_permissions(TrustStore::dir(tmp.path()), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        assert!(matches!(TrustStore::load(tmp.path()), Err(TrustError::Empty(..))));
    }
}
