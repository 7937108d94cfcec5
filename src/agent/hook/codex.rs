//! Codex's hook wire shapes (observed on 0.169.0, `reference/codex-hooks-queue.md` §2.3–2.4):
//! which events haltwire handles and what their inputs mean. The shared JSON shapes are
//! [`super::wire`]; what to do is [`super`]'s.
//!
//! Differences from Claude Code that matter here: shell calls arrive as tool `Bash` with
//! `{"command"}` whatever the model's tool was (`exec_command`), file edits as `apply_patch`
//! whose patch text names the files; `PostToolUse` carries the output as a plain string and no
//! exit code, and there is no failure event. Every event but `SessionEnd` turns
//! `additionalContext` into a developer message for the model.

use super::wire::{self, Fields, Slot};
use super::{AgentProfile, HookAnswer, HookEvent, ToolCall};
use crate::agent::client::Outcome;
use serde_json::Value;

pub use super::wire::{unreadable_output, ParseError, MAX_INPUT_BYTES};

/// Codex as the shared hook logic needs to know it. Codex sets no pid variable for hooks; a
/// wrapper may set `HALTWIRE_CODEX_PID`, which counts only when it is really an ancestor.
pub const PROFILE: AgentProfile =
    AgentProfile { kind: "codex", process_names: &["codex"], pid_env: "HALTWIRE_CODEX_PID" };

/// The hook events haltwire acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    SessionStart,
    UserPromptSubmit,
    PreToolUse,
    PostToolUse,
    SessionEnd,
}

impl EventName {
    /// Every event `haltwire install codex` adds a hook for.
    pub const ALL: [EventName; 5] = [
        EventName::SessionStart,
        EventName::UserPromptSubmit,
        EventName::PreToolUse,
        EventName::PostToolUse,
        EventName::SessionEnd,
    ];

    /// The name as Codex spells it in `hooks.json` and on stdin.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::SessionStart => "SessionStart",
            EventName::UserPromptSubmit => "UserPromptSubmit",
            EventName::PreToolUse => "PreToolUse",
            EventName::PostToolUse => "PostToolUse",
            EventName::SessionEnd => "SessionEnd",
        }
    }

    /// The name as Codex's app-server reports it (`hooks/list` `eventName`).
    pub fn list_name(self) -> &'static str {
        match self {
            EventName::SessionStart => "sessionStart",
            EventName::UserPromptSubmit => "userPromptSubmit",
            EventName::PreToolUse => "preToolUse",
            EventName::PostToolUse => "postToolUse",
            EventName::SessionEnd => "sessionEnd",
        }
    }

    fn from_str(name: &str) -> Option<EventName> {
        EventName::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Whether the event is about one tool call (its entry takes a `matcher`).
    pub fn is_tool_event(self) -> bool {
        matches!(self, EventName::PreToolUse | EventName::PostToolUse)
    }

    /// The hook's time budget. Codex clamps `SessionEnd` to 3 s (with a warning above that);
    /// a hook that runs out of time fails open, so the others get room for three broker calls.
    pub fn timeout_secs(self) -> u64 {
        match self {
            EventName::SessionEnd => 3,
            _ => 10,
        }
    }
}

/// A parsed Codex hook input.
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
        EventName::PreToolUse => HookEvent::PreTool(session, normalized(fields.tool_call()?)),
        // Codex reports the output only; whether it failed is not known here.
        EventName::PostToolUse => {
            HookEvent::PostTool(session, normalized(fields.tool_call()?), Outcome::default())
        }
    };
    Ok(Input::Event(event, hook_event))
}

/// An `apply_patch` call whose patch text came as `command` also gets it as `patch`, the key
/// the broker reads a patch's file paths from; the original keys stay as they were.
fn normalized(mut call: ToolCall) -> ToolCall {
    if call.tool == "apply_patch" {
        if let Value::Object(input) = &mut call.input {
            let has_patch = input.contains_key("patch") || input.contains_key("input");
            if let (false, Some(text)) = (has_patch, input.get("command").and_then(Value::as_str)) {
                let text = Value::from(text);
                input.insert("patch".into(), text);
            }
        }
    }
    call
}

