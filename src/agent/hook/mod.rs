//! Agent-neutral hook logic: what a coding agent's hook does at each point of a session, in
//! terms of the broker's session routes.
//!
//! - session start → register the session (agent pid from the parent chain), remember it;
//! - before a tool call → record it in the ledger, ask the gate, allow or deny with the
//!   rendered notice of the denying block's directive;
//! - after a tool call → record the outcome, attach pending verified notices;
//! - prompt submit → attach pending verified notices;
//! - session end → end the session, forget it.
//!
//! Model-visible text comes only from [`crate::directive::render`], and only for directives that
//! verified against the broker's trust store (R34); anything else is logged to stderr and
//! produces no text. When the broker cannot be asked, the configured failure mode decides:
//! fail-open allows and warns the user (never the model), fail-closed denies with a fixed text.
//!
//! Each agent's wire shapes live in a submodule ([`claude`], [`codex`], sharing [`wire`]); this
//! file knows no agent's JSON.

pub mod claude;
pub mod codex;
pub mod wire;

use super::client::{BrokerClient, ClientError, Decision, Outcome, Registration, SessionAuth};
use super::process;
use super::state::{SessionState, StateDir};
use crate::directive::render;
use crate::directive::trust::TrustStore;
use crate::directive::verify::{Rejection, ReplayState, Verifier};
use std::cell::OnceCell;
use std::path::PathBuf;
use std::time::Duration;

/// Most notices attached to one hook answer; the rest stay pending for the next hook.
const MAX_NOTICES_PER_ANSWER: usize = 4;

/// What the shared logic needs to know about an agent.
#[derive(Debug, Clone, Copy)]
pub struct AgentProfile {
    /// The registration's `agent` value (`claude-code`, `codex`); also the state folder name.
    pub kind: &'static str,
    /// Names of the agent's process, for the walk up the parent chain.
    pub process_names: &'static [&'static str],
    /// The environment variable in which the agent tells hooks its pid, cross-checked against
    /// the parent chain.
    pub pid_env: &'static str,
}

/// How the hook reaches the broker and what it does when it cannot.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// The broker's base URL.
    pub url: String,
    /// The broker's data directory, for its published directive keys (trust store).
    pub data_dir: PathBuf,
    /// Deny tool calls when the broker cannot be asked (default: allow and warn).
    pub fail_closed: bool,
    /// Budget for each broker call.
    pub timeout: Duration,
}

/// The agent session a hook event belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    /// The agent's own session id.
    pub agent_session_id: String,
    /// The agent's working directory.
    pub cwd: String,
}

/// A tool call as the agent describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The agent's own tool-call id (the ledger's `call_id`).
    pub call_id: String,
    /// The agent's tool name.
    pub tool: String,
    /// The tool's raw input object.
    pub input: serde_json::Value,
}

/// A hook event, agent-neutral.
#[derive(Debug, Clone)]
pub enum HookEvent {
    SessionStart(SessionRef),
    PreTool(SessionRef, ToolCall),
    PostTool(SessionRef, ToolCall, Outcome),
    PromptSubmit(SessionRef),
    SessionEnd(SessionRef),
}

impl HookEvent {
    /// The agent session the event belongs to.
    pub fn session(&self) -> &SessionRef {
        match self {
            HookEvent::SessionStart(s)
            | HookEvent::PreTool(s, _)
            | HookEvent::PostTool(s, _, _)
            | HookEvent::PromptSubmit(s)
            | HookEvent::SessionEnd(s) => s,
        }
    }
}

/// The gate's answer for a proposed tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateAnswer {
    Allow,
    /// Deny, with the model-visible reason (a rendered notice or a fixed text).
    Deny(String),
}

/// What the hook tells the agent.
#[derive(Debug, Default)]
pub struct HookAnswer {
    /// The gate's answer; only for a proposed tool call.
    pub gate: Option<GateAnswer>,
    /// Rendered notices of verified directives, for the model's context.
    pub notices: Vec<String>,
    /// Messages for the user only (never the model): the broker is unreachable, etc.
    pub warnings: Vec<String>,
    /// Directives to acknowledge once the answer was written.
    acks: Vec<String>,
}

