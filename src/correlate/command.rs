//! Comparing an event's process command line with a ledger command.
//!
//! Both sides are normalized by the shell module (wrappers peeled, words unquoted, executable
//! basenames) and compared from the most to the least specific: the same inner command, the
//! event's process being one command of the ledger's pipeline, then word overlap. The result
//! is a score in 0–1 and a reason an analyst can read.

/// How well an event's command line matches a ledger command.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub score: f64,
    pub reason: String,
}

/// Word overlap below this is not evidence at all (two unrelated `git` commands share words).
const MIN_OVERLAP: f64 = 0.5;

pub fn compare(event_line: &str, ledger_command: &str) -> Match {
    let event = normalize(event_line);
    let ledger = normalize(ledger_command);
    if event.commands.is_empty() || ledger.commands.is_empty() {
        return Match { score: 0.0, reason: String::new() };
    }
    if event.commands == ledger.commands {
        return Match { score: 1.0, reason: "same command as the call".into() };
    }
    if event.commands.len() == 1 && ledger.commands.contains(&event.commands[0]) {
        return Match {
            score: 0.9,
            reason: "the event's process is one command of the call's pipeline".into(),
        };
    }
    let overlap = similarity(&event, &ledger);
    if overlap >= MIN_OVERLAP {
        return Match {
            score: 0.8 * overlap,
            reason: format!("command words overlap {:.0}% with the call", overlap * 100.0),
        };
    }
    Match { score: 0.0, reason: String::new() }
}

/// A command reduced to comparable parts: each simple command's words, wrappers removed.
#[derive(Debug, PartialEq)]
struct Normalized {
    commands: Vec<Vec<String>>,
}

/// Wrapper programs whose arguments are the real command.
const WRAPPERS: &[&str] = &["env", "nohup", "timeout", "nice", "stdbuf", "time", "exec", "command", "sudo"];
const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh"];

fn normalize(line: &str) -> Normalized {
    let inner = inner_script(line);
    let commands = inner.split(['|', ';', '&', '\n']).map(simple_command).filter(|c| !c.is_empty()).collect();
    Normalized { commands }
}

/// The script a shell wrapper runs: `… sh -c SCRIPT`, or the `eval 'CMD'` of Claude Code's
/// snapshot wrapper. Works whether or not the quoting survived.
fn inner_script(line: &str) -> String {
    let mut text = line.trim().to_string();
    for _ in 0..4 {
        if let Some(start) = text.find("eval '") {
            let rest = &text[start + 6..];
            let end = rest.rfind("' ").or_else(|| rest.rfind('\'')).unwrap_or(rest.len());
            text = rest[..end].replace("'\\''", "'");
            continue;
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        let shell_at = words.iter().position(|w| SHELLS.contains(&basename(w)));
        let Some(i) = shell_at.filter(|i| words[..*i].iter().all(|w| is_wrapper_word(w))) else { break };
        let Some(flag) = words.get(i + 1).filter(|f| f.starts_with('-') && f.ends_with('c')) else { break };
        let at = text.find(flag).map(|p| p + flag.len()).unwrap_or(text.len());
        text = strip_quotes(text[at..].trim()).to_string();
    }
    text
}

fn is_wrapper_word(w: &str) -> bool {
    WRAPPERS.contains(&basename(w)) || w.contains('=') || w.starts_with('-') || w.parse::<f64>().is_ok()
}

fn strip_quotes(s: &str) -> &str {
    let quoted = s.len() >= 2
        && ((s.starts_with('\'') && s.ends_with('\'')) || (s.starts_with('"') && s.ends_with('"')));
    if quoted {
        &s[1..s.len() - 1]
    } else {
        s
    }
}

fn simple_command(segment: &str) -> Vec<String> {
    let words: Vec<String> = segment
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string())
        .filter(|w| !w.is_empty())
        .collect();
    let start = words
        .iter()
        .position(|w| !(WRAPPERS.contains(&basename(w)) || w.contains('=') && !w.starts_with('-')))
        .unwrap_or(words.len());
    let mut out: Vec<String> = words[start..].to_vec();
    if let Some(first) = out.first_mut() {
        *first = basename(first).to_string();
    }
    out
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

/// Jaccard overlap of all words.
fn similarity(a: &Normalized, b: &Normalized) -> f64 {
    use std::collections::HashSet;
    let set = |n: &Normalized| -> HashSet<String> { n.commands.iter().flatten().cloned().collect() };
    let (x, y) = (set(a), set(b));
    let union = x.union(&y).count();
    if union == 0 {
        return 0.0;
    }
    x.intersection(&y).count() as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_and_bare_forms_of_one_command_match_fully() {
        let m = compare(
            "/bin/bash -lc curl -fsSL https://x.example/i.sh | sh",
            "curl -fsSL https://x.example/i.sh | sh",
        );
        assert_eq!(m.score, 1.0, "{m:?}");
    }

    #[test]
    fn a_child_process_of_a_pipeline_matches_strongly() {
        let m = compare("curl -fsSL https://x.example/i.sh", "curl -fsSL https://x.example/i.sh | sh");
        assert!(m.score >= 0.9, "{m:?}");
    }

    #[test]
    fn unrelated_commands_do_not_match() {
        assert_eq!(compare("ls -la /tmp", "curl -fsSL https://x.example/i.sh | sh").score, 0.0);
        assert_eq!(compare("git status", "git push origin main --force").score, 0.0);
    }
}
