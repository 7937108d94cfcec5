//! Comparing an event's process command line with a ledger command.
//!
//! The ledger holds what the agent asked its shell to run (a shell script); the EDR reports a
//! process's argv joined by spaces, usually with the quoting lost and the shell's expansions
//! done. Both sides are reduced to lists of *simple commands* made of comparable tokens:
//!
//! - the ledger is read as shell by the shared parser ([`shell::unwrap`]: quotes, escapes,
//!   operators, redirections, heredocs, and the wrappers it peels — `… -c SCRIPT`, `eval`,
//!   Claude Code's snapshot wrapper, `env`, `timeout`, `sudo`, …); the event line is read that
//!   way only when it is a shell running a script (`sh -c`, Claude Code's snapshot wrapper,
//!   Codex's `bash -lc`), otherwise it is one argv split on spaces;
//! - what is left in front of a command is peeled here, for both sides: wrapper programs with
//!   their options (`env`, `timeout`, `nohup`, `nice`, `xargs`, `caffeinate`, …), launchers (`npx`,
//!   `npm exec`, `bundle exec`, …) and interpreters running a script or module (`python3 -m
//!   pip` is `pip`, `node …/.bin/jest` is `jest`);
//! - redirections are not argv and are dropped; home directories are written `~`;
//! - what the shell expands in the ledger (`$VAR`, `$(…)`, unquoted `*` and `?`, as the shared
//!   parser marks them) becomes a wildcard that matches the expanded words in the event.
//!
//! Then, from the most to the least specific: the same commands, the event's process being one
//! command of the ledger's pipeline or list, or enough word overlap. The result is a score in
//! 0–1 and a reason an analyst can read.

use crate::sessions::shell::{self, Connector};
use std::collections::HashSet;
use std::ops::Range;

/// How well an event's command line matches a ledger command.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub score: f64,
    pub reason: String,
}

impl Match {
    fn none() -> Match {
        Match { score: 0.0, reason: String::new() }
    }
}

/// Word overlap below this is not evidence at all (two unrelated `git` commands share words).
const MIN_OVERLAP: f64 = 0.5;
/// Matches at least this strong mean "this line runs the call" (same command or a member of it).
pub const STRONG: f64 = 0.9;

/// Wildcards in ledger tokens: what the shell expanded before the EDR saw argv.
const ANY: char = '\u{1}';
const ONE: char = '\u{2}';

