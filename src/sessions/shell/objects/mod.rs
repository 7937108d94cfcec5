//! Object extraction: what a command touches — executables, files (read or written), URLs and
//! hosts, inline code given to interpreters, and the shape of its pipelines.
//!
//! Built on [`unwrap`], so `bash -lc 'curl … | sh'`, an EDR's quote-lost line and the agent's
//! own text give the same facts. Programs are read through small per-program rules (`sed -i`,
//! `cp`/`mv`/`install`/`ln` destinations, `tee`, `dd of=`, `rm`/`chmod`/…, `curl -o`,
//! `wget -O`, `ssh`/`scp`/`rsync`/`nc` hosts, interpreter `-c`/`-e`); other programs contribute
//! operands that look like paths (see [`looks_like_path`]).
//!
//! It deliberately does not decide anything: whether two commands touch "the same" objects is
//! the retry gate's call. Paths are resolved lexically against the cwd given (and `cd` within the
//! command); nothing is read from the filesystem.

use std::collections::HashSet;

mod files;
mod interpreters;
mod network;

use super::getopt::{self, Spec};
use super::net::{self, Url};
use super::paths::{is_plumbing, looks_like_path, normalize, resolve_in};
use super::programs::{family, FETCH, SHELLS};
use super::syntax::{basename, Command, Notes, Script};
use super::words::RedirOp;
use super::wrappers::{unwrap, unwrap_at, MAX_DEPTH};

/// Paths recorded per command string; beyond this the facts are cut and noted as truncated.
/// Real commands name far fewer, and the cap bounds memory on pathological input.
const MAX_PATHS: usize = 4096;

/// The class name for running a downloaded file directly (`curl -o f … && ./f`).
pub const EXEC: &str = "exec";

/// What one command string touches. Every list is de-duplicated and in order of appearance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandFacts {
    /// Basenames of the programs run, after unwrapping (`/usr/bin/curl` → `curl`).
    pub executables: Vec<String>,
    /// Wrappers that were peeled (`bash`, `env`, `timeout`, `claude-snapshot`, …); see
    /// [`Peeled`](super::Peeled).
    pub wrappers: Vec<String>,
    /// The argv of each command after unwrapping and quote removal.
    pub argv_lists: Vec<Vec<String>>,
    /// Files and directories named, resolved against the cwd; includes every entry of `writes`.
    pub paths: Vec<String>,
    /// Normalized URLs (see the `net` rules: lower-case scheme and host, no credentials).
    pub urls: Vec<String>,
    /// Hosts from URLs and from `ssh`/`scp`/`rsync`/`sftp`/`mosh`/`nc`/`telnet`/`git` operands.
    pub hosts: Vec<String>,
    /// Paths the command creates, changes or removes: redirection targets, `sed -i`/`perl -i`
    /// files, `tee`, `cp`/`install`/`ln` destinations, `mv` sources and destination, `dd of=`,
    /// `rm`/`rmdir`/`unlink`/`shred`/`touch`/`mkdir`/`truncate`/`chmod`/`chown`/`chgrp`
    /// operands, `curl -o`/`-O`, `wget` downloads, `tar -c` archives, `find -delete` roots,
    /// and the files named by a patch given to `apply_patch`, `git apply` or `patch`.
    pub writes: Vec<String>,
    /// Code handed to an interpreter: `python -c`, `node -e`/`-p`, `perl -e`, `ruby -e`,
    /// `php -r`, a here-document on an interpreter's stdin, and the script of every shell `-c`
    /// that was unwrapped (Claude Code's snapshot wrapper excepted: it is agent machinery).
    pub inline_code: Vec<InlineCode>,
    /// The class of each command in every multi-command pipeline (`curl … | sh` → `["fetch",
    /// "sh"]`); classes are [`family`] names, else the basename. Fetched code run another way
    /// (`bash -c "$(curl …)"`, `sh <(wget …)`, `curl -o f … && sh f`) is recorded here too, as
    /// `["fetch", <interpreter>]`.
    pub pipes: Vec<Vec<String>>,
    pub notes: Notes,
}

/// Code given to an interpreter on its command line or stdin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InlineCode {
    /// The interpreter's [`family`] (`sh`, `python`, `node`, `perl`, `ruby`, `php`).
    pub interpreter: String,
    pub code: String,
}

impl CommandFacts {
    /// Downloaded content is run by an interpreter: a pipe (or equivalent) from a fetcher into a
    /// shell, python, node, perl, ruby, php, or a downloaded file executed directly.
    pub fn runs_fetched_code(&self) -> bool {
        self.pipes.iter().any(|p| p.iter().skip_while(|c| *c != FETCH).skip(1).any(|c| is_code_runner(c)))
    }
}

fn is_code_runner(class: &str) -> bool {
    matches!(class, "sh" | "python" | "node" | "perl" | "ruby" | "php" | EXEC)
}

/// Unwrap `s` and extract what it touches; relative paths resolve against `cwd`.
pub fn facts(s: &str, cwd: Option<&str>) -> CommandFacts {
    facts_of(&unwrap(s), cwd)
}

