//! Compiling a policy's `action` block and reading durations (`30s`, `15m`, `2h`, `7d`,
//! `1h30m`).
//!
//! The action is data: which restriction (`do_not_retry`, `halt_session`) or `ignore`, its
//! scope and lifetime, and a SOC-written note. This module checks it and nothing else; turning
//! a decision into a signed directive is the directive stage's job.

use super::diag::codes;
use super::yaml::{Kind, Node, Reader};
use super::{Action, Expiry, Retry, Scope};
use std::time::Duration;

/// Longest duration accepted anywhere (ten years): longer is almost certainly a typo.
const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);
/// Longest SOC note, in characters. The note reaches the agent's context through the directive
/// template, so it is kept short and free of control characters.
pub(crate) const MAX_NOTE_CHARS: usize = 1000;

pub(crate) const SCOPES: &[&str] = &["command", "similar", "path", "host", "binary", "session"];
const ACTIONS: &[&str] = &["do_not_retry", "halt_session", "ignore"];

/// Parses `30s`, `15m`, `2h`, `7d` and sums such as `1h30m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("a duration is empty".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "{t:?} is not a duration: use a number and s, m, h or d (`30s`, `15m`, `2h`, `7d`)"
                ))
            }
        };
        if digits.is_empty() {
            return Err(format!("{t:?} is not a duration: a number must come before `{c}`"));
        }
        let n: u64 = digits.parse().map_err(|_| format!("{t:?} is too long"))?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{t:?} is too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{t:?} has no unit: write e.g. `{digits}s` or `{digits}m`"));
    }
    let d = Duration::from_secs(total);
    if d.is_zero() {
        return Err("a duration must be longer than zero".into());
    }
    if d > MAX_DURATION {
        return Err(format!("{t:?} is longer than 3650d"));
    }
    Ok(d)
}

/// A duration node (text), or a diagnostic.
pub(crate) fn duration(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<Duration> {
    let Some(text) = node.scalar_text(r.source()) else {
        r.error(
            node.pos,
            codes::TYPE,
            format!("{what} must be a duration such as `15m`, found {}", node.describe()),
        );
        return None;
    };
    match parse_duration(&text) {
        Ok(d) => Some(d),
        Err(why) => {
            r.error(node.pos, codes::DURATION, format!("{what}: {why}"));
            None
        }
    }
}

/// A note: text, capped, no control characters except newline and tab.
pub(crate) fn note(r: &mut Reader<'_>, node: &Node) -> Option<String> {
    let text = r.str(node, "`note`")?;
    let text = text.trim();
    if text.chars().count() > MAX_NOTE_CHARS {
        r.error(node.pos, codes::BAD_VALUE, format!("`note` is longer than {MAX_NOTE_CHARS} characters"));
        return None;
    }
    if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        r.error(node.pos, codes::BAD_VALUE, "`note` contains control characters");
        return None;
    }
    Some(text.to_string())
}

/// `action: ignore`, `action: halt_session`, or a map with exactly one of `do_not_retry`,
/// `halt_session`, `ignore`, plus an optional `note`.
pub(crate) fn action(r: &mut Reader<'_>, node: &Node) -> Option<(Action, Option<String>)> {
    if let Kind::Str(word) = &node.kind {
        return match word.as_str() {
            "ignore" => Some((Action::Ignore, None)),
            "halt_session" => Some((Action::HaltSession, None)),
            "do_not_retry" => {
                r.error(
                    node.pos,
                    codes::MISSING_KEY,
                    "`do_not_retry` needs its settings: `action: {do_not_retry: {scope: similar}}`",
                );
                None
            }
            _ => {
                r.choice(node, "`action`", ACTIONS);
                None
            }
        };
    }
    let entries = r.entries(node, &["do_not_retry", "halt_session", "ignore", "note"], "`action`")?;
    let kinds: Vec<(&str, &Node, &Node)> =
        entries.iter().filter(|(k, _, _)| *k != "note").map(|&(k, key, v)| (k, key, v)).collect();
    let note = match entries.get("note") {
        Some(n) => Some(note(r, n)?),
        None => None,
    };
    let (kind, key, value) = match kinds.as_slice() {
        [one] => *one,
        [] => {
            r.error(node.pos, codes::MISSING_KEY, "`action` needs one of do_not_retry, halt_session, ignore");
            return None;
        }
        [_, (k, key, _), ..] => {
            r.error(
                key.pos,
                codes::CONFLICT,
                format!("`action` has more than one kind (`{k}` after `{}`)", kinds[0].0),
            );
            return None;
        }
    };
    let action = match kind {
        "do_not_retry" => do_not_retry(r, value)?,
        _ => {
            // `halt_session:` / `halt_session: {}` / `halt_session: true` all mean "this".
            let empty = match &value.kind {
                Kind::Null | Kind::Bool(true) => true,
                Kind::Map(m) => m.is_empty(),
                _ => false,
            };
            if !empty {
                r.error(value.pos, codes::TYPE, format!("`{kind}` takes no settings (write `{kind}: {{}}`)"));
                return None;
            }
            let _ = key;
            if kind == "ignore" {
                Action::Ignore
            } else {
                Action::HaltSession
            }
        }
    };
    Some((action, note))
}

