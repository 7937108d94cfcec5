//! Codex hook trust through the app-server: which hooks Codex sees (`hooks/list`), recording
//! trust for haltwire's (`config/batchWrite`, or a thread's own config), and the `-c` overrides
//! that give a driven session the `haltwire hook codex` gate.
//!
//! Codex runs a hook only when it is trusted, and skips an untrusted one silently — the tool
//! call then runs (`reference/codex-hooks-queue.md` §2.6). Trust is a hash of the hook's
//! definition under a key naming its source, event and position; `hooks/list` reports both as
//! Codex computes them, so haltwire never computes the hash itself. This module only ever
//! trusts hooks whose command is haltwire's own `hook codex`, and it checks the result with a
//! second `hooks/list` rather than assuming the write took.
//!
//! It does not write `hooks.json` (`agent::install` merges it) and decides nothing about tool
//! calls.

use super::conn::{ConnError, Connection};
use crate::agent::hook::codex::EventName;
use crate::agent::install::is_ours;
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One hook handler as `hooks/list` reports it (the fields haltwire reads).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ListedHook {
    /// Trust key: `<source path>:<event_snake_case>:<group>:<handler>`.
    pub key: String,
    /// `preToolUse`, `sessionStart`, …
    pub event_name: String,
    /// The command of a `command` handler.
    #[serde(default)]
    pub command: Option<String>,
    /// The entry's matcher.
    #[serde(default)]
    pub matcher: Option<String>,
    /// `user`, `project`, `sessionFlags`, …
    pub source: String,
    /// The file the hook came from (`/<session-flags>/config.toml` for `-c` hooks).
    pub source_path: String,
    /// Whether the hook is enabled.
    pub enabled: bool,
    /// The hash Codex computes for the definition now.
    pub current_hash: String,
    /// `trusted`, `untrusted`, `modified` or `managed`.
    pub trust_status: String,
}

impl ListedHook {
    /// Whether Codex will run it: enabled and trusted (or managed by an administrator).
    pub fn will_run(&self) -> bool {
        self.enabled && matches!(self.trust_status.as_str(), "trusted" | "managed")
    }

    /// Whether it is haltwire's `hook codex`.
    pub fn is_haltwire(&self) -> bool {
        self.command.as_deref().is_some_and(|c| is_ours(c, "codex"))
    }
}

/// What `hooks/list` says for one working directory.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HookListing {
    /// The handlers, in display order.
    #[serde(default)]
    pub hooks: Vec<ListedHook>,
    /// Codex's warnings about the hook configuration (e.g. a clamped timeout).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Codex's errors about the hook configuration (e.g. an unreadable `hooks.json`).
    #[serde(default)]
    pub errors: Vec<Value>,
}

impl HookListing {
    /// haltwire's handlers.
    pub fn haltwire(&self) -> impl Iterator<Item = &ListedHook> {
        self.hooks.iter().filter(|h| h.is_haltwire())
    }

    /// haltwire's handler for `event`, preferring one Codex will run.
    pub fn for_event(&self, event: EventName) -> Option<&ListedHook> {
        let mut ours = self.haltwire().filter(|h| h.event_name == event.list_name());
        let first = ours.next()?;
        Some(if first.will_run() { first } else { ours.find(|h| h.will_run()).unwrap_or(first) })
    }
}

#[derive(Deserialize)]
struct ListResult {
    data: Vec<HookListing>,
}

/// `hooks/list` for a working directory (user and session-flag hooks apply to every one).
pub fn list_for_cwd(conn: &Connection, cwd: &str) -> Result<HookListing, ConnError> {
    list(conn, json!({ "cwds": [cwd] }))
}

/// `hooks/list` for a loaded thread (its own config included).
pub fn list_for_thread(conn: &Connection, thread_id: &str) -> Result<HookListing, ConnError> {
    list(conn, json!({ "threadId": thread_id }))
}

fn list(conn: &Connection, params: Value) -> Result<HookListing, ConnError> {
    let reply = conn.request("hooks/list", params, REQUEST_TIMEOUT)?;
    let result: ListResult = serde_json::from_value(reply)
        .map_err(|e| ConnError::BadReply { method: "hooks/list".into(), detail: e.to_string() })?;
    Ok(result.data.into_iter().next().unwrap_or_default())
}

/// Records trust for every haltwire hook in `listing` that Codex would not run yet, in the
/// user's `config.toml`, and reloads it. Returns how many were trusted now.
pub fn trust_in_user_config(conn: &Connection, listing: &HookListing) -> Result<usize, ConnError> {
    let edits: Vec<Value> = listing
        .haltwire()
        .filter(|h| h.trust_status != "trusted" && h.trust_status != "managed")
        .map(|h| {
            json!({
                "keyPath": format!("hooks.state.{}.trusted_hash", toml_key(&h.key)),
                "value": h.current_hash,
                "mergeStrategy": "upsert",
            })
        })
        .collect();
    if edits.is_empty() {
        return Ok(0);
    }
    let n = edits.len();
    conn.request("config/batchWrite", json!({ "edits": edits, "reloadUserConfig": true }), REQUEST_TIMEOUT)?;
    Ok(n)
}

/// A TOML key as a quoted string (the trust keys hold `/`, `:` and `<>`).
fn toml_key(key: &str) -> String {
    toml::Value::String(key.to_string()).to_string()
}