/// Compares an event's command line (argv joined, or a shell wrapper) with a ledger command.
pub fn compare(event_line: &str, ledger_command: &str) -> Match {
    let event = event_commands(event_line);
    let ledger = commands(&shell::unwrap(ledger_command));
    if event.is_empty() || ledger.is_empty() {
        return Match::none();
    }
    if event.len() == ledger.len() && event.iter().zip(&ledger).all(|(e, l)| tokens_match(l, e)) {
        return Match { score: 1.0, reason: "same command as the call".into() };
    }
    if event.len() == 1 && ledger.len() > 1 && ledger.iter().any(|l| tokens_match(l, &event[0])) {
        return Match {
            score: STRONG,
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
    Match::none()
}

/// Whether the ledger command leaves a job running after the call returns (`… &`, `nohup`,
/// `setsid`, `disown`): its processes may raise events after the call finished.
pub fn starts_background(ledger_command: &str) -> bool {
    let script = shell::unwrap(ledger_command);
    let background = |s: &shell::Script| s.items.iter().any(|i| i.connector == Connector::Background);
    // A `&` inside a script that a wrapper ran (`bash -c 'x &'`) counts too: unwrapping splices
    // the inner commands into the outer list and keeps the outer separator.
    background(&script)
        || script.peeled.iter().filter_map(|p| p.script.as_deref()).any(|s| background(&shell::parse(s)))
        || heads(&script).any(|h| matches!(h, "nohup" | "setsid" | "disown" | "daemonize"))
}

/// Directories the ledger command changes into (`cd DIR`, `pushd DIR`), each resolved against
/// the one before (starting from `cwd`) and written with `~` for the home directory.
pub fn changed_dirs(ledger_command: &str, cwd: &str) -> Vec<String> {
    let mut current = tilde(cwd);
    let mut out = Vec::new();
    let script = shell::unwrap(ledger_command);
    let targets = script
        .commands()
        .filter(|c| matches!(c.program(), Some("cd" | "pushd")))
        .filter_map(|c| c.argv.get(1));
    for target in targets {
        if target == "-" || target.is_empty() {
            continue;
        }
        let target = tilde(target);
        current = if target.starts_with('/') || target.starts_with('~') {
            normalize_path(&target)
        } else {
            normalize_path(&format!("{}/{target}", current.trim_end_matches('/')))
        };
        out.push(current.clone());
    }
    out
}

/// `a/./b/../c` is `a/c` (lexically; symlinks are not resolved).
fn normalize_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "~") {
                    parts.pop();
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Whether the ledger command runs something as another user (`sudo`, `su`, `doas`, …).
pub fn switches_user(ledger_command: &str) -> bool {
    heads(&shell::unwrap(ledger_command)).any(|h| USER_SWITCHERS.contains(&h))
}

/// Programs that run a command as another user.
pub const USER_SWITCHERS: &[&str] = &["sudo", "su", "doas", "runuser", "pkexec", "setpriv"];

/// Whether a command line is a shell process (interactive, login, or running a script).
pub fn is_shell(line: &str) -> bool {
    line.split_whitespace().next().is_some_and(|w| SHELLS.contains(&basename(w.trim_start_matches('-'))))
}

/// Whether a command line is a shell running a script given on its command line (`sh -c …`,
/// Claude Code's and Codex's wrappers): such a shell was started by whoever ran the script.
pub fn is_shell_wrapper(line: &str) -> bool {
    shell_run(line).is_some() || wrapper_script(line).is_some()
}

// ---------------------------------------------------------------------------------------------
// Reading both sides.

/// Every program a script runs, as written before this module's own peeling: the wrappers the
/// shared parser peeled (`sudo`, `nohup`, `bash`, …) and each remaining command's program.
fn heads(script: &shell::Script) -> impl Iterator<Item = &str> {
    script.peeled.iter().map(|p| p.name.as_str()).chain(script.commands().filter_map(|c| c.program()))
}

/// The simple commands of an unwrapped script as comparable tokens (commands without an argv,
/// such as a bare redirection, are left out).
fn commands(script: &shell::Script) -> Vec<Vec<Tok>> {
    script
        .commands()
        .map(|c| {
            let words = c.argv.iter().enumerate();
            simplify(words.flat_map(|(i, w)| split_tokens(&with_wildcards(w, c.expansions(i)))).collect())
        })
        .filter(|c| !c.is_empty())
        .collect()
}

/// A ledger word with what the shell expands in it turned into wildcards: unquoted `*` and `?`
/// into [`ANY`] and [`ONE`], `$HOME` into `~` (the event side writes home directories so), any
/// other parameter or substitution into [`ANY`].
fn with_wildcards(word: &str, expansions: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(word.len());
    let mut at = 0;
    for range in expansions {
        let (Some(before), Some(expansion)) = (word.get(at..range.start), word.get(range.clone())) else {
            continue;
        };
        out.push_str(before);
        match expansion {
            "*" => out.push(ANY),
            "?" => out.push(ONE),
            "$HOME" | "${HOME}" => out.push('~'),
            _ => out.push(ANY),
        }
        at = range.end;
    }
    out.push_str(word.get(at..).unwrap_or(""));
    out
}

/// The event line's simple commands: the wrapped script's, or the argv as one command.
fn event_commands(line: &str) -> Vec<Vec<Tok>> {
    if let Some(script) = shell_run(line) {
        return commands(&script);
    }
    if let Some(script) = wrapper_script(line) {
        return commands(&shell::unwrap(&script));
    }
    let words: Vec<String> = line
        .split_whitespace()
        .map(|w| w.chars().filter(|c| *c != '\'' && *c != '"').collect::<String>())
        .filter(|w| !w.is_empty())
        .collect();
    let command = simplify(words.iter().map(|w| tok(w)).collect());
    if command.is_empty() {
        Vec::new()
    } else {
        vec![command]
    }
}

/// The event line unwrapped, when a shell in front of it runs a script (`sudo -iu pg bash -c
/// …`, Codex's `bash -lc …`, Claude Code's snapshot wrapper; quotes lost or not). Otherwise the
/// line is one process's argv, and reading it as shell would split words that were one.
fn shell_run(line: &str) -> Option<shell::Script> {
    // Most event lines name no shell running a script: skip parsing them (this runs once per
    // ledger command compared).
    let mut words = line.split_whitespace();
    let names_a_shell = words.any(|w| shell::family(shell::basename(w)) == Some("sh"));
    let script_follows =
        words.any(|w| w.starts_with('-') && !w.starts_with("--") && w.contains('c') || w.contains("<<"));
    if !(names_a_shell && script_follows) {
        return None;
    }
    let script = shell::unwrap(line);
    let ran_script = script.peeled.iter().any(|p| p.name != "eval" && shell::family(&p.name) == Some("sh"));
    ran_script.then_some(script)
}

/// The script of `[wrappers…] SHELL [-opts…] -c… SCRIPT` behind wrapper programs the shared
/// parser does not peel (`caffeinate`, `unbuffer`), from an argv-joined line (quotes lost: the
/// rest of the line is the script) or a quoted one (the next shell word is).
fn wrapper_script(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    let mut seen_shell = false;
    let mut seen_c = false;
    loop {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..word_end];
        if word.is_empty() {
            return None;
        }
        if !seen_shell {
            let name = basename(word);
            if SHELLS.contains(&name) {
                seen_shell = true;
            } else if !(WRAPPERS.contains(&name) || is_assignment(word) || word.starts_with('-')) {
                return None;
            }
        } else if word.starts_with('-') && !word.starts_with("--") {
            seen_c |= word.contains('c');
        } else if word.starts_with("--") {
            // `--login`, `--noprofile`: options without arguments.
        } else {
            break;
        }
        rest = rest[word_end..].trim_start();
    }
    if !seen_c || rest.is_empty() {
        return None;
    }
    if rest.starts_with('\'') || rest.starts_with('"') {
        if let Some(first) = shell::split_words(rest).texts().first() {
            return Some((*first).to_string());
        }
    }
    Some(rest.to_string())
}

// ---------------------------------------------------------------------------------------------
// Tokens and simplification (both sides).

/// One comparable token; `pattern` when it holds wildcards.
#[derive(Debug, Clone, PartialEq)]
struct Tok {
    text: String,
    pattern: bool,
}

fn tok(s: &str) -> Tok {
    let text = home_to_tilde(s);
    let pattern = text.contains(ANY) || text.contains(ONE);
    Tok { text, pattern }
}

/// A quoted word holding spaces is several argv-joined words on the event side.
fn split_tokens(word: &str) -> Vec<Tok> {
    word.split_whitespace()
        .map(|w| w.chars().filter(|c| *c != '\'' && *c != '"').collect::<String>())
        .filter(|w| !w.is_empty())
        .map(|w| tok(&w))
        .collect()
}

/// A path with the home directory written `~` (what [`compare`] does to every word).
pub fn tilde(path: &str) -> String {
    home_to_tilde(path)
}

/// `/home/<user>/x`, `/Users/<user>/x` and `/root/x` are written `~/x` (the shell expanded `~`).
fn home_to_tilde(s: &str) -> String {
    for prefix in ["/home/", "/Users/"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            let after_user = rest.find('/').map_or("", |p| &rest[p..]);
            if !rest.is_empty() {
                return format!("~{after_user}");
            }
        }
    }
    if s == "/root" || s.starts_with("/root/") {
        return format!("~{}", &s[5..]);
    }
    s.to_string()
}

