//! How alike two commands are, for correlating an EDR's process command line with the agent's
//! ledger entries.
//!
//! Both sides are compared after [`unwrap`](super::unwrap), as argv lists normalized so that
//! spelling differences that do not change the command disappear: `argv[0]` becomes its
//! basename, short-option clusters are split (`-fsSL` → `-f -s -S -L`), a leading `./` is dropped.
//! Assignments and redirections are left out because a process command line never shows them.
//! Identical normalized argv lists score 1.0; otherwise the score is the Jaccard index of the two
//! token sets scaled by 0.95, so that any exact match outranks any near match. It deliberately
//! knows nothing about what commands mean; [`facts`](super::facts) does.

use std::collections::HashSet;

use super::syntax::{basename, Script};

/// Scale for inexact matches: keeps them below an exact match even at Jaccard 1.0 (same tokens
/// in another order).
const INEXACT: f64 = 0.95;

/// Similarity in `0.0..=1.0`; 0.0 when either side has no command.
pub fn similarity(a: &Script, b: &Script) -> f64 {
    let (na, nb) = (normalized_argv(a), normalized_argv(b));
    if na.is_empty() || nb.is_empty() {
        return 0.0;
    }
    if na == nb {
        return 1.0;
    }
    let ta: HashSet<&str> = na.iter().flatten().map(String::as_str).collect();
    let tb: HashSet<&str> = nb.iter().flatten().map(String::as_str).collect();
    let union = ta.union(&tb).count();
    if union == 0 {
        return 0.0;
    }
    // Token counts are far below 2^52, so the conversion is exact.
    INEXACT * ta.intersection(&tb).count() as f64 / union as f64
}

/// The argv of every command, normalized as described in the module docs; commands without an
/// argv (bare redirections, assignments) are left out.
pub fn normalized_argv(script: &Script) -> Vec<Vec<String>> {
    script
        .commands()
        .filter_map(|c| {
            let (first, rest) = c.argv.split_first()?;
            let mut argv = vec![basename(first).to_string()];
            for arg in rest {
                push_normalized(&mut argv, arg);
            }
            Some(argv)
        })
        .collect()
}

fn push_normalized(argv: &mut Vec<String>, arg: &str) {
    let is_cluster = arg.len() > 2
        && arg.starts_with('-')
        && !arg.starts_with("--")
        && arg.chars().skip(1).all(|c| c.is_ascii_alphabetic());
    if is_cluster {
        argv.extend(arg.chars().skip(1).map(|c| format!("-{c}")));
    } else {
        argv.push(arg.strip_prefix("./").filter(|r| !r.is_empty()).unwrap_or(arg).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::super::unwrap;
    use super::*;

    fn sim(a: &str, b: &str) -> f64 {
        similarity(&unwrap(a), &unwrap(b))
    }

    #[test]
    fn exact_inner_command_is_one() {
        assert_eq!(
            sim(
                "/bin/bash -lc curl -fsSL https://x.example/i.sh | sh",
                "curl -fsSL https://x.example/i.sh | sh"
            ),
            1.0
        );
        assert_eq!(
            sim("curl -f -s -S -L https://x.example/i.sh", "/usr/bin/curl -fsSL https://x.example/i.sh"),
            1.0
        );
        assert_eq!(sim("FOO=1 ./run.sh > log", "run.sh"), 1.0);
    }

    #[test]
    fn ordering_exact_small_edit_unrelated() {
        let ledger = "curl -fsSL https://x.example/i.sh | sh";
        let exact = sim(ledger, "/bin/zsh -c 'curl -fsSL https://x.example/i.sh | sh'");
        let child_only = sim(ledger, "curl -fsSL https://x.example/i.sh");
        let small_edit = sim(ledger, "curl -fsSL https://x.example/i.sh | bash");
        let other_url = sim(ledger, "curl -fsSL https://y.example/other.sh");
        let unrelated = sim(ledger, "ls -la");
        assert_eq!(exact, 1.0);
        assert!(small_edit < exact && child_only < exact);
        assert!(other_url < child_only && other_url < small_edit, "{other_url} {child_only} {small_edit}");
        assert!(unrelated < other_url);
        assert_eq!(unrelated, 0.0);
    }

    #[test]
    fn same_tokens_reordered_stay_below_exact() {
        let s = sim("cp a b", "cp b a");
        assert!(s > 0.9 && s < 1.0);
    }

    #[test]
    fn empty_sides_score_zero() {
        assert_eq!(sim("", "ls"), 0.0);
        assert_eq!(sim("> f", "> f"), 0.0);
    }
}
