//! The fields a policy can test: their dotted names, their types, and how each is read from an
//! evaluation input.
//!
//! The catalog is closed: a match key naming anything else is a load error, so a typo such as
//! `process.cmdline` cannot silently never match. Reading is borrow-only (no allocation except
//! for paths inside an `apply_patch` body) because it runs for every policy on every event.
//!
//! This module does not compare values; that is `cond`.

use super::EvalInput;
use crate::event::{CorrelationStatus, Disposition, ProcessRef, Severity, Trust};
use crate::sessions::model::AgentKind;
use std::borrow::Cow;

/// Every field a policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Disposition,
    Stopped,
    Severity,
    Trust,
    Integration,
    Source,
    Host,
    RuleName,
    RuleId,
    Attacks,
    VendorId,
    ProcessPid,
    ProcessCmdLine,
    ProcessExe,
    ProcessName,
    ProcessCwd,
    ProcessUser,
    ProcessUid,
    ParentPid,
    ParentCmdLine,
    ParentExe,
    ParentName,
    AncestorsExe,
    AncestorsCmdLine,
    TargetFile,
    TargetHost,
    TargetUrl,
    CorrelationStatus,
    CorrelationScore,
    AgentSession,
    AgentKind,
    AgentTool,
    AgentCommand,
    AgentCwd,
    AgentBlocks,
}

/// What a field holds, which decides the modifiers it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FieldType {
    /// Free text (several values for `attacks` and the ancestors: any one may match).
    Text,
    /// One of a closed set of words.
    Enum(&'static [&'static str]),
    /// One of a closed, ordered set of words: comparisons use the order.
    Ordered(&'static [&'static str]),
    Number,
    Bool,
    /// `agent.session`: `required`, `forbidden` or `any`.
    Session,
}

pub(crate) const DISPOSITIONS: &[&str] =
    &["blocked", "killed", "quarantined", "prevented", "denied", "detected", "unknown"];
/// In rank order (lowest first), as `Severity`'s `Ord`.
pub(crate) const SEVERITIES: &[&str] =
    &["unknown", "informational", "low", "medium", "high", "critical", "fatal"];
/// In rank order (lowest first), as `Trust`'s `Ord`.
pub(crate) const TRUSTS: &[&str] = &["local", "shared-secret", "signed"];
const STATUSES: &[&str] = &["matched", "ambiguous", "unmatched"];
const AGENT_KINDS: &[&str] = &["claude-code", "codex", "generic"];
pub(crate) const SESSION_CHOICES: &[&str] = &["required", "forbidden", "any"];

/// The catalog: dotted name, field, type.
pub(crate) const FIELDS: &[(&str, Field, FieldType)] = &[
    ("disposition", Field::Disposition, FieldType::Enum(DISPOSITIONS)),
    ("stopped", Field::Stopped, FieldType::Bool),
    ("severity", Field::Severity, FieldType::Ordered(SEVERITIES)),
    ("trust", Field::Trust, FieldType::Ordered(TRUSTS)),
    ("integration", Field::Integration, FieldType::Text),
    ("source", Field::Source, FieldType::Text),
    ("host", Field::Host, FieldType::Text),
    ("rule.name", Field::RuleName, FieldType::Text),
    ("rule.id", Field::RuleId, FieldType::Text),
    ("attacks", Field::Attacks, FieldType::Text),
    ("vendor_id", Field::VendorId, FieldType::Text),
    ("process.pid", Field::ProcessPid, FieldType::Number),
    ("process.cmd_line", Field::ProcessCmdLine, FieldType::Text),
    ("process.exe", Field::ProcessExe, FieldType::Text),
    ("process.name", Field::ProcessName, FieldType::Text),
    ("process.cwd", Field::ProcessCwd, FieldType::Text),
    ("process.user", Field::ProcessUser, FieldType::Text),
    ("process.uid", Field::ProcessUid, FieldType::Number),
    ("process.parent.pid", Field::ParentPid, FieldType::Number),
    ("process.parent.cmd_line", Field::ParentCmdLine, FieldType::Text),
    ("process.parent.exe", Field::ParentExe, FieldType::Text),
    ("process.parent.name", Field::ParentName, FieldType::Text),
    ("process.ancestors.exe", Field::AncestorsExe, FieldType::Text),
    ("process.ancestors.cmd_line", Field::AncestorsCmdLine, FieldType::Text),
    ("target.file", Field::TargetFile, FieldType::Text),
    ("target.host", Field::TargetHost, FieldType::Text),
    ("target.url", Field::TargetUrl, FieldType::Text),
    ("correlation.status", Field::CorrelationStatus, FieldType::Enum(STATUSES)),
    ("correlation.score", Field::CorrelationScore, FieldType::Number),
    ("agent.session", Field::AgentSession, FieldType::Session),
    ("agent.kind", Field::AgentKind, FieldType::Enum(AGENT_KINDS)),
    ("agent.tool", Field::AgentTool, FieldType::Text),
    ("agent.command", Field::AgentCommand, FieldType::Text),
    ("agent.cwd", Field::AgentCwd, FieldType::Text),
    ("agent.blocks", Field::AgentBlocks, FieldType::Number),
];

