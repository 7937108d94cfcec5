//! The session registry's rules: registering (and re-registering) an agent session, ending it,
//! and reaping sessions whose agent process is gone or that have been idle too long.
//!
//! Storage is behind [`SessionStore`]; this module decides, the store keeps. It knows nothing
//! of HTTP or tokens.

use super::model::{AgentKind, Channel, CommandRecord, EndReason, Outcome, Session, SessionStatus};
use super::procfs::Procfs;
use crate::store::{SessionStore, StoreError};
use serde::Deserialize;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// What an agent sends to register (`POST /v1/sessions`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub agent: AgentKind,
    /// The agent's own session or thread id.
    pub agent_session_id: String,
    /// The agent's process id.
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22; read by the broker when omitted and the pid is local.
    pub pid_start_time: Option<u64>,
    /// Default: this machine's hostname.
    pub host: Option<String>,
    pub user: Option<String>,
    pub cwd: String,
    /// Default: `["hook"]` for Claude Code and Codex, `["sse"]` otherwise.
    pub channels: Option<Vec<Channel>>,
}

/// A tool call as an agent reports it (`POST /v1/sessions/{id}/commands`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandPost {
    pub call_id: String,
    pub tool: String,
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub time: Option<OffsetDateTime>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such session")]
    NotFound,
    #[error("the session has ended")]
    Ended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Limits on agent-supplied text, so a misbehaving agent cannot bloat the ledger.
const MAX_ID_LEN: usize = 256;
const MAX_CWD_LEN: usize = 4096;
const MAX_INPUT_BYTES: usize = 64 * 1024;

/// The registry: rules over a [`SessionStore`].
pub struct Registry {
    store: Arc<dyn SessionStore>,
    procfs: Procfs,
    /// Sessions registered without a host get this one; `/proc` checks apply only to it.
    pub local_host: String,
    /// A session with no activity for this long is ended as idle.
    pub idle_timeout: Duration,
}

impl Registry {
    pub fn new(
        store: Arc<dyn SessionStore>,
        procfs: Procfs,
        local_host: String,
        idle_timeout: Duration,
    ) -> Registry {
        Registry { store, procfs, local_host, idle_timeout }
    }

    /// Registers a session. The same agent session registering again (Claude Code fires
    /// `SessionStart` on resume and after `/clear`) gets its existing session back.
    pub fn register(&self, req: Registration, now: OffsetDateTime) -> Result<Session, RegistryError> {
        validate_registration(&req)?;
        let host = req.host.clone().unwrap_or_else(|| self.local_host.clone());
        let local = crate::correlate::hosts_equal(&host, &self.local_host);
        let pid_start_time = match req.pid_start_time {
            Some(t) => Some(t),
            None if local => self.procfs.stat(req.pid).map(|s| s.start_time),
            None => None,
        };
        if local && !self.procfs.is_same_process(req.pid, pid_start_time) {
            return Err(RegistryError::Invalid(format!(
                "process {} is not running on this host (or started at another time)",
                req.pid
            )));
        }
        if let Some(mut existing) = self.find_active(&req, &host)? {
            existing.last_seen = now;
            existing.cwd = req.cwd.clone();
            self.store.put_session(&existing)?;
            return Ok(existing);
        }
        let channels = req.channels.clone().unwrap_or_else(|| match req.agent {
            AgentKind::ClaudeCode | AgentKind::Codex => vec![Channel::Hook],
            AgentKind::Generic => vec![Channel::Sse],
        });
        let session = Session {
            session_id: Uuid::now_v7(),
            agent: req.agent,
            agent_session_id: req.agent_session_id,
            pid: req.pid,
            pid_start_time,
            host,
            user: req.user,
            cwd: req.cwd,
            channels,
            status: SessionStatus::Active,
            registered_at: now,
            last_seen: now,
            ended_at: None,
            end_reason: None,
        };
        self.store.put_session(&session)?;
        Ok(session)
    }

    fn find_active(&self, req: &Registration, host: &str) -> Result<Option<Session>, RegistryError> {
        Ok(self.store.sessions()?.into_iter().find(|s| {
            s.status == SessionStatus::Active
                && s.agent == req.agent
                && s.agent_session_id == req.agent_session_id
                && s.pid == req.pid
                && s.host == host
        }))
    }

