//! The app-server requests and answers haltwire uses, typed after the JSON Schema that
//! `codex app-server generate-json-schema` prints for Codex 0.169.0 (v2 protocol).
//!
//! Outgoing params are exactly what we send; incoming shapes are read leniently (unknown
//! fields ignored, since the server owns that format and adds fields between versions). Only
//! the subset the adapter needs is here; everything else is relayed as raw JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `clientInfo` in `initialize`.
#[derive(Clone, Debug, Serialize)]
pub struct ClientInfo {
    /// Client name; the server puts it in its user agent and the `originator` header.
    pub name: String,
    /// Client version.
    pub version: String,
}

/// `initialize` params.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// Who is connecting.
    pub client_info: ClientInfo,
}

/// `initialize` result (the fields we read).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResult {
    /// `<client name>/<server version> (<platform>)`.
    pub user_agent: String,
    /// The server's CODEX_HOME.
    #[serde(default)]
    pub codex_home: Option<String>,
}

/// `thread/start` params (all optional on the wire).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreadStartParams {
    /// Working directory of the thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// `untrusted | on-request | never` or a granular object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_policy: Option<Value>,
    /// `read-only | workspace-write | danger-full-access`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Config overrides for this thread only (dotted keys merge into the session's config).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

/// A thread as the server reports it (the fields we read).
#[derive(Clone, Debug, Deserialize)]
pub struct ThreadRef {
    /// Thread id (= Codex session id = hook `session_id`).
    pub id: String,
}

/// `thread/start` / `thread/resume` result.
#[derive(Clone, Debug, Deserialize)]
pub struct ThreadStartResult {
    /// The thread.
    pub thread: ThreadRef,
    /// Its working directory.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// One input element. Only text is used.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UserInput {
    /// Plain text.
    Text {
        /// The text.
        text: String,
        /// UI spans; always empty here.
        text_elements: Vec<Value>,
    },
}

impl UserInput {
    pub fn text(text: impl Into<String>) -> UserInput {
        UserInput::Text { text: text.into(), text_elements: Vec::new() }
    }
}

/// `turn/start` params.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnStartParams {
    /// Thread to run the turn in.
    pub thread_id: String,
    /// The user input.
    pub input: Vec<UserInput>,
}

/// `turn/steer` params. `expectedTurnId` is required: the server refuses a steer into any
/// other turn than the one we believe is running.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnSteerParams {
    /// Thread of the turn.
    pub thread_id: String,
    /// The turn we believe is active.
    pub expected_turn_id: String,
    /// Text to add.
    pub input: Vec<UserInput>,
}

/// A turn (the fields we read).
#[derive(Clone, Debug, Deserialize)]
pub struct TurnRef {
    /// Turn id.
    pub id: String,
    /// `completed | interrupted | failed | inProgress`.
    #[serde(default)]
    pub status: Option<String>,
}

/// `turn/start` result.
#[derive(Clone, Debug, Deserialize)]
pub struct TurnStartResult {
    /// The turn (the same id when the input joined an active turn).
    pub turn: TurnRef,
}

/// `turn/started` and `turn/completed` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnNotification {
    /// Thread of the turn.
    pub thread_id: String,
    /// The turn.
    pub turn: TurnRef,
}

/// `item/started` / `item/completed` params.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemNotification {
    /// Thread of the item.
    pub thread_id: String,
    /// Turn of the item.
    #[serde(default)]
    pub turn_id: Option<String>,
    /// The item, kept raw; see [`ToolItem::from_item`].
    pub item: Value,
}

/// A tool call as the ledger and the gate see it: Codex's tool name and input shape, as its
/// hooks name them (`Bash` with `{"command"}`, `apply_patch` with the changed paths).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolItem {
    /// Item id = the model's call id.
    pub call_id: String,
    /// `Bash` or `apply_patch`.
    pub tool: &'static str,
    /// Raw input object for the broker.
    pub input: Value,
}

impl ToolItem {
    /// Reads a `commandExecution` or `fileChange` item; `None` for any other item.
    pub fn from_item(item: &Value) -> Option<ToolItem> {
        let call_id = item["id"].as_str()?.to_string();
        match item["type"].as_str()? {
            "commandExecution" => {
                // `command` is the wrapped form (`/bin/bash -lc '…'`); the parsed action has
                // the model's own text, which is what the hook path records too.
                let inner = item["commandActions"].as_array().and_then(|a| {
                    if a.len() == 1 {
                        a[0]["command"].as_str()
                    } else {
                        None
                    }
                });
                let command = inner.or(item["command"].as_str())?.to_string();
                let mut input = serde_json::json!({ "command": command });
                if let Some(cwd) = item["cwd"].as_str() {
                    input["cwd"] = Value::from(cwd);
                }
                Some(ToolItem { call_id, tool: "Bash", input })
            }
            "fileChange" => {
                let paths: Vec<Value> = item["changes"]
                    .as_array()
                    .map(|c| c.iter().filter_map(|ch| ch["path"].as_str().map(Value::from)).collect())
                    .unwrap_or_default();
                let mut input = serde_json::json!({ "paths": paths });
                if let Some(first) = paths.first() {
                    input["file_path"] = first.clone();
                }
                Some(ToolItem { call_id, tool: "apply_patch", input })
            }
            _ => None,
        }
    }
}

