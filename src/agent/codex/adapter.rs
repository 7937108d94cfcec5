//! The broker-backed [`Guard`]: what makes a Codex app-server thread a haltwire session.
//!
//! Each thread is registered as a session (agent `codex`, agent pid = the app-server process,
//! channel `app-server`); `commandExecution` and `fileChange` items go to the ledger under
//! their item id (= the model's call id); approvals are asked of the gate and declined when it
//! denies — or when the broker cannot answer, since an approval request is exactly the moment
//! Codex wanted a second opinion. Pending directives are verified against the broker's
//! published keys and this session as audience, rendered only by `directive::render::notice`,
//! and acknowledged once Codex took them. Anything that fails verification yields no text.
//!
//! The session's credentials are also written to the Codex hook state (`agent::state`, agent
//! `codex`, keyed by the thread id), so the `haltwire hook codex` gate that `codex run|serve`
//! give the app-server checks tool calls against this same session instead of registering
//! another one.
//!
//! Reuses the agent-neutral [`BrokerClient`]; it does not talk HTTP itself, and it does not
//! decide anything the gate did not decide.

use super::guard::{Guard, Notice};
use super::protocol::{ApprovalDecision, ToolItem};
use crate::agent::client::{BrokerClient, Decision, Outcome, Registration, SessionAuth};
use crate::agent::state::{SessionState, StateDir};
use crate::directive::render;
use crate::directive::verify::{ReplayState, Verifier};
use std::collections::{HashMap, HashSet};

/// One registered thread.
struct Session {
    auth: SessionAuth,
    replay: ReplayState,
    /// Notices already handed to the driver (steered, carried, or waiting to be).
    handed: HashSet<String>,
    /// Envelopes that failed verification, by content, so they are not re-checked every poll.
    rejected: HashSet<Vec<u8>>,
    /// Notices from gate denials, steered with the next poll.
    from_denials: Vec<Notice>,
}

/// The guard.
pub struct BrokerGuard {
    client: BrokerClient,
    verifier: Option<Verifier>,
    server_pid: u32,
    sessions: HashMap<String, Session>,
    /// Where the hook finds the session; `None` (logged) when unusable.
    hook_state: Option<StateDir>,
}

impl BrokerGuard {
    /// `verifier` is `None` when the broker's trust store could not be read: the gate still
    /// enforces, but no notice text can be produced.
    pub fn new(client: BrokerClient, verifier: Option<Verifier>, server_pid: u32) -> BrokerGuard {
        let hook_state = StateDir::open(crate::agent::hook::codex::PROFILE.kind)
            .inspect_err(|e| tracing::warn!(error = %e, "codex: no hook state directory; the gate hook registers on its own"))
            .ok();
        BrokerGuard { client, verifier, server_pid, sessions: HashMap::new(), hook_state }
    }

    /// The haltwire session id of a thread, once registered.
    pub fn session_id(&self, thread_id: &str) -> Option<&str> {
        self.sessions.get(thread_id).map(|s| s.auth.session_id.as_str())
    }

    /// Registers a thread now (the drivers call it through [`Guard::thread_started`]).
    pub fn register(
        &mut self,
        thread_id: &str,
        cwd: Option<&str>,
    ) -> Result<(), crate::agent::client::ClientError> {
        let registration = Registration {
            agent: "codex".into(),
            agent_session_id: thread_id.into(),
            pid: self.server_pid,
            pid_start_time: None,
            host: None,
            user: None,
            cwd: cwd.unwrap_or("/").into(),
            channels: Some(vec!["app-server".into()]),
        };
        let auth = self.client.register(&registration)?;
        if let Some(dir) = &self.hook_state {
            let shared = SessionState {
                session_id: auth.session_id.clone(),
                token: auth.token.clone(),
                pid: self.server_pid,
                url: self.client.base().to_string(),
                replay: serde_json::Value::Null,
            };
            if let Err(e) = dir.store(thread_id, &shared) {
                tracing::warn!(error = %e, "codex: could not share the session with the gate hook");
            }
        }
        self.sessions.insert(
            thread_id.into(),
            Session {
                auth,
                replay: ReplayState::default(),
                handed: HashSet::new(),
                rejected: HashSet::new(),
                from_denials: Vec::new(),
            },
        );
        Ok(())
    }

