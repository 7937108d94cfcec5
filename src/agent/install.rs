//! Merging haltwire's hook entries into an agent's settings without disturbing the user's.
//!
//! Claude Code (`settings.json`) and Codex (`hooks.json`) read hooks in the same shape:
//! `hooks.<Event>: [{matcher?, hooks: [{type, command, timeout?}]}]`. The merge adds one entry
//! per event haltwire handles, or updates the command of an entry it added before (recognized
//! by the command: a `haltwire` program run as `hook <agent>`), and leaves every other key,
//! event and hook as it was. Running it twice changes nothing the second time. Anything that
//! is not the expected shape is an error: the user's file is never overwritten with a guess.
//!
//! It does no I/O; `haltwire install` reads and writes the file.

use super::hook::{claude, codex};
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InstallError {
    #[error("the settings file is not a JSON object")]
    NotObject,
    #[error("`{0}` in the settings file is not {1}; fix it by hand, haltwire will not overwrite it")]
    Shape(String, &'static str),
}

/// The words of a hook command as the shell that runs it splits them (haltwire writes each
/// word with [`shell_quote`], so paths may hold spaces and quotes); `None` when it is empty or
/// does not split cleanly (an unterminated quote).
pub fn hook_words(command: &str) -> Option<Vec<String>> {
    let words = crate::sessions::shell::split_words(command);
    if words.unbalanced || words.truncated {
        return None;
    }
    let texts: Vec<String> = words.texts().into_iter().map(String::from).collect();
    (!texts.is_empty()).then_some(texts)
}

/// Whether a hook command is one haltwire installed for `agent` (`claude`, `codex`).
pub fn is_ours(command: &str, agent: &str) -> bool {
    let Some(words) = hook_words(command) else { return false };
    let name = words[0].rsplit('/').next().unwrap_or(&words[0]);
    name == "haltwire"
        && words.get(1).is_some_and(|w| w == "hook")
        && words.get(2).is_some_and(|w| w == agent)
}

/// One hook entry haltwire wants in an agent's settings.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The event, as the agent spells it.
    pub event: &'a str,
    /// The entry's matcher (tool events only).
    pub matcher: Option<&'a str>,
    /// The handler's `timeout` in seconds, when the agent should be told one.
    pub timeout: Option<u64>,
}

/// Merges the Claude Code hook entries running `command` into `settings`. Returns whether
/// anything changed.
pub fn merge_claude_hooks(settings: &mut Value, command: &str) -> Result<bool, InstallError> {
    let wanted: Vec<Wanted> = claude::EventName::ALL
        .iter()
        .map(|e| Wanted { event: e.as_str(), matcher: e.is_tool_event().then_some("*"), timeout: None })
        .collect();
    merge_hooks(settings, "claude", &wanted, command)
}

/// Merges the Codex hook entries (`hooks.json`) running `command` into `settings`. Tool events
/// match every tool (`*`): a retry through another tool must meet the gate too.
pub fn merge_codex_hooks(settings: &mut Value, command: &str) -> Result<bool, InstallError> {
    let wanted: Vec<Wanted> = codex::EventName::ALL
        .iter()
        .map(|e| Wanted {
            event: e.as_str(),
            matcher: e.is_tool_event().then_some("*"),
            timeout: Some(e.timeout_secs()),
        })
        .collect();
    merge_hooks(settings, "codex", &wanted, command)
}

/// Merges one entry per `wanted` event running `command`, for `agent`'s hook commands.
pub fn merge_hooks(
    settings: &mut Value,
    agent: &str,
    wanted: &[Wanted],
    command: &str,
) -> Result<bool, InstallError> {
    let root = settings.as_object_mut().ok_or(InstallError::NotObject)?;
    let hooks = root.entry("hooks").or_insert_with(|| Value::Object(Map::new()));
    let hooks = hooks.as_object_mut().ok_or_else(|| InstallError::Shape("hooks".into(), "an object"))?;
    let mut changed = false;
    for want in wanted {
        let name = want.event;
        let groups = hooks.entry(name).or_insert_with(|| Value::Array(Vec::new()));
        let groups =
            groups.as_array_mut().ok_or_else(|| InstallError::Shape(format!("hooks.{name}"), "an array"))?;
        let mut found = false;
        for group in groups.iter_mut() {
            let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else { continue };
            for hook in list.iter_mut() {
                let Some(existing) = hook.get("command").and_then(Value::as_str) else { continue };
                if !is_ours(existing, agent) {
                    continue;
                }
                found = true;
                if existing != command {
                    hook["command"] = json!(command);
                    changed = true;
                }
                if let Some(t) = want.timeout.filter(|t| hook.get("timeout") != Some(&json!(t))) {
                    hook["timeout"] = json!(t);
                    changed = true;
                }
            }
        }
        if !found {
            let mut entry = json!({"type": "command", "command": command});
            if let Some(t) = want.timeout {
                entry["timeout"] = json!(t);
            }
            groups.push(match want.matcher {
                Some(m) => json!({"matcher": m, "hooks": [entry]}),
                None => json!({"hooks": [entry]}),
            });
            changed = true;
        }
    }
    Ok(changed)
}

