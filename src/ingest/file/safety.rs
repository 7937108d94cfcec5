//! What file ingest may open (security requirements R13 and R14).
//!
//! - R13: a watched directory must be owned by the broker's uid and not writable by group or
//!   others; otherwise the broker refuses to start (and a watch whose directory loosens later
//!   stops picking up files until it is fixed).
//! - R14: files are opened with `O_NOFOLLOW | O_NONBLOCK`, and read only if `fstat` on the open
//!   descriptor shows a regular file owned by the broker's uid with exactly one link. Symlinks,
//!   FIFOs, devices, sockets and hard-linked files are refused. The 1 MiB size cap of R14 is
//!   applied per line (see `assemble`), since an append-only log legitimately grows past it.
//!
//! Deliberately not here: what the bytes mean, and trust (a file that passes is still only as
//! trusted as the `[[watch]]` that names it says: tier `local`).

use std::fs::{File, Metadata, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::secrets::current_uid;

/// Why a watched directory is not acceptable (R13).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("directory {path} is owned by uid {owner}, not by the broker (uid {me})")]
    WrongOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("directory {path} has mode {mode:o}: group or others may write to it; run `chmod go-w {path}`")]
    Writable { path: PathBuf, mode: u32 },
}

/// R13: `dir` (symlinks followed) is a directory owned by this uid, without group or other write.
pub fn check_directory(dir: &Path) -> Result<(), DirectoryError> {
    let meta =
        std::fs::metadata(dir).map_err(|source| DirectoryError::Io { path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(DirectoryError::NotDirectory { path: dir.to_path_buf() });
    }
    let me = current_uid();
    if meta.uid() != me {
        return Err(DirectoryError::WrongOwner { path: dir.to_path_buf(), owner: meta.uid(), me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DirectoryError::Writable { path: dir.to_path_buf(), mode });
    }
    Ok(())
}

/// Why a file was not opened (R14). Counted and logged once per file, never fatal.
#[derive(Debug)]
pub enum Refusal {
    /// The name is a symbolic link.
    Symlink,
    /// A FIFO, socket, device or directory.
    NotRegular,
    /// Owned by another uid.
    WrongOwner(u32),
    /// More than one name refers to it.
    HardLinked(u64),
    /// It could not be opened or inspected (vanished, permission denied, …).
    Io(std::io::Error),
}

impl Refusal {
    /// Metric label and log field.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Symlink => "symlink",
            Refusal::NotRegular => "not_regular",
            Refusal::WrongOwner(_) => "wrong_owner",
            Refusal::HardLinked(_) => "hard_link",
            Refusal::Io(_) => "io_error",
        }
    }

    /// True when the file simply is not there (any more): not worth a warning.
    pub fn is_missing(&self) -> bool {
        matches!(self, Refusal::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Symlink => f.write_str("a symbolic link"),
            Refusal::NotRegular => f.write_str("not a regular file"),
            Refusal::WrongOwner(uid) => {
                write!(f, "owned by uid {uid}, not by the broker (uid {})", current_uid())
            }
            Refusal::HardLinked(links) => write!(f, "{links} hard links"),
            Refusal::Io(err) => write!(f, "{err}"),
        }
    }
}

/// R14: opens `path` read-only with `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot block the open)
/// and checks the descriptor, not the name, so a swap between check and open is caught.
pub fn open_checked(path: &Path) -> Result<(File, Metadata), Refusal> {
    // A cheap look first, so devices and FIFOs are never opened at all (opening some devices has
    // side effects). The fstat below is what counts.
    let before = std::fs::symlink_metadata(path).map_err(Refusal::Io)?;
    classify(&before)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(
            |err| if err.raw_os_error() == Some(libc::ELOOP) { Refusal::Symlink } else { Refusal::Io(err) },
        )?;
    let meta = file.metadata().map_err(Refusal::Io)?;
    classify(&meta)?;
    Ok((file, meta))
}

/// The R14 checks on one `stat` result.
pub fn classify(meta: &Metadata) -> Result<(), Refusal> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(Refusal::Symlink);
    }
    if !kind.is_file()
        || kind.is_fifo()
        || kind.is_socket()
        || kind.is_block_device()
        || kind.is_char_device()
    {
        return Err(Refusal::NotRegular);
    }
    if meta.uid() != current_uid() {
        return Err(Refusal::WrongOwner(meta.uid()));
    }
    if meta.nlink() != 1 {
        return Err(Refusal::HardLinked(meta.nlink()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn private_directory_passes_and_group_or_world_writable_fails() {
        let dir = private_dir();
        check_directory(dir.path()).unwrap();
        for mode in [0o770, 0o702, 0o777] {
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
            let err = check_directory(dir.path()).unwrap_err();
            assert!(matches!(err, DirectoryError::Writable { .. }), "{mode:o}: {err}");
        }
        assert!(matches!(check_directory(&dir.path().join("nope")), Err(DirectoryError::Io { .. })));
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(check_directory(&file), Err(DirectoryError::NotDirectory { .. })));
    }

    #[test]
    fn regular_file_opens_and_symlink_fifo_and_hard_link_are_refused() {
        let dir = private_dir();
        let file = dir.path().join("events.log");
        std::fs::write(&file, b"{}\n").unwrap();
        let (_, meta) = open_checked(&file).unwrap();
        assert_eq!(meta.len(), 3);

        let link = dir.path().join("link.log");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(open_checked(&link), Err(Refusal::Symlink)));

        let fifo = dir.path().join("fifo.log");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(matches!(open_checked(&fifo), Err(Refusal::NotRegular)));

        let hard = dir.path().join("hard.log");
        std::fs::hard_link(&file, &hard).unwrap();
        assert!(matches!(open_checked(&hard), Err(Refusal::HardLinked(2))));
        assert!(matches!(open_checked(&file), Err(Refusal::HardLinked(2))));

        let missing = open_checked(&dir.path().join("missing.log")).unwrap_err();
        assert!(missing.is_missing());
        assert_eq!(missing.reason(), "io_error");
    }
}