/// The approval requests the adapter answers, by method.
pub const COMMAND_APPROVAL: &str = "item/commandExecution/requestApproval";
/// File-change approval (v2).
pub const FILE_CHANGE_APPROVAL: &str = "item/fileChange/requestApproval";

/// `item/commandExecution/requestApproval` params (the fields we read).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Turn.
    #[serde(default)]
    pub turn_id: Option<String>,
    /// Item id = call id.
    pub item_id: String,
    /// The command as Codex will run it.
    #[serde(default)]
    pub command: Option<String>,
    /// Parsed actions; a single one carries the model's own command text.
    #[serde(default)]
    pub command_actions: Option<Vec<Value>>,
}

impl CommandApprovalParams {
    /// The command text the gate checks: the model's own text when Codex parsed exactly one
    /// action, else the command Codex will run.
    pub fn gate_command(&self) -> Option<String> {
        let single =
            self.command_actions.as_ref().filter(|a| a.len() == 1).and_then(|a| a[0]["command"].as_str());
        single.or(self.command.as_deref()).map(str::to_string)
    }
}

/// `item/fileChange/requestApproval` params (the fields we read).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileChangeApprovalParams {
    /// Thread.
    pub thread_id: String,
    /// Item id = call id; the paths come from that item's `item/started`.
    pub item_id: String,
}

/// An answer to an approval request. `decline` lets the turn go on without running the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// Run it.
    Accept,
    /// Do not run it; the turn continues.
    Decline,
}

impl ApprovalDecision {
    /// The result object for a v2 approval request.
    pub fn to_result(self) -> Value {
        let decision = match self {
            ApprovalDecision::Accept => "accept",
            ApprovalDecision::Decline => "decline",
        };
        serde_json::json!({ "decision": decision })
    }
}

/// Parses the server version out of `initialize`'s user agent (`name/0.169.0 (…)`).
pub fn server_version(user_agent: &str) -> Option<(u64, u64, u64)> {
    let after = user_agent.split_once('/')?.1;
    let token = after.split_whitespace().next()?;
    let core = token.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (parts.next()??, parts.next()??, parts.next().unwrap_or(Some(0))?);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_from_user_agent() {
        assert_eq!(server_version("haltwire/0.169.0 (Debian 12; x86_64) xterm"), Some((0, 169, 0)));
        assert_eq!(server_version("x/0.170.2-alpha.1"), Some((0, 170, 2)));
        assert_eq!(server_version("x/1.2"), Some((1, 2, 0)));
        assert_eq!(server_version("no version here"), None);
        assert_eq!(server_version("x/abc"), None);
    }

    #[test]
    fn params_serialize_as_the_schema_says() {
        let steer = TurnSteerParams {
            thread_id: "t".into(),
            expected_turn_id: "u".into(),
            input: vec![UserInput::text("hi")],
        };
        assert_eq!(
            serde_json::to_value(&steer).unwrap(),
            json!({"threadId": "t", "expectedTurnId": "u", "input": [{"type": "text", "text": "hi", "text_elements": []}]})
        );
        let start = ThreadStartParams { cwd: Some("/w".into()), ..Default::default() };
        assert_eq!(serde_json::to_value(&start).unwrap(), json!({"cwd": "/w"}));
        assert_eq!(ApprovalDecision::Decline.to_result(), json!({"decision": "decline"}));
    }

    #[test]
    fn tool_items_from_started_items() {
        let cmd = json!({"type": "commandExecution", "id": "call_1", "command": "/bin/bash -lc 'echo hi > x.txt'",
            "cwd": "/w", "commandActions": [{"type": "unknown", "command": "echo hi > x.txt"}]});
        let t = ToolItem::from_item(&cmd).unwrap();
        assert_eq!(t.call_id, "call_1");
        assert_eq!(t.tool, "Bash");
        assert_eq!(t.input["command"], "echo hi > x.txt");
        let fc = json!({"type": "fileChange", "id": "call_2", "changes": [{"path": "/w/a.rs", "kind": {"type": "update"}}]});
        let t = ToolItem::from_item(&fc).unwrap();
        assert_eq!(t.tool, "apply_patch");
        assert_eq!(t.input["file_path"], "/w/a.rs");
        assert!(ToolItem::from_item(&json!({"type": "agentMessage", "id": "m"})).is_none());
    }
}
