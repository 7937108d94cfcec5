//! The retry-policy language: SOC-written YAML that decides what an agent may not retry after a
//! security tool stopped one of its actions.
//!
//! A policy folder (`policies/*.yaml`) holds named `list`s and `macro`s, `policy` items (a stable
//! `id`, a `match` on the normalized event, an optional `agent` block on the correlated session
//! and command, and an `action`), `tuning` items that adjust policies by id from separate files,
//! and tests beside each policy. [`PolicySet::load_dir`] compiles a whole folder at once
//! (regexes built with size limits, lists and macros resolved, every field and modifier checked)
//! and reports *every* problem with `file:line:col`, a snippet and a stable code, or returns an
//! immutable set. [`PolicySet::evaluate`] then decides per event: policies in priority order,
//! first match wins, `ignore` included. The SOC reference is `docs/policies.md`.
//!
//! Layout: `yaml` (located tree), `diag` (diagnostics), `fields` (the field catalog and how
//! facts are read), `compile` (match blocks to conditions), `cond` (evaluation and
//! explanation), `action`, `load` (files, items, tuning, ordering, hash), `fixture` (tests),
//! `live` (all-or-nothing reload).
//!
//! This module does not know HTTP, storage, keys or delivery: it reads files, decides, and
//! explains. Turning a [`Decision`] into a block and a signed directive, and recording the set's
//! [`PolicySet::hash`] on them, belongs to the later stages.

mod action;
mod compile;
mod cond;
mod diag;
mod fields;
mod fixture;
mod index;
mod live;
mod load;
mod yaml;

#[cfg(test)]
mod tests;

pub use diag::{codes, Diagnostic, Diagnostics};
pub use fixture::{TestCaseResult, TestReport};
pub use live::LivePolicies;

use crate::event::{Correlation, SecurityEvent, Trust};
use crate::sessions::model::{CommandRecord, Session};
use cond::{Cond, Loc, Tri};
use fields::Facts;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The shipped default policy, compiled into the binary.
pub const DEFAULT_POLICY_YAML: &str = include_str!("../../policies/default.yaml");

/// A compiled, immutable policy folder. `Send + Sync`; share it in an `Arc` and swap the `Arc`
/// to reload (see [`LivePolicies`]).
#[derive(Debug)]
pub struct PolicySet {
    /// Hex SHA-256 over the files (see [`PolicySet::hash`]).
    hash: String,
    /// The files of the set, in load order (sorted by name).
    files: Vec<FileInfo>,
    /// Every policy, in evaluation order: priority, then file, then position in the file.
    policies: Vec<Policy>,
    /// Tests carried by tuning items, labelled `tuning:<first target id>`.
    tuning_tests: Vec<(String, fixture::TestCase)>,
    /// The literal prefilter over `policies` (positions are evaluation order).
    index: index::Index,
}

#[derive(Debug, Clone)]
pub(crate) struct FileInfo {
    /// As shown to the user (`policies/default.yaml`).
    pub shown: PathBuf,
}

/// One compiled policy.
#[derive(Debug)]
pub(crate) struct Policy {
    pub id: String,
    pub title: String,
    pub at: Loc,
    pub priority: Priority,
    pub enabled: bool,
    pub min_trust: Option<Trust>,
    pub cond: Cond,
    pub exceptions: Vec<Exception>,
    pub action: Action,
    pub note: Option<String>,
    pub tests: Vec<fixture::TestCase>,
    /// (file index, item index): the tie-break after priority.
    pub order: (usize, usize),
}

/// A named carve-out: when its condition holds, the policy does not match.
#[derive(Debug)]
pub(crate) struct Exception {
    pub name: String,
    pub cond: Cond,
    pub at: Loc,
}

/// Evaluation order: `critical` policies first, then `high`, `medium` (the default), `low`,
/// `info`; within a priority, files by name and items in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Critical,
    High,
    Medium,
    Low,
    Info,
}

