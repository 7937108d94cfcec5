//! Program families: which basenames are shells, interpreters and network fetchers.
//!
//! Families let `python3` match `python`, `bash` match `sh` and `wget` match `curl` wherever the
//! kind of program matters more than its name (pipe shapes, inline code, wrapper peeling). The
//! lists are deliberately short and closed; anything else is known by its basename only.

/// The family name of network fetchers.
pub const FETCH: &str = "fetch";

/// Shell basenames; their family is `sh`.
pub(crate) const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "mksh", "ash"];

/// The family a program belongs to: `sh` (shells, `source`, `.`, `eval`), `python`, `node`,
/// `perl`, `ruby`, `php`, or [`FETCH`] (`curl`, `wget`, `fetch`, `aria2c`, `http`, `https`, `xh`).
pub fn family(program: &str) -> Option<&'static str> {
    let versioned = |prefix: &str| {
        program.strip_prefix(prefix).is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    Some(match program {
        p if SHELLS.contains(&p) => "sh",
        "source" | "." | "eval" => "sh",
        "node" | "nodejs" => "node",
        "curl" | "wget" | "fetch" | "aria2c" | "http" | "https" | "xh" => FETCH,
        _ if versioned("python") || versioned("pypy") => "python",
        _ if versioned("perl") => "perl",
        _ if versioned("ruby") => "ruby",
        _ if versioned("php") => "php",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_group_spellings() {
        assert_eq!(family("python3"), family("python"));
        assert_eq!(family("python3.12"), Some("python"));
        assert_eq!(family("pypy3"), Some("python"));
        assert_eq!(family("wget"), Some(FETCH));
        assert_eq!(family("bash"), Some("sh"));
        assert_eq!(family("nodejs"), Some("node"));
        assert_eq!(family("pythonista"), None);
        assert_eq!(family("ls"), None);
    }
}
