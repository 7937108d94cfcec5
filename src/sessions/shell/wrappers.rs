//! Unwrapping: peel the wrappers that agents and people put around a command, so that an EDR's
//! process command line and an agent's ledger entry reduce to the same inner commands.
//!
//! Peeled, recursively up to [`MAX_DEPTH`] levels of re-parsing:
//! - shells (`sh`, `bash`, `zsh`, `dash`, `ksh`, `mksh`, `ash`) with `-c SCRIPT` in any option
//!   cluster (`-c`, `-lc`, `-ic`, `-c -l`, `-euxc`), or reading their script from a
//!   here-document or here-string;
//! - Claude Code's snapshot wrapper, `source SNAPSHOT … && eval 'CMD' \< /dev/null` followed
//!   by `pwd -P >| /tmp/claude-…-cwd`: only the `eval`'d command is kept;
//! - `eval ARGS…` (its words joined by spaces and parsed again, as the shell does);
//! - `env [-i] [-u N] [-C DIR] [-S STR] [N=V…]`, `timeout [opts] DURATION`, `nohup`, `setsid`,
//!   `nice [-n N]`, `ionice`, `stdbuf`, `time`, `exec`, `command` (not `-v`/`-V`), `builtin`,
//!   `sudo [opts] [N=V…]`, `doas`, and `xargs [opts]` (whose command runs with arguments read
//!   from stdin, which are unknown here).
//!
//! **Quote-lost command lines.** EDRs usually report argv joined by spaces, so
//! `bash -lc 'curl -fsSL https://x/i.sh | sh'` arrives as `bash -lc curl -fsSL https://x/i.sh |
//! sh`. When the first command of a text is a shell whose `-c` script word is *unquoted* and more
//! text follows it, the script is taken to be the whole rest of the text from that word. A
//! properly quoted `bash -c ls | grep x` reads the same way, which flattens to the same commands.
//! The cost: positional parameters after an unquoted `-c` script at the start of a line
//! (`bash -c echo a b`) are read as part of the script. The same repair applies to inline code
//! that normally ends a line (`python -c`, `node -e`/`-p`, `php -r`), but not to `perl -e` or
//! `ruby -e`, whose code is often followed by file operands.
//!
//! The result is flattened: an inner script replaces its wrapper in the outer list, so
//! `bash -c 'a && b' | c` reads as `a && b | c`. Wrappers' output redirections move to the last
//! inner command. This module does not interpret what the commands do; see
//! [`facts`](super::facts).

use super::getopt::{self, Spec};
use super::programs::{family, SHELLS};
use super::syntax::{
    argv_from_nul, basename, parse_source, Command, Connector, Item, Notes, Peeled, Script, WordInfo,
};
use super::words::{split_words, RedirOp};

/// Levels of re-parsing (shell `-c`, `eval`, here-documents, substitutions) before giving up.
pub const MAX_DEPTH: usize = 8;

/// Argv wrappers peeled from one command (`nohup nice env … cmd`) before giving up; real
/// commands have a handful, and the bound keeps pathological input linear.
const MAX_ARGV_PEELS: usize = 32;

/// Parse `s` and peel known wrappers from every command. Never panics; depth and size are
/// capped (see [`Notes`]).
pub fn unwrap(s: &str) -> Script {
    let text = argv_from_nul(s);
    unwrap_at(&text, 0)
}

/// [`unwrap`] for text found `depth` levels deep (shell scripts, substitutions).
pub(crate) fn unwrap_at(text: &str, depth: usize) -> Script {
    let mut parsed = parse_source(text);
    let mut out = Script { notes: parsed.notes, ..Script::default() };
    if strip_claude_snapshot(&mut parsed) {
        out.peeled.push(Peeled { name: CLAUDE_SNAPSHOT.to_string(), script: None });
    }
    let mut at_start = true;
    for item in parsed.items {
        let mut current: Vec<Command> = Vec::new();
        for cmd in item.pipeline {
            let mut ctx = Ctx { text, depth, at_start, peeled: Vec::new(), notes: Notes::default() };
            at_start = false;
            let peeled = ctx.peel(cmd);
            out.peeled.append(&mut ctx.peeled);
            out.notes.merge(ctx.notes);
            match peeled {
                Peel::Command(c) => current.push(c),
                Peel::Whole(c) => {
                    out.items.push(Item { pipeline: vec![c], connector: Connector::Seq });
                    return out;
                }
                Peel::Inner { script, rest_of_line } => {
                    out.notes.merge(script.notes);
                    out.peeled.extend(script.peeled);
                    if rest_of_line {
                        // The inner script is the whole rest of this text: nothing after it is ours.
                        out.items.extend(script.items);
                        return out;
                    }
                    splice(&mut out.items, &mut current, script.items);
                }
            }
        }
        if !current.is_empty() {
            out.items.push(Item { pipeline: current, connector: item.connector });
        }
    }
    out
}