    /// An active session, or why not.
    pub fn active(&self, id: Uuid) -> Result<Session, RegistryError> {
        let session = self.store.session(id)?.ok_or(RegistryError::NotFound)?;
        if session.status == SessionStatus::Ended {
            return Err(RegistryError::Ended);
        }
        Ok(session)
    }

    /// Records a tool call; returns the record and whether it is new.
    pub fn record_command(
        &self,
        id: Uuid,
        post: CommandPost,
        now: OffsetDateTime,
    ) -> Result<(CommandRecord, bool), RegistryError> {
        let mut session = self.active(id)?;
        if post.call_id.is_empty()
            || post.call_id.len() > MAX_ID_LEN
            || post.tool.is_empty()
            || post.tool.len() > MAX_ID_LEN
        {
            return Err(RegistryError::Invalid("`call_id` and `tool` must be 1-256 characters".into()));
        }
        if !post.input.is_object() {
            return Err(RegistryError::Invalid("`input` must be the tool's input object".into()));
        }
        if serde_json::to_vec(&post.input).map_or(true, |b| b.len() > MAX_INPUT_BYTES) {
            return Err(RegistryError::Invalid("`input` is larger than 64 KiB".into()));
        }
        let record = CommandRecord {
            session_id: id,
            call_id: post.call_id,
            tool: post.tool,
            input: post.input,
            time: post.time.unwrap_or(now),
            outcome: None,
        };
        let new = self.store.put_command(&record)?;
        session.last_seen = now;
        self.store.put_session(&session)?;
        Ok((record, new))
    }

    /// Attaches a call's outcome.
    pub fn record_outcome(
        &self,
        id: Uuid,
        call_id: &str,
        outcome: Outcome,
        now: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let mut session = self.active(id)?;
        if !self.store.set_outcome(id, call_id, &outcome)? {
            return Err(RegistryError::NotFound);
        }
        session.last_seen = now;
        self.store.put_session(&session)?;
        Ok(())
    }

    /// Ends a session (idempotent: ending an ended session returns it unchanged).
    pub fn end(&self, id: Uuid, reason: EndReason, now: OffsetDateTime) -> Result<Session, RegistryError> {
        let mut session = self.store.session(id)?.ok_or(RegistryError::NotFound)?;
        if session.status == SessionStatus::Active {
            session.status = SessionStatus::Ended;
            session.ended_at = Some(now);
            session.end_reason = Some(reason);
            self.store.put_session(&session)?;
        }
        Ok(session)
    }

    /// Ends every active session whose local agent process is gone (or is another process with
    /// the same pid) or that has been idle past the timeout. Returns what it ended.
    pub fn reap(&self, now: OffsetDateTime) -> Result<Vec<(Uuid, EndReason)>, RegistryError> {
        let mut ended = Vec::new();
        for session in self.store.sessions()? {
            if session.status != SessionStatus::Active {
                continue;
            }
            let local = crate::correlate::hosts_equal(&session.host, &self.local_host);
            let reason = if local && !self.procfs.is_same_process(session.pid, session.pid_start_time) {
                Some(EndReason::ProcessExited)
            } else if now - session.last_seen > self.idle_timeout {
                Some(EndReason::Idle)
            } else {
                None
            };
            if let Some(reason) = reason {
                self.end(session.session_id, reason, now)?;
                ended.push((session.session_id, reason));
            }
        }
        Ok(ended)
    }

    /// Active local sessions as (session, agent pid), for the process tracker.
    pub fn local_roots(&self) -> Result<Vec<(Uuid, u32)>, RegistryError> {
        Ok(self
            .store
            .sessions()?
            .into_iter()
            .filter(|s| {
                s.status == SessionStatus::Active && crate::correlate::hosts_equal(&s.host, &self.local_host)
            })
            .map(|s| (s.session_id, s.pid))
            .collect())
    }
}

