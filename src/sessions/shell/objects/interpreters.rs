//! Rules for interpreters: inline code (`python -c`, `node -e`, `perl -e`, `ruby -e`,
//! `php -r`, a here-document on stdin), script files and in-place editing (`perl -pi`).

use super::super::getopt::{self, Spec};
use super::super::paths::looks_like_path;
use super::super::programs::family;
use super::super::syntax::Command;
use super::{stdin_text, Collector, InlineCode};

impl Collector {
    /// Record code for an interpreter, and the URLs and file names its string literals mention.
    fn inline(&mut self, interpreter: &str, code: &str, cwd: Option<&str>) {
        self.f.inline_code.push(InlineCode { interpreter: interpreter.to_string(), code: code.to_string() });
        if interpreter != "sh" {
            self.urls_in(code);
            for literal in string_literals(code) {
                if looks_like_path(literal) {
                    self.path(literal, cwd);
                }
            }
        }
    }

    /// Inline code, the script file, and files edited in place.
    pub(super) fn interpreter(&mut self, program: &str, args: &[String], cmd: &Command, cwd: Option<&str>) {
        let fam = family(program).unwrap_or(program);
        let rules = InterpreterRules::for_family(fam);
        let s = getopt::scan(args, &rules.spec);
        let code: Vec<&str> = s.values(rules.code).collect();
        if !code.is_empty() {
            self.inline(fam, &code.join("\n"), cwd);
        }
        let mut operands = s.operand_words(args);
        let program_from_args = code.is_empty() && !s.has(rules.module);
        let script_file = match s.values(rules.file).next() {
            _ if !program_from_args || s.has(rules.stdin) => None,
            Some(f) => Some(f),
            None if operands.is_empty() => None,
            None => Some(operands.remove(0)),
        };
        match script_file {
            Some(f) if f != "-" => self.path(f, cwd),
            // The program comes from stdin: a here-document or here-string is inline code.
            _ if program_from_args => {
                if let Some(text) = stdin_text(cmd) {
                    self.inline(fam, text, cwd);
                }
            }
            _ => {}
        }
        let in_place = !rules.in_place.is_empty() && s.has(rules.in_place);
        for w in operands {
            if in_place {
                self.write(w, cwd);
            } else if looks_like_path(w) {
                self.path(w, cwd);
            }
        }
    }
}

/// How an interpreter family takes code, a script file, a module and in-place editing.
struct InterpreterRules {
    spec: Spec,
    /// Options whose value is code (`-c`, `-e`).
    code: &'static [&'static str],
    /// Options whose value is the script file (`php -f`); otherwise the first operand is.
    file: &'static [&'static str],
    /// Options after which there is no script file and no program on stdin (`python -m`, and
    /// `sh -c` left wrapped).
    module: &'static [&'static str],
    /// Options that read the program from stdin, operands being its arguments (`sh -s`).
    stdin: &'static [&'static str],
    /// Options that make operands files edited in place (`perl -i`).
    in_place: &'static [&'static str],
}

impl InterpreterRules {
    fn for_family(family: &str) -> Self {
        let spec = |short_values, short_attached, long_values| Spec {
            short_values,
            short_attached,
            long_values,
            stop_at_operand: true,
            plus: false,
        };
        let none: &'static [&'static str] = &[];
        match family {
            "python" => InterpreterRules {
                spec: spec("cmWX", "", &[]),
                code: &["-c"],
                file: none,
                module: &["-m"],
                stdin: none,
                in_place: none,
            },
            "node" => InterpreterRules {
                spec: spec("eprC", "", &["eval", "print", "require", "import", "conditions"]),
                code: &["-e", "--eval", "-p", "--print"],
                file: none,
                module: none,
                stdin: none,
                in_place: none,
            },
            // `-l` and `-0` take optional digits; reading those digits as flags is harmless.
            "perl" => InterpreterRules {
                spec: spec("eEIMm", "ixdDFCV", &[]),
                code: &["-e", "-E"],
                file: none,
                module: none,
                stdin: none,
                in_place: &["-i"],
            },
            "ruby" => InterpreterRules {
                spec: spec("eIrCEF", "ixTW", &["encoding"]),
                code: &["-e"],
                file: none,
                module: none,
                stdin: none,
                in_place: &["-i"],
            },
            "php" => InterpreterRules {
                spec: spec("rfdcBRFEz", "", &[]),
                code: &["-r"],
                file: &["-f"],
                module: none,
                stdin: none,
                in_place: none,
            },
            // Shells that were not unwrapped: `bash script.sh`, `curl … | sh -s -- -y`, or a
            // `-c` past the depth limit.
            _ => InterpreterRules {
                spec: spec("oO", "", &["rcfile", "init-file"]),
                code: none,
                file: none,
                module: &["-c"],
                stdin: &["-s"],
                in_place: none,
            },
        }
    }
}

/// Contents of `'…'` and `"…"` literals in code (no escapes interpreted; good enough to spot
/// file names and URLs).
fn string_literals(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find(['\'', '"']) {
        let quote = rest.get(start..start + 1).unwrap_or("'");
        let after = rest.get(start + 1..).unwrap_or("");
        match after.find(quote) {
            Some(end) => {
                out.push(after.get(..end).unwrap_or(""));
                rest = after.get(end + 1..).unwrap_or("");
            }
            None => break,
        }
    }
    out
}
