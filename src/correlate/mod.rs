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
//!   agent (in `/proc`, or in the event's own ancestors) counts *against* the session;
//! - **command**: the call's command against the command lines of the event's process, its
//!   parent and its ancestors, all unwrapped from agent shell wrappers ([`command`]);
//! - **parent**: the process that ran the call's command must have been started by the agent
//!   (or by the call's own shell). When the event shows it was started by something else (a
//!   login shell, cron, an IDE, a shell running another script), that counts against the call;
//! - **finished**: a call whose outcome says it finished cannot start processes afterwards,
//!   unless it left a background job;
//! - **target**: the file or URL the event names against the call's file paths or URL, when the
//!   process acting on it is the agent (or unknown);
//! - **time**, **cwd**, **user**: the event's distance from the call, whether its working
//!   directory is the session's, whether it runs as the session's user.
//!
//! The best candidate above [`Thresholds::match_score`] wins unless another *different* one is
//! within [`Thresholds::ambiguity_margin`] (then the event is `ambiguous`). This module is pure
//! apart from `/proc` reads: it gets sessions and ledgers as arguments and knows nothing of
//! HTTP, storage or keys. The weights below are what the accuracy harness
//! (`tests/correlation_accuracy.rs`, documented in `docs/correlation.md`) was measured with.

pub mod ancestry;
pub mod command;
pub mod tracker;

use crate::event::{Correlation, CorrelationStatus, Evidence, SecurityEvent};
use crate::sessions::model::{CommandRecord, Session};
use crate::sessions::procfs::Procfs;
use ancestry::AncestryMemo;
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
    /// How long after a call's recorded end an event may still be its own (clock skew and the
    /// EDR's own latency between the process starting and the event's timestamp).
    pub finished_grace: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            match_score: 0.5,
            ambiguity_margin: 0.08,
            window_after: Duration::minutes(10),
            window_before: Duration::seconds(10),
            finished_grace: Duration::seconds(15),
        }
    }
}

// Evidence weights. An exact command match near the call is enough on its own (EDRs without
// OS pids depend on it); weaker command overlap needs ancestry or a target as well. Evidence
// that the process came from elsewhere (wrong parent, finished call, another user, a complete
// chain without the agent) is strong enough to cancel a command match.
const W_ANCESTRY: f64 = 0.55;
const W_NOT_DESCENDANT: f64 = -0.6;
const W_COMMAND: f64 = 0.5;
const W_WRONG_PARENT: f64 = -0.4;
const W_FINISHED: f64 = -0.4;
const W_TARGET: f64 = 0.45;
/// Closeness in time: `W_TIME * exp(-dt / TIME_SCALE_SECS)`; processes of a call start within
/// seconds of it.
const W_TIME: f64 = 0.1;
const TIME_SCALE_SECS: f64 = 10.0;
/// The same for events stamped before the call (clock skew, the hook's own latency).
const EARLY_SCALE_SECS: f64 = 2.0;
const W_CWD: f64 = 0.1;
const W_OTHER_USER: f64 = -0.3;
const W_FAILED: f64 = 0.03;

/// Programs that start a container's processes: a chain through them says nothing about who
/// asked for the container (`docker run`, `kubectl exec` from an agent).
const CONTAINER_RUNTIMES: &[&str] = &["containerd-shim", "containerd-shim-runc-v2", "runc", "crun", "conmon"];

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
    /// Recent `/proc` ancestry chains: one event's walk to init serves the next events from
    /// the same tree.
    ancestry: AncestryMemo,
}

/// What is known about the event's process tree.
struct Lineage {
    /// Pids that are the event's process or its ancestors, with where each was learned.
    pids: Vec<(u32, &'static str)>,
    /// Where a chain was followed all the way to init (the event's ancestors, `/proc`), so a
    /// session whose agent is not in `pids` is provably not an ancestor.
    complete: Option<&'static str>,
}

/// One process of the event's chain: the process itself, its parent, then its ancestors.
#[derive(Debug, Clone, Copy)]
struct Level<'a> {
    pid: Option<u32>,
    line: Option<&'a str>,
    name: &'static str,
}

