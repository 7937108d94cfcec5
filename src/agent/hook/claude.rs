//! Claude Code's hook wire shapes (observed on 2.1.328, `reference/claude-code-hooks.md`):
//! the JSON a hook reads on stdin, and the JSON it answers on stdout.
//!
//! Only shapes live here; what to do is [`super`]'s. The parser is total — any bytes give an
//! `Ok` or an `Err`, never a panic (serde_json bounds nesting) — and ignores fields it does not
//! use, because Claude Code adds fields between versions.
//!
//! Answers follow what the agent honours: a deny needs `hookSpecificOutput.hookEventName`
//! (without it the tool runs), and an allowed call gets no `permissionDecision` at all (an
//! explicit `allow` would skip Claude Code's own permission checks). `additionalContext` reaches
//! the model; `systemMessage` reaches only the user, so warnings go there.

use super::{AgentProfile, GateAnswer, HookAnswer, HookEvent, SessionRef, ToolCall};
use crate::agent::client::Outcome;
use serde_json::{json, Map, Value};

/// Claude Code as the shared hook logic needs to know it.
pub const PROFILE: AgentProfile =
    AgentProfile { kind: "claude-code", process_names: &["claude"], pid_env: "CLAUDE_PID" };

/// Largest hook input read (a `Write` of a big file arrives whole in `tool_input`).
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// Cap on the error text kept as a call's outcome.
const MAX_ERROR_CHARS: usize = 1000;

/// The hook events haltwire acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    SessionStart,
    UserPromptSubmit,
    PreToolUse,
    PostToolUse,
    PostToolUseFailure,
    SessionEnd,
}

impl EventName {
    /// Every event [`crate::agent`] installs a hook for.
    pub const ALL: [EventName; 6] = [
        EventName::SessionStart,
        EventName::UserPromptSubmit,
        EventName::PreToolUse,
        EventName::PostToolUse,
        EventName::PostToolUseFailure,
        EventName::SessionEnd,
    ];

    /// The name as Claude Code spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::SessionStart => "SessionStart",
            EventName::UserPromptSubmit => "UserPromptSubmit",
            EventName::PreToolUse => "PreToolUse",
            EventName::PostToolUse => "PostToolUse",
            EventName::PostToolUseFailure => "PostToolUseFailure",
            EventName::SessionEnd => "SessionEnd",
        }
    }

    fn from_str(name: &str) -> Option<EventName> {
        EventName::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether the event is about one tool call (its settings entry takes a `matcher`).
    pub fn is_tool_event(self) -> bool {
        matches!(self, EventName::PreToolUse | EventName::PostToolUse | EventName::PostToolUseFailure)
    }
}

/// A parsed hook input.
#[derive(Debug, Clone)]
pub enum Input {
    /// An event haltwire acts on.
    Event(EventName, HookEvent),
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

/// Parses a hook's stdin.
pub fn parse(bytes: &[u8]) -> Result<Input, ParseError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.classify_text()))?;
    let Value::Object(obj) = value else { return Err(ParseError::NotObject) };
    let name = string(&obj, "hook_event_name").ok_or(ParseError::Missing("hook_event_name"))?;
    let Some(event) = EventName::from_str(name) else { return Ok(Input::Ignored(name.to_string())) };
    let session = SessionRef {
        agent_session_id: string(&obj, "session_id").ok_or(ParseError::Missing("session_id"))?.to_string(),
        cwd: string(&obj, "cwd").map(str::to_string).unwrap_or_else(current_dir),
    };
    let hook_event = match event {
        EventName::SessionStart => HookEvent::SessionStart(session),
        EventName::UserPromptSubmit => HookEvent::PromptSubmit(session),
        EventName::SessionEnd => HookEvent::SessionEnd(session),
        EventName::PreToolUse => HookEvent::PreTool(session, tool_call(&obj)?),
        EventName::PostToolUse => {
            let call = tool_call(&obj)?;
            let outcome = success_outcome(&obj, &call);
            HookEvent::PostTool(session, call, outcome)
        }
        EventName::PostToolUseFailure => {
            let call = tool_call(&obj)?;
            HookEvent::PostTool(session, call, failure_outcome(&obj))
        }
    };
    Ok(Input::Event(event, hook_event))
}

trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    /// Category and position only: the input may be anything, and it goes to stderr.
    fn classify_text(&self) -> String {
        format!("{:?} at line {} column {}", self.classify(), self.line(), self.column())
    }
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

fn current_dir() -> String {
    std::env::current_dir().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default()
}

fn tool_call(obj: &Map<String, Value>) -> Result<ToolCall, ParseError> {
    let tool = string(obj, "tool_name").ok_or(ParseError::Missing("tool_name"))?.to_string();
    let input = match obj.get("tool_input") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(_) | None => return Err(ParseError::Missing("tool_input")),
    };
    let call_id = string(obj, "tool_use_id").ok_or(ParseError::Missing("tool_use_id"))?.to_string();
    Ok(ToolCall { call_id, tool, input })
}

fn duration(obj: &Map<String, Value>) -> Option<u64> {
    obj.get("duration_ms").and_then(Value::as_u64)
}

/// A successful call. Claude Code reports Bash failures through `PostToolUseFailure`, so a
/// successful Bash call exited 0.
fn success_outcome(obj: &Map<String, Value>, call: &ToolCall) -> Outcome {
    let interrupted = obj.get("tool_response").and_then(|r| r.get("interrupted")).and_then(Value::as_bool);
    let exit_code = (call.tool == "Bash" && interrupted != Some(true)).then_some(0);
    Outcome { exit_code, error: None, duration_ms: duration(obj) }
}

