//! Shell words: a POSIX-ish lexer that turns a command string into words, operators and
//! redirections.
//!
//! It understands the quoting an agent or a human types: `'…'`, `"…"` with its backslash
//! escapes, `$'…'` (ANSI-C), `$"…"`, backslash and line continuation, `#` comments, the list and
//! pipe operators (`|`, `|&`, `||`, `&&`, `;`, `;;`, `&`, newline), subshell parentheses,
//! redirections (`>`, `>>`, `>|`, `<`, `<>`, `N>&M`, `&>`, `&>>`, `<<`, `<<-`, `<<<`) and
//! here-document bodies. Command and process substitutions (`$(…)`, `` `…` ``, `<(…)`, `>(…)`)
//! stay inside their word as written, and their inner text is reported so callers can look
//! inside.
//!
//! It deliberately does not expand anything: `$VAR`, `~`, globs and substitutions stay as
//! written, because the point is to compare what an agent wrote with what a process ran, not to
//! run it. It does mark where the shell *would* expand ([`Word::expansions`]), so a caller can
//! tell an unquoted `*` or `$VAR` from a quoted, literal one. It never fails: unbalanced quotes give best-effort words and set
//! [`Words::unbalanced`]; oversized input is cut and sets [`Words::truncated`].

use std::ops::Range;

/// Longer inputs are cut (at a character boundary) before lexing, so work stays bounded even for
/// a command carrying a large here-document.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

/// Lexing stops after this many tokens; a real command line has far fewer.
pub const MAX_TOKENS: usize = 20_000;

/// The result of [`split_words`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words {
    pub tokens: Vec<Token>,
    /// A quote, substitution or here-document was still open at the end of the input. The tokens
    /// are a best effort: the open part runs to the end of the input.
    pub unbalanced: bool,
    /// The input was longer than [`MAX_INPUT_BYTES`] or had more than [`MAX_TOKENS`] tokens.
    pub truncated: bool,
}

impl Words {
    /// The texts of the words only, ignoring operators and redirections.
    pub fn texts(&self) -> Vec<&str> {
        self.tokens
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// One lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(Word),
    Op {
        op: Op,
        span: Range<usize>,
    },
    /// A redirection operator; its target is the next word. For a here-document the next word is
    /// the delimiter and `body` holds the document's text.
    Redir {
        fd: Option<u32>,
        op: RedirOp,
        span: Range<usize>,
        body: Option<String>,
    },
}

/// One shell word after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// The word with quotes removed (`'a b'` → `a b`); `$VAR` and `$(…)` stay as written.
    pub text: String,
    /// Byte range of the word in the input. Lets a caller take "the rest of the line" from a
    /// word, which is how quote-lost EDR command lines are repaired.
    pub span: Range<usize>,
    /// Any quoting or escaping occurred in the word. An unquoted word followed by more text is
    /// the mark of a command line whose quoting was lost.
    pub quoted: bool,
    /// Inner texts of command and process substitutions in the word, unparsed.
    pub substitutions: Vec<String>,
    /// Byte ranges of `text` that a shell would expand, in order: parameter expansions (`$NAME`,
    /// `${…}`, `$1`, `$@`, …), command and process substitutions and arithmetic (`$(…)`,
    /// `` `…` ``, `<(…)`, `$((…))`), and unquoted `*` and `?`. Quoted or escaped text is never in
    /// a range. Bracket expressions (`[…]`) are not marked: an unquoted `[` is far more often
    /// literal (`[ -f x ]`, `keys[]`) than a pattern in the commands agents run.
    pub expansions: Vec<Range<usize>>,
}

/// Control operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `|`
    Pipe,
    /// `|&` (stdout and stderr into the pipe)
    PipeAll,
    /// `&&`
    And,
    /// `||`
    Or,
    /// `;`
    Semi,
    /// `;;`, `;&`, `;;&` (case terminators)
    CaseEnd,
    /// `&`
    Background,
    /// An unquoted newline.
    Newline,
    /// `(` at the start of a command.
    OpenParen,
    /// `)` closing an open `(`.
    CloseParen,
}