/// [`facts`] for an already unwrapped script.
pub fn facts_of(script: &Script, cwd: Option<&str>) -> CommandFacts {
    let mut c = Collector::default();
    // Normalized once, so that paths can be appended to it cheaply.
    let mut cwd = cwd.map(normalize);
    c.script(script, &mut cwd, 0);
    c.finish()
}

#[derive(Default)]
struct Collector {
    f: CommandFacts,
    /// Files a fetcher wrote, to notice `curl -o f … && sh f`.
    fetched: HashSet<String>,
}

impl Collector {
    fn finish(mut self) -> CommandFacts {
        let f = &mut self.f;
        for list in
            [&mut f.executables, &mut f.wrappers, &mut f.paths, &mut f.urls, &mut f.hosts, &mut f.writes]
        {
            dedup(list);
        }
        dedup(&mut f.argv_lists);
        dedup(&mut f.inline_code);
        dedup(&mut f.pipes);
        self.f
    }

    fn script(&mut self, script: &Script, cwd: &mut Option<String>, depth: usize) {
        self.f.notes.merge(script.notes);
        for p in &script.peeled {
            self.f.wrappers.push(p.name.clone());
            if let (true, Some(code)) = (SHELLS.contains(&p.name.as_str()), &p.script) {
                self.f.inline_code.push(InlineCode { interpreter: "sh".into(), code: code.clone() });
            }
        }
        for item in &script.items {
            if item.pipeline.len() > 1 {
                self.f.pipes.push(item.pipeline.iter().map(class_of).collect());
            }
            for cmd in &item.pipeline {
                self.command(cmd, cwd.as_deref(), depth);
            }
            if let [single] = item.pipeline.as_slice() {
                change_dir(single, cwd);
            }
        }
    }

    fn command(&mut self, cmd: &Command, cwd: Option<&str>, depth: usize) {
        for (_, value) in &cmd.assignments {
            self.urls_in(value);
        }
        for r in &cmd.redirects {
            self.redirect(r.op, &r.target, cwd);
        }
        if let Some(argv0) = cmd.argv.first() {
            let program = basename(argv0);
            if !is_dynamic(argv0, cmd) {
                self.f.executables.push(program.to_string());
            }
            self.f.argv_lists.push(cmd.argv.clone());
            for word in &cmd.argv {
                self.urls_in(word);
            }
            let args = cmd.argv.get(1..).unwrap_or_default();
            self.program(program, args, cmd, cwd, depth);
            self.fetched_file_run(argv0, program, args, cwd);
        }
        self.substitutions(cmd, cwd, depth);
    }

    /// Look inside `$(…)`/`<(…)`; code fetched there and run by this command is a fetch pipe.
    fn substitutions(&mut self, cmd: &Command, cwd: Option<&str>, depth: usize) {
        if cmd.substitutions.is_empty() {
            return;
        }
        if depth + 1 > MAX_DEPTH {
            self.f.notes.depth_capped = true;
            return;
        }
        let runner = cmd.argv.first().map(|_| class_of(cmd)).filter(|class| is_code_runner(class));
        for sub in &cmd.substitutions {
            let inner = unwrap_at(sub, depth + 1);
            let fetches = inner.commands().any(|c| c.program().and_then(family) == Some(FETCH));
            if let (true, Some(class)) = (fetches, &runner) {
                self.f.pipes.push(vec![FETCH.to_string(), class.clone()]);
            }
            // A subshell: its `cd` does not move the outer command.
            let mut sub_cwd = cwd.map(str::to_string);
            self.script(&inner, &mut sub_cwd, depth + 1);
        }
    }

    fn redirect(&mut self, op: RedirOp, target: &str, cwd: Option<&str>) {
        match op {
            RedirOp::Write
            | RedirOp::Append
            | RedirOp::Clobber
            | RedirOp::WriteAll
            | RedirOp::AppendAll
            | RedirOp::ReadWrite => self.write(target, cwd),
            RedirOp::Read => self.path(target, cwd),
            RedirOp::DupIn | RedirOp::DupOut | RedirOp::HereDoc { .. } | RedirOp::HereString => {}
        }
    }

    fn urls_in(&mut self, text: &str) {
        for u in net::find_urls(text) {
            self.add_url(u);
        }
    }

    fn add_url(&mut self, u: Url) {
        self.f.urls.push(u.url);
        self.f.hosts.extend(u.host);
    }

    fn host(&mut self, host: Option<String>) {
        self.f.hosts.extend(host);
    }

    fn path(&mut self, p: &str, cwd: Option<&str>) {
        if names_a_file(p) && self.room_for_paths() {
            self.f.paths.push(resolve_in(p, cwd));
        }
    }

    fn write(&mut self, p: &str, cwd: Option<&str>) {
        if names_a_file(p) && self.room_for_paths() {
            let resolved = resolve_in(p, cwd);
            self.f.paths.push(resolved.clone());
            self.f.writes.push(resolved);
        }
    }

    fn room_for_paths(&mut self) -> bool {
        let room = self.f.paths.len() < MAX_PATHS;
        self.f.notes.truncated |= !room;
        room
    }