/// The pseudo-wrapper name recorded for Claude Code's snapshot form.
const CLAUDE_SNAPSHOT: &str = "claude-snapshot";

/// Put an inner script's items where its wrapper stood: all but the last become items of their
/// own; the last continues the current pipeline.
fn splice(items: &mut Vec<Item>, current: &mut Vec<Command>, inner: Vec<Item>) {
    let n = inner.len();
    for (k, item) in inner.into_iter().enumerate() {
        current.extend(item.pipeline);
        if k + 1 < n {
            items.push(Item { pipeline: std::mem::take(current), connector: item.connector });
        }
    }
}

enum Peel {
    Command(Command),
    /// A command that takes the whole rest of the text (quote-lost inline code).
    Whole(Command),
    Inner {
        script: Script,
        rest_of_line: bool,
    },
}

/// What one wrapper hides.
enum Step {
    NotWrapper,
    /// The command is the argv from `start`, with extra assignments and leading words.
    Argv {
        start: usize,
        assignments: Vec<(String, String)>,
        prefix: Vec<String>,
    },
    /// The command is a script to parse; `stdin_redirect` is the here-document that carried it.
    Script {
        text: String,
        rest_of_line: bool,
        stdin_redirect: Option<usize>,
    },
}

struct Ctx<'a> {
    /// The text the command was parsed from; its word spans index this.
    text: &'a str,
    depth: usize,
    /// The command is the first of `text`, where a quote-lost shell line can start.
    at_start: bool,
    peeled: Vec<Peeled>,
    notes: Notes,
}