fn validate_registration(req: &Registration) -> Result<(), RegistryError> {
    let bad = |m: &str| Err(RegistryError::Invalid(m.into()));
    if req.agent_session_id.is_empty() || req.agent_session_id.len() > MAX_ID_LEN {
        return bad("`agent_session_id` must be 1-256 characters");
    }
    if req.pid == 0 {
        return bad("`pid` must be the agent's process id");
    }
    if req.cwd.is_empty() || req.cwd.len() > MAX_CWD_LEN || !req.cwd.starts_with('/') {
        return bad("`cwd` must be an absolute path");
    }
    if req.host.as_ref().is_some_and(|h| h.is_empty() || h.len() > 253) {
        return bad("`host` must be 1-253 characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn SessionStore> = Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap());
        (dir, Registry::new(store, Procfs::default(), "this-host".into(), Duration::hours(1)))
    }

    fn me(host: Option<&str>) -> Registration {
        Registration {
            agent: AgentKind::ClaudeCode,
            agent_session_id: "claude-1".into(),
            pid: std::process::id(),
            pid_start_time: None,
            host: host.map(str::to_string),
            user: None,
            cwd: "/tmp".into(),
            channels: None,
        }
    }

    #[test]
    fn registering_a_live_local_process_reads_its_start_time_and_re_registering_returns_it() {
        let (_d, r) = registry();
        let now = OffsetDateTime::now_utc();
        let first = r.register(me(None), now).unwrap();
        assert_eq!(first.host, "this-host");
        assert!(first.pid_start_time.is_some());
        assert_eq!(first.channels, vec![Channel::Hook]);
        let again = r.register(me(None), now).unwrap();
        assert_eq!(again.session_id, first.session_id);
    }

    #[test]
    fn a_local_pid_that_is_not_running_is_refused() {
        let (_d, r) = registry();
        let mut req = me(None);
        req.pid = 4_000_000;
        assert!(matches!(r.register(req, OffsetDateTime::now_utc()), Err(RegistryError::Invalid(_))));
        let mut wrong_start = me(None);
        wrong_start.pid_start_time = Some(1);
        assert!(r.register(wrong_start, OffsetDateTime::now_utc()).is_err());
    }

    #[test]
    fn a_remote_session_is_trusted_for_its_pid() {
        let (_d, r) = registry();
        let mut req = me(Some("build-9"));
        req.pid = 4_000_000;
        let s = r.register(req, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(s.host, "build-9");
        assert_eq!(s.pid_start_time, None);
    }

    #[test]
    fn reaping_ends_sessions_whose_process_died_or_went_idle() {
        let (_d, r) = registry();
        let now = OffsetDateTime::now_utc();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let mut req = me(None);
        req.pid = child.id();
        req.agent_session_id = "child".into();
        let dying = r.register(req, now).unwrap();
        let mut remote = me(Some("far-away"));
        remote.agent_session_id = "remote".into();
        let idle = r.register(remote, now - Duration::hours(2)).unwrap();
        let alive = r.register(me(None), now).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let ended = r.reap(now).unwrap();
        assert!(ended.contains(&(dying.session_id, EndReason::ProcessExited)), "{ended:?}");
        assert!(ended.contains(&(idle.session_id, EndReason::Idle)), "{ended:?}");
        assert!(r.active(alive.session_id).is_ok());
        assert!(matches!(r.active(dying.session_id), Err(RegistryError::Ended)));
    }

    #[test]
    fn commands_need_an_active_session_and_sane_input() {
        let (_d, r) = registry();
        let now = OffsetDateTime::now_utc();
        let s = r.register(me(None), now).unwrap();
        let post =
            |call: &str, input| CommandPost { call_id: call.into(), tool: "Bash".into(), input, time: None };
        let (_, new) =
            r.record_command(s.session_id, post("c1", serde_json::json!({"command": "ls"})), now).unwrap();
        assert!(new);
        let (_, new) =
            r.record_command(s.session_id, post("c1", serde_json::json!({"command": "ls"})), now).unwrap();
        assert!(!new, "a retried post is not a new call");
        assert!(r.record_command(s.session_id, post("c2", serde_json::json!("ls")), now).is_err());
        r.record_outcome(
            s.session_id,
            "c1",
            Outcome { exit_code: Some(0), error: None, duration_ms: None },
            now,
        )
        .unwrap();
        assert!(matches!(
            r.record_outcome(
                s.session_id,
                "nope",
                Outcome { exit_code: None, error: None, duration_ms: None },
                now
            ),
            Err(RegistryError::NotFound)
        ));
        r.end(s.session_id, EndReason::Explicit, now).unwrap();
        assert!(matches!(
            r.record_command(s.session_id, post("c3", serde_json::json!({})), now),
            Err(RegistryError::Ended)
        ));
    }
}