fn do_not_retry(r: &mut Reader<'_>, node: &Node) -> Option<Action> {
    let entries = r.entries(node, &["scope", "retry", "ttl", "until_cleared"], "`do_not_retry`")?;
    let mut ok = true;
    let scope = match entries.get("scope") {
        Some(n) => r.choice(n, "`scope`", SCOPES).map(scope_from),
        None => {
            r.error(
                node.pos,
                codes::MISSING_KEY,
                format!("`do_not_retry` needs a `scope` ({})", SCOPES.join(", ")),
            );
            None
        }
    };
    ok &= scope.is_some();
    let retry = match entries.get("retry") {
        None => Some(Retry::Never),
        Some(n) => retry(r, n),
    };
    ok &= retry.is_some();
    let ttl = entries.get("ttl").map(|n| duration(r, n, "`ttl`"));
    let until = entries.get("until_cleared").map(|n| (n, r.bool(n, "`until_cleared`")));
    let expiry = match (ttl, until) {
        (Some(Some(d)), None) => Some(Expiry::Ttl(d)),
        (Some(Some(_)), Some((n, Some(true)))) => {
            r.error(n.pos, codes::CONFLICT, "give either `ttl` or `until_cleared: true`, not both");
            None
        }
        (Some(Some(d)), Some((_, Some(false)))) => Some(Expiry::Ttl(d)),
        (None, None) | (None, Some((_, Some(true)))) => Some(Expiry::UntilCleared),
        (None, Some((n, Some(false)))) => {
            r.error(
                n.pos,
                codes::CONFLICT,
                "`until_cleared: false` needs a `ttl` (every block must end somehow)",
            );
            None
        }
        _ => None,
    };
    ok &= expiry.is_some();
    match (ok, scope, retry, expiry) {
        (true, Some(scope), Some(retry), Some(expiry)) => Some(Action::DoNotRetry { scope, retry, expiry }),
        _ => None,
    }
}

/// `retry: never` or `retry: {after: 15m}`.
pub(crate) fn retry(r: &mut Reader<'_>, node: &Node) -> Option<Retry> {
    if let Kind::Str(word) = &node.kind {
        if word == "never" {
            return Some(Retry::Never);
        }
        let hint = if parse_duration(word).is_ok() {
            format!(" (write `retry: {{after: {word}}}`)")
        } else {
            String::new()
        };
        r.error(
            node.pos,
            codes::BAD_VALUE,
            format!("`retry` must be `never` or `{{after: <duration>}}`, found {word:?}{hint}"),
        );
        return None;
    }
    let entries = r.entries(node, &["after"], "`retry`")?;
    match entries.get("after") {
        Some(n) => duration(r, n, "`after`").map(Retry::After),
        None => {
            r.error(
                node.pos,
                codes::MISSING_KEY,
                "`retry` needs `after: <duration>` (or write `retry: never`)",
            );
            None
        }
    }
}

pub(crate) fn scope_from(word: &str) -> Scope {
    match word {
        "command" => Scope::Command,
        "similar" => Scope::Similar,
        "path" => Scope::Path,
        "host" => Scope::Host,
        "binary" => Scope::Binary,
        _ => Scope::Session,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "30", "m", "5x", "0s", "3651d", "99999999999999999999s", "1.5h", "-1m", "1 h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
