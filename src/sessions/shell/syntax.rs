//! The command structure of a shell string: a list of pipelines of simple commands, each with
//! its assignments, argv and redirections.
//!
//! This is a flat, forgiving reading of shell grammar built on [`split_words`]. Compound commands
//! are flattened: reserved words (`if`, `then`, `do`, `done`, `{`, `!`, …) are dropped so their
//! bodies read as plain commands, subshell parentheses become list separators, and the headers
//! of `for`/`select` and whole `case … esac` blocks are skipped (noted in
//! [`Notes::skipped_compound`]). It deliberately does not evaluate anything and does not know
//! about wrappers; [`unwrap`](super::unwrap) builds on it.

use std::ops::Range;

use super::words::{join_words, quote_word, split_words, Op, RedirOp, Token, Word, Words};

/// A parsed command string: pipelines joined by `;`, `&&`, `||`, `&` or newlines.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub items: Vec<Item>,
    /// Wrappers that [`unwrap`](super::unwrap) peeled to reach these commands, outermost first.
    /// Empty after a plain [`parse`].
    pub peeled: Vec<Peeled>,
    pub notes: Notes,
}

/// One pipeline and the operator that follows it.
#[derive(Debug, Clone)]
pub struct Item {
    pub pipeline: Vec<Command>,
    pub connector: Connector,
}

/// What follows a pipeline in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    /// `;`, a newline, or the end of the input.
    Seq,
    And,
    Or,
    Background,
}

/// A simple command.
#[derive(Debug, Clone, Default)]
pub struct Command {
    /// `NAME=value` words before the command name.
    pub assignments: Vec<(String, String)>,
    /// The words after quote removal; `argv[0]` as written (use [`Command::program`] for its
    /// basename). Empty for a command that only redirects (`> file`) or assigns.
    pub argv: Vec<String>,
    pub redirects: Vec<Redirect>,
    /// Inner texts of `$(…)`, `` `…` ``, `<(…)` and `>(…)` in this command's words, unparsed.
    pub substitutions: Vec<String>,
    /// Where each argv word came from, parallel to `argv`; see [`WordInfo`].
    pub(crate) words: Vec<WordInfo>,
}

/// Provenance of one argv word, used by unwrapping to repair quote-lost command lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct WordInfo {
    /// Byte range in the text this command was parsed from (empty for synthesized words).
    pub span: Range<usize>,
    pub quoted: bool,
    /// Where the shell would expand the word ([`Word::expansions`]); empty for synthesized words.
    pub expansions: Vec<Range<usize>>,
}

/// A redirection with its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub fd: Option<u32>,
    pub op: RedirOp,
    /// The file, the descriptor for `>&`/`<&`, or the text of a here-document or here-string.
    pub target: String,
}

/// A wrapper that was peeled off by [`unwrap`](super::unwrap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peeled {
    /// Basename of the wrapper (`bash`, `env`, `timeout`, `eval`, …), or `claude-snapshot` for
    /// Claude Code's snapshot-sourcing shell wrapper.
    pub name: String,
    /// The script a shell ran (`-c` argument, here-document) or `eval` evaluated. `None` for
    /// argv wrappers, and for the shell around Claude Code's snapshot wrapper, whose script is
    /// agent machinery rather than the user's code.
    pub script: Option<String>,
}

/// How much to trust a parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes {
    /// A quote, substitution or here-document was left open; words are a best effort.
    pub unbalanced: bool,
    /// The input or the token count was over the limit and was cut.
    pub truncated: bool,
    /// Unwrapping stopped at the nesting limit; the innermost wrapper is kept as a command.
    pub depth_capped: bool,
    /// A `for`/`select` header or a `case` block was skipped.
    pub skipped_compound: bool,
}

impl Notes {
    pub(crate) fn merge(&mut self, other: Notes) {
        self.unbalanced |= other.unbalanced;
        self.truncated |= other.truncated;
        self.depth_capped |= other.depth_capped;
        self.skipped_compound |= other.skipped_compound;
    }
}

impl Script {
    /// All simple commands, in order.
    pub fn commands(&self) -> impl Iterator<Item = &Command> {
        self.items.iter().flat_map(|i| i.pipeline.iter())
    }

    /// A canonical shell rendering, e.g. for evidence and tests: words quoted with
    /// [`quote_word`], here-documents shown as here-strings.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (n, item) in self.items.iter().enumerate() {
            let pipeline: Vec<String> = item.pipeline.iter().map(Command::render).collect();
            out.push_str(&pipeline.join(" | "));
            let last = n + 1 == self.items.len();
            out.push_str(match item.connector {
                Connector::And => " && ",
                Connector::Or => " || ",
                Connector::Background => " &",
                Connector::Seq if last => "",
                Connector::Seq => "; ",
            });
            if item.connector == Connector::Background && !last {
                out.push(' ');
            }
        }
        out
    }
}