/// The hook's stdout for an answer, or `None` when there is nothing to say.
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

    const PRE: &str = r#"{"session_id":"01a2","turn_id":"01a3","transcript_path":"/h/sessions/r.jsonl","cwd":"/w","hook_event_name":"PreToolUse","model":"mock-model","permission_mode":"bypassPermissions","tool_name":"Bash","tool_input":{"command":"echo hi"},"tool_use_id":"call_mock_1"}"#;

    #[test]
    fn a_pre_tool_use_input_parses_as_observed() {
        let Input::Event(name, HookEvent::PreTool(s, call)) = parse(PRE.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(name, EventName::PreToolUse);
        assert_eq!(s, SessionRef { agent_session_id: "01a2".into(), cwd: "/w".into() });
        assert_eq!(
            call,
            ToolCall {
                call_id: "call_mock_1".into(),
                tool: "Bash".into(),
                input: json!({"command": "echo hi"})
            }
        );
    }

    #[test]
    fn post_tool_use_has_no_exit_code_and_session_events_parse() {
        let post =
            PRE.replace("\"PreToolUse\"", "\"PostToolUse\"").replace("}", ",\"tool_response\":\"hi\\n\"}");
        let Input::Event(EventName::PostToolUse, HookEvent::PostTool(_, call, outcome)) =
            parse(post.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(call.call_id, "call_mock_1");
        assert_eq!(outcome.exit_code, None);
        let start = r#"{"session_id":"s","cwd":"/w","hook_event_name":"SessionStart","source":"startup"}"#;
        assert!(matches!(parse(start.as_bytes()), Ok(Input::Event(EventName::SessionStart, _))));
        let end = r#"{"session_id":"s","cwd":"/w","hook_event_name":"SessionEnd","reason":"other"}"#;
        assert!(matches!(
            parse(end.as_bytes()),
            Ok(Input::Event(EventName::SessionEnd, HookEvent::SessionEnd(_)))
        ));
        let stop = r#"{"session_id":"s","hook_event_name":"Stop","stop_hook_active":false}"#;
        assert!(matches!(parse(stop.as_bytes()), Ok(Input::Ignored(n)) if n == "Stop"));
    }

    #[test]
    fn an_apply_patch_command_is_also_given_as_patch() {
        let text = r#"{"session_id":"s","cwd":"/w","hook_event_name":"PreToolUse","tool_name":"apply_patch","tool_input":{"command":"*** Begin Patch\n*** Update File: a.rs\n*** End Patch"},"tool_use_id":"c"}"#;
        let Input::Event(_, HookEvent::PreTool(_, call)) = parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(call.input["patch"], call.input["command"]);
        let bash = parse(PRE.as_bytes()).unwrap();
        let Input::Event(_, HookEvent::PreTool(_, call)) = bash else { panic!() };
        assert!(call.input.get("patch").is_none(), "only apply_patch calls are touched");
    }

    #[test]
    fn a_deny_names_pre_tool_use_and_session_end_carries_no_context() {
        let deny = HookAnswer { gate: Some(GateAnswer::Deny("NOTICE".into())), ..HookAnswer::default() };
        let out: Value = serde_json::from_str(&output(EventName::PreToolUse, &deny).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                "permissionDecisionReason": "NOTICE"}})
        );
        let notices = HookAnswer { notices: vec!["A".into(), "B".into()], ..HookAnswer::default() };
        let out: Value =
            serde_json::from_str(&output(EventName::UserPromptSubmit, &notices).unwrap()).unwrap();
        assert_eq!(out["hookSpecificOutput"]["additionalContext"], "A\n\nB");
        assert_eq!(out["hookSpecificOutput"]["hookEventName"], "UserPromptSubmit");
        assert_eq!(output(EventName::SessionEnd, &notices), None);
        let allow = HookAnswer { gate: Some(GateAnswer::Allow), ..HookAnswer::default() };
        assert_eq!(output(EventName::PreToolUse, &allow), None, "an allow never grants explicitly");
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