    fn verify_to_notice(&mut self, thread_id: &str, raw: &[u8], replay_checked: bool) -> Option<Notice> {
        let verifier = self.verifier.as_ref()?;
        let session = self.sessions.get_mut(thread_id)?;
        if session.rejected.contains(raw) {
            return None;
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let verified = if replay_checked {
            verifier.verify(raw, &session.auth.session_id, now, &mut session.replay)
        } else {
            verifier.verify_addressed(raw, &session.auth.session_id, now)
        };
        match verified {
            Ok(v) => {
                let jti = v.payload.jti.clone();
                if !session.handed.insert(jti.clone()) {
                    return None;
                }
                let restricts = v.payload.directive.kind != crate::directive::payload::DirectiveType::Cleared;
                Some(Notice { jti, text: render::notice(&v), restricts })
            }
            Err(rejection) => {
                tracing::warn!(
                    reason = rejection.code(),
                    thread = thread_id,
                    "codex: directive rejected, no notice"
                );
                session.rejected.insert(raw.to_vec());
                None
            }
        }
    }
}

impl Guard for BrokerGuard {
    fn thread_started(&mut self, thread_id: &str, cwd: Option<&str>) -> Result<(), String> {
        self.register(thread_id, cwd)
            .map_err(|e| format!("cannot register thread {thread_id} with the broker: {e}"))
    }

    fn call_started(&mut self, thread_id: &str, call: &ToolItem) {
        let Some(session) = self.sessions.get(thread_id) else { return };
        if let Err(e) = self.client.record_command(&session.auth, &call.call_id, call.tool, &call.input) {
            tracing::warn!(error = %e, call = %call.call_id, "codex: could not record the call");
        }
    }

    fn call_completed(&mut self, thread_id: &str, call: &ToolItem, item: &serde_json::Value) {
        let Some(session) = self.sessions.get(thread_id) else { return };
        let outcome = Outcome {
            exit_code: item["exitCode"].as_i64().and_then(|c| i32::try_from(c).ok()),
            error: None,
            duration_ms: item["durationMs"].as_u64(),
        };
        if let Err(e) = self.client.record_outcome(&session.auth, &call.call_id, &outcome) {
            tracing::debug!(error = %e, call = %call.call_id, "codex: could not record the outcome");
        }
    }

    fn approve(&mut self, thread_id: &str, call: &ToolItem) -> ApprovalDecision {
        let Some(session) = self.sessions.get(thread_id) else { return ApprovalDecision::Decline };
        match self.client.check(&session.auth, call.tool, &call.input) {
            Ok(answer) if answer.decision == Decision::Allow => ApprovalDecision::Accept,
            Ok(answer) => {
                // The denial's directive explains it to the model (verified, rendered, once).
                if let Some(raw) = answer.directive {
                    if let Some(notice) = self.verify_to_notice(thread_id, raw.get().as_bytes(), false) {
                        if let Some(s) = self.sessions.get_mut(thread_id) {
                            s.from_denials.push(notice);
                        }
                    }
                }
                ApprovalDecision::Decline
            }
            Err(e) => {
                tracing::warn!(error = %e, call = %call.call_id, "codex: gate unreachable, declining the approval");
                ApprovalDecision::Decline
            }
        }
    }

    fn pending_notices(&mut self, thread_id: &str) -> Vec<Notice> {
        let Some(session) = self.sessions.get_mut(thread_id) else { return Vec::new() };
        let mut notices = std::mem::take(&mut session.from_denials);
        let session = &*session;
        let pending = match self.client.pending_directives(&session.auth) {
            Ok(Some(pending)) => pending,
            Ok(None) => return notices,
            Err(e) => {
                tracing::debug!(error = %e, "codex: could not poll directives");
                return notices;
            }
        };
        notices.extend(pending.iter().filter_map(|d| self.verify_to_notice(thread_id, d.bytes(), true)));
        notices
    }

    fn delivered(&mut self, thread_id: &str, notice: &Notice) {
        let Some(session) = self.sessions.get(thread_id) else { return };
        if let Err(e) = self.client.ack(&session.auth, &notice.jti) {
            tracing::debug!(error = %e, "codex: could not acknowledge a directive");
        }
    }

    fn thread_ended(&mut self, thread_id: &str) {
        if let Some(session) = self.sessions.remove(thread_id) {
            let _ = self.client.end(&session.auth);
        }
        if let Some(dir) = &self.hook_state {
            let _ = dir.remove(thread_id);
        }
    }
}