/// Redirection operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirOp {
    /// `<`
    Read,
    /// `>`
    Write,
    /// `>>`
    Append,
    /// `>|` (write even under `noclobber`)
    Clobber,
    /// `<>`
    ReadWrite,
    /// `<&`
    DupIn,
    /// `>&`
    DupOut,
    /// `&>` (stdout and stderr)
    WriteAll,
    /// `&>>`
    AppendAll,
    /// `<<` or `<<-`
    HereDoc { strip_tabs: bool },
    /// `<<<`
    HereString,
}

impl RedirOp {
    /// The operator as written (`<<-` for a tab-stripping here-document).
    pub fn as_str(self) -> &'static str {
        match self {
            RedirOp::Read => "<",
            RedirOp::Write => ">",
            RedirOp::Append => ">>",
            RedirOp::Clobber => ">|",
            RedirOp::ReadWrite => "<>",
            RedirOp::DupIn => "<&",
            RedirOp::DupOut => ">&",
            RedirOp::WriteAll => "&>",
            RedirOp::AppendAll => "&>>",
            RedirOp::HereDoc { strip_tabs: false } => "<<",
            RedirOp::HereDoc { strip_tabs: true } => "<<-",
            RedirOp::HereString => "<<<",
        }
    }
}

/// Split a shell command string into tokens. Never panics; see the module docs for what is
/// understood and what is left as written.
pub fn split_words(s: &str) -> Words {
    let (src, truncated) = cap_input(s);
    let mut lexer = Lexer::new(src);
    lexer.run();
    Words { tokens: lexer.tokens, unbalanced: lexer.unbalanced, truncated: truncated || lexer.truncated }
}

/// Quote one word so that [`split_words`] (and a POSIX shell) reads it back unchanged.
pub fn quote_word(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quote and join an argv, e.g. to turn an EDR's exact argv (auditd `a0…aN`) into a command
/// line that keeps its word boundaries.
pub fn join_words<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter().map(|a| quote_word(a.as_ref())).collect::<Vec<_>>().join(" ")
}

/// Cut `s` to at most [`MAX_INPUT_BYTES`], at a character boundary.
pub(crate) fn cap_input(s: &str) -> (&str, bool) {
    if s.len() <= MAX_INPUT_BYTES {
        return (s, false);
    }
    let mut end = MAX_INPUT_BYTES;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    (s.get(..end).unwrap_or(""), true)
}