impl Command {
    /// Basename of `argv[0]` (`/usr/bin/curl` → `curl`, a login shell's `-zsh` → `zsh`).
    pub fn program(&self) -> Option<&str> {
        self.argv.first().map(|a| basename(a))
    }

    /// Byte ranges of `argv[i]` that the shell would expand ([`Word::expansions`]); empty for
    /// a word the parser made up itself (a wrapper's `-S` split) and for an `i` out of range.
    pub fn expansions(&self, i: usize) -> &[Range<usize>] {
        self.words.get(i).map_or(&[], |w| w.expansions.as_slice())
    }

    fn render(&self) -> String {
        let mut parts: Vec<String> =
            self.assignments.iter().map(|(k, v)| format!("{k}={}", quote_word(v))).collect();
        parts.push(join_words(&self.argv));
        for r in &self.redirects {
            let fd = r.fd.map(|f| f.to_string()).unwrap_or_default();
            let op = match r.op {
                RedirOp::HereDoc { .. } => RedirOp::HereString,
                op => op,
            };
            parts.push(format!("{fd}{}{}", op.as_str(), quote_word(&r.target)));
        }
        parts.retain(|p| !p.is_empty());
        parts.join(" ")
    }
}

/// The last path component, without the leading `-` that marks a login shell's `argv[0]`.
pub fn basename(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    match base.strip_prefix('-') {
        Some(rest) if !rest.is_empty() && !rest.starts_with('-') => rest,
        _ => base,
    }
}

/// Parse a command string. A NUL-separated argv (as in `/proc/<pid>/cmdline`) is read as exact
/// words. Never panics.
pub fn parse(s: &str) -> Script {
    parse_source(&argv_from_nul(s))
}

/// `/proc/<pid>/cmdline` style input keeps exact word boundaries; quote it so they survive.
pub(crate) fn argv_from_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\0') {
        return s.into();
    }
    let mut parts: Vec<&str> = s.split('\0').collect();
    while parts.last() == Some(&"") {
        parts.pop();
    }
    join_words(&parts).into()
}

/// Parse text whose word spans callers will use: no NUL conversion, so spans index `text`.
pub(crate) fn parse_source(text: &str) -> Script {
    let words = split_words(text);
    let mut p = Parser::new(text, &words);
    p.run();
    p.script
}