impl Ctx<'_> {
    fn peel(&mut self, mut cmd: Command) -> Peel {
        let mut argv_peels = 0;
        while let Some(name) = cmd.program().map(str::to_string) {
            match self.step(&cmd, &name) {
                Step::NotWrapper => break,
                Step::Argv { .. } if argv_peels >= MAX_ARGV_PEELS => {
                    self.notes.depth_capped = true;
                    break;
                }
                Step::Argv { start, assignments, prefix } => {
                    argv_peels += 1;
                    self.peeled.push(Peeled { name, script: None });
                    cmd = rebuild(cmd, start, assignments, prefix);
                }
                Step::Script { text, rest_of_line, stdin_redirect } => {
                    if self.depth + 1 > MAX_DEPTH {
                        self.notes.depth_capped = true;
                        break;
                    }
                    let mut script = unwrap_at(&text, self.depth + 1);
                    // The script around Claude Code's `eval` is agent machinery, not user code.
                    let machinery = script.peeled.first().is_some_and(|p| p.name == CLAUDE_SNAPSHOT);
                    self.peeled.push(Peeled { name, script: (!machinery).then_some(text) });
                    if !rest_of_line {
                        carry_over(&mut script, cmd, stdin_redirect);
                    }
                    return Peel::Inner { script, rest_of_line };
                }
            }
        }
        match self.quote_lost_code(&cmd) {
            Some(whole) => Peel::Whole(whole),
            None => Peel::Command(cmd),
        }
    }

    /// `python3 -c import os; os.remove(x)` from an EDR: the code lost its quotes and would read
    /// as several commands. For interpreters whose code normally ends the line (python `-c`,
    /// node `-e`/`-p`, php `-r`), an unquoted code word that more text follows takes the rest of
    /// the text. perl and ruby are left alone: `perl -pi -e s/a/b/ file` has operands after its
    /// code.
    fn quote_lost_code(&self, cmd: &Command) -> Option<Command> {
        if !self.at_start {
            return None;
        }
        let family = family(cmd.program()?)?;
        let is_code_flag = |a: &str| match family {
            "python" => {
                a.len() >= 2
                    && a.ends_with('c')
                    && a.strip_prefix('-').is_some_and(|f| f.chars().all(|c| c.is_ascii_alphabetic()))
            }
            "node" => matches!(a, "-e" | "--eval" | "-p" | "--print"),
            "php" => a == "-r",
            _ => false,
        };
        let flag = cmd
            .argv
            .iter()
            .enumerate()
            .skip(1)
            .take_while(|(_, a)| a.starts_with('-'))
            .find(|(_, a)| is_code_flag(a))
            .map(|(i, _)| i)?;
        let info = cmd.words.get(flag + 1)?;
        let rest = self.quote_lost_rest(Some(info))?;
        let mut whole = cmd.clone();
        whole.argv.truncate(flag + 1);
        whole.words.truncate(flag + 1);
        whole.argv.push(rest.to_string());
        whole.words.push(WordInfo {
            span: info.span.start..self.text.len(),
            quoted: true,
            expansions: Vec::new(),
        });
        // Redirections and substitutions seen in the rest were code, not shell.
        whole.redirects.clear();
        whole.substitutions.clear();
        Some(whole)
    }

    fn step(&self, cmd: &Command, name: &str) -> Step {
        let args = cmd.argv.get(1..).unwrap_or_default();
        match name {
            n if SHELLS.contains(&n) => self.shell(cmd, args),
            "eval" if !args.is_empty() => {
                Step::Script { text: args.join(" "), rest_of_line: false, stdin_redirect: None }
            }
            _ => match argv_wrapper(name) {
                Some(w) => w.step(cmd, args),
                None => Step::NotWrapper,
            },
        }
    }

    fn shell(&self, cmd: &Command, args: &[String]) -> Step {
        const SHELL: Spec = Spec {
            short_values: "oO",
            long_values: &["rcfile", "init-file"],
            stop_at_operand: true,
            plus: true,
            ..Spec::FLAGS
        };
        let scan = getopt::scan(args, &SHELL);
        if scan.has(&["-c"]) {
            let Some(&k) = scan.operands.first() else { return Step::NotWrapper };
            let Some(script) = args.get(k) else { return Step::NotWrapper };
            if let Some(rest) = self.quote_lost_rest(cmd.words.get(k + 1)) {
                return Step::Script { text: rest.to_string(), rest_of_line: true, stdin_redirect: None };
            }
            return Step::Script { text: script.clone(), rest_of_line: false, stdin_redirect: None };
        }
        let reads_stdin = scan.operands.is_empty()
            || scan.has(&["-s"])
            || scan.operands.first().and_then(|&k| args.get(k)).is_some_and(|a| a == "-");
        if reads_stdin {
            let here = cmd.redirects.iter().position(|r| {
                matches!(r.op, RedirOp::HereDoc { .. } | RedirOp::HereString) && r.fd.unwrap_or(0) == 0
            });
            if let Some(i) = here {
                let text = cmd.redirects.get(i).map(|r| r.target.clone()).unwrap_or_default();
                return Step::Script { text, rest_of_line: false, stdin_redirect: Some(i) };
            }
        }
        Step::NotWrapper
    }

    /// For the first command of a text: if the script word is unquoted and more text follows
    /// it, the command line lost its quoting and the script is everything from that word on.
    fn quote_lost_rest(&self, word: Option<&WordInfo>) -> Option<&str> {
        let w = word?;
        if !self.at_start || w.quoted || w.span.is_empty() {
            return None;
        }
        let after = self.text.get(w.span.end..)?;
        if after.trim().is_empty() {
            return None;
        }
        self.text.get(w.span.start..)
    }
}

/// The command a wrapper runs: argv from `start`, plus what the wrapper added.
fn rebuild(
    mut cmd: Command,
    start: usize,
    assignments: Vec<(String, String)>,
    prefix: Vec<String>,
) -> Command {
    let argv = cmd.argv.split_off(start.min(cmd.argv.len()));
    let words = cmd.words.split_off(start.min(cmd.words.len()));
    cmd.words = prefix
        .iter()
        .map(|_| WordInfo { span: 0..0, quoted: true, expansions: Vec::new() })
        .chain(words)
        .collect();
    cmd.argv = prefix.into_iter().chain(argv).collect();
    cmd.assignments.extend(assignments);
    cmd
}