/// The event's process chain, nearest first, with duplicate entries of one pid merged (some
/// EDRs repeat the parent as the first ancestor).
fn levels(event: &SecurityEvent) -> Vec<Level<'_>> {
    let Some(process) = &event.body.process else { return Vec::new() };
    let mut out = vec![Level { pid: process.pid, line: process.cmd_line.as_deref(), name: "process" }];
    let refs =
        process.parent.iter().map(|p| (p, "parent")).chain(process.ancestors.iter().map(|a| (a, "ancestor")));
    for (r, name) in refs {
        let level = Level { pid: r.pid, line: r.cmd_line.as_deref(), name };
        if let Some(last) = out.last_mut().filter(|l| l.pid.is_some() && l.pid == level.pid) {
            last.line = last.line.or(level.line);
            continue;
        }
        out.push(level);
    }
    out
}

/// What the call-level scoring needs to know about the event and the session.
struct Context<'a> {
    event: &'a SecurityEvent,
    session: &'a Session,
    levels: &'a [Level<'a>],
    event_time: OffsetDateTime,
    /// The session's agent is known to be an ancestor of the event's process.
    ancestry: bool,
}

impl Correlator {
    pub fn new(procfs: Procfs, local_host: String, tracker: Tracker) -> Correlator {
        Correlator {
            thresholds: Thresholds::default(),
            procfs,
            local_host,
            tracker,
            ancestry: AncestryMemo::default(),
        }
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
        let levels = levels(event);
        let mut scored: Vec<Scored> = Vec::new();
        for candidate in candidates {
            if !self.same_host(event, candidate.session)
                || !candidate.session.alive_at(event_time)
                || superseded(candidate.session, candidates, event_time)
            {
                continue;
            }
            scored.extend(self.score_session(event, candidate, &lineage, &levels, event_time));
        }
        self.decide(scored, now)
    }

    /// An event that names no host comes from a local source (a tailed file): this machine.
    fn same_host(&self, event: &SecurityEvent, session: &Session) -> bool {
        hosts_equal(event.body.host.as_deref().unwrap_or(&self.local_host), &session.host)
    }

    fn is_local(&self, event: &SecurityEvent) -> bool {
        event.body.host.as_deref().is_none_or(|h| hosts_equal(h, &self.local_host))
    }

