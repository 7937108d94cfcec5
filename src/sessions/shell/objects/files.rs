//! Rules for programs that read and write files: `sed`, `cp`/`mv`/`install`/`ln`, `rm` and
//! friends, `chmod`/`chown`, `git`, `patch`, `find`, `tar`, `grep`.

use super::super::getopt::{self, Spec};
use super::super::net;
use super::super::patches::patch_files;
use super::super::paths::{looks_like_path, resolve_in};
use super::super::syntax::Command;
use super::{stdin_text, Collector};

impl Collector {
    /// Every operand is written.
    pub(super) fn tee(&mut self, args: &[String], cwd: Option<&str>) {
        let s = getopt::scan(args, &Spec::FLAGS);
        for w in s.operand_words(args) {
            self.write(w, cwd);
        }
    }

    /// `dd if=in of=out`: operands are `key=value`, not options.
    pub(super) fn dd(&mut self, args: &[String], cwd: Option<&str>) {
        for a in args {
            if let Some(f) = a.strip_prefix("of=") {
                self.write(f, cwd);
            } else if let Some(f) = a.strip_prefix("if=") {
                self.path(f, cwd);
            }
        }
    }

    /// The first operand is the program unless `-f` gave one.
    pub(super) fn awk(&mut self, args: &[String], cwd: Option<&str>) {
        let s = getopt::scan(args, &Spec { short_values: "fvF", ..Spec::FLAGS });
        for f in s.values(&["-f"]) {
            self.path(f, cwd);
        }
        let skip = usize::from(!s.has(&["-f"]));
        self.paths_like(s.operand_words(args).get(skip..).unwrap_or_default(), cwd);
    }

    /// With `-i`/`--in-place` the files are written, else read; the first operand is the script
    /// unless `-e`/`-f` gave one.
    pub(super) fn sed(&mut self, args: &[String], cwd: Option<&str>) {
        // BSD sed takes the backup suffix as a separate (often empty) word: `sed -i '' …`.
        let mut cleaned: Vec<String> = Vec::with_capacity(args.len());
        for a in args {
            if a.is_empty() && cleaned.last().is_some_and(|p| p == "-i") {
                continue;
            }
            cleaned.push(a.clone());
        }
        let spec = Spec {
            short_values: "efl",
            short_attached: "i",
            long_values: &["expression", "file", "line-length"],
            ..Spec::FLAGS
        };
        let s = getopt::scan(&cleaned, &spec);
        let in_place = s.has(&["-i", "--in-place"]);
        let script_given = s.has(&["-e", "--expression", "-f", "--file"]);
        for f in s.values(&["-f", "--file"]) {
            self.path(f, cwd);
        }
        let operands = s.operand_words(&cleaned);
        for f in operands.iter().skip(usize::from(!script_given)) {
            if in_place {
                self.write(f, cwd);
            } else {
                self.path(f, cwd);
            }
        }
    }

    /// `cp`/`install`/`ln` write their destination (last operand or `-t DIR`) and read their
    /// sources; `mv` also removes its sources, so they are writes.
    pub(super) fn copy_like(&mut self, program: &str, args: &[String], cwd: Option<&str>) {
        let spec = match program {
            "install" => Spec {
                short_values: "tSmogB",
                long_values: &["target-directory", "suffix", "mode", "owner", "group", "strip-program"],
                ..Spec::FLAGS
            },
            _ => Spec { short_values: "tS", long_values: &["target-directory", "suffix"], ..Spec::FLAGS },
        };
        let s = getopt::scan(args, &spec);
        let operands = s.operand_words(args);
        let target: Vec<&str> = s.values(&["-t", "--target-directory"]).collect();
        let creates_dirs = program == "install" && s.has(&["-d", "--directory"]);
        let (sources, dest) = match (target.is_empty() && !creates_dirs, operands.split_last()) {
            (true, Some((last, rest))) if !rest.is_empty() => (rest, Some(*last)),
            _ => (operands.as_slice(), None),
        };
        for src in sources {
            // `mv` removes its sources; `install -d` creates its operands.
            if program == "mv" || creates_dirs {
                self.write(src, cwd);
            } else {
                self.path(src, cwd);
            }
        }
        for d in target.into_iter().chain(dest) {
            self.write(d, cwd);
        }
    }

