//! Comparing an event's process command line with a ledger command.
//!
//! Both sides are normalized by [`shell`] (wrappers peeled, words unquoted, executable
//! basenames) and compared from the most to the least specific: the same inner command, the
//! event's process being one command of the ledger's pipeline, then word overlap. The result
//! is a score in 0–1 and a reason an analyst can read.

use crate::sessions::shell;

/// How well an event's command line matches a ledger command.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub score: f64,
    pub reason: String,
}

/// Word overlap below this is not evidence at all (two unrelated `git` commands share words).
const MIN_OVERLAP: f64 = 0.5;

pub fn compare(event_line: &str, ledger_command: &str) -> Match {
    let event = shell::unwrap(event_line);
    let ledger = shell::unwrap(ledger_command);
    let (event_argv, ledger_argv) = (shell::normalized_argv(&event), shell::normalized_argv(&ledger));
    if event_argv.is_empty() || ledger_argv.is_empty() {
        return Match { score: 0.0, reason: String::new() };
    }
    if event_argv == ledger_argv {
        return Match { score: 1.0, reason: "same command as the call".into() };
    }
    if event_argv.len() == 1 && ledger_argv.contains(&event_argv[0]) {
        return Match {
            score: 0.9,
            reason: "the event's process is one command of the call's pipeline".into(),
        };
    }
    let overlap = shell::similarity(&event, &ledger);
    if overlap >= MIN_OVERLAP {
        return Match {
            score: 0.8 * overlap,
            reason: format!("command words overlap {:.0}% with the call", overlap * 100.0),
        };
    }
    Match { score: 0.0, reason: String::new() }
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