/// Wrapper programs whose arguments are the real command.
const WRAPPERS: &[&str] = &[
    "env",
    "nohup",
    "timeout",
    "nice",
    "ionice",
    "stdbuf",
    "time",
    "exec",
    "command",
    "builtin",
    "sudo",
    "doas",
    "setsid",
    "unbuffer",
    "caffeinate",
    "xargs",
];
const SHELLS: &[&str] = &["sh", "bash", "zsh", "dash", "ksh", "fish"];
/// Reserved words that can start a simple command in a compound one (`do x`, `then y`).
const RESERVED: &[&str] =
    &["!", "{", "}", "then", "do", "else", "elif", "if", "while", "until", "done", "fi", "esac"];

/// Peels what is not the command itself from the front of a simple command, repeatedly.
fn simplify(mut t: Vec<Tok>) -> Vec<Tok> {
    for _ in 0..8 {
        let before = t.len();
        let head = t.first().map(|w| w.text.clone()).unwrap_or_default();
        let name = basename(&head).to_string();
        if RESERVED.contains(&head.as_str()) || is_assignment(&head) {
            t.remove(0);
        } else if WRAPPERS.contains(&name.as_str()) {
            let skip = wrapper_len(&name, &t);
            if skip < t.len() {
                t.drain(..skip);
            }
        } else if let Some(skip) = launcher_len(&t) {
            if skip < t.len() {
                t.drain(..skip);
            }
        } else if let Some(skip) = interpreter_len(&name, &t) {
            t.drain(..skip);
        }
        if t.len() == before {
            break;
        }
    }
    if let Some(first) = t.first_mut() {
        first.text = program_name(&first.text).to_string();
    }
    t
}