/// A script wrapper's own assignments and output redirections apply to what it runs.
fn carry_over(script: &mut Script, mut wrapper: Command, stdin_redirect: Option<usize>) {
    if let Some(i) = stdin_redirect {
        if i < wrapper.redirects.len() {
            wrapper.redirects.remove(i);
        }
    }
    if let Some(first) = script.items.first_mut().and_then(|i| i.pipeline.first_mut()) {
        let mut assignments = std::mem::take(&mut wrapper.assignments);
        assignments.append(&mut first.assignments);
        first.assignments = assignments;
    }
    if wrapper.redirects.is_empty() {
        return;
    }
    match script.items.last_mut().and_then(|i| i.pipeline.last_mut()) {
        Some(last) => last.redirects.append(&mut wrapper.redirects),
        None => script.items.push(Item {
            pipeline: vec![Command { redirects: wrapper.redirects, ..Command::default() }],
            connector: Connector::Seq,
        }),
    }
}

/// A wrapper that runs the rest of its argv.
struct ArgvWrapper {
    spec: Spec,
    /// Operands before the command (`timeout`'s DURATION).
    skip_operands: usize,
    /// `NAME=VALUE` operands set the command's environment (`env`, `sudo`).
    assignments: bool,
    /// With any of these options the wrapper runs nothing (`command -v`, `sudo -l`).
    refuse: &'static [&'static str],
}

impl ArgvWrapper {
    const fn new(spec: Spec) -> Self {
        ArgvWrapper { spec, skip_operands: 0, assignments: false, refuse: &[] }
    }

    fn step(&self, cmd: &Command, args: &[String]) -> Step {
        let scan = getopt::scan(args, &self.spec);
        if scan.has(self.refuse) {
            return Step::NotWrapper;
        }
        let Some(&first) = scan.operands.get(self.skip_operands) else { return Step::NotWrapper };
        let mut start = first + 1; // index into argv
        let mut assignments = Vec::new();
        if self.assignments {
            while let Some(pair) = cmd.argv.get(start).and_then(|a| env_assignment(a)) {
                assignments.push(pair);
                start += 1;
            }
        }
        // `env -S 'python3 -u'` splits its value into leading words.
        let prefix: Vec<String> = scan
            .values(&["-S", "--split-string"])
            .flat_map(|v| split_words(v).texts().into_iter().map(String::from).collect::<Vec<_>>())
            .collect();
        if start >= cmd.argv.len() && prefix.is_empty() {
            return Step::NotWrapper;
        }
        Step::Argv { start, assignments, prefix }
    }
}

fn env_assignment(word: &str) -> Option<(String, String)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then(|| (name.to_string(), value.to_string()))
}

fn argv_wrapper(name: &str) -> Option<ArgvWrapper> {
    let spec =
        |short_values, long_values| Spec { short_values, long_values, stop_at_operand: true, ..Spec::FLAGS };
    let w = match name {
        "env" => ArgvWrapper {
            assignments: true,
            ..ArgvWrapper::new(spec("uCS", &["unset", "chdir", "split-string"]))
        },
        "timeout" => {
            ArgvWrapper { skip_operands: 1, ..ArgvWrapper::new(spec("sk", &["signal", "kill-after"])) }
        }
        "nohup" | "setsid" | "builtin" => ArgvWrapper::new(spec("", &[])),
        "nice" => ArgvWrapper::new(spec("n", &["adjustment"])),
        "ionice" => ArgvWrapper {
            refuse: &["-p", "--pid", "-P", "--pgid", "-u", "--uid"],
            ..ArgvWrapper::new(spec("cnpPu", &["class", "classdata", "pid", "pgid", "uid"]))
        },
        "stdbuf" => ArgvWrapper::new(spec("ioe", &["input", "output", "error"])),
        "time" => ArgvWrapper::new(spec("fo", &["format", "output"])),
        "exec" => ArgvWrapper::new(spec("a", &[])),
        "command" => ArgvWrapper { refuse: &["-v", "-V"], ..ArgvWrapper::new(spec("", &[])) },
        "sudo" => ArgvWrapper {
            assignments: true,
            refuse: &["-l", "--list", "-e", "--edit", "-v", "--validate", "-V", "--version"],
            ..ArgvWrapper::new(spec(
                "ugCDprtTU",
                &[
                    "user",
                    "group",
                    "close-from",
                    "chdir",
                    "prompt",
                    "role",
                    "type",
                    "command-timeout",
                    "other-user",
                    "host",
                ],
            ))
        },
        "doas" => ArgvWrapper { refuse: &["-C"], ..ArgvWrapper::new(spec("uC", &[])) },
        "xargs" => ArgvWrapper::new(Spec {
            short_values: "ILnPsdEa",
            short_attached: "iel",
            long_values: &[
                "max-args",
                "max-procs",
                "delimiter",
                "eof",
                "arg-file",
                "replace",
                "max-lines",
                "max-chars",
                "process-slot-var",
            ],
            stop_at_operand: true,
            ..Spec::FLAGS
        }),
        _ => return None,
    };
    Some(w)
}

