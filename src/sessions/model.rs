//! The records of the session registry and command ledger, as stored and as shown by the API.
//! Plain data: no I/O, no validation beyond what serde does.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Which agent a session belongs to; decides how its commands are wrapped and delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    ClaudeCode,
    Codex,
    Generic,
}

/// Where directives for a session go (used by the delivery stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    Hook,
    AppServer,
    Inbox,
    Sse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Active,
    Ended,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The agent said so (`SessionEnd`, `POST …/end`).
    Explicit,
    /// The agent process (pid + start time) is gone.
    ProcessExited,
    /// Nothing was heard from it for the idle timeout.
    Idle,
}

/// One registered agent session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    /// haltwire's id (UUIDv7); directives are addressed to it.
    pub session_id: Uuid,
    pub agent: AgentKind,
    /// The agent's own id (Claude Code `session_id`, Codex thread id).
    pub agent_session_id: String,
    /// The agent's process; processes below it belong to the session.
    pub pid: u32,
    /// `/proc/<pid>/stat` field 22 (clock ticks after boot), so a reused pid is not mistaken
    /// for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_time: Option<u64>,
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub cwd: String,
    pub channels: Vec<Channel>,
    pub status: SessionStatus,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: OffsetDateTime,
    /// Last registration, command or outcome; drives idle expiry.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<EndReason>,
}

impl Session {
    /// Whether the session was alive at `t` (registered before it, not ended before it), with
    /// a few seconds of slack: the first command can race the SessionStart hook, and an event
    /// can describe a command that ran just before the agent exited.
    pub fn alive_at(&self, t: OffsetDateTime) -> bool {
        let slack = time::Duration::seconds(5);
        t >= self.registered_at - slack && self.ended_at.is_none_or(|end| t <= end + slack)
    }
}

/// One tool call in a session's ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandRecord {
    pub session_id: Uuid,
    /// The agent's own tool-call id (Claude `tool_use_id`, Codex call/item id).
    pub call_id: String,
    /// The agent's tool name: `Bash`, `Edit`, `Write`, `apply_patch`, `WebFetch`, …
    pub tool: String,
    /// The tool's raw input object (`{"command"}`, `{"file_path"}`, `{"url"}`, …).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// When the agent issued the call (the broker's receive time if not given).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub time: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

impl CommandRecord {
    /// The shell command of a shell tool call, if this is one.
    pub fn shell_command(&self) -> Option<&str> {
        ["command", "cmd"].iter().find_map(|k| self.input.get(*k)).and_then(|v| v.as_str())
    }

    /// File paths named by the call (`file_path`, `path`, `notebook_path`; `apply_patch` paths).
    pub fn file_paths(&self) -> Vec<String> {
        let mut out: Vec<String> = ["file_path", "path", "notebook_path"]
            .iter()
            .filter_map(|k| self.input.get(*k).and_then(|v| v.as_str()).map(str::to_string))
            .collect();
        let patch = self.input.get("patch").or_else(|| self.input.get("input")).and_then(|v| v.as_str());
        if let Some(patch) = patch {
            out.extend(apply_patch_paths(patch));
        }
        out
    }

    /// The URL of a fetch-like call.
    pub fn url(&self) -> Option<&str> {
        self.input.get("url").and_then(|v| v.as_str())
    }
}

/// Paths named by a Codex `apply_patch` body (`*** Update File: path`, `*** Add File:`, …).
pub fn apply_patch_paths(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| {
            ["*** Update File: ", "*** Add File: ", "*** Delete File: ", "*** Move to: "]
                .iter()
                .find_map(|p| l.strip_prefix(p))
        })
        .map(|p| p.trim().to_string())
        .collect()
}

/// What happened when the call ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Outcome {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_patch_paths_are_found() {
        let patch =
            "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-x\n+y\n*** Add File: b.txt\n+hi\n*** End Patch";
        assert_eq!(apply_patch_paths(patch), ["src/a.rs", "b.txt"]);
    }
}