/// A program as the user names it: the basename, without a script extension (`brew` runs
/// `…/brew.sh`, `gcloud` runs `…/gcloud.py`).
fn program_name(w: &str) -> &str {
    let name = basename(w);
    [".sh", ".bash", ".py", ".rb", ".pl", ".js", ".cjs", ".mjs"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext).filter(|stem| !stem.is_empty()))
        .unwrap_or(name)
}

/// How many leading tokens a wrapper program and its options take.
fn wrapper_len(name: &str, t: &[Tok]) -> usize {
    let with_arg: &[&str] = match name {
        "nice" => &["-n"],
        "timeout" => &["-s", "-k", "--signal", "--kill-after"],
        "sudo" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"],
        "doas" => &["-u", "-C"],
        "env" => &["-u", "-C", "-S", "--unset", "--chdir"],
        "ionice" => &["-c", "-n", "-p"],
        "stdbuf" => &["-i", "-o", "-e"],
        "exec" => &["-a"],
        "xargs" => {
            &["-I", "-L", "-n", "-P", "-s", "-d", "-E", "-a", "--max-args", "--max-procs", "--delimiter"]
        }
        _ => &[],
    };
    let mut i = 1;
    while i < t.len() {
        let w = t[i].text.as_str();
        if w == "--" {
            i += 1;
            break;
        }
        // A cluster of short flags (`-iu postgres`) takes an argument if its last flag does.
        let cluster_with_arg = w.len() > 2
            && w.starts_with('-')
            && !w.starts_with("--")
            && w.chars().last().is_some_and(|c| with_arg.contains(&format!("-{c}").as_str()));
        if with_arg.contains(&w) || cluster_with_arg {
            i += 2;
        } else if w.starts_with('-') || (name == "env" && is_assignment(w)) {
            i += 1;
        } else {
            break;
        }
    }
    if name == "timeout" && t.get(i).is_some_and(|w| is_duration(&w.text)) {
        i += 1;
    }
    i
}