    /// `rm`, `rmdir`, `unlink`, `shred`, `touch`, `mkdir`, `truncate`: every operand is written.
    pub(super) fn removes_or_creates(&mut self, program: &str, args: &[String], cwd: Option<&str>) {
        let spec = match program {
            "touch" => {
                Spec { short_values: "rtd", long_values: &["reference", "date", "time"], ..Spec::FLAGS }
            }
            "mkdir" => Spec { short_values: "m", long_values: &["mode"], ..Spec::FLAGS },
            "truncate" => Spec { short_values: "sr", long_values: &["size", "reference"], ..Spec::FLAGS },
            "shred" => Spec {
                short_values: "ns",
                long_values: &["iterations", "size", "random-source"],
                ..Spec::FLAGS
            },
            _ => Spec::FLAGS,
        };
        let s = getopt::scan(args, &spec);
        for f in s.operand_words(args) {
            self.write(f, cwd);
        }
        for f in s.values(&["-r", "--reference"]) {
            self.path(f, cwd);
        }
    }

    /// `chmod MODE f…`, `chown OWNER f…`, `chgrp GROUP f…` (or `--reference=r f…`): the files.
    pub(super) fn changes_mode(&mut self, program: &str, args: &[String], cwd: Option<&str>) {
        let s = getopt::scan(args, &Spec { long_values: &["reference"], ..Spec::FLAGS });
        let operands = s.operand_words(args);
        let first_is_spec = !s.has(&["--reference"])
            && match program {
                // `chmod -x f` reads `-x` as an option; only skip a first operand that is a mode.
                "chmod" => operands.first().is_some_and(|m| is_mode(m)),
                _ => true,
            };
        for f in operands.iter().skip(usize::from(first_is_spec)) {
            self.write(f, cwd);
        }
    }

    /// The files a patch names are written.
    pub(super) fn patched(&mut self, patch: &str, cwd: Option<&str>) {
        for f in patch_files(patch) {
            self.write(&f, cwd);
        }
    }

    /// `patch [originalfile [patchfile]]`, `-o out`, `-d dir`, or a patch on stdin.
    pub(super) fn patch(&mut self, args: &[String], cmd: &Command, cwd: Option<&str>) {
        let spec = Spec {
            short_values: "pioDdrBzVFY",
            long_values: &[
                "strip",
                "input",
                "output",
                "directory",
                "reject-file",
                "prefix",
                "suffix",
                "fuzz",
            ],
            ..Spec::FLAGS
        };
        let s = getopt::scan(args, &spec);
        let dir = s.values(&["-d", "--directory"]).last().map(|d| resolve_in(d, cwd));
        let cwd = dir.as_deref().or(cwd);
        let operands = s.operand_words(args);
        // `patch [options] [originalfile [patchfile]]`
        if let Some(original) = operands.first() {
            self.write(original, cwd);
        }
        for f in operands.iter().skip(1).copied().chain(s.values(&["-i", "--input"])) {
            self.path(f, cwd);
        }
        for f in s.values(&["-o", "--output"]) {
            self.write(f, cwd);
        }
        if let Some(text) = stdin_text(cmd) {
            self.patched(text, cwd);
        }
    }

    /// Hosts of scp-like remotes, `git rm`/`git mv` operands and `git apply` patches as writes,
    /// other path-like operands as paths; `-C dir` moves the cwd.
    pub(super) fn git(&mut self, args: &[String], cmd: &Command, cwd: Option<&str>) {
        let s = getopt::scan(args, &Spec { short_values: "Cc", ..Spec::FLAGS });
        let operands = s.operand_words(args);
        let dir = s.values(&["-C"]).last().map(|d| resolve_in(d, cwd));
        let cwd = dir.as_deref().or(cwd);
        for w in operands.iter().skip(1) {
            self.host(net::remote_operand_host(w, true));
        }
        let rest = operands.get(1..).unwrap_or_default();
        match operands.first().copied() {
            Some("rm" | "mv") => {
                for w in rest.iter().filter(|w| looks_like_path(w)) {
                    self.write(w, cwd);
                }
            }
            Some("apply") => {
                self.paths_like(rest, cwd);
                if let Some(text) = stdin_text(cmd) {
                    self.patched(text, cwd);
                }
            }
            Some("clone" | "fetch" | "pull" | "push" | "remote" | "ls-remote" | "submodule") => {}
            _ => self.paths_like(rest, cwd),
        }
    }