#[derive(PartialEq)]
enum Skip {
    No,
    /// A `for`/`select` header, up to the next `;` or newline.
    ToSeparator,
    /// A whole `case … esac` block: its patterns are not commands.
    ToEsac,
}

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    script: Script,
    pipeline: Vec<Command>,
    cmd: Command,
    skip: Skip,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, words: &'a Words) -> Self {
        let notes = Notes { unbalanced: words.unbalanced, truncated: words.truncated, ..Notes::default() };
        Parser {
            text,
            tokens: &words.tokens,
            script: Script { notes, ..Script::default() },
            pipeline: Vec::new(),
            cmd: Command::default(),
            skip: Skip::No,
        }
    }

    fn run(&mut self) {
        let mut i = 0;
        while let Some(token) = self.tokens.get(i) {
            i += 1;
            match token {
                Token::Word(w) => self.word(w),
                Token::Redir { fd, op, body, .. } => {
                    let target = match self.tokens.get(i) {
                        Some(Token::Word(w)) => {
                            i += 1;
                            Some(w)
                        }
                        _ => None,
                    };
                    self.redirect(*fd, *op, body.as_deref(), target);
                }
                Token::Op { op, .. } => self.op(*op),
            }
        }
        self.end_pipeline(Connector::Seq);
    }

    fn word(&mut self, w: &Word) {
        match self.skip {
            Skip::ToSeparator => return,
            Skip::ToEsac => {
                if w.text == "esac" && !w.quoted {
                    self.skip = Skip::No;
                }
                return;
            }
            Skip::No => {}
        }
        if self.cmd.argv.is_empty() {
            // `BAR='a b'` is quoted but still an assignment: the name must be unquoted.
            if let Some(assignment) = self.assignment(w) {
                self.cmd.assignments.push(assignment);
                self.cmd.substitutions.extend(w.substitutions.iter().cloned());
                return;
            }
        }
        if self.cmd.argv.is_empty() && !w.quoted {
            match w.text.as_str() {
                // Reserved words around a command: drop them so the command itself is seen.
                "if" | "then" | "else" | "elif" | "fi" | "do" | "done" | "while" | "until" | "{" | "}"
                | "!" | "esac" => return,
                "for" | "select" => {
                    self.skip = Skip::ToSeparator;
                    self.script.notes.skipped_compound = true;
                    return;
                }
                "case" => {
                    self.skip = Skip::ToEsac;
                    self.script.notes.skipped_compound = true;
                    return;
                }
                _ => {}
            }
        }
        self.cmd.argv.push(w.text.clone());
        self.cmd.words.push(WordInfo {
            span: w.span.clone(),
            quoted: w.quoted,
            expansions: w.expansions.clone(),
        });
        self.cmd.substitutions.extend(w.substitutions.iter().cloned());
    }

    /// `NAME=value` (or `NAME+=value`) with an unquoted name, as written in the source.
    fn assignment(&self, w: &Word) -> Option<(String, String)> {
        let raw = self.text.get(w.span.clone())?;
        let eq = raw.find('=')?;
        let name = raw.get(..eq)?;
        let name = name.strip_suffix('+').unwrap_or(name);
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let (_, value) = w.text.split_once('=')?;
        Some((name.to_string(), value.to_string()))
    }

    fn redirect(&mut self, fd: Option<u32>, op: RedirOp, body: Option<&str>, target: Option<&Word>) {
        if target.is_none() {
            self.script.notes.unbalanced = true;
        }
        if self.skip != Skip::No {
            return;
        }
        let target_text = match op {
            RedirOp::HereDoc { .. } => body.unwrap_or_default().to_string(),
            _ => target.map(|w| w.text.clone()).unwrap_or_default(),
        };
        if let Some(w) = target {
            if !matches!(op, RedirOp::HereDoc { .. }) {
                self.cmd.substitutions.extend(w.substitutions.iter().cloned());
            }
        }
        // `>&file` (not a descriptor number) is bash's spelling of `&> file`.
        let op = match op {
            RedirOp::DupOut if fd.is_none() && !is_fd_target(&target_text) => RedirOp::WriteAll,
            op => op,
        };
        self.cmd.redirects.push(Redirect { fd, op, target: target_text });
    }

    fn op(&mut self, op: Op) {
        if self.skip == Skip::ToEsac {
            return;
        }
        match op {
            Op::Pipe | Op::PipeAll => self.end_command(),
            Op::And => self.end_pipeline(Connector::And),
            Op::Or => self.end_pipeline(Connector::Or),
            Op::Background => self.end_pipeline(Connector::Background),
            Op::Semi | Op::Newline | Op::CaseEnd | Op::OpenParen | Op::CloseParen => {
                if self.skip == Skip::ToSeparator && matches!(op, Op::Semi | Op::Newline) {
                    self.skip = Skip::No;
                }
                self.end_pipeline(Connector::Seq);
            }
        }
    }

    fn end_command(&mut self) {
        let cmd = std::mem::take(&mut self.cmd);
        if !(cmd.argv.is_empty() && cmd.assignments.is_empty() && cmd.redirects.is_empty()) {
            self.pipeline.push(cmd);
        }
    }

    fn end_pipeline(&mut self, connector: Connector) {
        self.end_command();
        if !self.pipeline.is_empty() {
            let pipeline = std::mem::take(&mut self.pipeline);
            self.script.items.push(Item { pipeline, connector });
        }
    }
}

