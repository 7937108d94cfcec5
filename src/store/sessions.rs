//! Storage for the session side of the broker: the session registry, the command ledger, and
//! the correlation result kept beside each event, plus the pipeline's resume cursor.
//!
//! A separate trait from [`super::Store`] so that code which only reads events does not see
//! sessions, and so that the correlation stage can be tested against an in-memory double.
//! Writes here become durable with the same group commit as events (one sled database).
//! Like the event store, every method may block on sled: call from `spawn_blocking`.

use super::{SledStore, StoreError};
use crate::event::Correlation;
use crate::sessions::model::{CommandRecord, Outcome, Session};
use sled::IVec;
use uuid::Uuid;

/// Most ledger entries kept per session; older ones are dropped first. A session that ran more
/// commands than this is an automation loop, and correlation only looks at recent calls.
pub const MAX_LEDGER_PER_SESSION: usize = 10_000;

const CURSOR_KEY: &[u8] = b"pipeline_cursor";

pub trait SessionStore: Send + Sync + 'static {
    /// Inserts or replaces a session.
    fn put_session(&self, session: &Session) -> Result<(), StoreError>;
    fn session(&self, id: Uuid) -> Result<Option<Session>, StoreError>;
    /// Every stored session (active and recently ended), oldest first.
    fn sessions(&self) -> Result<Vec<Session>, StoreError>;
    /// Records a tool call once: a second post with the same `(session, call_id)` (a hook
    /// retry) keeps the first record and returns `false`.
    fn put_command(&self, command: &CommandRecord) -> Result<bool, StoreError>;
    /// Attaches an outcome; `false` if the call is not in the ledger.
    fn set_outcome(&self, session: Uuid, call_id: &str, outcome: &Outcome) -> Result<bool, StoreError>;
    /// A session's ledger in call order.
    fn commands(&self, session: Uuid) -> Result<Vec<CommandRecord>, StoreError>;
    fn put_correlation(&self, event: Uuid, correlation: &Correlation) -> Result<(), StoreError>;
    fn correlation(&self, event: Uuid) -> Result<Option<Correlation>, StoreError>;
    /// Whether the event has a correlation, without reading it.
    fn has_correlation(&self, event: Uuid) -> Result<bool, StoreError> {
        Ok(self.correlation(event)?.is_some())
    }
    /// The id of the newest event the pipeline has fully processed.
    fn pipeline_cursor(&self) -> Result<Option<Uuid>, StoreError>;
    fn set_pipeline_cursor(&self, event: Uuid) -> Result<(), StoreError>;
    /// Deletes a session and its ledger (retention).
    fn delete_session(&self, id: Uuid) -> Result<(), StoreError>;
}

fn ledger_key(session: Uuid, call_id: &str) -> Vec<u8> {
    let mut key = session.as_bytes().to_vec();
    key.extend_from_slice(call_id.as_bytes());
    key
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).chars().take(80).collect(),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<IVec, StoreError> {
    serde_json::to_vec(value).map(IVec::from).map_err(|e| StoreError::Corrupt {
        tree: "encode",
        key: String::new(),
        reason: e.to_string(),
    })
}

impl SessionStore for SledStore {
    fn put_session(&self, session: &Session) -> Result<(), StoreError> {
        self.sessions.insert(session.session_id.as_bytes(), encode(session)?)?;
        Ok(())
    }

    fn session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        self.sessions.get(id.as_bytes())?.map(|v| decode("sessions", id.as_bytes(), &v)).transpose()
    }

    fn sessions(&self) -> Result<Vec<Session>, StoreError> {
        self.sessions
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode("sessions", &k, &v)
            })
            .collect()
    }

    fn put_command(&self, command: &CommandRecord) -> Result<bool, StoreError> {
        let key = ledger_key(command.session_id, &command.call_id);
        let inserted = self.ledger.compare_and_swap(&key, None::<&[u8]>, Some(encode(command)?))?.is_ok();
        if inserted {
            self.trim_ledger(command.session_id)?;
        }
        Ok(inserted)
    }

    fn set_outcome(&self, session: Uuid, call_id: &str, outcome: &Outcome) -> Result<bool, StoreError> {
        let key = ledger_key(session, call_id);
        let Some(current) = self.ledger.get(&key)? else { return Ok(false) };
        let mut record: CommandRecord = decode("ledger", &key, &current)?;
        record.outcome = Some(outcome.clone());
        // A concurrent outcome for the same call is the same fact; last writer wins.
        self.ledger.insert(&key, encode(&record)?)?;
        Ok(true)
    }

    fn commands(&self, session: Uuid) -> Result<Vec<CommandRecord>, StoreError> {
        let mut out: Vec<CommandRecord> = self
            .ledger
            .scan_prefix(session.as_bytes())
            .map(|item| {
                let (k, v) = item?;
                decode("ledger", &k, &v)
            })
            .collect::<Result<_, _>>()?;
        out.sort_by_key(|c| c.time);
        Ok(out)
    }

    fn put_correlation(&self, event: Uuid, correlation: &Correlation) -> Result<(), StoreError> {
        self.correlations.insert(event.as_bytes(), encode(correlation)?)?;
        Ok(())
    }

    fn correlation(&self, event: Uuid) -> Result<Option<Correlation>, StoreError> {
        self.correlations
            .get(event.as_bytes())?
            .map(|v| decode("correlations", event.as_bytes(), &v))
            .transpose()
    }

    fn has_correlation(&self, event: Uuid) -> Result<bool, StoreError> {
        Ok(self.correlations.contains_key(event.as_bytes())?)
    }

    fn pipeline_cursor(&self) -> Result<Option<Uuid>, StoreError> {
        Ok(self.meta.get(CURSOR_KEY)?.and_then(|v| Uuid::from_slice(&v).ok()))
    }

    fn set_pipeline_cursor(&self, event: Uuid) -> Result<(), StoreError> {
        self.meta.insert(CURSOR_KEY, event.as_bytes())?;
        Ok(())
    }

    fn delete_session(&self, id: Uuid) -> Result<(), StoreError> {
        for key in self.ledger.scan_prefix(id.as_bytes()).keys() {
            self.ledger.remove(key?)?;
        }
        self.sessions.remove(id.as_bytes())?;
        Ok(())
    }
}