/// One hook invocation's context: the client, the state directory and the lazily loaded
/// verifier.
pub struct Hook {
    profile: AgentProfile,
    config: HookConfig,
    client: Result<BrokerClient, ClientError>,
    state: Result<StateDir, String>,
    verifier: OnceCell<Option<Verifier>>,
}

/// A broker failure that the failure mode decides about.
struct Unavailable(String);

impl From<ClientError> for Unavailable {
    fn from(e: ClientError) -> Unavailable {
        Unavailable(e.to_string())
    }
}

impl Hook {
    pub fn new(profile: AgentProfile, config: HookConfig) -> Hook {
        let client = BrokerClient::new(&config.url, config.timeout);
        let state = StateDir::open(profile.kind).map_err(|e| e.to_string());
        Hook { profile, config, client, state, verifier: OnceCell::new() }
    }

    /// Handles one event. Never fails: every problem becomes a warning, and for a proposed
    /// tool call the failure mode decides the gate's answer.
    pub fn handle(&self, event: &HookEvent) -> HookAnswer {
        let mut answer = HookAnswer::default();
        if let Err(e) = &self.state {
            log(&format!("agent state unavailable ({e}); registering on every call"));
        }
        let result = match event {
            HookEvent::SessionStart(s) => self.session_start(s, &mut answer),
            HookEvent::PreTool(s, call) => self.pre_tool(s, call, &mut answer),
            HookEvent::PostTool(s, call, outcome) => self.post_tool(s, call, outcome, &mut answer),
            HookEvent::PromptSubmit(s) => {
                self.session(s, false).map(|auth| self.pending(s, &auth, &mut answer))
            }
            HookEvent::SessionEnd(s) => self.session_end(s),
        };
        if let Err(Unavailable(reason)) = result {
            log(&reason);
            let is_pre_tool = matches!(event, HookEvent::PreTool(..));
            answer.gate = is_pre_tool.then(|| self.unavailable_gate());
            answer.warnings.push(if is_pre_tool && self.config.fail_closed {
                format!("haltwire: broker unavailable, tool call denied (fail-closed): {reason}")
            } else {
                format!("haltwire: broker unavailable, not enforcing (fail-open): {reason}")
            });
        }
        answer
    }

    /// Acknowledges the directives whose notices went out with `answer`. Call after the
    /// answer was written to the agent: delivery is at-least-once, and the replay state
    /// already keeps a redelivered notice from rendering twice.
    pub fn acknowledge(&self, answer: &HookAnswer, session: &SessionRef) {
        if answer.acks.is_empty() {
            return;
        }
        let (Ok(client), Ok(Some(state))) = (&self.client, self.load(session)) else { return };
        let auth = SessionAuth { session_id: state.session_id, token: state.token };
        for jti in &answer.acks {
            if let Err(e) = client.ack(&auth, jti) {
                log(&format!("ack of directive {jti} failed: {e}"));
            }
        }
    }

    /// The gate's answer when the broker cannot be asked.
    pub fn unavailable_gate(&self) -> GateAnswer {
        if self.config.fail_closed {
            GateAnswer::Deny(render::broker_unavailable().to_string())
        } else {
            GateAnswer::Allow
        }
    }

    fn client(&self) -> Result<&BrokerClient, Unavailable> {
        self.client.as_ref().map_err(|e| Unavailable(e.to_string()))
    }

    fn session_start(&self, s: &SessionRef, answer: &mut HookAnswer) -> Result<(), Unavailable> {
        let auth = self.session(s, true)?;
        self.pending(s, &auth, answer);
        Ok(())
    }

    fn pre_tool(&self, s: &SessionRef, call: &ToolCall, answer: &mut HookAnswer) -> Result<(), Unavailable> {
        let client = self.client()?;
        let check = self.with_session(s, |auth| {
            // Both at once: the ledger write waits for the broker's group commit (an fsync)
            // and the gate does not need it. A failed record still fails the whole call, so it
            // is never mistaken for an allowed one.
            std::thread::scope(|scope| {
                let record =
                    scope.spawn(|| client.record_command(auth, &call.call_id, &call.tool, &call.input));
                let check = client.check(auth, &call.tool, &call.input);
                let recorded = record.join().unwrap_or_else(|_| {
                    Err(ClientError::Malformed {
                        url: client.base().to_string(),
                        reason: "ledger thread failed".into(),
                    })
                });
                recorded.and(check)
            })
        })?;
        let (auth, check) = check;
        answer.gate = Some(match check.decision {
            Decision::Allow => GateAnswer::Allow,
            Decision::Deny => {
                GateAnswer::Deny(self.deny_reason(&auth, check.directive.as_deref().map(|d| d.get())))
            }
        });
        Ok(())
    }

