//! Load-time diagnostics: every problem in a policy folder, each located (`file:line:col`), with
//! the offending source line, a caret and a stable code.
//!
//! The loader collects diagnostics instead of stopping at the first one, so a SOC engineer fixes
//! a folder in one round trip. The codes are a contract (documented in `docs/policies.md`):
//! tooling and tests match on them, so a code is never reused for a different problem.
//!
//! This module only formats and collects; it does not decide what is an error.

use std::fmt;
use std::path::PathBuf;

/// Stable diagnostic codes. Grouped by tens: I/O and syntax, structure, names, match language,
/// actions and durations, tuning, tests.
pub mod codes {
    /// A file or the folder could not be read, or a file is too large.
    pub const IO: &str = "P001";
    /// The YAML itself is malformed (syntax, duplicate key, alias bomb, …).
    pub const YAML: &str = "P002";
    /// The folder holds no `*.yaml` / `*.yml` file.
    pub const EMPTY_DIR: &str = "P003";
    /// A value has the wrong shape (a map where a list is expected, a list where text is, …).
    pub const TYPE: &str = "P010";
    /// A key that this place does not accept (typos included; the message suggests the
    /// closest known key).
    pub const UNKNOWN_KEY: &str = "P011";
    /// A required key is missing.
    pub const MISSING_KEY: &str = "P012";
    /// An item is not exactly one of `list`, `macro`, `policy`, `tuning`.
    pub const ITEM_KIND: &str = "P013";
    /// A value outside its closed set (`priority: urgent`, `scope: everything`, …).
    pub const BAD_VALUE: &str = "P014";
    /// Two keys that cannot be used together, or an empty condition.
    pub const CONFLICT: &str = "P015";
    /// Two items define the same policy id, list or macro name.
    pub const DUPLICATE: &str = "P020";
    /// A policy id or a list/macro name with characters outside the allowed set.
    pub const BAD_NAME: &str = "P021";
    /// A match key names a field that does not exist.
    pub const UNKNOWN_FIELD: &str = "P030";
    /// A match key uses a modifier that does not exist.
    pub const UNKNOWN_MODIFIER: &str = "P031";
    /// A modifier that does not apply to the field's type, or modifiers that do not combine.
    pub const MODIFIER_MISUSE: &str = "P032";
    /// A comparison value that the field can never have (`severity: hgih`, `process.uid: abc`).
    pub const FIELD_VALUE: &str = "P033";
    /// A regular expression that does not compile or exceeds the size limits.
    pub const REGEX: &str = "P034";
    /// A malformed glob pattern.
    pub const GLOB: &str = "P035";
    /// A reference to a list that is not defined.
    pub const UNDEFINED_LIST: &str = "P040";
    /// A reference to a macro that is not defined.
    pub const UNDEFINED_MACRO: &str = "P041";
    /// Macros that refer to each other in a cycle.
    pub const MACRO_CYCLE: &str = "P042";
    /// A reference to a policy id that is not defined (tuning targets, test expectations).
    pub const UNDEFINED_POLICY: &str = "P043";
    /// A malformed or out-of-range duration.
    pub const DURATION: &str = "P050";
    /// Two tuning items set the same setting of the same policy.
    pub const TUNING_CONFLICT: &str = "P060";
    /// A test case or its fixture is malformed or cannot be read.
    pub const FIXTURE: &str = "P070";
}

/// One problem, located in a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(self))]
pub struct Diagnostic {
    /// The file as the user named it (the folder joined with the file name).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    /// A stable code from [`codes`].
    pub code: &'static str,
    pub message: String,
    /// The source line the problem is on (without its newline); empty when there is none.
    pub snippet: String,
    /// How many characters the caret underlines (at least 1).
    pub width: usize,
}

/// Every problem found while loading a policy folder, sorted by file and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_all(&self.0))]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The codes in order, for tests and tooling.
    pub fn codes(&self) -> Vec<&'static str> {
        self.0.iter().map(|d| d.code).collect()
    }
}