/// A here-document whose body starts after the next unquoted newline.
struct PendingHereDoc {
    token: usize,
    delimiter: String,
    strip_tabs: bool,
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    unbalanced: bool,
    truncated: bool,
    /// Open `(` groups, so that `)` ends a word only when it closes one (`print(1)` in a
    /// quote-lost `python -c print(1)` stays a word).
    paren_depth: u32,
    /// The next word would start a command: only there does `(` open a subshell.
    command_start: bool,
    /// Index of a here-document operator whose delimiter word comes next.
    heredoc_operator: Option<(usize, bool)>,
    pending_heredocs: Vec<PendingHereDoc>,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            pos: 0,
            tokens: Vec::new(),
            unbalanced: false,
            truncated: false,
            paren_depth: 0,
            command_start: true,
            heredoc_operator: None,
            pending_heredocs: Vec::new(),
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    fn starts_with(&self, p: &str) -> bool {
        self.rest().starts_with(p)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn advance(&mut self, bytes: usize) {
        self.pos = (self.pos + bytes).min(self.src.len());
    }

    fn run(&mut self) {
        loop {
            if self.tokens.len() >= MAX_TOKENS {
                self.truncated = true;
                return;
            }
            self.skip_blanks();
            let Some(c) = self.peek() else { break };
            let start = self.pos;
            match c {
                '\n' => {
                    self.advance(1);
                    self.push_op(Op::Newline, start);
                    self.read_pending_heredocs();
                }
                '#' => self.skip_comment(),
                '|' => self.lex_pipe(start),
                '&' => self.lex_amp(start),
                ';' => self.lex_semi(start),
                '(' if self.command_start => {
                    self.advance(1);
                    self.paren_depth += 1;
                    self.push_op(Op::OpenParen, start);
                }
                ')' if self.paren_depth > 0 => {
                    self.advance(1);
                    self.paren_depth -= 1;
                    self.push_op(Op::CloseParen, start);
                }
                '<' | '>' if self.peek_at(1) != Some('(') => self.lex_redirect(start, None),
                _ => self.read_word(),
            }
        }
        if !self.pending_heredocs.is_empty() {
            // `cat <<EOF` with no body at all: the document is empty and never closed.
            self.unbalanced = true;
        }
    }

    fn skip_blanks(&mut self) {
        loop {
            if self.starts_with("\\\n") {
                self.advance(2);
            } else if matches!(self.peek(), Some(' ' | '\t' | '\r')) {
                self.advance(1);
            } else {
                return;
            }
        }
    }

    fn skip_comment(&mut self) {
        let len = self.rest().find('\n').unwrap_or(self.rest().len());
        self.advance(len);
    }

    fn push_op(&mut self, op: Op, start: usize) {
        self.tokens.push(Token::Op { op, span: start..self.pos });
        self.command_start = true;
    }

    fn lex_pipe(&mut self, start: usize) {
        let op = if self.starts_with("||") {
            self.advance(2);
            Op::Or
        } else if self.starts_with("|&") {
            self.advance(2);
            Op::PipeAll
        } else {
            self.advance(1);
            Op::Pipe
        };
        self.push_op(op, start);
    }

    fn lex_amp(&mut self, start: usize) {
        if self.starts_with("&&") {
            self.advance(2);
            self.push_op(Op::And, start);
        } else if self.starts_with("&>>") {
            self.advance(3);
            self.push_redir(None, RedirOp::AppendAll, start);
        } else if self.starts_with("&>") {
            self.advance(2);
            self.push_redir(None, RedirOp::WriteAll, start);
        } else {
            self.advance(1);
            self.push_op(Op::Background, start);
        }
    }

    fn lex_semi(&mut self, start: usize) {
        let op = if self.starts_with(";;&") {
            self.advance(3);
            Op::CaseEnd
        } else if self.starts_with(";;") || self.starts_with(";&") {
            self.advance(2);
            Op::CaseEnd
        } else {
            self.advance(1);
            Op::Semi
        };
        self.push_op(op, start);
    }

    /// At `<` or `>`; `fd` is a file-descriptor number that was written just before it.
    fn lex_redirect(&mut self, start: usize, fd: Option<u32>) {
        let op = match self.bump() {
            Some('<') => {
                if self.starts_with("<<") {
                    self.advance(2);
                    RedirOp::HereString
                } else if self.starts_with("<-") {
                    self.advance(2);
                    RedirOp::HereDoc { strip_tabs: true }
                } else if self.starts_with("<") {
                    self.advance(1);
                    RedirOp::HereDoc { strip_tabs: false }
                } else if self.starts_with("&") {
                    self.advance(1);
                    RedirOp::DupIn
                } else if self.starts_with(">") {
                    self.advance(1);
                    RedirOp::ReadWrite
                } else {
                    RedirOp::Read
                }
            }
            _ => {
                if self.starts_with(">") {
                    self.advance(1);
                    RedirOp::Append
                } else if self.starts_with("|") {
                    self.advance(1);
                    RedirOp::Clobber
                } else if self.starts_with("&") {
                    self.advance(1);
                    RedirOp::DupOut
                } else {
                    RedirOp::Write
                }
            }
        };
        self.push_redir(fd, op, start);
    }

    fn push_redir(&mut self, fd: Option<u32>, op: RedirOp, start: usize) {
        if let RedirOp::HereDoc { strip_tabs } = op {
            self.heredoc_operator = Some((self.tokens.len(), strip_tabs));
        }
        self.tokens.push(Token::Redir { fd, op, span: start..self.pos, body: None });
        // A redirection does not end the command: `> out cmd` still has `cmd` in command position.
    }

    fn read_pending_heredocs(&mut self) {
        for doc in std::mem::take(&mut self.pending_heredocs) {
            let body = self.read_heredoc_body(&doc.delimiter, doc.strip_tabs);
            if let Some(Token::Redir { body: slot, .. }) = self.tokens.get_mut(doc.token) {
                *slot = Some(body);
            }
        }
    }

    fn read_heredoc_body(&mut self, delimiter: &str, strip_tabs: bool) -> String {
        let mut body = String::new();
        loop {
            if self.pos >= self.src.len() {
                self.unbalanced = true;
                return body;
            }
            let rest = self.rest();
            let (line, consumed) = match rest.find('\n') {
                Some(i) => (rest.get(..i).unwrap_or(""), i + 1),
                None => (rest, rest.len()),
            };
            self.advance(consumed);
            let line = if strip_tabs { line.trim_start_matches('\t') } else { line };
            if line.trim_end_matches('\r') == delimiter {
                return body;
            }
            body.push_str(line);
            body.push('\n');
        }
    }

    fn read_word(&mut self) {
        let start = self.pos;
        let mut w = WordBuf::default();
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\r' | '\n' | ';' | '&' | '|' => break,
                '<' | '>' => {
                    if self.pos == start && self.peek_at(1) == Some('(') {
                        let from = w.text.len();
                        self.advance(1);
                        w.text.push(c);
                        self.read_substitution(&mut w, '(', ')');
                        w.expansions.push(from..w.text.len());
                        continue;
                    }
                    if let Some(fd) = w.fd_number() {
                        self.lex_redirect(start, Some(fd));
                        return;
                    }
                    break;
                }
                ')' if self.paren_depth > 0 => break,
                '\'' => self.read_single_quoted(&mut w),
                '"' => self.read_double_quoted(&mut w),
                '\\' => self.read_backslash(&mut w),
                '$' => self.read_dollar(&mut w, false),
                '`' => self.read_backtick(&mut w),
                _ => {
                    self.advance(c.len_utf8());
                    if matches!(c, '*' | '?') {
                        w.expansions.push(w.text.len()..w.text.len() + 1);
                    }
                    w.text.push(c);
                }
            }
        }
        if self.pos == start {
            // Defensive: never loop forever on a character no branch consumed.
            self.advance(self.peek().map_or(1, char::len_utf8));
            return;
        }
        self.finish_word(w, start);
    }

    fn finish_word(&mut self, w: WordBuf, start: usize) {
        if let Some((token, strip_tabs)) = self.heredoc_operator.take() {
            self.pending_heredocs.push(PendingHereDoc { token, delimiter: w.text.clone(), strip_tabs });
        }
        // Reserved words that are followed by a command keep the command position open.
        self.command_start = !w.quoted
            && matches!(
                w.text.as_str(),
                "if" | "then" | "else" | "elif" | "while" | "until" | "do" | "!" | "{" | "time"
            );
        self.tokens.push(Token::Word(Word {
            text: w.text,
            span: start..self.pos,
            quoted: w.quoted,
            substitutions: w.substitutions,
            expansions: w.expansions,
        }));
    }

    fn read_single_quoted(&mut self, w: &mut WordBuf) {
        self.advance(1);
        w.quoted = true;
        let rest = self.rest();
        match rest.find('\'') {
            Some(i) => {
                w.text.push_str(rest.get(..i).unwrap_or(""));
                self.advance(i + 1);
            }
            None => {
                w.text.push_str(rest);
                self.advance(rest.len());
                self.unbalanced = true;
            }
        }
    }

    fn read_double_quoted(&mut self, w: &mut WordBuf) {
        self.advance(1);
        w.quoted = true;
        loop {
            let Some(c) = self.peek() else {
                self.unbalanced = true;
                return;
            };
            match c {
                '"' => {
                    self.advance(1);
                    return;
                }
                '\\' => {
                    // Inside double quotes a backslash only escapes these; otherwise it is literal.
                    match self.peek_at(1) {
                        Some(n @ ('$' | '`' | '"' | '\\')) => {
                            w.text.push(n);
                            self.advance(2);
                        }
                        Some('\n') => self.advance(2),
                        _ => {
                            w.text.push('\\');
                            self.advance(1);
                        }
                    }
                }
                '$' => self.read_dollar(w, true),
                '`' => self.read_backtick(w),
                _ => {
                    w.text.push(c);
                    self.advance(c.len_utf8());
                }
            }
        }
    }

    fn read_backslash(&mut self, w: &mut WordBuf) {
        self.advance(1);
        w.quoted = true;
        match self.bump() {
            Some('\n') => {} // line continuation
            Some(c) => w.text.push(c),
            None => w.text.push('\\'),
        }
    }

    /// At `$`: `$'…'`, `$"…"`, `$((…))`, `$(…)`, `${…}`, `$NAME`, `$1`, `$@` (and the other
    /// special parameters) or a lone `$`.
    fn read_dollar(&mut self, w: &mut WordBuf, in_double_quotes: bool) {
        let from = w.text.len();
        match self.peek_at(1) {
            Some('\'') if !in_double_quotes => {
                self.advance(2);
                w.quoted = true;
                self.read_ansi_c(w);
            }
            Some('"') if !in_double_quotes => {
                self.advance(1);
                self.read_double_quoted(w);
            }
            Some('(') if self.peek_at(2) == Some('(') => {
                // Arithmetic: kept as written, not a command.
                self.advance(1);
                w.text.push('$');
                let before = w.substitutions.len();
                self.read_substitution(w, '(', ')');
                w.substitutions.truncate(before);
                w.expansions.push(from..w.text.len());
            }
            Some('(') => {
                self.advance(1);
                w.text.push('$');
                self.read_substitution(w, '(', ')');
                w.expansions.push(from..w.text.len());
            }
            Some('{') => {
                self.advance(1);
                w.text.push('$');
                let before = w.substitutions.len();
                self.read_substitution(w, '{', '}');
                w.substitutions.truncate(before);
                w.expansions.push(from..w.text.len());
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                self.advance(1);
                w.text.push('$');
                while let Some(c) = self.peek().filter(|c| c.is_ascii_alphanumeric() || *c == '_') {
                    self.advance(1);
                    w.text.push(c);
                }
                w.expansions.push(from..w.text.len());
            }
            Some(c) if c.is_ascii_digit() || "@*#?$!-".contains(c) => {
                self.advance(2);
                w.text.push('$');
                w.text.push(c);
                w.expansions.push(from..w.text.len());
            }
            _ => {
                self.advance(1);
                w.text.push('$');
            }
        }
    }

    /// At an opening `open`: copy the group as written into the word and record its inner text.
    fn read_substitution(&mut self, w: &mut WordBuf, open: char, close: char) {
        let inner_start = self.pos + 1;
        let (inner_end, next, closed) = scan_group(self.src, inner_start, open as u8, close as u8);
        let inner = self.src.get(inner_start..inner_end).unwrap_or("");
        w.text.push(open);
        w.text.push_str(inner);
        if closed {
            w.text.push(close);
        } else {
            self.unbalanced = true;
        }
        w.substitutions.push(inner.to_string());
        self.pos = next;
    }

    fn read_backtick(&mut self, w: &mut WordBuf) {
        let from = w.text.len();
        let inner_start = self.pos + 1;
        let bytes = self.src.as_bytes();
        let mut i = inner_start;
        while i < bytes.len() && bytes.get(i) != Some(&b'`') {
            i += if bytes.get(i) == Some(&b'\\') { 2 } else { 1 };
        }
        let inner_end = i.min(bytes.len());
        let inner = self.src.get(inner_start..inner_end).unwrap_or("");
        w.text.push('`');
        w.text.push_str(inner);
        if inner_end < bytes.len() {
            w.text.push('`');
            self.pos = inner_end + 1;
        } else {
            self.unbalanced = true;
            self.pos = bytes.len();
        }
        w.substitutions.push(inner.to_string());
        w.expansions.push(from..w.text.len());
    }

    /// After `$'`: ANSI-C escapes up to the closing `'`.
    fn read_ansi_c(&mut self, w: &mut WordBuf) {
        loop {
            let Some(c) = self.bump() else {
                self.unbalanced = true;
                return;
            };
            match c {
                '\'' => return,
                '\\' => self.read_ansi_c_escape(w),
                _ => w.text.push(c),
            }
        }
    }

    fn read_ansi_c_escape(&mut self, w: &mut WordBuf) {
        let Some(e) = self.bump() else {
            w.text.push('\\');
            return;
        };
        let simple = match e {
            'n' => Some('\n'),
            't' => Some('\t'),
            'r' => Some('\r'),
            'a' => Some('\x07'),
            'b' => Some('\x08'),
            'e' | 'E' => Some('\x1b'),
            'f' => Some('\x0c'),
            'v' => Some('\x0b'),
            '\\' | '\'' | '"' | '?' => Some(e),
            _ => None,
        };
        if let Some(c) = simple {
            w.text.push(c);
            return;
        }
        let code = match e {
            '0'..='7' => Some(self.read_radix_digits(8, 2, e.to_digit(8))),
            'x' => Some(self.read_radix_digits(16, 2, None)),
            'u' => Some(self.read_radix_digits(16, 4, None)),
            'U' => Some(self.read_radix_digits(16, 8, None)),
            'c' => self.bump().map(|c| u32::from(c) & 0x1f),
            _ => None,
        };
        match code {
            Some(v) => w.text.extend(char::from_u32(v)),
            None => {
                w.text.push('\\');
                w.text.push(e);
            }
        }
    }

    /// Up to `max` more digits in `radix`, starting from an already read first digit.
    fn read_radix_digits(&mut self, radix: u32, max: usize, first: Option<u32>) -> u32 {
        let mut value = first.unwrap_or(0);
        for _ in 0..max {
            match self.peek().and_then(|c| c.to_digit(radix)) {
                Some(d) => {
                    value = value.saturating_mul(radix).saturating_add(d);
                    self.advance(1);
                }
                None => break,
            }
        }
        value
    }
}