impl Priority {
    pub const NAMES: &'static [&'static str] = &["critical", "high", "medium", "low", "info"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub(crate) fn from_name(name: &str) -> Option<Priority> {
        [Priority::Critical, Priority::High, Priority::Medium, Priority::Low, Priority::Info]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

/// What a policy evaluation looks at: the event, and what correlation tied it to.
#[derive(Debug, Clone, Copy)]
pub struct EvalInput<'a> {
    pub event: &'a SecurityEvent,
    /// The correlation stage's result, when it has run.
    pub correlation: Option<&'a Correlation>,
    /// The session the event was tied to.
    pub session: Option<&'a Session>,
    /// The ledger call (tool call) the event was tied to.
    pub command: Option<&'a CommandRecord>,
    /// How many blocks the broker had already issued to this session before this event
    /// (`agent.blocks`); 0 when there is no session. The caller counts them.
    pub prior_blocks: u32,
}

impl<'a> EvalInput<'a> {
    /// An input with only the event (no correlation, session or command).
    pub fn event_only(event: &'a SecurityEvent) -> EvalInput<'a> {
        EvalInput { event, correlation: None, session: None, command: None, prior_blocks: 0 }
    }
}

/// The outcome of a policy evaluation: which policy decided and what it decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub policy_id: String,
    pub action: Action,
    /// The SOC's note for the agent and the analyst (tuning may replace it).
    pub note: Option<String>,
}

/// What to do. Directives can only restrict: there is no action that allows anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The agent may not retry what the scope covers.
    DoNotRetry { scope: Scope, retry: Retry, expiry: Expiry },
    /// Stop the whole session.
    HaltSession,
    /// Do nothing, and let no lower-priority policy act either.
    Ignore,
}

/// What a do-not-retry block covers (resolved against the event by the directive stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The same normalized command.
    Command,
    /// The same executable with overlapping targets.
    Similar,
    /// Anything touching the same file.
    Path,
    /// Anything touching the same host.
    Host,
    /// Anything running the same executable.
    Binary,
    /// Every mutating tool call of the session.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Never,
    After(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Until an analyst clears the block.
    UntilCleared,
    Ttl(Duration),
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Command => "command",
            Scope::Similar => "similar",
            Scope::Path => "path",
            Scope::Host => "host",
            Scope::Binary => "binary",
            Scope::Session => "session",
        }
    }
}

impl Action {
    /// `do_not_retry`, `halt_session` or `ignore`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::DoNotRetry { .. } => "do_not_retry",
            Action::HaltSession => "halt_session",
            Action::Ignore => "ignore",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::DoNotRetry { scope, retry, expiry } => {
                write!(f, "do_not_retry (scope {}, retry ", scope.as_str())?;
                match retry {
                    Retry::Never => write!(f, "never")?,
                    Retry::After(d) => write!(f, "after {}", show_duration(*d))?,
                }
                match expiry {
                    Expiry::UntilCleared => write!(f, ", until cleared)"),
                    Expiry::Ttl(d) => write!(f, ", ttl {})", show_duration(*d)),
                }
            }
            other => f.write_str(other.kind()),
        }
    }
}

/// `90m` → `1h30m`: the largest units, as a SOC engineer would write it.
pub(crate) fn show_duration(d: Duration) -> String {
    let mut s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= len {
            out.push_str(&format!("{}{unit}", s / len));
            s %= len;
        }
    }
    out
}

/// One policy as loaded (after tuning), for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub id: String,
    pub title: String,
    pub priority: Priority,
    pub enabled: bool,
    pub action: Action,
    pub exceptions: usize,
    pub tests: usize,
    pub file: PathBuf,
    pub line: usize,
}