/// Recognise Claude Code's Bash-tool wrapper and keep only the user's command.
///
/// The wrapper sources a shell snapshot, sets shell options, `eval`s the command with stdin from
/// `/dev/null`, and records the working directory with `pwd -P >| /tmp/claude-…-cwd`. The
/// snapshot `source` or the `pwd` probe identifies it; then only `eval` commands are kept (or,
/// in a form without `eval`, everything but the wrapper's own commands).
fn strip_claude_snapshot(script: &mut Script) -> bool {
    if !script.commands().any(is_claude_marker) {
        return false;
    }
    let has_eval = script.commands().any(|c| c.program() == Some("eval"));
    for item in &mut script.items {
        item.pipeline.retain(|c| {
            if has_eval {
                c.program() == Some("eval")
            } else {
                !is_claude_marker(c) && !is_shell_setup(c)
            }
        });
        for cmd in &mut item.pipeline {
            drop_dev_null_stdin(cmd);
        }
    }
    script.items.retain(|i| !i.pipeline.is_empty());
    if let Some(last) = script.items.last_mut() {
        // It was `… && pwd -P >| file`; the `&&` now leads nowhere.
        last.connector = Connector::Seq;
    }
    true
}

fn is_claude_marker(c: &Command) -> bool {
    let program = c.program();
    let sources_snapshot = matches!(program, Some("source" | "."))
        && c.argv.get(1).is_some_and(|p| {
            p.contains("shell-snapshots/")
                || basename(p).starts_with("snapshot-")
                || basename(p).starts_with("claude-shell-snapshot")
        });
    let cwd_probe = program == Some("pwd")
        && c.redirects.iter().any(|r| {
            let f = basename(&r.target);
            f.starts_with("claude-") && f.ends_with("-cwd")
        });
    sources_snapshot || cwd_probe
}

fn is_shell_setup(c: &Command) -> bool {
    matches!(c.program(), Some("setopt" | "unsetopt" | "shopt" | "true"))
}

