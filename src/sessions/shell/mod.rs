//! Shell commands as agents write them and as EDRs report them: word splitting, parsing,
//! unwrapping of agent and utility wrappers, object extraction and similarity.
//!
//! Correlation compares an event's process command line with the commands in a session's
//! ledger; the retry gate asks whether a proposed command touches the same objects as a blocked
//! one. Both need the two kinds of input this module reads to reduce to comparable forms:
//!
//! 1. a command string as the agent wrote it (the ledger), with its quoting intact:
//!    `curl -fsSL 'https://x.example/i.sh' | sh`;
//! 2. a process command line as an EDR reports it, usually argv joined by spaces, so the
//!    quoting is lost: `/bin/bash -lc curl -fsSL https://x.example/i.sh | sh`, or Claude
//!    Code's snapshot wrapper around the agent's command, or just the child process. A
//!    NUL-separated argv (`/proc/<pid>/cmdline`) keeps its exact word boundaries; so does an
//!    argv joined with [`join_words`].
//!
//! # The layers
//! Each is usable on its own:
//! - [`split_words`]: a POSIX-ish lexer (quotes, escapes, operators, redirections,
//!   here-documents, substitutions kept as written);
//! - [`parse`]: a list of pipelines of simple commands ([`Script`]);
//! - [`unwrap`]: the same after peeling shells' `-c`, Claude Code's snapshot wrapper
//!   (`source SNAPSHOT && eval 'CMD' … && pwd -P >| /tmp/claude-…-cwd`), `eval`, `env`,
//!   `timeout`, `nohup`, `nice`, `sudo`, `xargs` and friends, recursively;
//! - [`facts`]: executables, paths resolved against the cwd, URLs, hosts, writes, inline code
//!   and pipe shapes ([`CommandFacts`]);
//! - [`similarity`]: a score for "the same command" between two unwrapped scripts.
//!
//! Smaller helpers are public for the same callers: [`resolve_path`], [`looks_like_path`],
//! [`family`], [`normalize_host`], [`patch_files`] (files an `apply_patch`/diff names), and
//! [`quote_word`]/[`join_words`].
//!
//! # Guarantees
//! Nothing here panics or fails on any input: unbalanced quotes give best-effort words and a
//! note ([`Notes`]); input is capped at [`MAX_INPUT_BYTES`] and [`MAX_TOKENS`], and re-parsing
//! nests at most [`MAX_DEPTH`] levels, so work is bounded.
//!
//! # What it deliberately does not do
//! It executes and expands nothing (no `$VAR`, globs, `~`, aliases or functions), reads no
//! files (paths are resolved lexically), resolves no names over DNS, and is not a complete
//! shell grammar (compound commands are flattened; `case` bodies and `for` headers are
//! skipped). It knows nothing about HTTP, storage, events, sessions or policies, and it does
//! not decide whether two commands are "the same" for a policy: it supplies the facts.

mod getopt;
mod net;
mod objects;
mod patches;
mod paths;
mod programs;
mod similarity;
mod syntax;
mod words;
mod wrappers;

#[cfg(test)]
mod tests;

pub use net::normalize_host;
pub use objects::{facts, facts_of, CommandFacts, InlineCode, EXEC};
pub use patches::patch_files;
pub use paths::{looks_like_path, resolve_path};
pub use programs::{family, FETCH};
pub use similarity::{normalized_argv, similarity};
pub use syntax::{basename, parse, Command, Connector, Item, Notes, Peeled, Redirect, Script};
pub use words::{
    join_words, quote_word, split_words, Op, RedirOp, Token, Word, Words, MAX_INPUT_BYTES, MAX_TOKENS,
};
pub use wrappers::{unwrap, MAX_DEPTH};