/// Quotes a path for a POSIX shell command line when it needs it.
pub fn shell_quote(word: &str) -> String {
    let plain =
        !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%=,".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMD: &str = "/usr/local/bin/haltwire hook claude";

    use claude::EventName;

    #[test]
    fn an_empty_file_gets_every_event() {
        let mut s = json!({});
        assert!(merge_claude_hooks(&mut s, CMD).unwrap());
        for event in EventName::ALL {
            let groups = s["hooks"][event.as_str()].as_array().unwrap();
            assert_eq!(groups.len(), 1);
            assert_eq!(groups[0]["hooks"][0], json!({"type": "command", "command": CMD}));
            assert_eq!(groups[0].get("matcher").is_some(), event.is_tool_event());
        }
    }

    #[test]
    fn the_users_hooks_and_keys_survive_and_a_second_run_changes_nothing() {
        let mut s = json!({
            "model": "x", "permissions": {"allow": ["Bash(ls:*)"]},
            "hooks": {
                "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "my-linter"}]}],
                "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}]
            }
        });
        let before = s.clone();
        assert!(merge_claude_hooks(&mut s, CMD).unwrap());
        assert_eq!(s["model"], "x");
        assert_eq!(s["permissions"], before["permissions"]);
        assert_eq!(s["hooks"]["Stop"], before["hooks"]["Stop"]);
        let pre = s["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 2);
        assert_eq!(pre[0], before["hooks"]["PreToolUse"][0]);
        let once = s.clone();
        assert!(!merge_claude_hooks(&mut s, CMD).unwrap());
        assert_eq!(s, once);
    }

    #[test]
    fn a_moved_binary_updates_the_entry_in_place() {
        let mut s = json!({});
        merge_claude_hooks(&mut s, "'/old path/haltwire' hook claude").unwrap();
        assert!(merge_claude_hooks(&mut s, CMD).unwrap());
        let pre = s["hooks"]["PreToolUse"].as_array().unwrap();
        assert_eq!(pre.len(), 1);
        assert_eq!(pre[0]["hooks"][0]["command"], CMD);
    }

    #[test]
    fn unexpected_shapes_are_refused_not_overwritten() {
        assert_eq!(merge_claude_hooks(&mut json!([]), CMD), Err(InstallError::NotObject));
        assert!(matches!(merge_claude_hooks(&mut json!({"hooks": []}), CMD), Err(InstallError::Shape(_, _))));
        let mut s = json!({"hooks": {"PreToolUse": {"matcher": "*"}}});
        assert!(matches!(merge_claude_hooks(&mut s, CMD), Err(InstallError::Shape(_, _))));
    }

    #[test]
    fn other_programs_named_like_us_are_not_ours() {
        assert!(is_ours("/x/haltwire hook claude --fail-closed", "claude"));
        assert!(is_ours("'/a b/haltwire' hook claude", "claude"));
        assert!(is_ours(&format!("{} hook codex", shell_quote("/it's here/haltwire")), "codex"));
        assert!(!is_ours("'/a b/haltwire hook claude", "claude"));
        assert!(!is_ours("haltwire hook codex", "claude"));
        assert!(!is_ours("python3 haltwire.py hook claude", "claude"));
        assert!(!is_ours("", "claude"));
    }

    #[test]
    fn codex_entries_carry_timeouts_and_merge_idempotently_next_to_claude_ones() {
        let codex_cmd = "/usr/local/bin/haltwire hook codex";
        let mut s = json!({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "say done"}]}]}});
        assert!(merge_codex_hooks(&mut s, codex_cmd).unwrap());
        for event in codex::EventName::ALL {
            let groups = s["hooks"][event.as_str()].as_array().unwrap();
            assert_eq!(groups.len(), 1, "{event:?}");
            let hook = &groups[0]["hooks"][0];
            assert_eq!(hook["command"], codex_cmd);
            assert_eq!(hook["timeout"], event.timeout_secs());
            assert_eq!(groups[0].get("matcher").is_some(), event.is_tool_event());
        }
        assert_eq!(s["hooks"]["Stop"][0]["hooks"][0]["command"], "say done");
        let once = s.clone();
        assert!(!merge_codex_hooks(&mut s, codex_cmd).unwrap());
        assert_eq!(s, once);
        // A Claude hook in the same file is not mistaken for ours.
        assert!(merge_claude_hooks(&mut s, CMD).unwrap());
        assert_eq!(s["hooks"]["PreToolUse"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn hook_words_read_back_what_shell_quote_wrote() {
        let paths = ["/usr/bin/haltwire", "/opt/my tools/haltwire", "/home/o'neil/data dir", "/a\tb/$x"];
        let command = paths.iter().map(|p| shell_quote(p)).collect::<Vec<_>>().join(" ");
        assert_eq!(hook_words(&command).unwrap(), paths);
        assert_eq!(hook_words("'/open quote/haltwire hook codex"), None);
        assert_eq!(hook_words("  "), None);
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("/usr/bin/haltwire"), "/usr/bin/haltwire");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