/// Why one policy did or did not decide, for `--explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    pub policy_id: String,
    pub priority: Priority,
    /// Where the policy is defined.
    pub file: PathBuf,
    pub line: usize,
    pub outcome: TraceOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceOutcome {
    /// It matched first: its action is the decision.
    Decides(Action),
    /// It matches too, but an earlier policy decided.
    Shadowed {
        by: String,
    },
    /// It does not match; `reason` is the first part of its conditions that is not true, at
    /// `file:line:col` (a missing field reads "field X is absent").
    NoMatch {
        reason: String,
        file: PathBuf,
        line: usize,
        col: usize,
    },
    /// It matches, but the named exception (from the policy or a tuning file) carves it out.
    Excepted {
        exception: String,
        file: PathBuf,
        line: usize,
    },
    /// The event's trust tier is below the policy's `min_trust`.
    BelowMinTrust {
        trust: Trust,
        min_trust: Trust,
    },
    Disabled,
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {} [{}]: ",
            self.file.display(),
            self.line,
            self.policy_id,
            self.priority.as_str()
        )?;
        match &self.outcome {
            TraceOutcome::Decides(action) => write!(f, "DECIDES: {action}"),
            TraceOutcome::Shadowed { by } => write!(f, "matches, but `{by}` decided first"),
            TraceOutcome::NoMatch { reason, file, line, col } => {
                write!(f, "no match: {reason} ({}:{line}:{col})", file.display())
            }
            TraceOutcome::Excepted { exception, file, line } => {
                write!(f, "no match: exception `{exception}` applies ({}:{line})", file.display())
            }
            TraceOutcome::BelowMinTrust { trust, min_trust } => {
                write!(f, "no match: trust {} is below min_trust {}", trust.as_str(), min_trust.as_str())
            }
            TraceOutcome::Disabled => write!(f, "disabled"),
        }
    }
}