pub(crate) fn lookup(name: &str) -> Option<(Field, FieldType)> {
    FIELDS.iter().find(|(n, _, _)| *n == name).map(|(_, f, t)| (*f, *t))
}

pub(crate) fn name_of(field: Field) -> &'static str {
    FIELDS.iter().find(|(_, f, _)| *f == field).map_or("?", |(n, _, _)| n)
}

/// A field's value in one evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Val<'a> {
    Absent,
    Text(&'a str),
    /// `attacks`: any item may match.
    Texts(&'a [String]),
    /// `process.ancestors.exe` / `.cmd_line`: any ancestor that reports it may match.
    AncestorExe(&'a [ProcessRef]),
    AncestorCmd(&'a [ProcessRef]),
    Num(f64),
    /// Position in an ordered field's word list.
    Rank(usize),
    Bool(bool),
}

/// The facts of one evaluation input, read once and then shared by every policy.
pub(crate) struct Facts<'a> {
    pub input: &'a EvalInput<'a>,
    pub session_present: bool,
    agent_command: Option<Cow<'a, str>>,
}

impl<'a> Facts<'a> {
    pub fn new(input: &'a EvalInput<'a>) -> Facts<'a> {
        let matched = input
            .correlation
            .is_some_and(|c| c.status == CorrelationStatus::Matched && c.session_id.is_some());
        let agent_command = input.command.and_then(|c| {
            c.shell_command()
                .or_else(|| {
                    ["file_path", "path", "notebook_path", "url"]
                        .iter()
                        .find_map(|k| c.input.get(*k).and_then(|v| v.as_str()))
                })
                .map(Cow::Borrowed)
                .or_else(|| c.file_paths().into_iter().next().map(Cow::Owned))
        });
        Facts { input, session_present: input.session.is_some() || matched, agent_command }
    }

    pub fn get(&self, field: Field) -> Val<'_> {
        let event = self.input.event;
        let body = &event.body;
        let process = body.process.as_ref();
        let parent = process.and_then(|p| p.parent.as_ref());
        let target = body.target.as_ref();
        let text = |v: Option<&'a String>| v.map_or(Val::Absent, |s| Val::Text(s.as_str()));
        let num = |v: Option<u32>| v.map_or(Val::Absent, |n| Val::Num(f64::from(n)));
        match field {
            Field::Disposition => Val::Text(disposition_name(body.disposition)),
            Field::Stopped => Val::Bool(body.disposition.stopped_the_action()),
            Field::Severity => Val::Rank(severity_rank(body.severity)),
            Field::Trust => Val::Rank(trust_rank(event.trust)),
            Field::Integration => Val::Text(&event.integration),
            Field::Source => Val::Text(&event.source),
            Field::Host => text(body.host.as_ref()),
            Field::RuleName => text(body.rule.as_ref().and_then(|r| r.name.as_ref())),
            Field::RuleId => text(body.rule.as_ref().and_then(|r| r.id.as_ref())),
            Field::Attacks if body.attacks.is_empty() => Val::Absent,
            Field::Attacks => Val::Texts(&body.attacks),
            Field::VendorId => text(body.vendor_id.as_ref()),
            Field::ProcessPid => num(process.and_then(|p| p.pid)),
            Field::ProcessCmdLine => text(process.and_then(|p| p.cmd_line.as_ref())),
            Field::ProcessExe => text(process.and_then(|p| p.exe.as_ref())),
            Field::ProcessName => process
                .and_then(|p| program_name(p.exe.as_deref(), p.cmd_line.as_deref()))
                .map_or(Val::Absent, Val::Text),
            Field::ProcessCwd => text(process.and_then(|p| p.cwd.as_ref())),
            Field::ProcessUser => text(process.and_then(|p| p.user.as_ref())),
            Field::ProcessUid => num(process.and_then(|p| p.uid)),
            Field::ParentPid => num(parent.and_then(|p| p.pid)),
            Field::ParentCmdLine => text(parent.and_then(|p| p.cmd_line.as_ref())),
            Field::ParentExe => text(parent.and_then(|p| p.exe.as_ref())),
            Field::ParentName => parent
                .and_then(|p| program_name(p.exe.as_deref(), p.cmd_line.as_deref()))
                .map_or(Val::Absent, Val::Text),
            Field::AncestorsExe => match process.map(|p| p.ancestors.as_slice()) {
                Some(a) if a.iter().any(|r| r.exe.is_some()) => Val::AncestorExe(a),
                _ => Val::Absent,
            },
            Field::AncestorsCmdLine => match process.map(|p| p.ancestors.as_slice()) {
                Some(a) if a.iter().any(|r| r.cmd_line.is_some()) => Val::AncestorCmd(a),
                _ => Val::Absent,
            },
            Field::TargetFile => text(target.and_then(|t| t.file.as_ref())),
            Field::TargetHost => text(target.and_then(|t| t.host.as_ref())),
            Field::TargetUrl => text(target.and_then(|t| t.url.as_ref())),
            Field::CorrelationStatus => self.input.correlation.map_or(Val::Absent, |c| {
                Val::Text(match c.status {
                    CorrelationStatus::Matched => "matched",
                    CorrelationStatus::Ambiguous => "ambiguous",
                    CorrelationStatus::Unmatched => "unmatched",
                })
            }),
            Field::CorrelationScore => {
                self.input.correlation.and_then(|c| c.score).map_or(Val::Absent, Val::Num)
            }
            Field::AgentSession => Val::Bool(self.session_present),
            Field::AgentKind => self.input.session.map_or(Val::Absent, |s| {
                Val::Text(match s.agent {
                    AgentKind::ClaudeCode => "claude-code",
                    AgentKind::Codex => "codex",
                    AgentKind::Generic => "generic",
                })
            }),
            Field::AgentTool => self.input.command.map_or(Val::Absent, |c| Val::Text(&c.tool)),
            Field::AgentCommand => self.agent_command.as_deref().map_or(Val::Absent, Val::Text),
            Field::AgentCwd => self.input.session.map_or(Val::Absent, |s| Val::Text(&s.cwd)),
            Field::AgentBlocks if self.session_present => Val::Num(f64::from(self.input.prior_blocks)),
            Field::AgentBlocks => Val::Absent,
        }
    }
}

