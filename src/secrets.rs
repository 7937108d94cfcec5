//! Small secret files on disk: created owner-only, refused when others can read them.
//!
//! Used for every secret the broker generates itself (broker signing key, the `generic`
//! source's webhook secret, the API token key). This module moves bytes; it does not know what
//! they mean, and it never logs them. Contents are returned in [`Zeroizing`] buffers.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Largest secret file read: keys and tokens are tiny; anything bigger is not ours.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: mode {mode:o} lets other users read it; run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: owned by uid {owner}, not by this user (uid {me})")]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path}: not a regular file (symlinks are refused)")]
    NotRegular { path: PathBuf },
    #[error("{path}: larger than 64 KiB, not a secret file")]
    TooLarge { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SecretFileError + '_ {
    move |source| SecretFileError::Io { path: path.to_path_buf(), source }
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> Result<(), SecretFileError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes a new secret file with mode 0600; fails if it already exists (O_EXCL), so two
/// starting brokers cannot overwrite each other's freshly generated key.
pub fn create_secret_file(path: &Path, contents: &[u8]) -> Result<(), SecretFileError> {
    if let Some(parent) = path.parent() {
        ensure_private_dir(parent)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_o_nofollow())
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok(())
}

/// Reads a secret file after checking it is a regular file owned by this user with no group
/// or other permissions (R19).
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretFileError> {
    let mut file =
        OpenOptions::new().read(true).custom_flags(libc_o_nofollow()).open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    check_private(path, &meta)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    file.read_to_end(&mut buf).map_err(io_err(path))?;
    Ok(buf)
}

/// Reads a secret file as text with surrounding whitespace trimmed (files written by editors
/// end in a newline).
pub fn read_secret_text(path: &Path) -> Result<Zeroizing<String>, SecretFileError> {
    let bytes = read_secret_file(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretFileError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
    })?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), SecretFileError> {
    if !meta.file_type().is_file() {
        return Err(SecretFileError::NotRegular { path: path.to_path_buf() });
    }
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(SecretFileError::TooLarge { path: path.to_path_buf() });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen { path: path.to_path_buf(), mode });
    }
    let me = current_uid();
    if meta.uid() != me {
        return Err(SecretFileError::WrongOwner { path: path.to_path_buf(), owner: meta.uid(), me });
    }
    Ok(())
}

/// The effective uid: the owner every secret file must have.
pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuse a symlink as the final path component.
fn libc_o_nofollow() -> i32 {
    libc::O_NOFOLLOW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_file_is_owner_only_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/key");
        create_secret_file(&path, b"s3cret\n").unwrap();
        let mode = fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(&*read_secret_text(&path).unwrap(), "s3cret");
    }

    #[test]
    fn existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_secret_file(&path, b"first").unwrap();
        assert!(create_secret_file(&path, b"second").is_err());
        assert_eq!(&**read_secret_file(&path).unwrap(), b"first");
    }

    #[test]
    fn group_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_secret_file(&path, b"x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(read_secret_file(&path), Err(SecretFileError::TooOpen { .. })));
    }

    #[test]
    fn symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        create_secret_file(&real, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(read_secret_file(&link).is_err());
    }
}