    fn lineage(&self, event: &SecurityEvent, at: OffsetDateTime) -> Lineage {
        let mut pids: Vec<(u32, &'static str)> = Vec::new();
        let mut complete = None;
        let Some(process) = &event.body.process else { return Lineage { pids, complete } };
        if let Some(pid) = process.pid {
            pids.push((pid, "event process"));
        }
        if let Some(pid) = process.parent.as_ref().and_then(|p| p.pid) {
            pids.push((pid, "event parent"));
        }
        pids.extend(process.ancestors.iter().filter_map(|a| a.pid).map(|p| (p, "event ancestors")));
        if event_chain_complete(process) {
            complete = Some("the event's ancestors");
        }
        if self.is_local(event) {
            // The event's process is often already gone (killed); its parent shell may not be.
            let starts = [process.pid, process.parent.as_ref().and_then(|p| p.pid)];
            for pid in starts.into_iter().flatten() {
                let Some((_, chain)) = self.ancestry.lineage(&self.procfs, pid) else { continue };
                if chain.last().is_some_and(|s| s.pid == 1) && recent(at) {
                    complete = complete.or(Some("/proc"));
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
        levels: &[Level<'_>],
        event_time: OffsetDateTime,
    ) -> Vec<Scored> {
        let session = candidate.session;
        let mut base: Vec<Evidence> = Vec::new();
        let mut ancestry = false;
        if let Some((_, via)) = lineage.pids.iter().find(|(p, _)| *p == session.pid) {
            ancestry = true;
            base.push(ev(
                "ancestry",
                format!("agent process {} is an ancestor ({via})", session.pid),
                W_ANCESTRY,
            ));
        } else if let Some(pid) = self.tracked_descendant(event, session) {
            ancestry = true;
            base.push(ev(
                "ancestry",
                format!("pid {pid} was seen running under agent process {} (process tracker)", session.pid),
                W_ANCESTRY,
            ));
        } else if let Some(via) = lineage.complete {
            base.push(ev(
                "ancestry",
                format!("process tree reaches init without agent process {} ({via})", session.pid),
                W_NOT_DESCENDANT,
            ));
        }
        let process = event.body.process.as_ref();
        // Another user's process is not the session's, unless the agent is its ancestor or
        // something switched users on the way (`sudo -u postgres …` in the chain or the call).
        let mut other_user = None;
        if !ancestry && !chain_switches_user(event, levels) {
            let event_user = process.and_then(|p| p.user.as_deref());
            if let (Some(theirs), Some(ours)) = (event_user, session.user.as_deref()) {
                if !same_user(theirs, ours) && !is_superuser(theirs) {
                    other_user = Some(ev(
                        "user",
                        format!("the process runs as {}, the session as {}", quote(theirs), quote(ours)),
                        W_OTHER_USER,
                    ));
                }
            }
        }
        let cwd = process.and_then(|p| p.cwd.as_deref());
        if let Some(cwd) = cwd {
            if path_within(cwd, &session.cwd) {
                base.push(ev("cwd", "event cwd is inside the session's working directory".into(), W_CWD));
            } else if !ancestry {
                base.push(ev(
                    "cwd",
                    format!("event cwd {} is outside the session's working directory", quote(cwd)),
                    -W_CWD,
                ));
            }
        }
        let base_score: f64 = base.iter().map(|e| e.weight).sum();
        let mut session_only = base.clone();
        session_only.extend(other_user.clone());
        let mut out = vec![Scored {
            session: session.session_id,
            call: None,
            call_time: None,
            score: session_only.iter().map(|e| e.weight).sum(),
            command_score: 0.0,
            evidence: session_only,
        }];
        let ctx = Context { event, session, levels, event_time, ancestry };
        for call in candidate.commands {
            // Outside the window only a process still running under the call's own command
            // (seen among the event's ancestors, under the agent) can belong to the call.
            let in_window = self.in_window(call, event_time);
            let may_be_running = ancestry && event_time >= call.time - self.thresholds.window_before;
            if !(in_window || may_be_running) {
                continue;
            }
            let (mut call_score, mut evidence, command_score, under_call) = self.score_call(&ctx, call, cwd);
            if call_score <= 0.0 || !(in_window || under_call) {
                continue;
            }
            if let Some(user) = &other_user {
                if !call.shell_command().is_some_and(command::switches_user) {
                    call_score += user.weight;
                    evidence.push(user.clone());
                }
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
        if !self.is_local(event) {
            return None;
        }
        let candidates = [process.pid, process.parent.as_ref().and_then(|p| p.pid)];
        candidates.into_iter().flatten().find(|pid| self.tracker.was_under(*pid, session.session_id))
    }

    fn in_window(&self, call: &CommandRecord, event_time: OffsetDateTime) -> bool {
        event_time >= call.time - self.thresholds.window_before
            && event_time <= call.time + ran_for(call) + self.thresholds.window_after
    }

    /// Score of one call for this event: positive evidence (command, target) first; without it
    /// the call is not a candidate. Then what speaks against it and the tie-breakers.
    fn score_call(
        &self,
        ctx: &Context<'_>,
        call: &CommandRecord,
        cwd: Option<&str>,
    ) -> (f64, Vec<Evidence>, f64, bool) {
        let mut evidence = Vec::new();
        let mut command_score = 0.0;
        let mut under_call = false;
        if call.shell_command().is_none() {
            if let Some(why) = argument_match(ctx, call) {
                command_score = command::STRONG;
                evidence.push(ev("command", why, W_COMMAND * command::STRONG));
            }
        }
        if let Some(ledger_cmd) = call.shell_command() {
            if let Some(found) = command_evidence(ctx, ledger_cmd) {
                command_score = found.score;
                under_call = found.in_ancestor && found.wrong_parent.is_none();
                evidence.push(ev(
                    "command",
                    format!("{} ({}; call {})", found.reason, found.level, quote(&call.call_id)),
                    W_COMMAND * found.score,
                ));
                if let Some(why) = found.wrong_parent {
                    evidence.push(ev("parent", why, W_WRONG_PARENT));
                }
            }
        }
        if let Some(w) = target_match(ctx, call) {
            evidence.push(ev("target", w, W_TARGET));
        }
        if evidence.iter().map(|e| e.weight).sum::<f64>() <= 0.0 {
            return (0.0, evidence, 0.0, false);
        }
        if let Some(why) = self.finished_before(ctx, call) {
            evidence.push(ev("finished", why, W_FINISHED));
        }
        if let (Some(cwd), Some(ledger_cmd)) = (cwd, call.shell_command()) {
            if !path_within(cwd, &ctx.session.cwd) && !ctx.ancestry {
                let here = command::tilde(cwd);
                let moved = command::changed_dirs(ledger_cmd, &ctx.session.cwd)
                    .into_iter()
                    .find(|dir| path_within(&here, dir));
                if let Some(dir) = moved {
                    evidence.push(ev("cwd", format!("the call changed into {}", quote(&dir)), 2.0 * W_CWD));
                }
            }
        }
        // A process starts after its call; only clock skew puts its event before the call.
        let dt = (ctx.event_time - call.time).as_seconds_f64();
        let (closeness, when) = if dt >= 0.0 {
            ((-dt / TIME_SCALE_SECS).exp(), format!("event {dt:.1}s after the call"))
        } else {
            ((dt / EARLY_SCALE_SECS).exp(), format!("event {:.1}s before the call", -dt))
        };
        evidence.push(ev("time", when, W_TIME * closeness));
        if call.outcome.as_ref().is_some_and(|o| o.exit_code.is_some_and(|c| c != 0) || o.error.is_some()) {
            evidence.push(ev("outcome", "the call failed".into(), W_FAILED));
        }
        let score = evidence.iter().map(|e| e.weight).sum();
        (score, evidence, command_score, under_call)
    }

    /// A shell call that recorded its end cannot have started a process after it, unless it
    /// left a job running in the background.
    fn finished_before(&self, ctx: &Context<'_>, call: &CommandRecord) -> Option<String> {
        let ledger_cmd = call.shell_command()?;
        let ms = call.outcome.as_ref()?.duration_ms?;
        let end = call.time + Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2));
        let background = call.input.get("run_in_background").and_then(|v| v.as_bool()).unwrap_or(false)
            || command::starts_background(ledger_cmd);
        let late = ctx.event_time - end;
        (late > self.thresholds.finished_grace && !background)
            .then(|| format!("the call had finished {:.0}s before the event", late.as_seconds_f64()))
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

/// Hostnames compare case-insensitively; a short name equals any qualified name that starts
/// with it (`build-7` = `build-7.corp`), but two names qualified in different DNS domains are
/// different machines (`web-1.eu.corp` ≠ `web-1.us.corp`). mDNS and home-router suffixes
/// (`.local`, `.lan`, …) do not qualify a name.
pub fn hosts_equal(a: &str, b: &str) -> bool {
    fn unqualified(h: &str) -> String {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        for suffix in [".local", ".localdomain", ".lan", ".home.arpa"] {
            if let Some(stripped) = h.strip_suffix(suffix) {
                return stripped.to_string();
            }
        }
        h
    }
    let (a, b) = (unqualified(a), unqualified(b));
    if a.contains('.') && b.contains('.') {
        return a == b;
    }
    let short = |h: &str| h.split('.').next().unwrap_or(h).to_string();
    short(&a) == short(&b)
}

fn path_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

/// Whether a newer session registered the same pid on the same host before the event: two
/// processes cannot hold one pid at once, so the older session's agent had exited (a session
/// not ended explicitly stays active until it idles out).
fn superseded(session: &Session, candidates: &[Candidate<'_>], event_time: OffsetDateTime) -> bool {
    let slack = Duration::seconds(5);
    candidates.iter().map(|c| c.session).any(|newer| {
        newer.session_id != session.session_id
            && newer.pid == session.pid
            && newer.registered_at > session.registered_at
            && event_time >= newer.registered_at - slack
            && hosts_equal(&newer.host, &session.host)
    })
}

/// How long the call ran, when its outcome says.
fn ran_for(call: &CommandRecord) -> Duration {
    call.outcome
        .as_ref()
        .and_then(|o| o.duration_ms)
        .map_or(Duration::ZERO, |ms| Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2)))
}

/// A chain in the event that reaches init (pid 1) through at least one other ancestor, with
/// no container runtime on the way. (A process whose *parent* is init was orphaned or
/// daemonized: its real origin is lost, so that proves nothing.)
fn event_chain_complete(process: &crate::event::Process) -> bool {
    let chain: Vec<&crate::event::ProcessRef> =
        process.parent.iter().chain(process.ancestors.iter()).collect();
    let reaches_init = chain.last().is_some_and(|r| r.pid == Some(1));
    let orphan = chain.first().is_some_and(|r| r.pid == Some(1));
    let through_runtime = chain.iter().any(|r| {
        [r.exe.as_deref(), r.cmd_line.as_deref().and_then(|l| l.split_whitespace().next())]
            .into_iter()
            .flatten()
            .any(|p| CONTAINER_RUNTIMES.contains(&p.rsplit('/').next().unwrap_or(p)))
    });
    reaches_init && !orphan && !through_runtime
}

/// Whether a process in the event's chain is a user switcher (`sudo`, `su`, …).
fn chain_switches_user(event: &SecurityEvent, levels: &[Level<'_>]) -> bool {
    let by_line = levels.iter().filter_map(|l| l.line).any(|line| {
        line.split_whitespace()
            .next()
            .is_some_and(|w| command::USER_SWITCHERS.contains(&w.rsplit('/').next().unwrap_or(w)))
    });
    let process = event.body.process.as_ref();
    let by_exe = process.into_iter().flat_map(|p| p.parent.iter().chain(p.ancestors.iter())).any(|r| {
        r.exe.as_deref().is_some_and(|e| command::USER_SWITCHERS.contains(&e.rsplit('/').next().unwrap_or(e)))
    });
    by_line || by_exe
}

/// For tools that hand their parameters to a child process (Claude Code's Grep and Glob run
/// ripgrep): the event's process carries the call's pattern among its arguments.
fn argument_match(ctx: &Context<'_>, call: &CommandRecord) -> Option<String> {
    if !acted_by_agent(ctx) {
        return None;
    }
    let line = ctx.levels.first()?.line?;
    let words: HashSet<&str> = line.split_whitespace().map(|w| w.trim_matches(['\'', '"'])).collect();
    ["pattern", "glob", "query"].iter().find_map(|key| {
        let value = call.input.get(*key)?.as_str()?;
        (value.chars().count() >= 3 && words.contains(value)).then(|| {
            format!(
                "the process's arguments carry the call's {key} {} (call {})",
                quote(value),
                quote(&call.call_id)
            )
        })
    })
}

/// Whether the event's process is the agent or a child of it, as far as the event says: its
/// pid or its parent's is the agent's, or neither is known (and the parent is not a shell,
/// which the agent is not).
fn acted_by_agent(ctx: &Context<'_>) -> bool {
    let Some(process) = ctx.event.body.process.as_ref() else { return true };
    let parent = process.parent.as_ref();
    let (pid, ppid) = (process.pid, parent.and_then(|p| p.pid));
    if pid.is_some() || ppid.is_some() {
        return [pid, ppid].contains(&Some(ctx.session.pid));
    }
    !parent.and_then(|p| p.cmd_line.as_deref()).is_some_and(command::is_shell)
}

/// User names compare without case, domain (`CORP\\maya`) or realm (`maya@corp`).
fn same_user(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.rsplit('\\').next().unwrap_or(u);
        u.split('@').next().unwrap_or(u).to_ascii_lowercase()
    };
    norm(a) == norm(b)
}

/// Processes the agent's user may legitimately reach through `sudo`.
fn is_superuser(user: &str) -> bool {
    matches!(user.to_ascii_lowercase().as_str(), "root" | "system" | "nt authority\\system")
}

/// Event text shown in evidence is quoted and capped (an analyst reads it; the model never does).
fn quote(s: &str) -> String {
    let capped: String = s.chars().take(80).collect();
    format!("{capped:?}")
}

/// The best command match of a call in the event's process chain, and whether the chain shows
/// the matching process was started by something other than the agent.
struct CommandFound {
    score: f64,
    reason: String,
    level: String,
    wrong_parent: Option<String>,
    /// The call's command is an ancestor of the event's process (it ran the whole command).
    in_ancestor: bool,
}

fn command_evidence(ctx: &Context<'_>, ledger_cmd: &str) -> Option<CommandFound> {
    let matches: Vec<Option<command::Match>> =
        ctx.levels.iter().map(|l| l.line.map(|line| command::compare(line, ledger_cmd))).collect();
    let (best, found) = matches
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.as_ref().filter(|m| m.score > 0.0).map(|m| (i, m)))
        .fold(None::<(usize, &command::Match)>, |acc, (i, m)| match acc {
            Some((_, b)) if b.score >= m.score => acc,
            _ => Some((i, m)),
        })?;
    // Climb through the shells that ran the call (the wrapper runs the whole command).
    let mut root = best;
    while matches.get(root + 1).and_then(|m| m.as_ref()).is_some_and(|m| m.score >= command::STRONG) {
        root += 1;
    }
    let level = match ctx.levels[best].name {
        "ancestor" => format!("ancestor {}", best.saturating_sub(1)),
        name => format!("the event's {name}"),
    };
    let wrong_parent = ctx.levels.get(root + 1).and_then(|above| {
        let root_is_wrapper = ctx.levels[root].line.is_some_and(command::is_shell_wrapper);
        started_elsewhere(above, ctx.session.pid, root_is_wrapper)
    });
    let in_ancestor = root >= 1 && matches[root].as_ref().is_some_and(|m| m.score >= command::STRONG);
    Some(CommandFound { score: found.score, reason: found.reason.clone(), level, wrong_parent, in_ancestor })
}

/// Whether `above`, the parent of the process that ran the call's command, shows it was not
/// started by the agent. The agent starts its shells itself; a shell wrapper's parent must be
/// the agent; a process under init was orphaned (no information). Without pids, only a shell
/// parent is telling (the agent is not a shell).
fn started_elsewhere(above: &Level<'_>, agent_pid: u32, root_is_wrapper: bool) -> Option<String> {
    match (above.pid, above.line) {
        (Some(pid), _) if pid == agent_pid || pid == 1 => None,
        (Some(pid), Some(line)) => {
            Some(format!("the call's command ran under pid {pid} {}, not under the agent", quote(line)))
        }
        (Some(pid), None) if root_is_wrapper => {
            Some(format!("the call's shell was started by pid {pid}, not by the agent ({agent_pid})"))
        }
        (None, Some(line)) if command::is_shell(line) => {
            Some(format!("the call's command ran under the shell {}, not under the agent", quote(line)))
        }
        _ => None,
    }
}

/// The event's file or URL is what the call named. For file and fetch tools the agent itself
/// acts, so the target counts only when the acting process is the agent or its child (a helper
/// such as Codex's apply_patch), or is not known: a file the user's editor wrote is not the
/// agent's edit.
fn target_match(ctx: &Context<'_>, call: &CommandRecord) -> Option<String> {
    let target = ctx.event.body.target.as_ref()?;
    if call.shell_command().is_none() && !ctx.ancestry && !acted_by_agent(ctx) {
        return None;
    }
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