/// A `>&`/`<&` target that names a descriptor (`1`, `2`, `-`), not a file.
pub(crate) fn is_fd_target(t: &str) -> bool {
    t == "-" || (!t.is_empty() && t.trim_end_matches('-').bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Argv of each command that has one (redirect-only commands are left out).
    fn argvs(s: &str) -> Vec<Vec<String>> {
        parse(s).commands().filter(|c| !c.argv.is_empty()).map(|c| c.argv.clone()).collect()
    }

    #[test]
    fn lists_and_pipelines() {
        let s = parse("a 1 | b && c || d; e & f\ng");
        let shape: Vec<(usize, Connector)> =
            s.items.iter().map(|i| (i.pipeline.len(), i.connector)).collect();
        assert_eq!(
            shape,
            [
                (2, Connector::And),
                (1, Connector::Or),
                (1, Connector::Seq),
                (1, Connector::Background),
                (1, Connector::Seq),
                (1, Connector::Seq),
            ]
        );
        assert_eq!(s.render(), "a 1 | b && c || d; e & f; g");
    }

    #[test]
    fn assignments_only_before_the_command() {
        let s = parse("FOO=1 BAR='a b' X+=y cmd A=2 'Q=3'");
        let Some(c) = s.commands().next() else { panic!("no command") };
        assert_eq!(
            c.assignments,
            [("FOO".into(), "1".into()), ("BAR".into(), "a b".into()), ("X".into(), "y".into())]
        );
        assert_eq!(c.argv, ["cmd", "A=2", "Q=3"]);
        assert_eq!(argvs("'FOO=1' cmd"), [["FOO=1", "cmd"]]);
    }

    #[test]
    fn redirect_targets() {
        let s = parse("cmd >out 2>&1 <in >&all <<EOF\nbody\nEOF\n");
        let Some(c) = s.commands().next() else { panic!("no command") };
        let r: Vec<(Option<u32>, RedirOp, &str)> =
            c.redirects.iter().map(|r| (r.fd, r.op, r.target.as_str())).collect();
        assert_eq!(
            r,
            [
                (None, RedirOp::Write, "out"),
                (Some(2), RedirOp::DupOut, "1"),
                (None, RedirOp::Read, "in"),
                (None, RedirOp::WriteAll, "all"),
                (None, RedirOp::HereDoc { strip_tabs: false }, "body\n"),
            ]
        );
        assert_eq!(c.argv, ["cmd"]);
        // A bare redirection is kept: `> file` truncates the file.
        assert_eq!(parse("> f").commands().count(), 1);
        assert!(parse("cmd >").notes.unbalanced);
    }

    #[test]
    fn compound_commands_are_flattened() {
        assert_eq!(
            argvs("if test -f x; then rm x; else touch x; fi"),
            [vec!["test", "-f", "x"], vec!["rm", "x"], vec!["touch", "x"]]
        );
        let s = parse("for f in *.py; do python \"$f\"; done");
        assert!(s.notes.skipped_compound);
        assert_eq!(s.commands().map(|c| c.argv.clone()).collect::<Vec<_>>(), [["python", "$f"]]);
        assert_eq!(
            argvs("while read l; do echo \"$l\"; done < list"),
            [vec!["read", "l"], vec!["echo", "$l"]]
        );
        assert_eq!(argvs("case $x in a|b) rm a;; *) ls;; esac; pwd"), [["pwd"]]);
        assert_eq!(
            argvs("(cd sub && make) && { echo ok; }"),
            [vec!["cd", "sub"], vec!["make"], vec!["echo", "ok"]]
        );
        assert_eq!(argvs("! grep -q x f"), [["grep", "-q", "x", "f"]]);
        // Reserved words are only reserved in command position and unquoted.
        assert_eq!(argvs("echo if then 'fi'"), [["echo", "if", "then", "fi"]]);
    }

    #[test]
    fn program_is_the_basename() {
        let s = parse("/usr/bin/curl -s x | -zsh");
        let programs: Vec<_> = s.commands().filter_map(Command::program).collect();
        assert_eq!(programs, ["curl", "zsh"]);
        assert_eq!(basename("-"), "-");
    }

    #[test]
    fn nul_separated_argv_keeps_word_boundaries() {
        let s = parse("/bin/bash\0-lc\0curl -s https://x/i.sh | sh\0");
        assert_eq!(argvs_of(&s), [["/bin/bash", "-lc", "curl -s https://x/i.sh | sh"]]);
    }

    fn argvs_of(s: &Script) -> Vec<Vec<String>> {
        s.commands().map(|c| c.argv.clone()).collect()
    }

    #[test]
    fn expansions_follow_their_argv_words() {
        let s = parse("FOO=$X cp \"$HOME\"/a '*.txt' *.md");
        let Some(c) = s.commands().next() else { panic!("no command") };
        assert_eq!(c.argv, ["cp", "$HOME/a", "*.txt", "*.md"]);
        // Each word's expanded parts as text; the fifth word does not exist.
        let expanded: Vec<Vec<&str>> =
            (0..5).map(|i| c.expansions(i).iter().map(|r| &c.argv[i][r.clone()]).collect()).collect();
        assert_eq!(expanded, [vec![], vec!["$HOME"], vec![], vec!["*"], vec![]]);
    }

    #[test]
    fn substitutions_are_collected_per_command() {
        let s = parse("echo \"$(id -u)\" > \"$(mktemp)\" && X=$(date) ls");
        let subs: Vec<Vec<String>> = s.commands().map(|c| c.substitutions.clone()).collect();
        assert_eq!(subs, [vec!["id -u", "mktemp"], vec!["date"]]);
    }
}
