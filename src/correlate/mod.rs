//! Correlation: which agent session, and which of its tool calls, caused a security event.
//!
//! Every candidate (a session alive at the event's time on the event's host, paired with one of
//! its ledger calls or with none) gets a score from independent pieces of evidence, each
//! recorded with a human-readable reason:
//!
//! - **ancestry**: the agent process is an ancestor of the event's process, seen in the event
//!   itself (parent, ancestors), in `/proc` (when the process or its parent is still alive on
//!   this host), or by the [`tracker`] (descendants of agent processes seen while they ran, so
//!   a killed child still attributes). A chain that provably reaches init without passing the
//!   agent counts *against* the session;
//! - **command**: the event's command line against the call's command, both unwrapped from
//!   agent shell wrappers ([`command`]);
//! - **target**: the file or URL the event names against the call's file paths or URL;
//! - **time**, **cwd**: small tie-breakers.
//!
//! The best candidate above [`Thresholds::match_score`] wins unless another *different* one is
//! within [`Thresholds::ambiguity_margin`] (then the event is `ambiguous`). This module is pure
//! apart from `/proc` reads: it gets sessions and ledgers as arguments and knows nothing of
//! HTTP, storage or keys.

pub mod command;
pub mod tracker;

use crate::event::{Correlation, CorrelationStatus, Evidence, SecurityEvent};
use crate::sessions::model::{CommandRecord, Session};
use crate::sessions::procfs::Procfs;
use std::collections::HashSet;
use time::{Duration, OffsetDateTime};
use tracker::Tracker;

/// Tunable limits; the defaults are what the accuracy harness (tests/correlation_accuracy.rs)
/// was measured with.
#[derive(Debug, Clone)]
pub struct Thresholds {
    /// Lowest score that counts as a match.
    pub match_score: f64,
    /// A runner-up this close to the winner makes the event ambiguous.
    pub ambiguity_margin: f64,
    /// How long after a call started its processes may still raise events.
    pub window_after: Duration,
    /// Clock skew allowed between the agent host and the security tool.
    pub window_before: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            match_score: 0.5,
            ambiguity_margin: 0.08,
            window_after: Duration::minutes(10),
            window_before: Duration::seconds(10),
        }
    }
}

// Evidence weights. An exact command match within the window is enough on its own (EDRs
// without OS pids depend on it); weaker command overlap needs ancestry or a target as well.
const W_ANCESTRY: f64 = 0.55;
const W_NOT_DESCENDANT: f64 = -0.6;
const W_COMMAND: f64 = 0.5;
const W_TARGET: f64 = 0.4;
const W_TIME: f64 = 0.05;
const W_CWD: f64 = 0.05;
const W_FAILED: f64 = 0.03;

/// A session with its ledger, as the correlator needs it.
pub struct Candidate<'a> {
    pub session: &'a Session,
    pub commands: &'a [CommandRecord],
}

/// The correlator. Cheap to share; holds only configuration and the process views.
pub struct Correlator {
    pub thresholds: Thresholds,
    procfs: Procfs,
    /// This machine's hostname: `/proc` only describes processes of this host.
    local_host: String,
    tracker: Tracker,
}

/// What is known about the event's process tree.
struct Lineage {
    /// Pids that are the event's process or its ancestors, with where each was learned.
    pids: Vec<(u32, &'static str)>,
    /// True when a chain was followed all the way to init on this host, so a session whose
    /// agent is not in `pids` is provably not an ancestor.
    complete: bool,
}

impl Correlator {
    pub fn new(procfs: Procfs, local_host: String, tracker: Tracker) -> Correlator {
        Correlator { thresholds: Thresholds::default(), procfs, local_host, tracker }
    }