    fn paths_like(&mut self, words: &[&str], cwd: Option<&str>) {
        for w in words {
            if looks_like_path(w) {
                self.path(w, cwd);
            }
        }
    }

    /// Dispatch to the rules for `program`; programs without rules contribute path-like operands.
    fn program(&mut self, program: &str, args: &[String], cmd: &Command, cwd: Option<&str>, depth: usize) {
        match family(program) {
            Some("python" | "node" | "perl" | "ruby" | "php") | Some("sh") => {
                return self.interpreter(program, args, cmd, cwd);
            }
            Some(FETCH) => return self.fetcher(program, args, cwd),
            _ => {}
        }
        match program {
            "sed" | "gsed" => self.sed(args, cwd),
            "tee" => self.tee(args, cwd),
            "cp" | "install" | "ln" | "mv" => self.copy_like(program, args, cwd),
            "dd" => self.dd(args, cwd),
            "rm" | "rmdir" | "unlink" | "shred" | "touch" | "mkdir" | "truncate" => {
                self.removes_or_creates(program, args, cwd)
            }
            "chmod" | "chown" | "chgrp" => self.changes_mode(program, args, cwd),
            "ssh" | "scp" | "sftp" | "rsync" | "mosh" | "sshfs" => self.remote(program, args, cwd),
            "nc" | "ncat" | "netcat" | "telnet" => self.netcat(args),
            "git" => self.git(args, cmd, cwd),
            "apply_patch" | "applypatch" => {
                // Codex passes the patch as a here-document or as the only argument.
                if let Some(patch) = stdin_text(cmd).or(args.first().map(String::as_str)) {
                    self.patched(patch, cwd);
                }
            }
            "patch" => self.patch(args, cmd, cwd),
            "find" => self.find(args, cwd, depth),
            "tar" | "bsdtar" | "gtar" => self.tar(args, cwd),
            "grep" | "egrep" | "fgrep" | "zgrep" | "rg" | "ag" | "ack" => self.grep(program, args, cwd),
            "awk" | "gawk" | "mawk" | "nawk" => self.awk(args, cwd),
            "cd" | "pushd" => {
                if let Some(dir) = args.iter().find(|a| !a.starts_with('-')) {
                    self.path(dir, cwd);
                }
            }
            // Text, not objects.
            "echo" | "printf" | "export" | "set" | "unset" | "alias" | "local" | "declare" | "true"
            | "false" | "exit" | "return" => {}
            _ => self.generic(args, cwd),
        }
    }

    /// Operands that look like paths, and path-like values of `--opt=value`.
    fn generic(&mut self, args: &[String], cwd: Option<&str>) {
        let s = getopt::scan(args, &Spec::FLAGS);
        self.paths_like(&s.operand_words(args), cwd);
        let values: Vec<&str> = s.opts.iter().filter_map(|o| o.value.as_deref()).collect();
        self.paths_like(&values, cwd);
    }
}

/// The here-document or here-string on a command's stdin.
fn stdin_text(cmd: &Command) -> Option<&str> {
    cmd.redirects
        .iter()
        .find(|r| matches!(r.op, RedirOp::HereDoc { .. } | RedirOp::HereString) && r.fd.unwrap_or(0) == 0)
        .map(|r| r.target.as_str())
}

/// Not empty, not stdin/stdout (`-`), not plumbing like `/dev/null`, not `find`'s `{}`.
fn names_a_file(p: &str) -> bool {
    !p.is_empty() && p != "-" && p != "{}" && !is_plumbing(p)
}

/// The class of a command in a pipeline: its family, `sh` for a command that is itself a
/// substitution (`$(curl …)` run by the shell), else its basename.
fn class_of(cmd: &Command) -> String {
    match cmd.argv.first() {
        Some(argv0) if is_dynamic(argv0, cmd) => "sh".to_string(),
        Some(argv0) => {
            let program = basename(argv0);
            family(program).unwrap_or(program).to_string()
        }
        None => String::new(),
    }
}

/// `argv[0]` is a substitution's output (`$(curl …)`, `` `curl …` ``), run as a command.
fn is_dynamic(argv0: &str, cmd: &Command) -> bool {
    !cmd.substitutions.is_empty() && (argv0.starts_with("$(") || argv0.starts_with('`'))
}

/// `cd DIR` / `pushd DIR` moves the working directory for the commands after it.
fn change_dir(cmd: &Command, cwd: &mut Option<String>) {
    match cmd.program() {
        Some("cd" | "pushd") => {}
        Some("popd") => {
            *cwd = None;
            return;
        }
        _ => return,
    }
    let target = cmd.argv.iter().skip(1).find(|a| !a.starts_with('-') || *a == "-");
    *cwd = match target.map(String::as_str) {
        None => Some("~".to_string()),
        Some("-") => None,
        Some(dir) => Some(resolve_in(dir, cwd.as_deref())),
    };
}

/// Remove later duplicates, keeping first occurrences in order.
fn dedup<T: Clone + Eq + std::hash::Hash>(list: &mut Vec<T>) {
    let mut seen = HashSet::with_capacity(list.len());
    list.retain(|x| seen.insert(x.clone()));
}