impl SledStore {
    /// Keeps a session's ledger within [`MAX_LEDGER_PER_SESSION`], dropping the oldest calls.
    fn trim_ledger(&self, session: Uuid) -> Result<(), StoreError> {
        let count = self.ledger.scan_prefix(session.as_bytes()).keys().count();
        if count <= MAX_LEDGER_PER_SESSION {
            return Ok(());
        }
        let mut records = self.commands(session)?;
        records.truncate(count - MAX_LEDGER_PER_SESSION);
        for record in records {
            self.ledger.remove(ledger_key(session, &record.call_id))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::CorrelationStatus;
    use crate::sessions::model::{AgentKind, SessionStatus};
    use time::OffsetDateTime;

    fn session() -> Session {
        let now = OffsetDateTime::now_utc();
        Session {
            session_id: Uuid::now_v7(),
            agent: AgentKind::ClaudeCode,
            agent_session_id: "abc".into(),
            pid: 4242,
            pid_start_time: Some(77),
            host: "h".into(),
            user: None,
            cwd: "/work".into(),
            channels: vec![],
            status: SessionStatus::Active,
            registered_at: now,
            last_seen: now,
            ended_at: None,
            end_reason: None,
        }
    }

    fn command(s: &Session, call: &str, secs: i64) -> CommandRecord {
        CommandRecord {
            session_id: s.session_id,
            call_id: call.into(),
            tool: "Bash".into(),
            input: serde_json::json!({"command": format!("echo {call}")}),
            time: s.registered_at + time::Duration::seconds(secs),
            outcome: None,
        }
    }

    #[test]
    fn sessions_commands_and_outcomes_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = session();
        {
            let store = SledStore::open(dir.path(), 1 << 20).unwrap();
            store.put_session(&s).unwrap();
            assert!(store.put_command(&command(&s, "b", 2)).unwrap());
            assert!(store.put_command(&command(&s, "a", 1)).unwrap());
            let outcome = Outcome { exit_code: Some(1), error: None, duration_ms: Some(5) };
            assert!(store.set_outcome(s.session_id, "a", &outcome).unwrap());
            assert!(!store.set_outcome(s.session_id, "zzz", &outcome).unwrap());
            crate::store::Store::flush(&store).unwrap();
        }
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.session(s.session_id).unwrap().unwrap(), s);
        let ledger = store.commands(s.session_id).unwrap();
        let calls: Vec<&str> = ledger.iter().map(|c| c.call_id.as_str()).collect();
        assert_eq!(calls, ["a", "b"], "ledger is in call-time order");
        assert_eq!(ledger[0].outcome.as_ref().unwrap().exit_code, Some(1));
    }

    #[test]
    fn a_retried_command_post_keeps_the_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let s = session();
        let mut first = command(&s, "x", 1);
        assert!(store.put_command(&first).unwrap());
        first.input = serde_json::json!({"command": "something else"});
        assert!(!store.put_command(&first).unwrap());
        assert_eq!(store.commands(s.session_id).unwrap()[0].shell_command(), Some("echo x"));
    }

    #[test]
    fn ledgers_of_two_sessions_do_not_mix_and_delete_removes_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let (a, b) = (session(), session());
        store.put_session(&a).unwrap();
        store.put_session(&b).unwrap();
        store.put_command(&command(&a, "1", 1)).unwrap();
        store.put_command(&command(&b, "1", 1)).unwrap();
        store.delete_session(a.session_id).unwrap();
        assert!(store.session(a.session_id).unwrap().is_none());
        assert!(store.commands(a.session_id).unwrap().is_empty());
        assert_eq!(store.commands(b.session_id).unwrap().len(), 1);
    }

    #[test]
    fn correlation_and_cursor_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 1 << 20).unwrap();
        let event = Uuid::now_v7();
        assert!(store.correlation(event).unwrap().is_none());
        let c = Correlation {
            status: CorrelationStatus::Unmatched,
            session_id: None,
            call_id: None,
            score: None,
            evidence: vec![],
            correlated_at: OffsetDateTime::now_utc(),
        };
        store.put_correlation(event, &c).unwrap();
        assert_eq!(store.correlation(event).unwrap().unwrap().status, CorrelationStatus::Unmatched);
        assert_eq!(store.pipeline_cursor().unwrap(), None);
        store.set_pipeline_cursor(event).unwrap();
        assert_eq!(store.pipeline_cursor().unwrap(), Some(event));
    }
}
