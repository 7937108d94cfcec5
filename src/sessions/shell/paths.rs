//! Paths: which words look like file paths, and lexical resolution against a working directory.
//!
//! Resolution is purely textual (`a/./b/../c` → `a/c`): it never touches the filesystem, so it
//! does not follow symlinks and cannot know that two spellings name one file through a link.
//! `~` and `$VAR` cannot be expanded here; such paths stay as written, which still compares
//! equal to the same spelling elsewhere.

/// Longer joined paths are not resolved against the cwd (Linux `PATH_MAX`): a chain of
/// `cd a && cd a && …` must not grow the tracked cwd without bound.
const MAX_PATH: usize = 4096;

/// Device files that are plumbing, not objects a command touches.
const PLUMBING: &[&str] = &["/dev/null", "/dev/stdin", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/zero"];

/// Resolve `path` against `cwd` and normalize `.`/`..` and repeated or trailing slashes.
///
/// Paths starting with `/`, `~` or `$` ignore `cwd` (home and variables are unknown here, so
/// `~/x` and `$HOME/x` stay as written, and `..` never climbs out of them); without a `cwd` (or
/// past `PATH_MAX`) a relative path stays relative, normalized.
pub fn resolve_path(path: &str, cwd: Option<&str>) -> String {
    let rooted = path.starts_with(['/', '~', '$']);
    match cwd {
        Some(base) if !rooted && !base.is_empty() && base.len() + path.len() < MAX_PATH => {
            normalize(&format!("{base}/{path}"))
        }
        _ => normalize(path),
    }
}

/// [`resolve_path`] against a cwd that is already normalized (no `.`, `..`, repeated or
/// trailing slashes): a plain relative path is appended without re-normalizing the cwd, which
/// keeps a long chain of `cd`s linear.
pub(crate) fn resolve_in(path: &str, normalized_cwd: Option<&str>) -> String {
    let plain = |p: &str| p.trim_end_matches('/').split('/').all(|c| !matches!(c, "" | "." | ".."));
    match normalized_cwd {
        Some(base)
            if plain(path)
                && !path.starts_with(['~', '$'])
                && !base.is_empty()
                && base.len() + path.len() < MAX_PATH =>
        {
            let sep = if base.ends_with('/') { "" } else { "/" };
            format!("{base}{sep}{}", path.trim_end_matches('/'))
        }
        _ => resolve_path(path, normalized_cwd),
    }
}

/// Lexical normalization; `..` never climbs above `/` or `~`, and is kept after a `$VAR`
/// component, whose value is unknown.
pub(crate) fn normalize(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                None if absolute => {}
                Some(&"~") => {}
                None | Some(&"..") => parts.push(".."),
                Some(p) if p.starts_with('$') => parts.push(".."),
                Some(_) => {
                    parts.pop();
                }
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Whether a word, seen as a command operand, plausibly names a file.
///
/// Heuristic on purpose: `src/main.rs`, `./x`, `/etc/passwd`, `~/.ssh/id_rsa`, `README.md`, `.`
/// and globs like `*.py` count; options, URLs, `host:path`, `key=value`, version numbers and
/// prose (a word with spaces that does not start like a path) do not.
pub fn looks_like_path(w: &str) -> bool {
    if w.is_empty() || w.len() > 4096 || w.starts_with('-') || w.contains('\n') || w.contains('\0') {
        return false;
    }
    if PLUMBING.contains(&w) || w.contains("://") || w.starts_with("$(") || w.contains('`') {
        return false;
    }
    let path_start = w.starts_with('/')
        || w.starts_with("./")
        || w.starts_with("../")
        || w.starts_with('~')
        || w == "."
        || w == "..";
    if path_start {
        return true;
    }
    if w.contains(char::is_whitespace) || w.contains(':') || w.contains('=') || w.starts_with('<') {
        return false;
    }
    w.contains('/') || has_file_extension(w)
}

/// `name.ext` with an extension of 1–10 alphanumerics including a letter: not `1.5`, not `a.`.
fn has_file_extension(w: &str) -> bool {
    let Some((stem, ext)) = w.rsplit_once('.') else { return false };
    !stem.is_empty()
        && (1..=10).contains(&ext.len())
        && ext.chars().all(|c| c.is_ascii_alphanumeric())
        && ext.chars().any(|c| c.is_ascii_alphabetic())
}

/// Device files like `/dev/null` that redirections use as plumbing.
pub(crate) fn is_plumbing(path: &str) -> bool {
    PLUMBING.contains(&path) || path.starts_with("/dev/fd/") || path.starts_with("/proc/self/fd/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_against_cwd() {
        assert_eq!(resolve_path("README.md", Some("/home/u/proj")), "/home/u/proj/README.md");
        assert_eq!(resolve_path("./src/../lib/x.rs", Some("/p/")), "/p/lib/x.rs");
        assert_eq!(resolve_path("../../../../etc/passwd", Some("/p/q")), "/etc/passwd");
        assert_eq!(resolve_path("/etc//hosts/", Some("/p")), "/etc/hosts");
        assert_eq!(resolve_path("~/.ssh/id_rsa", Some("/p")), "~/.ssh/id_rsa");
        assert_eq!(resolve_path("$HOME/x", Some("/p")), "$HOME/x");
        assert_eq!(resolve_path("$X/../y", Some("/p")), "$X/../y");
        assert_eq!(resolve_path("~/a/../b", Some("/p")), "~/b");
        assert_eq!(resolve_path(".", Some("/p")), "/p");
        assert_eq!(resolve_path("x", Some("~/proj")), "~/proj/x");
        assert_eq!(resolve_path("../x", Some("~")), "~/x");
        let deep = format!("/{}", "d/".repeat(MAX_PATH / 2));
        assert_eq!(resolve_path("x", Some(&deep)), "x");
    }

    #[test]
    fn fast_join_agrees_with_full_resolution() {
        for (p, cwd) in
            [("a/b", "/p"), ("a/", "/"), ("./a", "/p"), ("../a", "/p/q"), ("~/a", "/p"), ("a", "~")]
        {
            assert_eq!(resolve_in(p, Some(cwd)), resolve_path(p, Some(cwd)), "{p} in {cwd}");
        }
        assert_eq!(resolve_in("a", None), "a");
    }

    #[test]
    fn without_cwd_stays_relative() {
        assert_eq!(resolve_path("./a/b/../c", None), "a/c");
        assert_eq!(resolve_path("../a", None), "../a");
        assert_eq!(resolve_path("a/..", None), ".");
        assert_eq!(resolve_path("/", None), "/");
    }

    #[test]
    fn path_heuristic() {
        for yes in ["README.md", "src/main.rs", "./x", "/etc/passwd", "~/.bashrc", ".", "*.py", "dir/"] {
            assert!(looks_like_path(yes), "{yes}");
        }
        for no in [
            "-rf",
            "https://x/a",
            "host:path",
            "CC=gcc",
            "1.5",
            "hello",
            "fix README.md",
            "my dir/x",
            "",
            "/dev/null",
        ] {
            assert!(!looks_like_path(no), "{no}");
        }
        assert!(looks_like_path("/tmp/my file.txt"));
    }
}
