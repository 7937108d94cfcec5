//! Credential values from a `[[source]]`: inline, or read from the `*_file` beside it, held in
//! `Zeroizing` buffers (R20).
//!
//! Reading only: whether a credential is good enough is each scheme's decision, and no value
//! read here is ever put into an error message.

use super::AuthConfigError;
use crate::config::SourceConfig;
use std::io::{self, Read as _};
use std::path::Path;
use zeroize::Zeroizing;

/// Credential files are a line or a PEM block; anything larger is a wrong path (a log, a
/// device), refused before it is read into memory.
const MAX_FILE_BYTES: usize = 64 * 1024;

/// How a `secret_file` is split into secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileLayout {
    /// The whole file (minus trailing newlines) is one secret: JWT HMAC keys are raw bytes.
    Whole,
    /// One secret per non-empty line, so a file can hold a rotation list just as `secret` can.
    OnePerLine,
}

/// The `secret` values (one or a rotation list) or the contents of `secret_file`, in order.
pub(crate) fn secrets(
    source: &SourceConfig,
    layout: FileLayout,
) -> Result<Vec<Zeroizing<String>>, AuthConfigError> {
    let values = match (&source.secret, &source.secret_file) {
        (Some(secrets), None) => secrets.to_vec().into_iter().map(Zeroizing::new).collect(),
        (None, Some(path)) => {
            let text = read_file(&source.name, "secret_file", path)?;
            match layout {
                FileLayout::Whole => vec![text],
                FileLayout::OnePerLine => text
                    .lines()
                    .filter(|line| !line.is_empty())
                    .map(|line| Zeroizing::new(line.to_string()))
                    .collect(),
            }
        }
        _ => return Err(invalid(source, "needs exactly one of `secret`, `secret_file`")),
    };
    if values.is_empty() {
        return Err(AuthConfigError::BadCredential {
            name: source.name.clone(),
            what: "secret",
            problem: "list is empty",
        });
    }
    Ok(values)
}

/// An inline value or the contents of its `*_file`; exactly one must be set.
pub(crate) fn one_of(
    source: &SourceConfig,
    (inline_key, file_key): (&'static str, &'static str),
    inline: Option<&str>,
    file: Option<&Path>,
) -> Result<Zeroizing<String>, AuthConfigError> {
    match (inline, file) {
        (Some(value), None) => Ok(Zeroizing::new(value.to_string())),
        (None, Some(path)) => read_file(&source.name, file_key, path),
        _ => Err(AuthConfigError::Invalid {
            name: source.name.clone(),
            message: format!("needs exactly one of `{inline_key}`, `{file_key}`"),
        }),
    }
}

/// Reads a credential file as UTF-8 and trims trailing newlines (editors and `echo` add them;
/// they are never part of a secret). Empty, oversized and non-UTF-8 files are errors.
pub(crate) fn read_file(
    name: &str,
    what: &'static str,
    path: &Path,
) -> Result<Zeroizing<String>, AuthConfigError> {
    let fail = |error: io::Error| AuthConfigError::ReadFile {
        name: name.to_string(),
        what,
        path: path.to_path_buf(),
        error,
    };
    let bytes = read_capped(path).map_err(fail)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| fail(invalid_data("is not UTF-8")))?;
    let trimmed = text.trim_end_matches(['\r', '\n']);
    if trimmed.is_empty() {
        return Err(fail(invalid_data("is empty")));
    }
    Ok(Zeroizing::new(trimmed.to_string()))
}

/// Reads at most [`MAX_FILE_BYTES`] into a buffer allocated once, so no reallocation leaves an
/// unzeroized copy of the secret behind.
fn read_capped(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_FILE_BYTES + 2));
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(invalid_data("is larger than 64 KiB"));
    }
    Ok(bytes)
}

fn invalid_data(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn invalid(source: &SourceConfig, message: &str) -> AuthConfigError {
    AuthConfigError::Invalid { name: source.name.clone(), message: message.to_string() }
}