/// `npx X`, `npm exec [--] X`, `bundle exec X`, …: how many tokens precede X.
fn launcher_len(t: &[Tok]) -> Option<usize> {
    let a = basename(&t.first()?.text);
    let b = t.get(1).map(|w| w.text.as_str()).unwrap_or("");
    let mut i = match (a, b) {
        ("npx" | "bunx" | "pnpx", _) => 1,
        ("npm", "exec" | "x") | ("pnpm", "exec" | "dlx") | ("yarn", "dlx" | "exec") | ("bun", "x") => 2,
        ("bundle", "exec") | ("poetry", "run") | ("uv", "run") | ("pipx", "run") | ("pdm", "run") => 2,
        _ => return None,
    };
    while i < t.len() && t[i].text.starts_with('-') {
        i += 1;
    }
    Some(i)
}

/// `python3 [-u] script.py` / `python3 -m mod` / `node [--opts] script.js` / `bash script.sh`:
/// how many tokens precede the script or module. None for inline code (`-c`, `-e`).
fn interpreter_len(name: &str, t: &[Tok]) -> Option<usize> {
    let interpreter = name.starts_with("python") && name[6..].chars().all(|c| c.is_ascii_digit() || c == '.')
        || matches!(name, "node" | "nodejs" | "ruby" | "perl" | "php" | "bun" | "deno")
        || SHELLS.contains(&name);
    if !interpreter {
        return None;
    }
    let mut i = 1;
    while i < t.len() {
        let w = t[i].text.as_str();
        if w == "-m" && name.starts_with("python") {
            return (i + 1 < t.len()).then_some(i + 1);
        }
        // Inline code or an interactive interpreter: there is no script to name the command.
        let inline = if SHELLS.contains(&name) {
            w.starts_with('-') && !w.starts_with("--") && w.contains(['c', 's', 'i'])
        } else if name.starts_with("python") {
            matches!(w, "-c" | "-i")
        } else if matches!(name, "node" | "nodejs" | "bun" | "deno") {
            matches!(w, "-e" | "-p" | "-i" | "--eval" | "--print" | "--interactive")
        } else {
            w == "-e"
        };
        if inline {
            return None;
        }
        if !w.starts_with('-') {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn is_assignment(w: &str) -> bool {
    w.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit())
    })
}

fn is_duration(w: &str) -> bool {
    let digits = w.trim_end_matches(['s', 'm', 'h', 'd']);
    !digits.is_empty() && digits.parse::<f64>().is_ok()
}

fn basename(w: &str) -> &str {
    w.rsplit('/').next().unwrap_or(w)
}

// ---------------------------------------------------------------------------------------------
// Matching.

/// Whether the event's tokens are what the ledger's tokens expand to. A wildcard token may
/// stand for several event tokens (a glob or an unquoted variable expands to several words).
fn tokens_match(ledger: &[Tok], event: &[Tok]) -> bool {
    if !ledger.iter().any(|t| t.pattern) {
        return ledger.len() == event.len() && ledger.iter().zip(event).all(|(l, e)| l.text == e.text);
    }
    let (n, m) = (ledger.len(), event.len());
    // reach[i][j]: ledger[..i] matches event[..j].
    let mut reach = vec![vec![false; m + 1]; n + 1];
    reach[0][0] = true;
    for i in 0..n {
        for j in 0..=m {
            if !reach[i][j] {
                continue;
            }
            let l = &ledger[i];
            if !l.pattern {
                if j < m && l.text == event[j].text {
                    reach[i + 1][j + 1] = true;
                }
                continue;
            }
            let mut k = j;
            while k < m && glob(&l.text, &event[k].text) {
                k += 1;
                reach[i + 1][k] = true;
            }
        }
    }
    reach[n][m]
}

/// Glob match with [`ANY`] (any run of characters) and [`ONE`] (one character).
fn glob(pattern: &str, s: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    let (mut pi, mut si) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == s[si] || p[pi] == ONE) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == ANY {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == ANY {
        pi += 1;
    }
    pi == p.len()
}