    fn post_tool(
        &self,
        s: &SessionRef,
        call: &ToolCall,
        outcome: &Outcome,
        answer: &mut HookAnswer,
    ) -> Result<(), Unavailable> {
        let client = self.client()?;
        let (auth, recorded) =
            self.with_session(s, |auth| match client.record_outcome(auth, &call.call_id, outcome) {
                // The call was never recorded (hook installed mid-call, or denied before it ran):
                // nothing to attach the outcome to, which is not a failure.
                Err(e) if e.status() == Some(404) => Ok(false),
                other => other.map(|()| true),
            })?;
        if !recorded {
            log(&format!("outcome of {} not recorded: the call is not in the ledger", call.call_id));
        }
        self.pending(s, &auth, answer);
        Ok(())
    }

    fn session_end(&self, s: &SessionRef) -> Result<(), Unavailable> {
        let state = self.load(s).unwrap_or(None);
        if let Some(state) = state {
            let auth = SessionAuth { session_id: state.session_id, token: state.token };
            match self.client()?.end(&auth) {
                Ok(()) => {}
                Err(e) if is_session_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Ok(dir) = &self.state {
            if let Err(e) = dir.remove(&s.agent_session_id) {
                log(&e.to_string());
            }
        }
        Ok(())
    }

    /// Runs `f` with the session's credentials; when the broker no longer knows them (expired
    /// token, ended or reaped session, a restarted broker with a new data dir), registers again
    /// and retries once.
    fn with_session<T>(
        &self,
        s: &SessionRef,
        f: impl Fn(&SessionAuth) -> Result<T, ClientError>,
    ) -> Result<(SessionAuth, T), Unavailable> {
        let auth = self.session(s, false)?;
        match f(&auth) {
            Ok(v) => Ok((auth, v)),
            Err(e) if is_session_gone(&e) => {
                log(&format!("session {} no longer valid ({e}); registering again", auth.session_id));
                let auth = self.session(s, true)?;
                let v = f(&auth)?;
                Ok((auth, v))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The session's credentials: remembered ones, or a (re-)registration when `fresh`, when
    /// none are remembered, or when they belong to another broker URL.
    fn session(&self, s: &SessionRef, fresh: bool) -> Result<SessionAuth, Unavailable> {
        let client = self.client()?;
        let known = self.load(s).unwrap_or_else(|e| {
            log(&e);
            None
        });
        if let Some(state) = known.as_ref().filter(|st| !fresh && st.url == client.base()) {
            return Ok(SessionAuth { session_id: state.session_id.clone(), token: state.token.clone() });
        }
        let pid = process::agent_pid(self.profile.process_names, self.profile.pid_env);
        let registration = Registration {
            agent: self.profile.kind.to_string(),
            agent_session_id: s.agent_session_id.clone(),
            pid,
            pid_start_time: None,
            host: None,
            user: std::env::var("USER").ok().filter(|u| !u.is_empty()),
            cwd: s.cwd.clone(),
            channels: None,
        };
        let auth = client.register(&registration)?;
        // Keep the replay state only if the broker gave back the same session.
        let replay = known
            .filter(|st| st.session_id == auth.session_id)
            .map(|st| st.replay)
            .unwrap_or(serde_json::Value::Null);
        let state = SessionState {
            session_id: auth.session_id.clone(),
            token: auth.token.clone(),
            pid,
            url: client.base().to_string(),
            replay,
        };
        if let Ok(dir) = &self.state {
            if let Err(e) = dir.store(&s.agent_session_id, &state) {
                log(&e.to_string());
            }
        }
        Ok(auth)
    }

    fn load(&self, s: &SessionRef) -> Result<Option<SessionState>, String> {
        match &self.state {
            Ok(dir) => dir.load(&s.agent_session_id).map_err(|e| e.to_string()),
            Err(_) => Ok(None),
        }
    }

    /// The broker's directive keys, loaded once per process; `None` (logged) when unusable.
    fn verifier(&self) -> Option<&Verifier> {
        self.verifier
            .get_or_init(|| match TrustStore::load(&self.config.data_dir) {
                Ok(trust) => Some(Verifier::new(trust)),
                Err(e) => {
                    log(&format!(
                        "no directive trust store ({e}); notices are suppressed (pass --data-dir or set HALTWIRE_DATA_DIR)"
                    ));
                    None
                }
            })
            .as_ref()
    }

    /// The deny reason: the notice of the denying block's directive when it verifies for this
    /// session, else a fixed text. Replay bookkeeping does not apply: the broker sends the
    /// block's directive with every denial.
    fn deny_reason(&self, auth: &SessionAuth, directive: Option<&str>) -> String {
        let verified = directive.and_then(|raw| {
            let verifier = self.verifier()?;
            verifier
                .verify_addressed(raw.as_bytes(), &auth.session_id, now())
                .inspect_err(|r| log(&format!("deny directive rejected: {}", r.code())))
                .ok()
        });
        match verified {
            Some(v) => render::notice(&v),
            None => render::denied_without_notice().to_string(),
        }
    }

    /// Fetches pending directives and renders the ones that verify, in order, under the
    /// session's lock so concurrent hooks never render one twice. Failures only log: a notice
    /// that cannot be shown now stays pending.
    fn pending(&self, s: &SessionRef, auth: &SessionAuth, answer: &mut HookAnswer) {
        let Ok(client) = self.client() else { return };
        let list = match client.pending_directives(auth) {
            Ok(Some(list)) if !list.is_empty() => list,
            Ok(_) => return,
            Err(e) => return log(&format!("pending directives unavailable: {e}")),
        };
        let Some(verifier) = self.verifier() else { return };
        let _lock = match &self.state {
            Ok(dir) => match dir.lock(&s.agent_session_id) {
                Ok(l) => Some(l),
                Err(e) => return log(&format!("cannot lock agent state ({e}); notices wait")),
            },
            // Without state there is no replay memory: showing notices could repeat them
            // forever, so they wait until the state directory is usable.
            Err(_) => return,
        };
        let mut state = match self.load(s) {
            Ok(Some(st)) if st.session_id == auth.session_id => st,
            _ => return log("agent state missing for this session; notices wait"),
        };
        let mut replay: ReplayState = serde_json::from_value(state.replay.clone()).unwrap_or_default();
        let now = now();
        let mut rendered = Vec::new();
        let mut acks = Vec::new();
        for item in list {
            if rendered.len() >= MAX_NOTICES_PER_ANSWER {
                break;
            }
            match verifier.verify(item.bytes(), &auth.session_id, now, &mut replay) {
                Ok(v) => {
                    rendered.push(render::notice(&v));
                    acks.push(v.payload.jti);
                }
                Err(rejection @ (Rejection::Replayed | Rejection::OutOfOrder)) => {
                    // Genuine but already handled (a lost ack): acknowledge it again, no text.
                    log(&format!("pending directive not shown: {}", rejection.code()));
                    if let Ok(v) = verifier.verify_addressed(item.bytes(), &auth.session_id, now) {
                        acks.push(v.payload.jti);
                    }
                }
                Err(rejection) => log(&format!("pending directive rejected: {}", rejection.code())),
            }
        }
        if rendered.is_empty() && acks.is_empty() {
            return;
        }
        state.replay = serde_json::to_value(&replay).unwrap_or(serde_json::Value::Null);
        if let Ok(dir) = &self.state {
            // The replay state must be durable before any text goes out, or a crash could
            // show the same notice twice.
            if let Err(e) = dir.store(&s.agent_session_id, &state) {
                return log(&format!("cannot save replay state ({e}); notices wait"));
            }
        }
        answer.notices.extend(rendered);
        answer.acks.extend(acks);
    }
}

/// The broker no longer accepts these credentials for this session.
fn is_session_gone(e: &ClientError) -> bool {
    match e {
        ClientError::Status { status: 401 | 403 | 409, .. } => true,
        ClientError::Status { status: 404, problem_type: Some(t), .. } => t.ends_with(":not-found"),
        _ => false,
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Diagnostics go to stderr only; agents do not show a successful hook's stderr to the model.
fn log(message: &str) {
    eprintln!("haltwire hook: {}", message.replace(['\n', '\r'], " "));
}