impl PolicySet {
    /// Loads every `*.yaml` / `*.yml` file directly in `dir` (subfolders are not read, so test
    /// fixtures can live in `dir/fixtures/`). Tuning items may sit in any of those files.
    /// All-or-nothing: any problem anywhere gives every diagnostic and no set.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, Diagnostics> {
        load::load_dir(dir)
    }

    /// The shipped default policy (`policies/default.yaml`, embedded at build time).
    pub fn built_in() -> PolicySet {
        match load::load_sources(vec![load::embedded("default.yaml", DEFAULT_POLICY_YAML)], None) {
            Ok(set) => set,
            Err(diags) => {
                // Unreachable in a tested build (a unit test loads it); never panic the broker.
                tracing::error!(errors = diags.len(), "the built-in default policy does not compile");
                PolicySet {
                    hash: load::hash_files(&[]),
                    files: Vec::new(),
                    policies: Vec::new(),
                    tuning_tests: Vec::new(),
                    index: index::Index::build(&[]),
                }
            }
        }
    }

    /// Hex SHA-256 over each file's relative name and bytes, in name order: the exact set.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Number of policies (enabled or not).
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// Number of enabled policies.
    pub fn enabled_len(&self) -> usize {
        self.policies.iter().filter(|p| p.enabled).count()
    }

    /// Policy ids in evaluation order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| p.id.as_str())
    }

    /// A summary of every policy, in evaluation order (after tuning).
    pub fn policies(&self) -> Vec<PolicyInfo> {
        self.policies
            .iter()
            .map(|p| PolicyInfo {
                id: p.id.clone(),
                title: p.title.clone(),
                priority: p.priority,
                enabled: p.enabled,
                action: p.action,
                exceptions: p.exceptions.len(),
                tests: p.tests.len(),
                file: self.file_of(p.at),
                line: p.at.pos.line,
            })
            .collect()
    }

    /// The first enabled policy (in priority order) whose conditions hold and no exception
    /// applies; `None` when no policy matched.
    pub fn evaluate(&self, input: &EvalInput<'_>) -> Option<Decision> {
        let facts = Facts::new(input);
        let trust = input.event.trust;
        let candidates = self.index.candidates(&facts);
        let decided = index::bits(&candidates)
            .filter_map(|i| self.policies.get(i))
            .find(|p| p.decides(&facts, trust))
            .map(Policy::decision);
        decided
    }

    /// [`PolicySet::evaluate`] without the prefilter: every policy is checked. The two must
    /// always agree (a property test compares them).
    #[cfg(test)]
    pub(crate) fn evaluate_unindexed(&self, input: &EvalInput<'_>) -> Option<Decision> {
        let facts = Facts::new(input);
        self.policies.iter().find(|p| p.decides(&facts, input.event.trust)).map(Policy::decision)
    }

    /// One trace per policy, in evaluation order: the one that decides, those that would also
    /// match, and for every other the first reason it does not.
    pub fn explain(&self, input: &EvalInput<'_>) -> Vec<Trace> {
        let facts = Facts::new(input);
        let mut decided: Option<&str> = None;
        let mut out = Vec::with_capacity(self.policies.len());
        for p in &self.policies {
            let outcome = self.trace_one(p, &facts, input.event.trust);
            let outcome = match outcome {
                TraceOutcome::Decides(action) => match decided {
                    Some(by) => TraceOutcome::Shadowed { by: by.to_string() },
                    None => {
                        decided = Some(&p.id);
                        TraceOutcome::Decides(action)
                    }
                },
                other => other,
            };
            out.push(Trace {
                policy_id: p.id.clone(),
                priority: p.priority,
                file: self.file_of(p.at),
                line: p.at.pos.line,
                outcome,
            });
        }
        out
    }

    fn trace_one(&self, p: &Policy, facts: &Facts<'_>, trust: Trust) -> TraceOutcome {
        if !p.enabled {
            return TraceOutcome::Disabled;
        }
        if let Some(min) = p.min_trust.filter(|min| trust < *min) {
            return TraceOutcome::BelowMinTrust { trust, min_trust: min };
        }
        match p.cond.explain(facts) {
            (Tri::True, _) => {}
            (_, why) => {
                let (reason, at) = match why {
                    Some(w) => (w.message, w.at),
                    None => ("the conditions do not hold".to_string(), p.at),
                };
                return TraceOutcome::NoMatch {
                    reason,
                    file: self.file_of(at),
                    line: at.pos.line,
                    col: at.pos.col,
                };
            }
        }
        if let Some(e) = p.exceptions.iter().find(|e| e.cond.holds(facts)) {
            return TraceOutcome::Excepted {
                exception: e.name.clone(),
                file: self.file_of(e.at),
                line: e.at.pos.line,
            };
        }
        TraceOutcome::Decides(p.action)
    }

    fn file_of(&self, at: Loc) -> PathBuf {
        self.files.get(at.file).map(|f| f.shown.clone()).unwrap_or_default()
    }

    /// Runs every policy's tests against the whole set (so a test also catches a policy that
    /// is shadowed by another). Fixture files were read at load time, relative to the policy
    /// file; `base_dir` only prefixes the file names shown in the report when the set was
    /// loaded from memory (the built-in set).
    pub fn run_tests(&self, base_dir: &Path) -> TestReport {
        fixture::run(self, base_dir, false)
    }

    /// Like [`PolicySet::run_tests`], with an [`explain`](PolicySet::explain) trace kept for
    /// every test case.
    pub fn run_tests_explained(&self, base_dir: &Path) -> TestReport {
        fixture::run(self, base_dir, true)
    }
}

impl Policy {
    fn decides(&self, facts: &Facts<'_>, trust: Trust) -> bool {
        self.enabled
            && self.min_trust.is_none_or(|min| trust >= min)
            && self.cond.holds(facts)
            && !self.exceptions.iter().any(|e| e.cond.holds(facts))
    }

    fn decision(&self) -> Decision {
        Decision { policy_id: self.id.clone(), action: self.action, note: self.note.clone() }
    }
}
