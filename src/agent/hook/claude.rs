//! Claude Code's hook wire shapes (observed on 2.1.328, `reference/claude-code-hooks.md`):
//! the JSON a hook reads on stdin, and the JSON it answers on stdout.
//!
//! Only what is Claude-specific lives here (event names, outcomes); the shared shapes are
//! [`super::wire`], and what to do is [`super`]'s.

use super::wire::{self, Fields, Slot};
use super::{AgentProfile, HookAnswer, HookEvent, ToolCall};
use crate::agent::client::Outcome;
use serde_json::Value;

pub use super::wire::{unreadable_output, ParseError, MAX_INPUT_BYTES};

/// Claude Code as the shared hook logic needs to know it.
pub const PROFILE: AgentProfile =
    AgentProfile { kind: "claude-code", process_names: &["claude"], pid_env: "CLAUDE_PID" };

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

/// A parsed Claude Code hook input.
pub type Input = wire::Input<EventName>;

/// Parses a hook's stdin.
pub fn parse(bytes: &[u8]) -> Result<Input, ParseError> {
    let fields = Fields::read(bytes)?;
    let Some(event) = EventName::from_str(&fields.event_name) else {
        return Ok(Input::Ignored(fields.event_name));
    };
    let session = fields.session()?;
    let hook_event = match event {
        EventName::SessionStart => HookEvent::SessionStart(session),
        EventName::UserPromptSubmit => HookEvent::PromptSubmit(session),
        EventName::SessionEnd => HookEvent::SessionEnd(session),
        EventName::PreToolUse => HookEvent::PreTool(session, fields.tool_call()?),
        EventName::PostToolUse => {
            let call = fields.tool_call()?;
            let outcome = success_outcome(&fields, &call);
            HookEvent::PostTool(session, call, outcome)
        }
        EventName::PostToolUseFailure => {
            let call = fields.tool_call()?;
            HookEvent::PostTool(session, call, failure_outcome(&fields))
        }
    };
    Ok(Input::Event(event, hook_event))
}

fn duration(fields: &Fields) -> Option<u64> {
    fields.obj.get("duration_ms").and_then(Value::as_u64)
}

/// A successful call. Claude Code reports Bash failures through `PostToolUseFailure`, so a
/// successful Bash call exited 0.
fn success_outcome(fields: &Fields, call: &ToolCall) -> Outcome {
    let interrupted =
        fields.obj.get("tool_response").and_then(|r| r.get("interrupted")).and_then(Value::as_bool);
    let exit_code = (call.tool == "Bash" && interrupted != Some(true)).then_some(0);
    Outcome { exit_code, error: None, duration_ms: duration(fields) }
}

/// A failed call: `error` reads `Exit code N\n<stderr>` for Bash.
fn failure_outcome(fields: &Fields) -> Outcome {
    let error = fields.string("error").unwrap_or("tool call failed");
    let exit_code = error
        .strip_prefix("Exit code ")
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit() && c != '-').next())
        .and_then(|n| n.parse().ok());
    Outcome {
        exit_code,
        error: Some(error.chars().take(MAX_ERROR_CHARS).collect()),
        duration_ms: duration(fields),
    }
}

/// The hook's stdout for an answer, or `None` when there is nothing to say. SessionEnd output
/// is not shown to anyone, so notices there would be lost (they stay pending).
pub fn output(event: EventName, answer: &HookAnswer) -> Option<String> {
    let slot = Slot {
        event_name: event.as_str(),
        gate: event == EventName::PreToolUse,
        context: event != EventName::SessionEnd,
    };
    wire::output(slot, answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::hook::{GateAnswer, SessionRef};
    use proptest::prelude::*;
    use serde_json::json;

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