fn render(d: &Diagnostic) -> String {
    let mut out = format!("{}:{}:{}: error[{}]: {}", d.file.display(), d.line, d.col, d.code, d.message);
    if !d.snippet.is_empty() {
        let gutter = d.line.to_string();
        let pad = " ".repeat(gutter.len());
        // The caret line copies tabs from the snippet so that it lines up in any terminal.
        let lead: String = d
            .snippet
            .chars()
            .take(d.col.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        out.push_str(&format!("\n {gutter} | {}\n {pad} | {lead}{}", d.snippet, "^".repeat(d.width.max(1))));
    }
    out
}

fn render_all(all: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in all.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&render(d));
    }
    out
}

/// A position in one source file (1-based line and column, in characters) and how wide the
/// thing there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
    pub width: usize,
}

/// Collects diagnostics for one folder; knows each file's text to cut snippets from.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub diags: Vec<Diagnostic>,
}

impl Sink {
    pub fn push(&mut self, file: &SourceFile, pos: Pos, code: &'static str, message: impl Into<String>) {
        let snippet = file.line_text(pos.line);
        let width = pos.width.clamp(1, snippet.chars().count().saturating_sub(pos.col - 1).max(1));
        self.diags.push(Diagnostic {
            file: file.shown.clone(),
            line: pos.line.max(1),
            col: pos.col.max(1),
            code,
            message: message.into(),
            snippet,
            width,
        });
    }

    pub fn finish(mut self) -> Option<Diagnostics> {
        if self.diags.is_empty() {
            return None;
        }
        self.diags.sort_by(|a, b| (&a.file, a.line, a.col, a.code).cmp(&(&b.file, b.line, b.col, b.code)));
        self.diags.dedup();
        Some(Diagnostics(self.diags))
    }
}

/// A file's name and text, for snippets.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// The name shown in diagnostics (`policies/default.yaml`).
    pub shown: PathBuf,
    /// The name relative to the folder (`default.yaml`): used in the set hash and traces.
    pub relative: String,
    pub text: String,
}

impl SourceFile {
    /// The text of a 1-based line, capped so that a minified file cannot flood the terminal.
    pub fn line_text(&self, line: usize) -> String {
        const MAX: usize = 200;
        let text = self.text.lines().nth(line.saturating_sub(1)).unwrap_or("");
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.chars().count() > MAX {
            text.chars().take(MAX).collect::<String>() + "…"
        } else {
            text.to_string()
        }
    }
}

/// The known word closest to `word`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    known
        .into_iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` (did you mean `x`?)` or nothing.
pub(crate) fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    suggest(word, known).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default()
}

/// Optimal-string-alignment distance (Levenshtein plus adjacent transpositions, the most common
/// typo), on characters. Inputs are short keys; long ones are cut to keep this cheap.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().take(64).collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_are_suggested() {
        assert_eq!(suggest("priorty", ["priority", "policy", "id"]), Some("priority"));
        assert_eq!(suggest("pirority", ["priority"]), Some("priority"));
        assert_eq!(suggest("scope", ["priority", "policy"]), None);
        assert_eq!(suggest("xyz", ["id"]), None);
    }

    #[test]
    fn display_has_position_code_snippet_and_caret() {
        let file = SourceFile {
            shown: "p/a.yaml".into(),
            relative: "a.yaml".into(),
            text: "- x\n  priorty: 1\n".into(),
        };
        let mut sink = Sink::default();
        sink.push(&file, Pos { line: 2, col: 3, width: 7 }, codes::UNKNOWN_KEY, "unknown key");
        let text = sink.finish().map(|d| d.to_string()).unwrap_or_default();
        assert_eq!(text, "p/a.yaml:2:3: error[P011]: unknown key\n 2 |   priorty: 1\n   |   ^^^^^^^");
    }
}