    /// Roots are paths (writes with `-delete`); `-exec`/`-execdir`/`-ok` commands are commands.
    pub(super) fn find(&mut self, args: &[String], cwd: Option<&str>, depth: usize) {
        let mut i = 0;
        // Leading traversal options.
        while let Some(a) = args.get(i) {
            match a.as_str() {
                "-H" | "-L" | "-P" => i += 1,
                "-D" => i += 2,
                o if o.starts_with("-O") => i += 1,
                _ => break,
            }
        }
        let roots: Vec<&str> = args
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|a| !a.starts_with('-') && *a != "(" && *a != "!")
            .map(String::as_str)
            .collect();
        let deletes = args.iter().any(|a| a == "-delete");
        for r in &roots {
            if deletes {
                self.write(r, cwd);
            } else {
                self.path(r, cwd);
            }
        }
        let mut rest = args.get(i + roots.len()..).unwrap_or_default().iter();
        while let Some(a) = rest.next() {
            if matches!(a.as_str(), "-exec" | "-execdir" | "-ok" | "-okdir") {
                let argv: Vec<String> =
                    rest.by_ref().take_while(|w| *w != ";" && *w != "+").cloned().collect();
                let sub = Command { argv, ..Command::default() };
                self.command(&sub, cwd, depth);
            }
        }
    }

    /// The archive is written when creating or appending, read otherwise.
    pub(super) fn tar(&mut self, args: &[String], cwd: Option<&str>) {
        // `tar czf out.tgz dir`: a first word without a dash is a bundle of options.
        let mut owned: Vec<String> = args.to_vec();
        if let Some(first) = owned.first_mut() {
            if !first.starts_with('-') {
                first.insert(0, '-');
            }
        }
        let spec = Spec {
            short_values: "fCTXbHV",
            long_values: &["file", "directory", "files-from", "exclude-from"],
            ..Spec::FLAGS
        };
        let s = getopt::scan(&owned, &spec);
        let creates = s.has(&["-c", "-r", "-u", "-A", "--create", "--append", "--update"]);
        for f in s.values(&["-f", "--file"]) {
            if creates {
                self.write(f, cwd);
            } else {
                self.path(f, cwd);
            }
        }
        for d in s.values(&["-C", "--directory"]) {
            self.path(d, cwd);
        }
        self.paths_like(&s.operand_words(&owned), cwd);
    }

    /// Files after the pattern (the first operand unless `-e`/`-f` gave one).
    pub(super) fn grep(&mut self, program: &str, args: &[String], cwd: Option<&str>) {
        let spec = match program {
            "rg" => Spec {
                short_values: "efmABCgtTrMjE",
                long_values: &["regexp", "file", "glob", "type", "replace"],
                ..Spec::FLAGS
            },
            _ => Spec { short_values: "efmABCdD", long_values: &["regexp", "file"], ..Spec::FLAGS },
        };
        let s = getopt::scan(args, &spec);
        let pattern_given = s.has(&["-e", "--regexp", "-f", "--file"]);
        for f in s.values(&["-f", "--file"]) {
            self.path(f, cwd);
        }
        let operands = s.operand_words(args);
        self.paths_like(operands.get(usize::from(!pattern_given)..).unwrap_or_default(), cwd);
    }
}

/// A chmod mode operand: octal digits or symbolic `u+x,go-w`.
fn is_mode(m: &str) -> bool {
    if !m.is_empty() && m.len() <= 4 && m.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return true;
    }
    !m.is_empty()
        && m.split(',').all(|clause| {
            let who = clause.trim_start_matches(['u', 'g', 'o', 'a']);
            who.starts_with(['+', '-', '=']) && who.chars().all(|c| "+-=rwxXstugo".contains(c))
        })
}