#[derive(Default)]
struct WordBuf {
    text: String,
    quoted: bool,
    substitutions: Vec<String>,
    expansions: Vec<Range<usize>>,
}

impl WordBuf {
    /// `2` in `2>file`: an unquoted, all-digit word directly before a redirection.
    fn fd_number(&self) -> Option<u32> {
        if self.quoted || self.text.is_empty() || !self.text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.text.parse().ok()
    }
}

/// Scan from just inside an opening bracket to its matching `close`, skipping quoted text.
/// Returns (end of inner text, position after the close, whether it was closed). Works on bytes:
/// every byte it stops at is ASCII, so the positions are character boundaries.
fn scan_group(src: &str, from: usize, open: u8, close: u8) -> (usize, usize, bool) {
    let b = src.as_bytes();
    let len = b.len();
    let mut i = from.min(len);
    let mut depth = 1u32;
    while i < len {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'\\' {
            i += 2;
        } else if c == b'\'' {
            i += 1;
            while i < len && b.get(i) != Some(&b'\'') {
                i += 1;
            }
            i += 1;
        } else if c == b'"' {
            i += 1;
            while i < len && b.get(i) != Some(&b'"') {
                i += if b.get(i) == Some(&b'\\') { 2 } else { 1 };
            }
            i += 1;
        } else if c == open {
            depth += 1;
            i += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return (i, i + 1, true);
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    (len, len, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        split_words(s).texts().into_iter().map(String::from).collect()
    }

    fn ops(s: &str) -> Vec<Op> {
        split_words(s)
            .tokens
            .into_iter()
            .filter_map(|t| match t {
                Token::Op { op, .. } => Some(op),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn plain_words_and_blanks() {
        assert_eq!(texts("  ls   -la\t/tmp  "), ["ls", "-la", "/tmp"]);
        assert!(split_words("").tokens.is_empty());
    }

    #[test]
    fn single_and_double_quotes() {
        assert_eq!(texts("echo 'a b' \"c d\" e'f'\"g\""), ["echo", "a b", "c d", "efg"]);
        assert_eq!(texts(r#"echo "a \"b\" \$x \n""#), ["echo", r#"a "b" $x \n"#]);
        assert_eq!(texts(r"echo 'it'\''s'"), ["echo", "it's"]);
        assert_eq!(texts("echo '' \"\""), ["echo", "", ""]);
    }

    #[test]
    fn backslash_and_line_continuation() {
        assert_eq!(texts(r"echo a\ b \; c\"), ["echo", "a b", ";", r"c\"]);
        assert_eq!(texts("echo a \\\n b"), ["echo", "a", "b"]);
        assert_eq!(texts("echo a\\\nb"), ["echo", "ab"]);
    }

    #[test]
    fn ansi_c_quotes() {
        assert_eq!(texts(r"printf $'a\tb\n\x41\101\u00e9\'\\'"), ["printf", "a\tb\nAAé'\\"]);
        assert_eq!(texts(r#"echo $"hi there""#), ["echo", "hi there"]);
    }

    #[test]
    fn quoted_flag_and_spans() {
        let w = split_words("bash -lc 'echo hi'");
        let Some(Token::Word(script)) = w.tokens.get(2) else { panic!("no word") };
        assert!(script.quoted);
        assert_eq!(script.span, 9..18);
        let Some(Token::Word(bash)) = w.tokens.first() else { panic!("no word") };
        assert!(!bash.quoted);
    }

    #[test]
    fn operators() {
        assert_eq!(
            ops("a | b || c && d ; e & f |& g\nh"),
            [Op::Pipe, Op::Or, Op::And, Op::Semi, Op::Background, Op::PipeAll, Op::Newline]
        );
        assert_eq!(texts("a|b&&c;d"), ["a", "b", "c", "d"]);
    }

    #[test]
    fn redirections() {
        let w = split_words("cmd 2>&1 >out >>log 2>err &>all <in >|f 3<>rw");
        let redirs: Vec<_> = w
            .tokens
            .iter()
            .filter_map(|t| match t {
                Token::Redir { fd, op, .. } => Some((*fd, *op)),
                _ => None,
            })
            .collect();
        assert_eq!(
            redirs,
            [
                (Some(2), RedirOp::DupOut),
                (None, RedirOp::Write),
                (None, RedirOp::Append),
                (Some(2), RedirOp::Write),
                (None, RedirOp::WriteAll),
                (None, RedirOp::Read),
                (None, RedirOp::Clobber),
                (Some(3), RedirOp::ReadWrite),
            ]
        );
        assert_eq!(w.texts(), ["cmd", "1", "out", "log", "err", "all", "in", "f", "rw"]);
        // Digits that are quoted or glued to letters are not a file descriptor.
        assert_eq!(texts("echo a2>x '2'>y"), ["echo", "a2", "x", "2", "y"]);
    }

    #[test]
    fn comments() {
        assert_eq!(texts("ls # list\necho a#b"), ["ls", "echo", "a#b"]);
        assert_eq!(texts("echo '#not'"), ["echo", "#not"]);
    }

    #[test]
    fn substitutions_stay_in_their_word() {
        let w = split_words(r#"bash -c "$(curl -fsSL "https://x/i.sh")" `id` <(wget -qO- u)"#);
        let words: Vec<&Word> = w
            .tokens
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w),
                _ => None,
            })
            .collect();
        assert_eq!(words.len(), 5);
        assert_eq!(words[2].text, r#"$(curl -fsSL "https://x/i.sh")"#);
        assert_eq!(words[2].substitutions, [r#"curl -fsSL "https://x/i.sh""#]);
        assert_eq!(words[3].substitutions, ["id"]);
        assert_eq!(words[4].text, "<(wget -qO- u)");
        assert_eq!(words[4].substitutions, ["wget -qO- u"]);
        // Arithmetic and parameter expansion are not commands.
        let w = split_words("echo $((1+2)) ${A:-$(x)}");
        assert!(w.tokens.iter().all(|t| match t {
            Token::Word(w) => w.substitutions.is_empty(),
            _ => true,
        }));
        // Single quotes keep `$(` literal.
        assert_eq!(texts("echo '$(id)'"), ["echo", "$(id)"]);
    }

    /// Each word's text with its expansion ranges bracketed, e.g. `a[$X]b`.
    fn marked(s: &str) -> Vec<String> {
        split_words(s)
            .tokens
            .into_iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w),
                _ => None,
            })
            .map(|w| {
                let mut out = String::new();
                let mut at = 0;
                for r in &w.expansions {
                    out.push_str(&w.text[at..r.start]);
                    out.push_str(&format!("[{}]", &w.text[r.clone()]));
                    at = r.end;
                }
                out.push_str(&w.text[at..]);
                out
            })
            .collect()
    }

    #[test]
    fn expansions_are_marked_only_where_the_shell_expands() {
        assert_eq!(
            marked(r#"rm -rf $HOME/x "${D}"/* $1 $@ "$(id -u)" `pwd` <(ls) $((1+2)) a?b"#),
            [
                "rm",
                "-rf",
                "[$HOME]/x",
                "[${D}]/[*]",
                "[$1]",
                "[$@]",
                "[$(id -u)]",
                "[`pwd`]",
                "[<(ls)]",
                "[$((1+2))]",
                "a[?]b"
            ]
        );
        // Quoted or escaped: literal, not marked.
        assert_eq!(
            marked(r#"find . -name '*.pem' "a*" \* '$HOME' \$X"#),
            ["find", ".", "-name", "*.pem", "a*", "*", "$HOME", "$X"]
        );
        // A lone `$`, `$'…'` quoting and brackets are not expansions.
        assert_eq!(
            marked("echo $ a$ $'x*' keys[] [ -f x ]"),
            ["echo", "$", "a$", "x*", "keys[]", "[", "-f", "x", "]"]
        );
        // Inside double quotes parameters expand; `$?` and `$*` are parameters, not globs.
        assert_eq!(marked(r#"echo "$USER_1-$?" $*"#), ["echo", "[$USER_1]-[$?]", "[$*]"]);
        // The text itself is unchanged by marking.
        assert_eq!(texts("a$HOME_x $9z"), ["a$HOME_x", "$9z"]);
    }

    #[test]
    fn subshell_parentheses_only_at_command_start() {
        assert_eq!(ops("(cd x && make)"), [Op::OpenParen, Op::And, Op::CloseParen]);
        assert_eq!(texts("(cd x && make)"), ["cd", "x", "make"]);
        // Quote-lost `python -c print(1)`: the parentheses are part of the word.
        assert_eq!(texts("python -c print(1)"), ["python", "-c", "print(1)"]);
    }

    #[test]
    fn here_documents() {
        let w = split_words("cat > f.py <<'EOF' && echo done\nprint(1)\n  x\nEOF\nls");
        let body = w.tokens.iter().find_map(|t| match t {
            Token::Redir { body, .. } => body.clone(),
            _ => None,
        });
        assert_eq!(body.as_deref(), Some("print(1)\n  x\n"));
        assert_eq!(w.texts(), ["cat", "f.py", "EOF", "echo", "done", "ls"]);
        assert!(!w.unbalanced);
        let w = split_words("cat <<-END\n\tindented\n\tEND\n");
        let body = w.tokens.iter().find_map(|t| match t {
            Token::Redir { body, .. } => body.clone(),
            _ => None,
        });
        assert_eq!(body.as_deref(), Some("indented\n"));
        assert!(split_words("cat <<EOF\nno end").unbalanced);
        assert!(split_words("cat <<EOF").unbalanced);
    }

    #[test]
    fn unbalanced_input_is_best_effort() {
        let w = split_words("echo 'abc def");
        assert!(w.unbalanced);
        assert_eq!(w.texts(), ["echo", "abc def"]);
        let w = split_words("echo \"abc $(x");
        assert!(w.unbalanced);
        assert_eq!(w.texts(), ["echo", "abc $(x"]);
        assert!(split_words("echo `x").unbalanced);
        assert!(split_words("echo $'x").unbalanced);
        assert!(!split_words("echo ok").unbalanced);
    }

    #[test]
    fn caps_input_and_token_count() {
        let long = "a ".repeat(MAX_INPUT_BYTES);
        let w = split_words(&long);
        assert!(w.truncated);
        assert!(w.tokens.len() <= MAX_TOKENS);
        let multibyte = "é".repeat(MAX_INPUT_BYTES);
        assert!(split_words(&multibyte).truncated);
    }

    #[test]
    fn quoting_round_trips() {
        for argv in [
            vec!["echo", "a b", "it's", "", "$HOME", "*", "a\nb"],
            vec!["--flag=1", "x,y:z", "~user", "#c", "2>x", "é"],
        ] {
            assert_eq!(split_words(&join_words(&argv)).texts(), argv);
        }
        assert_eq!(quote_word("plain-word.txt"), "plain-word.txt");
        assert_eq!(quote_word("a b"), "'a b'");
    }
}