/// The last path component of the executable, else of the command line's first word.
fn program_name<'s>(exe: Option<&'s str>, cmd_line: Option<&'s str>) -> Option<&'s str> {
    let path = exe.or_else(|| cmd_line.and_then(|c| c.split_whitespace().next()))?;
    let name = path.rsplit('/').next().unwrap_or(path);
    Some(name).filter(|n| !n.is_empty())
}

pub(crate) fn disposition_name(d: Disposition) -> &'static str {
    match d {
        Disposition::Blocked => "blocked",
        Disposition::Killed => "killed",
        Disposition::Quarantined => "quarantined",
        Disposition::Prevented => "prevented",
        Disposition::Denied => "denied",
        Disposition::Detected => "detected",
        Disposition::Unknown => "unknown",
    }
}

pub(crate) fn severity_rank(s: Severity) -> usize {
    match s {
        Severity::Unknown => 0,
        Severity::Informational => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
        Severity::Fatal => 6,
    }
}

pub(crate) fn trust_rank(t: Trust) -> usize {
    match t {
        Trust::Local => 0,
        Trust::SharedSecret => 1,
        Trust::Signed => 2,
    }
}

pub(crate) fn trust_from_rank(rank: usize) -> Trust {
    match rank {
        0 => Trust::Local,
        1 => Trust::SharedSecret,
        _ => Trust::Signed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_names_are_unique_and_ranks_follow_the_enums() {
        for (i, (a, _, _)) in FIELDS.iter().enumerate() {
            assert!(FIELDS[i + 1..].iter().all(|(b, _, _)| a != b), "{a} twice");
        }
        assert!(
            Severity::High > Severity::Medium
                && severity_rank(Severity::High) > severity_rank(Severity::Medium)
        );
        assert!(SEVERITIES[severity_rank(Severity::Critical)] == "critical");
        assert!(TRUSTS[trust_rank(Trust::SharedSecret)] == "shared-secret");
        assert_eq!(trust_from_rank(trust_rank(Trust::Local)), Trust::Local);
    }

    #[test]
    fn program_name_prefers_the_exe() {
        assert_eq!(program_name(Some("/usr/bin/curl"), Some("wget x")), Some("curl"));
        assert_eq!(program_name(None, Some("/bin/sh -c x")), Some("sh"));
        assert_eq!(program_name(None, Some("   ")), None);
        assert_eq!(program_name(Some("/usr/bin/"), None), None);
    }
}