/// A failed call: `error` reads `Exit code N\n<stderr>` for Bash.
fn failure_outcome(obj: &Map<String, Value>) -> Outcome {
    let error = string(obj, "error").unwrap_or("tool call failed");
    let exit_code = error
        .strip_prefix("Exit code ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit() && c != '-').next())
        .and_then(|n| n.parse().ok());
    Outcome {
        exit_code,
        error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        duration_ms: duration(obj),
    }
}

/// The hook's stdout for an answer, or `None` when there is nothing to say.
pub fn output(event: EventName, answer: &HookAnswer) -> Option<String> {
    let mut specific = Map::new();
    if event == EventName::PreToolUse {
        if let Some(GateAnswer::Deny(reason)) = &answer.gate {
            specific.insert("permissionDecision".into(), json!("deny"));
            specific.insert("permissionDecisionReason".into(), json!(reason));
        }
    }
    // SessionEnd output is not shown to anyone; notices there would be lost.
    if !answer.notices.is_empty() && event != EventName::SessionEnd {
        specific.insert("additionalContext".into(), json!(answer.notices.join("\n\n")));
    }
    let mut out = Map::new();
    if !specific.is_empty() {
        specific.insert("hookEventName".into(), json!(event.as_str()));
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
    use proptest::prelude::*;

    const PRE: &str = r#"{"session_id":"9b97","transcript_path":"/t.jsonl","cwd":"/w/proj","prompt_id":"10b8","permission_mode":"default","effort":{"level":"medium"},"hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"echo hi > somefile","description":"write hi"},"tool_use_id":"toolu_mock_89d7"}"#;

    #[test]
    fn a_pre_tool_use_input_parses_as_observed() {
        let Input::Event(name, HookEvent::PreTool(s, call)) = parse(PRE.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(name, EventName::PreToolUse);
        assert_eq!(s, SessionRef { agent_session_id: "9b97".into(), cwd: "/w/proj".into() });
        assert_eq!(call.call_id, "toolu_mock_89d7");
        assert_eq!(call.tool, "Bash");
        assert_eq!(call.input["command"], "echo hi > somefile");
    }

    #[test]
    fn post_tool_use_failure_keeps_the_exit_code() {
        let text = r#"{"session_id":"s","cwd":"/p","hook_event_name":"PostToolUseFailure","tool_name":"Bash","tool_input":{"command":"exit 3"},"tool_use_id":"t1","error":"Exit code 3\noops","is_interrupt":false,"duration_ms":25}"#;
        let Input::Event(_, HookEvent::PostTool(_, call, outcome)) = parse(text.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(call.call_id, "t1");
        assert_eq!(outcome.exit_code, Some(3));
        assert_eq!(outcome.error.as_deref(), Some("Exit code 3\noops"));
        assert_eq!(outcome.duration_ms, Some(25));
        let ok = r#"{"session_id":"s","cwd":"/p","hook_event_name":"PostToolUse","tool_name":"Bash","tool_input":{"command":"true"},"tool_response":{"stdout":"","interrupted":false},"tool_use_id":"t2","duration_ms":27}"#;
        let Input::Event(_, HookEvent::PostTool(_, _, outcome)) = parse(ok.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(outcome.exit_code, Some(0));
    }

    #[test]
    fn other_events_are_ignored_and_bad_input_is_an_error() {
        let stop = r#"{"session_id":"s","hook_event_name":"Stop","stop_hook_active":false}"#;
        assert!(matches!(parse(stop.as_bytes()), Ok(Input::Ignored(name)) if name == "Stop"));
        assert!(matches!(parse(b"{\"hook_event_name\":\"PreToolUse\""), Err(ParseError::NotJson(_))));
        assert!(matches!(parse(b"[1]"), Err(ParseError::NotObject)));
        assert!(matches!(parse(br#"{"session_id":"s"}"#), Err(ParseError::Missing("hook_event_name"))));
        let no_input =
            r#"{"session_id":"s","hook_event_name":"PreToolUse","tool_name":"Bash","tool_use_id":"t"}"#;
        assert!(matches!(parse(no_input.as_bytes()), Err(ParseError::Missing("tool_input"))));
    }

    #[test]
    fn a_deny_is_well_formed_with_its_event_name() {
        let answer = HookAnswer { gate: Some(GateAnswer::Deny("NOTICE".into())), ..HookAnswer::default() };
        let out: Value = serde_json::from_str(&output(EventName::PreToolUse, &answer).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                "permissionDecisionReason": "NOTICE"}})
        );
    }

    #[test]
    fn an_allow_says_nothing_unless_there_is_context_and_never_grants() {
        let allow = HookAnswer { gate: Some(GateAnswer::Allow), ..HookAnswer::default() };
        assert_eq!(output(EventName::PreToolUse, &allow), None);
        let with_notice = HookAnswer {
            gate: Some(GateAnswer::Allow),
            notices: vec!["A".into(), "B".into()],
            warnings: vec!["W".into()],
            ..HookAnswer::default()
        };
        let out: Value = serde_json::from_str(&output(EventName::PreToolUse, &with_notice).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "additionalContext": "A\n\nB"},
                "systemMessage": "W"})
        );
        assert!(out["hookSpecificOutput"].get("permissionDecision").is_none());
    }

    #[test]
    fn notices_after_a_failed_call_name_that_event() {
        let answer = HookAnswer { notices: vec!["N".into()], ..HookAnswer::default() };
        let out: Value =
            serde_json::from_str(&output(EventName::PostToolUseFailure, &answer).unwrap()).unwrap();
        assert_eq!(out["hookSpecificOutput"]["hookEventName"], "PostToolUseFailure");
        assert_eq!(out["hookSpecificOutput"]["additionalContext"], "N");
        assert_eq!(output(EventName::SessionEnd, &answer), None);
    }

    #[test]
    fn unreadable_input_denies_only_when_fail_closed() {
        let err = ParseError::NotObject;
        let closed: Value = serde_json::from_str(&unreadable_output(true, &err)).unwrap();
        assert_eq!(closed["hookSpecificOutput"]["hookEventName"], "PreToolUse");
        assert_eq!(closed["hookSpecificOutput"]["permissionDecision"], "deny");
        let open: Value = serde_json::from_str(&unreadable_output(false, &err)).unwrap();
        assert!(open.get("hookSpecificOutput").is_none());
    }

    proptest! {
        #[test]
        fn the_parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn the_parser_is_total_on_near_valid_input(cut in 0usize..PRE.len(), junk in "[\\x00-\\x7f]{0,8}") {
            let mut text = PRE[..cut].to_string();
            text.push_str(&junk);
            let _ = parse(text.as_bytes());
        }
    }
}