    /// Correlates one event against the candidate sessions.
    pub fn correlate(
        &self,
        event: &SecurityEvent,
        candidates: &[Candidate<'_>],
        now: OffsetDateTime,
    ) -> Correlation {
        let event_time = event.time();
        let lineage = self.lineage(event, event_time);
        let mut scored: Vec<Scored> = Vec::new();
        for candidate in candidates {
            if !same_host(event, candidate.session) || !candidate.session.alive_at(event_time) {
                continue;
            }
            scored.extend(self.score_session(event, candidate, &lineage, event_time));
        }
        self.decide(scored, now)
    }

    fn lineage(&self, event: &SecurityEvent, at: OffsetDateTime) -> Lineage {
        let mut pids: Vec<(u32, &'static str)> = Vec::new();
        let mut complete = false;
        let Some(process) = &event.body.process else { return Lineage { pids, complete } };
        if let Some(pid) = process.pid {
            pids.push((pid, "event process"));
        }
        if let Some(pid) = process.parent.as_ref().and_then(|p| p.pid) {
            pids.push((pid, "event parent"));
        }
        pids.extend(process.ancestors.iter().filter_map(|a| a.pid).map(|p| (p, "event ancestors")));
        let local = event.body.host.as_deref().is_none_or(|h| hosts_equal(h, &self.local_host));
        if local {
            // The event's process is often already gone (killed); its parent shell may not be.
            let starts = [process.pid, process.parent.as_ref().and_then(|p| p.pid)];
            for pid in starts.into_iter().flatten() {
                let chain = self.procfs.ancestors(pid);
                if chain.last().is_some_and(|s| s.pid == 1) && self.procfs.stat(pid).is_some() {
                    complete = recent(at);
                }
                pids.extend(chain.iter().map(|s| (s.pid, "/proc")));
                if !chain.is_empty() {
                    break;
                }
            }
        }
        Lineage { pids, complete }
    }

    fn score_session(
        &self,
        event: &SecurityEvent,
        candidate: &Candidate<'_>,
        lineage: &Lineage,
        event_time: OffsetDateTime,
    ) -> Vec<Scored> {
        let session = candidate.session;
        let mut base: Vec<Evidence> = Vec::new();
        let mut base_score = 0.0;
        if let Some((_, via)) = lineage.pids.iter().find(|(p, _)| *p == session.pid) {
            base_score += W_ANCESTRY;
            base.push(ev(
                "ancestry",
                format!("agent process {} is an ancestor ({via})", session.pid),
                W_ANCESTRY,
            ));
        } else if let Some(pid) = self.tracked_descendant(event, session) {
            base_score += W_ANCESTRY;
            base.push(ev(
                "ancestry",
                format!("pid {pid} was seen running under agent process {} (process tracker)", session.pid),
                W_ANCESTRY,
            ));
        } else if lineage.complete {
            base_score += W_NOT_DESCENDANT;
            base.push(ev(
                "ancestry",
                format!("process tree reaches init without agent process {}", session.pid),
                W_NOT_DESCENDANT,
            ));
        }
        if let Some(cwd) = event.body.process.as_ref().and_then(|p| p.cwd.as_deref()) {
            if path_within(cwd, &session.cwd) {
                base_score += W_CWD;
                base.push(ev("cwd", "event cwd is inside the session's working directory".into(), W_CWD));
            }
        }
        let mut out = vec![Scored {
            session: session.session_id,
            call: None,
            call_time: None,
            score: base_score,
            command_score: 0.0,
            evidence: base.clone(),
        }];
        for call in candidate.commands {
            if !self.in_window(call, event_time) {
                continue;
            }
            let (call_score, mut evidence, command_score) = self.score_call(event, call, event_time);
            if call_score <= 0.0 {
                continue;
            }
            let mut all = base.clone();
            all.append(&mut evidence);
            out.push(Scored {
                session: session.session_id,
                call: Some(call.call_id.clone()),
                call_time: Some(call.time),
                score: base_score + call_score,
                command_score,
                evidence: all,
            });
        }
        out
    }

    fn tracked_descendant(&self, event: &SecurityEvent, session: &Session) -> Option<u32> {
        let process = event.body.process.as_ref()?;
        let local = event.body.host.as_deref().is_none_or(|h| hosts_equal(h, &self.local_host));
        if !local {
            return None;
        }
        let candidates = [process.pid, process.parent.as_ref().and_then(|p| p.pid)];
        candidates.into_iter().flatten().find(|pid| self.tracker.was_under(*pid, session.session_id))
    }

    fn in_window(&self, call: &CommandRecord, event_time: OffsetDateTime) -> bool {
        let ran_for =
            call.outcome.as_ref().and_then(|o| o.duration_ms).map_or(Duration::ZERO, |ms| {
                Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2))
            });
        event_time >= call.time - self.thresholds.window_before
            && event_time <= call.time + ran_for + self.thresholds.window_after
    }

    /// Score of one call for this event: command/target match plus small tie-breakers.
    fn score_call(
        &self,
        event: &SecurityEvent,
        call: &CommandRecord,
        event_time: OffsetDateTime,
    ) -> (f64, Vec<Evidence>, f64) {
        let mut evidence = Vec::new();
        let mut score = 0.0;
        let mut command_score = 0.0;
        let process = event.body.process.as_ref();
        if let Some(ledger_cmd) = call.shell_command() {
            let lines = [
                process.and_then(|p| p.cmd_line.as_deref()),
                process.and_then(|p| p.parent.as_ref()).and_then(|p| p.cmd_line.as_deref()),
            ];
            let best = lines
                .iter()
                .flatten()
                .map(|line| command::compare(line, ledger_cmd))
                .max_by(|a, b| a.score.total_cmp(&b.score));
            if let Some(m) = best.filter(|m| m.score > 0.0) {
                command_score = m.score;
                score += W_COMMAND * m.score;
                evidence.push(ev(
                    "command",
                    format!("{} (call {})", m.reason, quote(&call.call_id)),
                    W_COMMAND * m.score,
                ));
            }
        }
        if let Some(w) = target_match(event, call) {
            score += W_TARGET;
            evidence.push(ev("target", w, W_TARGET));
        }
        if score <= 0.0 {
            return (0.0, evidence, 0.0);
        }
        let dt = (event_time - call.time).abs().as_seconds_f64();
        let closeness = (1.0 - dt / self.thresholds.window_after.as_seconds_f64()).clamp(0.0, 1.0);
        score += W_TIME * closeness;
        evidence.push(ev("time", format!("event {dt:.1}s from the call"), W_TIME * closeness));
        if call.outcome.as_ref().is_some_and(|o| o.exit_code.is_some_and(|c| c != 0) || o.error.is_some()) {
            score += W_FAILED;
            evidence.push(ev("outcome", "the call failed".into(), W_FAILED));
        }
        (score, evidence, command_score)
    }

