//! The hook wire format that Claude Code and Codex share: one JSON object on stdin with
//! `hook_event_name`, `session_id`, `cwd` and, for tool events, `tool_name`, `tool_input` and
//! `tool_use_id`; one JSON object on stdout with `hookSpecificOutput` (`permissionDecision`,
//! `permissionDecisionReason`, `additionalContext`) and `systemMessage`.
//!
//! Both agents document and behave the same for these fields (`reference/claude-code-hooks.md`,
//! `reference/codex-hooks-queue.md` §2.3–2.4); each agent's file ([`super::claude`],
//! [`super::codex`]) keeps what differs: its event names, which events exist, and what an
//! outcome looks like. The reader is total — any bytes give `Ok` or `Err`, never a panic — and
//! ignores fields it does not use, because the agents add fields between versions.
//!
//! Answers follow what the agents honour: a deny needs `hookSpecificOutput.hookEventName`, and
//! an allowed call gets no `permissionDecision` at all (an explicit `allow` would skip the
//! agent's own permission checks). `additionalContext` reaches the model; `systemMessage`
//! reaches only the user, so warnings go there.

use super::{GateAnswer, HookAnswer, HookEvent, SessionRef, ToolCall};
use serde_json::{json, Map, Value};

/// Largest hook input read (a `Write` of a big file arrives whole in `tool_input`).
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// A parsed hook input, for an agent whose event names are `E`.
#[derive(Debug, Clone)]
pub enum Input<E> {
    /// An event haltwire acts on.
    Event(E, HookEvent),
    /// Any other event (Stop, Notification, …): answered with nothing.
    Ignored(String),
}

/// Why stdin was not a usable hook input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("hook input larger than {MAX_INPUT_BYTES} bytes")]
    TooLarge,
    #[error("hook input is not JSON: {0}")]
    NotJson(String),
    #[error("hook input is not a JSON object")]
    NotObject,
    #[error("hook input lacks `{0}`")]
    Missing(&'static str),
}

/// The fields every hook input has, read once.
pub struct Fields {
    /// The whole object, for the agent-specific fields.
    pub obj: Map<String, Value>,
    /// `hook_event_name`.
    pub event_name: String,
}

impl Fields {
    /// Reads the object and its event name.
    pub fn read(bytes: &[u8]) -> Result<Fields, ParseError> {
        if bytes.len() > MAX_INPUT_BYTES {
            return Err(ParseError::TooLarge);
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(classify(&e)))?;
        let Value::Object(obj) = value else { return Err(ParseError::NotObject) };
        let event_name =
            string(&obj, "hook_event_name").ok_or(ParseError::Missing("hook_event_name"))?.to_string();
        Ok(Fields { obj, event_name })
    }

    /// The agent session (`session_id`, `cwd`; the hook's own directory when `cwd` is absent).
    pub fn session(&self) -> Result<SessionRef, ParseError> {
        Ok(SessionRef {
            agent_session_id: self.string("session_id").ok_or(ParseError::Missing("session_id"))?.to_string(),
            cwd: self.string("cwd").map(str::to_string).unwrap_or_else(current_dir),
        })
    }

    /// The tool call of a tool event.
    pub fn tool_call(&self) -> Result<ToolCall, ParseError> {
        let tool = self.string("tool_name").ok_or(ParseError::Missing("tool_name"))?.to_string();
        let input = match self.obj.get("tool_input") {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(_) | None => return Err(ParseError::Missing("tool_input")),
        };
        let call_id = self.string("tool_use_id").ok_or(ParseError::Missing("tool_use_id"))?.to_string();
        Ok(ToolCall { call_id, tool, input })
    }

    /// A string field.
    pub fn string(&self, key: &str) -> Option<&str> {
        string(&self.obj, key)
    }
}

/// Category and position only: the input may be anything, and it goes to stderr.
fn classify(e: &serde_json::Error) -> String {
    format!("{:?} at line {} column {}", e.classify(), e.line(), e.column())
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn current_dir() -> String {
    std::env::current_dir().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default()
}

/// What an answer may carry at one event.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    /// The event name as the agent spells it (echoed in `hookEventName`).
    pub event_name: &'a str,
    /// The event is the gate (`PreToolUse`): a deny goes out.
    pub gate: bool,
    /// The agent turns `additionalContext` at this event into model context.
    pub context: bool,
}

/// The hook's stdout for an answer, or `None` when there is nothing to say.
pub fn output(slot: Slot<'_>, answer: &HookAnswer) -> Option<String> {
    let mut specific = Map::new();
    if slot.gate {
        if let Some(GateAnswer::Deny(reason)) = &answer.gate {
            specific.insert("permissionDecision".into(), json!("deny"));
            specific.insert("permissionDecisionReason".into(), json!(reason));
        }
    }
    if !answer.notices.is_empty() && slot.context {
        specific.insert("additionalContext".into(), json!(answer.notices.join("\n\n")));
    }
    let mut out = Map::new();
    if !specific.is_empty() {
        specific.insert("hookEventName".into(), json!(slot.event_name));
        out.insert("hookSpecificOutput".into(), Value::Object(specific));
    }
    if !answer.warnings.is_empty() {
        out.insert("systemMessage".into(), json!(answer.warnings.join("\n")));
    }
    (!out.is_empty()).then(|| Value::Object(out).to_string())
}

/// The answer when stdin could not be read as a hook input. A fail-closed hook cannot know
/// the event, so it answers as for `PreToolUse` (the only event where "deny" means anything;
/// other events ignore the shape) with the fixed fail-closed text.
pub fn unreadable_output(fail_closed: bool, error: &ParseError) -> String {
    let warning = format!("haltwire: unreadable hook input ({error})");
    if fail_closed {
        let reason = crate::directive::render::broker_unavailable();
        json!({
            "hookSpecificOutput": {
                "hookEventName": "PreToolUse",
                "permissionDecision": "deny",
                "permissionDecisionReason": reason,
            },
            "systemMessage": warning,
        })
        .to_string()
    } else {
        json!({ "systemMessage": warning }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_input_denies_only_when_fail_closed() {
        let err = ParseError::NotObject;
        let closed: Value = serde_json::from_str(&unreadable_output(true, &err)).unwrap();
        assert_eq!(closed["hookSpecificOutput"]["hookEventName"], "PreToolUse");
        assert_eq!(closed["hookSpecificOutput"]["permissionDecision"], "deny");
        let open: Value = serde_json::from_str(&unreadable_output(false, &err)).unwrap();
        assert!(open.get("hookSpecificOutput").is_none());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(Fields::read(b"{\"hook_event_name\":\"PreToolUse\""), Err(ParseError::NotJson(_))));
        assert!(matches!(Fields::read(b"[1]"), Err(ParseError::NotObject)));
        assert!(matches!(
            Fields::read(br#"{"session_id":"s"}"#),
            Err(ParseError::Missing("hook_event_name"))
        ));
    }
}