/// Jaccard overlap of all tokens; a ledger wildcard counts as present when it matches an event
/// token.
fn similarity(event: &[Vec<Tok>], ledger: &[Vec<Tok>]) -> f64 {
    let e: HashSet<&str> = event.iter().flatten().map(|t| t.text.as_str()).collect();
    let l_texts: HashSet<&str> = ledger.iter().flatten().map(|t| t.text.as_str()).collect();
    let is_pattern = |t: &str| t.contains(ANY) || t.contains(ONE);
    let ledger_found = l_texts
        .iter()
        .filter(|lt| e.contains(*lt) || is_pattern(lt) && e.iter().any(|et| glob(lt, et)))
        .count();
    let event_found = e
        .iter()
        .filter(|et| l_texts.contains(*et) || l_texts.iter().any(|lt| is_pattern(lt) && glob(lt, et)))
        .count();
    // A wildcard may match an event token that a literal already matched: the intersection is
    // the smaller count, so the overlap never exceeds 1.
    let found = ledger_found.min(event_found);
    let union = e.len() + l_texts.len() - found;
    if union == 0 {
        return 0.0;
    }
    found as f64 / union as f64
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

    const SNAP: &str = "/Users/m/.claude/shell-snapshots/snapshot-zsh-1747-abc.sh";

    #[test]
    fn claude_wrappers_match_in_the_argv_joined_and_the_quoted_form() {
        let cmd = "grep -rn 'TODO' src | head -20";
        let script = format!(
            "source {SNAP} && eval 'grep -rn '\\''TODO'\\'' src | head -20' \\< /dev/null && pwd -P >| /tmp/claude-1a2b-cwd"
        );
        let joined = format!("/bin/zsh -c -l {script}");
        let quoted = format!("/bin/zsh -c -l '{}'", script.replace('\'', "'\\''"));
        assert_eq!(compare(&joined, cmd).score, 1.0, "{joined}");
        assert_eq!(compare(&quoted, cmd).score, 1.0, "{quoted}");
        // The child process (quotes lost) is one command of the pipeline.
        assert_eq!(compare("grep -rn TODO src", cmd).score, STRONG);
    }

    #[test]
    fn wrapper_programs_launchers_and_interpreters_are_peeled() {
        for (event, ledger) in [
            ("make -j4 build", "nice -n 10 make -j4 build"),
            ("npm run e2e", "timeout 60 npm run e2e"),
            ("node scripts/migrate.js", "env NODE_ENV=production node scripts/migrate.js"),
            (
                "npm exec tsc -p tsconfig.json",
                "NODE_OPTIONS=--max-old-space-size=4096 npx tsc -p tsconfig.json",
            ),
            ("python -m pip install requests", "pip install requests"),
            ("/home/u/.venv/bin/python3 /home/u/.venv/bin/pip install requests", "pip install requests"),
            ("/usr/bin/ruby bin/rails db:migrate", "bundle exec rails db:migrate"),
            ("/bin/bash ./scripts/deploy.sh staging", "./scripts/deploy.sh staging"),
            ("sh get-docker.sh", "sudo -E sh get-docker.sh"),
            ("/bin/bash -p /opt/homebrew/Library/Homebrew/brew.sh install jq", "brew install jq"),
            ("node /usr/local/bin/npm ci", "npm ci"),
        ] {
            assert_eq!(compare(event, ledger).score, 1.0, "{event:?} vs {ledger:?}");
        }
    }

    #[test]
    fn shell_expansions_in_the_ledger_match_what_the_event_saw() {
        for (event, ledger) in [
            ("rm -rf /home/kai/.cache/pip", "rm -rf ~/.cache/pip"),
            (
                "rm -rf /var/lib/docker/overlay2/0a1b /var/lib/docker/overlay2/l",
                "rm -rf /var/lib/docker/overlay2/*",
            ),
            ("docker run --rm -v /home/s/p:/src alpine", "docker run --rm -v $PWD:/src alpine"),
            (
                "curl -H Authorization: token ghs_x https://api.github.com",
                "curl -H \"Authorization: token $T\" https://api.github.com",
            ),
            ("pg_dump -Fc orders", "pg_dump -Fc orders > /tmp/orders.dump 2>&1"),
            ("jq -r .dependencies | keys[] package.json", "jq -r '.dependencies | keys[]' package.json"),
        ] {
            assert_eq!(compare(event, ledger).score, 1.0, "{event:?} vs {ledger:?}");
        }
        // A quoted glob is literal; the event shows it unexpanded.
        assert_eq!(compare("find ~ -name *.pem", "find ~ -name '*.pem' | xargs ls").score, STRONG);
        // xargs is peeled on both sides: its process is the member of the call's pipeline.
        let m = compare(
            "xargs -I{} npm view {} repository.url",
            "jq -r .name p.json | xargs -I{} npm view {} repository.url",
        );
        assert_eq!(m.score, STRONG, "{m:?}");
        // A wildcard that matches a token a literal matched already is not counted twice.
        let m = compare("xargs kill -9", "kill -9 $(pgrep -f train.py)");
        assert!(m.score > 0.0 && m.score < 0.8 * 0.7, "{m:?}");
    }

    #[test]
    fn heredoc_bodies_are_data_and_background_jobs_are_seen() {
        let cmd = "cat > /tmp/s.sh <<'EOF'\nrm -rf /\nEOF\nchmod +x /tmp/s.sh && /tmp/s.sh";
        assert_eq!(compare("rm -rf /", cmd).score, 0.0);
        assert_eq!(compare("/bin/sh /tmp/s.sh", cmd).score, STRONG);
        assert!(starts_background("nohup node worker.js > /tmp/w.log 2>&1 &"));
        assert!(starts_background("npm run dev &"));
        assert!(starts_background("bash -c 'npm run dev &'") && starts_background("setsid -f node w.js"));
        assert!(!starts_background("npm test 2>&1 | tail -5 && echo done"));
        assert_eq!(changed_dirs("cd /tmp && git clone x && cd x", "/w/p"), ["/tmp", "/tmp/x"]);
        assert_eq!(changed_dirs("cd ../api && npm test", "/home/r/src/p"), ["~/src/api"]);
        assert!(switches_user("sudo -iu postgres psql") && !switches_user("psql -U postgres"));
        assert_eq!(compare("psql -c select", "sudo -iu postgres psql -c select").score, 1.0);
    }

    #[test]
    fn shells_and_wrappers_are_recognised() {
        assert!(is_shell("-zsh") && is_shell("/bin/bash -e /tmp/x.sh") && !is_shell("node x.js"));
        assert!(is_shell_wrapper("/bin/sh -c pg_dump orders"));
        assert!(is_shell_wrapper(&format!("/bin/zsh -c -l source {SNAP} && eval 'ls' \\< /dev/null")));
        assert!(!is_shell_wrapper("-bash") && !is_shell_wrapper("bash ./x.sh"));
        // Behind wrappers with option values, and behind ones the shared parser does not peel.
        assert!(is_shell_wrapper("sudo -iu postgres bash -c rm -rf /var/lib/pg/wal/*"));
        assert!(is_shell_wrapper("caffeinate -i /bin/zsh -c make test"));
        let ledger = "sudo -iu postgres bash -c 'rm -rf /var/lib/pg/wal/*'";
        for event in
            ["sudo -iu postgres bash -c rm -rf /var/lib/pg/wal/*", "bash -c rm -rf /var/lib/pg/wal/*"]
        {
            assert_eq!(compare(event, ledger).score, 1.0, "{event}");
        }
        assert_eq!(compare("caffeinate -i /bin/zsh -c make test", "make test").score, 1.0);
    }
}