/// The `-c` overrides that give every session of an app-server the `command` hook at
/// `PreToolUse`, matching every tool. They are untrusted until a thread's config trusts them
/// ([`thread_trust_config`]).
pub fn session_flag_overrides(command: &str) -> Vec<String> {
    let event = EventName::PreToolUse;
    vec![format!(
        "hooks.{}=[{{matcher=\"*\",hooks=[{{type=\"command\",command={},timeout={}}}]}}]",
        event.as_str(),
        toml::Value::String(command.to_string()),
        event.timeout_secs()
    )]
}

/// The `config` member of `thread/start` that trusts haltwire's session-flag hooks for that
/// thread only (nothing is written to any file), or `None` when there are none.
pub fn thread_trust_config(listing: &HookListing) -> Option<Value> {
    let state: serde_json::Map<String, Value> = listing
        .haltwire()
        .filter(|h| h.source == "sessionFlags")
        .map(|h| (h.key.clone(), json!({ "trusted_hash": h.current_hash })))
        .collect();
    // The dotted key merges into the thread's config; a nested `hooks` table would replace
    // the session's hooks altogether (observed on 0.169.0).
    (!state.is_empty()).then(|| json!({ "hooks.state": state }))
}

/// Why a driven session would run without its gate hook.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Conn(#[from] ConnError),
    #[error(
        "codex does not list haltwire's PreToolUse hook for this server (were the -c overrides dropped?)"
    )]
    NotListed,
    #[error("codex reports haltwire's PreToolUse hook for thread {thread} as {status}; tool calls would not be checked")]
    NotRunning { thread: String, status: String },
}

/// The thread config that trusts the gate hook the server was started with
/// ([`session_flag_overrides`]), from what `hooks/list` reports for `cwd`.
pub fn gate_thread_config(conn: &Connection, cwd: &str) -> Result<Value, GateError> {
    let listing = list_for_cwd(conn, cwd)?;
    thread_trust_config(&listing).ok_or(GateError::NotListed)
}

/// Checks with `hooks/list` that Codex will run the gate hook in `thread_id`.
pub fn check_gate(conn: &Connection, thread_id: &str) -> Result<(), GateError> {
    let listing = list_for_thread(conn, thread_id)?;
    match listing.for_event(EventName::PreToolUse) {
        Some(h) if h.will_run() => Ok(()),
        Some(h) => Err(GateError::NotRunning { thread: thread_id.into(), status: h.trust_status.clone() }),
        None => Err(GateError::NotRunning { thread: thread_id.into(), status: "missing".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(command: &str, event: &str, source: &str, trust: &str) -> ListedHook {
        ListedHook {
            key: format!("/<session-flags>/config.toml:{event}:0:0"),
            event_name: event.into(),
            command: Some(command.into()),
            matcher: Some("*".into()),
            source: source.into(),
            source_path: "/<session-flags>/config.toml".into(),
            enabled: true,
            current_hash: "sha256:ab".into(),
            trust_status: trust.into(),
        }
    }

    #[test]
    fn the_listing_shape_of_0_169_parses() {
        let reply = json!({"data": [{"cwd": "/w", "hooks": [{"key": "/h/hooks.json:pre_tool_use:0:0",
            "eventName": "preToolUse", "handlerType": "command", "command": "/x/haltwire hook codex",
            "async": false, "matcher": "*", "timeoutSec": 10, "statusMessage": null, "sourcePath": "/h/hooks.json",
            "source": "user", "displayOrder": 0, "enabled": true, "isManaged": false,
            "currentHash": "sha256:ce", "trustStatus": "untrusted"}], "warnings": [], "errors": []}]});
        let listing = serde_json::from_value::<ListResult>(reply).unwrap().data.remove(0);
        let pre = listing.for_event(EventName::PreToolUse).unwrap();
        assert_eq!(pre.current_hash, "sha256:ce");
        assert!(!pre.will_run());
        assert!(listing.for_event(EventName::SessionStart).is_none());
    }

    #[test]
    fn only_haltwire_session_flag_hooks_are_trusted_per_thread() {
        let listing = HookListing {
            hooks: vec![
                listed("/x/haltwire hook codex --fail-closed", "preToolUse", "sessionFlags", "untrusted"),
                listed("rm -rf /", "preToolUse", "sessionFlags", "untrusted"),
                listed("/x/haltwire hook codex", "preToolUse", "user", "untrusted"),
            ],
            ..HookListing::default()
        };
        let config = thread_trust_config(&listing).unwrap();
        let state = config["hooks.state"].as_object().unwrap();
        assert_eq!(state.len(), 1, "{config}");
        assert_eq!(state["/<session-flags>/config.toml:preToolUse:0:0"]["trusted_hash"], "sha256:ab");
        assert!(thread_trust_config(&HookListing::default()).is_none());
    }

    #[test]
    fn the_override_is_toml_with_the_command_escaped() {
        let flags = session_flag_overrides(r#"'/a "b"/haltwire' hook codex"#);
        let (key, value) = flags[0].split_once('=').unwrap();
        assert_eq!(key, "hooks.PreToolUse");
        let parsed: toml::Value = toml::from_str(&format!("v = {value}")).unwrap();
        let hook = &parsed["v"][0]["hooks"][0];
        assert_eq!(hook["command"].as_str(), Some(r#"'/a "b"/haltwire' hook codex"#));
        assert_eq!(parsed["v"][0]["matcher"].as_str(), Some("*"));
        assert_eq!(toml_key("/h/hooks.json:pre_tool_use:0:0"), "\"/h/hooks.json:pre_tool_use:0:0\"");
    }
}
