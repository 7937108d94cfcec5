//! Network objects: URLs found in words and inline code, and the hosts that URLs and
//! `ssh`/`scp`-style operands name.
//!
//! URLs are normalized so that two spellings of one download compare equal: scheme and host in
//! lower case, credentials dropped (they are secrets, and not part of *what* was fetched), the
//! default port dropped, an empty path written as `/`, the fragment dropped. Nothing is resolved
//! over DNS.

/// A normalized URL and its host (none for `file:` URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub url: String,
    pub host: Option<String>,
}

/// Every `scheme://…` URL inside `s`, normalized. Text around a URL (quotes, brackets, trailing
/// punctuation of a sentence) is not part of it.
pub(crate) fn find_urls(s: &str) -> Vec<Url> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = s.get(from..).and_then(|r| r.find("://")) {
        let sep = from + rel;
        let before = s.get(..sep).unwrap_or("");
        // Scheme characters are ASCII, so the char count is the byte count.
        let scheme_len =
            before.chars().rev().take_while(|c| c.is_ascii_alphanumeric() || "+.-".contains(*c)).count();
        let scheme = before.get(before.len() - scheme_len..).unwrap_or("");
        let scheme = scheme.trim_start_matches(|c: char| !c.is_ascii_alphabetic());
        let rest_start = sep + 3;
        let rest = s.get(rest_start..).unwrap_or("");
        let end = rest
            .find(|c: char| c.is_whitespace() || c.is_control() || "'\"<>`^{}|\\".contains(c))
            .unwrap_or(rest.len());
        if !scheme.is_empty() {
            out.extend(normalize_parts(scheme, rest.get(..end).unwrap_or("")));
        }
        from = rest_start + end;
    }
    out
}

/// A fetcher operand without a scheme (`curl example.com/a.sh`): curl and wget assume HTTP.
pub(crate) fn schemeless_url(w: &str) -> Option<Url> {
    if w.contains("://") || w.starts_with(['-', '/', '.', '~', '$', '@']) {
        return None;
    }
    let authority = w.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    if !(host.contains('.') || host.eq_ignore_ascii_case("localhost")) || normalize_host(host).is_none() {
        return None;
    }
    normalize_parts("http", w)
}

/// `scheme` and the text after `://`.
fn normalize_parts(scheme: &str, body: &str) -> Option<Url> {
    let scheme = scheme.to_ascii_lowercase();
    let body = body.split('#').next().unwrap_or("");
    let body = body.trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '>']);
    let split = body.find(['/', '?']).unwrap_or(body.len());
    let (authority, path) = body.split_at(split);
    if scheme == "file" {
        return Some(Url { url: format!("file://{authority}{path}"), host: None });
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(host_port)?;
    let host = normalize_host(host)?;
    let port = port.filter(|p| !is_default_port(&scheme, p));
    let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    let path = if path.is_empty() { "/" } else { path };
    Some(Url { url: format!("{scheme}://{shown_host}{port}{path}"), host: Some(host) })
}

fn split_host_port(hp: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = hp.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').filter(|p| !p.is_empty());
        return Some((host, port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => Some((h, (!p.is_empty()).then_some(p))),
        Some(_) => None,
        None => Some((hp, None)),
    }
}

fn is_default_port(scheme: &str, port: &str) -> bool {
    matches!((scheme, port), ("http" | "ws", "80") | ("https" | "wss", "443") | ("ftp", "21"))
}

/// Lower-case a host name or IP address and check it is one; `None` for anything else
/// (`$HOST`, `HEAD`, a path).
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.trim_end_matches('.').to_ascii_lowercase();
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    if h.contains(':') {
        let v6 = h.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        return v6.then_some(h);
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    h.split('.').all(label_ok).then_some(h)
}

/// An `ssh`/`mosh`/`sftp` destination: `[user@]host`, `[user@]host:path` or `ssh://…`.
pub(crate) fn destination_host(w: &str) -> Option<String> {
    if w.contains("://") {
        return find_urls(w).into_iter().next().and_then(|u| u.host);
    }
    let host = w.rsplit_once('@').map_or(w, |(_, h)| h);
    let host = host.split(':').next().unwrap_or("");
    if host.contains('/') {
        return None;
    }
    normalize_host(host)
}

/// An `scp`/`rsync` remote operand `[user@]host:path` (or `host::module`). With `strict`, only
/// forms that cannot be something else count: a user part or a dotted host (`git show
/// HEAD:file` is not a host).
pub(crate) fn remote_operand_host(w: &str, strict: bool) -> Option<String> {
    if w.contains("://") {
        return find_urls(w).into_iter().next().and_then(|u| u.host);
    }
    let (left, _) = w.split_once(':')?;
    if left.is_empty() || left.contains('/') {
        return None;
    }
    let (user, host) = match left.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, left),
    };
    if strict && user.is_none() && !host.contains('.') {
        return None;
    }
    normalize_host(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &str) -> Vec<String> {
        find_urls(s).into_iter().map(|u| u.url).collect()
    }

    #[test]
    fn finds_and_normalizes_urls() {
        assert_eq!(urls("curl -fsSL https://X.Example/i.sh"), ["https://x.example/i.sh"]);
        assert_eq!(urls("HTTP://user:pw@x.example:80"), ["http://x.example/"]);
        assert_eq!(urls("https://x.example:8443/a?b=1#frag"), ["https://x.example:8443/a?b=1"]);
        assert_eq!(
            urls("urlopen('http://a.example/x'); see (https://b.example/y)."),
            ["http://a.example/x", "https://b.example/y"]
        );
        assert_eq!(urls("git+ssh://git@github.com/o/r.git"), ["git+ssh://github.com/o/r.git"]);
        assert_eq!(urls("http://[::1]:8080/x"), ["http://[::1]:8080/x"]);
        assert_eq!(urls("file:///etc/passwd"), ["file:///etc/passwd"]);
        assert!(urls("http://$HOST/x ://nothing").is_empty());
    }

    #[test]
    fn hosts() {
        assert_eq!(
            find_urls("https://x.example/a").first().and_then(|u| u.host.clone()).as_deref(),
            Some("x.example")
        );
        assert_eq!(destination_host("deploy@Build.Example").as_deref(), Some("build.example"));
        assert_eq!(destination_host("ssh://u@h.example:2222").as_deref(), Some("h.example"));
        assert_eq!(destination_host("myserver").as_deref(), Some("myserver"));
        assert_eq!(remote_operand_host("u@h.example:/tmp/x", false).as_deref(), Some("h.example"));
        assert_eq!(remote_operand_host("box:/tmp/x", false).as_deref(), Some("box"));
        assert_eq!(remote_operand_host("git@github.com:o/r.git", true).as_deref(), Some("github.com"));
        assert_eq!(remote_operand_host("HEAD:src/x", true), None);
        assert_eq!(remote_operand_host("./a:b", false), None);
        assert_eq!(normalize_host("$HOST"), None);
        assert_eq!(normalize_host("10.0.0.1").as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn schemeless_fetcher_operands() {
        assert_eq!(schemeless_url("x.example/a.sh").map(|u| u.url).as_deref(), Some("http://x.example/a.sh"));
        assert_eq!(
            schemeless_url("localhost:8080").map(|u| u.url).as_deref(),
            Some("http://localhost:8080/")
        );
        assert!(schemeless_url("-o").is_none());
        assert!(schemeless_url("out").is_none());
        assert!(schemeless_url("./a.sh").is_none());
    }
}