    fn decide(&self, mut scored: Vec<Scored>, now: OffsetDateTime) -> Correlation {
        scored.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| b.call_time.cmp(&a.call_time)));
        let unmatched = |evidence| Correlation {
            status: CorrelationStatus::Unmatched,
            session_id: None,
            call_id: None,
            score: None,
            evidence,
            correlated_at: now,
        };
        let Some(best) = scored.first() else {
            return unmatched(vec![ev("candidate", "no live session on the event's host".into(), 0.0)]);
        };
        if best.score < self.thresholds.match_score {
            let mut evidence = best.evidence.clone();
            evidence.push(ev(
                "candidate",
                format!("best score {:.2} is below {:.2}", best.score, self.thresholds.match_score),
                0.0,
            ));
            return unmatched(evidence);
        }
        let rival = scored.iter().skip(1).find(|s| self.is_rival(best, s));
        if let Some(rival) = rival {
            let mut evidence = best.evidence.clone();
            evidence.push(ev(
                "candidate",
                format!("another candidate scored {:.2} against {:.2}", rival.score, best.score),
                0.0,
            ));
            return Correlation {
                status: CorrelationStatus::Ambiguous,
                session_id: (rival.session == best.session).then_some(best.session),
                call_id: None,
                score: Some(round(best.score)),
                evidence,
                correlated_at: now,
            };
        }
        Correlation {
            status: CorrelationStatus::Matched,
            session_id: Some(best.session),
            call_id: best.call.clone(),
            score: Some(round(best.score)),
            evidence: best.evidence.clone(),
            correlated_at: now,
        }
    }

    /// Whether `other` competes with `best`. The same session without a call is not a rival
    /// (it is `best` with less information). Two calls of the same session with an equally good
    /// command match are a retry: the later call that still precedes the event wins, which the
    /// sort order already put first.
    fn is_rival(&self, best: &Scored, other: &Scored) -> bool {
        if best.score - other.score > self.thresholds.ambiguity_margin {
            return false;
        }
        if other.session == best.session {
            let retry = (best.command_score - other.command_score).abs() < 1e-9;
            return other.call.is_some() && best.call.is_some() && !retry && other.call != best.call;
        }
        true
    }
}

/// One scored (session, call) pair.
#[derive(Debug, Clone)]
struct Scored {
    session: uuid::Uuid,
    call: Option<String>,
    call_time: Option<OffsetDateTime>,
    score: f64,
    command_score: f64,
    evidence: Vec<Evidence>,
}

fn ev(kind: &str, detail: String, weight: f64) -> Evidence {
    Evidence { kind: kind.to_string(), detail, weight: round(weight) }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `/proc` describes now, not the event's time: trust a complete chain only for recent events.
fn recent(at: OffsetDateTime) -> bool {
    (OffsetDateTime::now_utc() - at).abs() < Duration::minutes(5)
}

fn same_host(event: &SecurityEvent, session: &Session) -> bool {
    event.body.host.as_deref().is_none_or(|h| hosts_equal(h, &session.host))
}

/// Hostnames compare case-insensitively and by their first label (`build-7` = `build-7.corp`).
pub fn hosts_equal(a: &str, b: &str) -> bool {
    let short = |h: &str| h.split('.').next().unwrap_or(h).to_ascii_lowercase();
    a.eq_ignore_ascii_case(b) || short(a) == short(b)
}

fn path_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Event text shown in evidence is quoted and capped (an analyst reads it; the model never does).
fn quote(s: &str) -> String {
    let capped: String = s.chars().take(80).collect();
    format!("{capped:?}")
}

fn target_match(event: &SecurityEvent, call: &CommandRecord) -> Option<String> {
    let target = event.body.target.as_ref()?;
    if let Some(file) = &target.file {
        let paths: HashSet<String> = call.file_paths().into_iter().collect();
        if paths.iter().any(|p| p == file || file.ends_with(&format!("/{}", p.trim_start_matches("./")))) {
            return Some(format!("event file {} is the call's file", quote(file)));
        }
    }
    if let (Some(url), Some(call_url)) = (&target.url, call.url()) {
        if url == call_url {
            return Some(format!("event URL {} is the call's URL", quote(url)));
        }
    }
    None
}

#[cfg(test)]
mod tests;