/// Claude's wrapper adds `< /dev/null` (escaped as `\<` inside the `eval`, or as a real
/// redirection on it); the user did not write it.
fn drop_dev_null_stdin(cmd: &mut Command) {
    let n = cmd.argv.len();
    if n >= 3
        && cmd.argv.get(n - 2).is_some_and(|a| a == "<")
        && cmd.argv.get(n - 1).is_some_and(|a| a == "/dev/null")
    {
        cmd.argv.truncate(n - 2);
        cmd.words.truncate(n - 2);
    }
    cmd.redirects.retain(|r| !(r.op == RedirOp::Read && r.target == "/dev/null"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unwrapped(s: &str) -> String {
        unwrap(s).render()
    }

    fn peeled(s: &str) -> Vec<String> {
        unwrap(s).peeled.into_iter().map(|p| p.name).collect()
    }

    #[test]
    fn shells_with_c_in_any_cluster() {
        assert_eq!(unwrapped("sh -c 'ls -la'"), "ls -la");
        assert_eq!(unwrapped("/bin/bash -lc 'make test'"), "make test");
        assert_eq!(unwrapped("bash -ic \"echo 'a b'\""), "echo 'a b'");
        assert_eq!(unwrapped("zsh -c -l 'npm test'"), "npm test");
        assert_eq!(unwrapped("dash -euxc 'rm -f x'"), "rm -f x");
        assert_eq!(unwrapped("bash -o pipefail --norc -c 'a | b'"), "a | b");
        assert_eq!(unwrapped("-zsh -c 'id'"), "id");
        assert_eq!(peeled("ksh -c 'id'"), ["ksh"]);
    }

    #[test]
    fn shells_without_c_are_not_wrappers() {
        assert_eq!(unwrapped("bash script.sh arg"), "bash script.sh arg");
        assert_eq!(unwrapped("sh"), "sh");
        assert_eq!(unwrapped("bash -c"), "bash -c");
    }

    #[test]
    fn shell_fed_by_here_document_or_string() {
        assert_eq!(unwrapped("bash <<'EOF'\ncurl -s u | sh\nEOF\n"), "curl -s u | sh");
        assert_eq!(unwrapped("bash -s <<< 'rm -rf build'"), "rm -rf build");
        assert_eq!(unwrapped("sh - <<EOF > log\nmake\nEOF"), "make >log");
    }

    #[test]
    fn codex_form() {
        let s = unwrap("/bin/bash -lc 'echo hi > x.txt'");
        assert_eq!(s.render(), "echo hi >x.txt");
        assert_eq!(s.peeled, [Peeled { name: "bash".into(), script: Some("echo hi > x.txt".into()) }]);
    }

    #[test]
    fn argv_wrappers() {
        assert_eq!(unwrapped("env -i FOO=1 BAR=2 make"), "FOO=1 BAR=2 make");
        assert_eq!(unwrapped("env -u HOME -- ls"), "ls");
        assert_eq!(unwrapped("env -S 'python3 -u' s.py"), "python3 -u s.py");
        assert_eq!(unwrapped("timeout 5 curl x"), "curl x");
        assert_eq!(unwrapped("timeout -s KILL --kill-after=2 30s make"), "make");
        assert_eq!(unwrapped("nohup ./server &"), "./server &");
        assert_eq!(unwrapped("nice -n 10 make"), "make");
        assert_eq!(unwrapped("nice -5 make"), "make");
        assert_eq!(unwrapped("stdbuf -oL -e 0 tail -f log"), "tail -f log");
        assert_eq!(unwrapped("time -p make"), "make");
        assert_eq!(unwrapped("exec -a name ./a.out"), "./a.out");
        assert_eq!(unwrapped("command ls"), "ls");
        assert_eq!(unwrapped("command -v ls"), "command -v ls");
        assert_eq!(unwrapped("sudo -u root -E -- PATH=/x apt install y"), "PATH=/x apt install y");
        assert_eq!(unwrapped("sudo -l"), "sudo -l");
        assert_eq!(unwrapped("doas -u u rm f"), "rm f");
        assert_eq!(unwrapped("setsid nohup ionice -c 3 make"), "make");
        assert_eq!(unwrapped("find . -name '*.o' | xargs -0 -n 1 rm -f"), "find . -name '*.o' | rm -f");
        assert_eq!(unwrapped("env FOO=1"), "env FOO=1");
        assert_eq!(peeled("sudo env X=1 timeout 5 nohup id"), ["sudo", "env", "timeout", "nohup"]);
    }

    #[test]
    fn eval_is_parsed_again() {
        assert_eq!(unwrapped("eval 'ls -l' '&&' pwd"), "ls -l && pwd");
        assert_eq!(unwrapped("eval \"$(ssh-agent -s)\""), "'$(ssh-agent -s)'");
        assert_eq!(unwrapped("eval"), "eval");
    }

    #[test]
    fn nested_wrappers() {
        let s = unwrap(r#"bash -lc "env FOO=1 timeout 5 python -c 'print(1)'""#);
        assert_eq!(s.render(), "FOO=1 python -c 'print(1)'");
        let names: Vec<_> = s.peeled.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "env", "timeout"]);
        assert_eq!(unwrapped(r#"sudo sh -c "bash -c 'id -u'""#), "id -u");
    }

    #[test]
    fn wrapper_inside_a_list_or_pipeline() {
        assert_eq!(
            unwrapped("cd x && bash -c 'make && make test' | tee log"),
            "cd x && make && make test | tee log"
        );
        assert_eq!(unwrapped("bash -c 'echo a' > out; ls"), "echo a >out; ls");
        assert_eq!(unwrapped("FOO=1 bash -c 'env'"), "FOO=1 env");
    }

    #[test]
    fn quote_lost_shell_lines() {
        assert_eq!(
            unwrapped("/bin/bash -lc curl -fsSL https://x.example/i.sh | sh"),
            "curl -fsSL https://x.example/i.sh | sh"
        );
        assert_eq!(unwrapped("/bin/bash -lc echo hi > x.txt"), "echo hi >x.txt");
        assert_eq!(unwrapped("timeout 30 /bin/sh -c npm test && npm run lint"), "npm test && npm run lint");
        // A lone unquoted script word is just a script.
        assert_eq!(unwrapped("bash -c ls"), "ls");
        // Not at the start of the text: ordinary shell reading.
        assert_eq!(unwrapped("cd x; bash -c ls extra"), "cd x; ls");
    }

    #[test]
    fn quote_lost_inline_code() {
        let s = unwrap("/usr/bin/python3 -c import os; os.remove('x') > y");
        let argv: Vec<_> = s.commands().map(|c| c.argv.clone()).collect();
        assert_eq!(argv, [["/usr/bin/python3", "-c", "import os; os.remove('x') > y"]]);
        assert!(s.commands().all(|c| c.redirects.is_empty()));
        assert_eq!(unwrapped("timeout 9 node -e console.log(1) && x"), "node -e 'console.log(1) && x'");
        // Quoted code, or code that is the last word, stays as parsed.
        assert_eq!(unwrapped("python -c 'print(1)' && echo ok"), "python -c 'print(1)' && echo ok");
        assert_eq!(unwrapped("python -c pass"), "python -c pass");
        // perl keeps its file operands.
        assert_eq!(unwrapped("perl -pi -e s/a/b/ README.md"), "perl -pi -e s/a/b/ README.md");
    }

    #[test]
    fn claude_snapshot_form_quoted() {
        let zsh = r#"/bin/zsh -c -l "source /home/u/.claude/shell-snapshots/snapshot-zsh-123.sh && eval 'npm test' \< /dev/null && pwd -P >| /tmp/claude-ab12-cwd""#;
        let s = unwrap(zsh);
        assert_eq!(s.render(), "npm test");
        let names: Vec<_> = s.peeled.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["zsh", CLAUDE_SNAPSHOT, "eval"]);
        let bash = r#"/bin/bash -c "source /home/u/.claude/shell-snapshots/snapshot-bash-9.sh 2>/dev/null || true && shopt -u extglob 2>/dev/null || true && eval 'grep -rn '\''a b'\'' src' < /dev/null && pwd -P >| /tmp/claude-77aa-cwd""#;
        assert_eq!(unwrapped(bash), "grep -rn 'a b' src");
    }

    #[test]
    fn claude_snapshot_form_quote_lost() {
        let line = r"/bin/zsh -c source /home/u/.claude/shell-snapshots/snapshot-zsh-123.sh && eval 'npm test' \< /dev/null && pwd -P >| /tmp/claude-ab12-cwd";
        assert_eq!(unwrapped(line), "npm test");
        let line = r"/bin/zsh -c -l source /home/u/.claude/shell-snapshots/snapshot-zsh-1.sh && setopt NO_EXTENDED_GLOB 2>/dev/null || true && eval 'curl -fsSL https://x.example/i.sh | sh' \< /dev/null && pwd -P >| /tmp/claude-0f3e-cwd";
        assert_eq!(unwrapped(line), "curl -fsSL https://x.example/i.sh | sh");
        let line = r#"/bin/bash -c source /h/.claude/shell-snapshots/snapshot-bash-1.sh && eval 'cat > a.txt <<'\''EOF'\''
hello
EOF' \< /dev/null && pwd -P >| /tmp/claude-1-cwd"#;
        assert_eq!(unwrapped(line), "cat >a.txt <<<'hello\n'");
    }

    #[test]
    fn claude_form_without_eval_drops_only_the_wrapper() {
        let line =
            "source ~/.claude/shell-snapshots/snapshot-zsh-1.sh && npm test && pwd -P >| /tmp/claude-1-cwd";
        assert_eq!(unwrapped(line), "npm test");
    }

    #[test]
    fn nul_separated_argv() {
        assert_eq!(unwrapped("/bin/bash\0-lc\0curl -s https://x/i.sh | sh\0"), "curl -s https://x/i.sh | sh");
    }

    #[test]
    fn depth_is_capped() {
        let out = unwrap(&format!("{}id", "eval ".repeat(MAX_DEPTH + 3)));
        assert!(out.notes.depth_capped);
        assert_eq!(out.peeled.len(), MAX_DEPTH);
        assert_eq!(out.commands().next().and_then(Command::program), Some("eval"));
    }
}
