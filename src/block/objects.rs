//! The objects a tool call or an event touches, in the one comparable form blocks and the gate
//! share: normalized commands, executables and their families, files read and written,
//! hosts and URLs.
//!
//! Shell commands go through the shell parser (wrappers peeled, quotes removed, paths resolved
//! against the session's cwd); file tools contribute their paths as writes (or reads); fetch
//! tools their URL and host. This module only extracts and compares; deciding what a scope
//! means is the gate's job.

use crate::event::SecurityEvent;
use crate::sessions::model::CommandRecord;
use crate::sessions::shell;
use serde::{Deserialize, Serialize};

/// What a call or an event touches. Every list is de-duplicated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Objects {
    /// Each simple command's words after unwrapping, joined by one space.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Executable basenames (`curl`), and for tool calls the tool name (`edit`, `write`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub executables: Vec<String>,
    /// Families of those executables (`fetch` for curl and wget, `sh` for shells, `python`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub families: Vec<String>,
    /// Files named (read or written), absolute where the cwd allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Files created, changed or removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Downloaded content is run by an interpreter (`curl … | sh` and its variants).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub runs_fetched_code: bool,
}

/// Tools that only read: they never count as a retry of a blocked write.
const READ_ONLY_TOOLS: &[&str] = &[
    "read",
    "grep",
    "glob",
    "ls",
    "websearch",
    "todowrite",
    "todoread",
    "notebookread",
    "task",
    "view_image",
];

/// Tools whose input names a file they write.
const FILE_WRITE_TOOLS: &[&str] =
    &["edit", "write", "multiedit", "notebookedit", "apply_patch", "str_replace_based_edit_tool"];

impl Objects {
    /// Objects of a shell command line (ledger text or an EDR's command line).
    pub fn of_command(command: &str, cwd: Option<&str>) -> Objects {
        let facts = shell::facts(command, cwd);
        let mut o = Objects {
            commands: facts.argv_lists.iter().filter(|a| !a.is_empty()).map(|a| a.join(" ")).collect(),
            executables: facts.executables.clone(),
            paths: facts.paths.clone(),
            writes: facts.writes.clone(),
            hosts: facts.hosts.clone(),
            urls: facts.urls.clone(),
            runs_fetched_code: facts.runs_fetched_code(),
            ..Objects::default()
        };
        o.families = o.executables.iter().filter_map(|e| shell::family(e)).map(str::to_string).collect();
        o.dedup();
        o
    }

    /// Objects of a tool call as the agent made it.
    pub fn of_call(call: &CommandRecord, cwd: &str) -> Objects {
        let tool = call.tool.to_ascii_lowercase();
        let mut o = match call.shell_command() {
            Some(command) => Objects::of_command(command, Some(cwd)),
            None => Objects { executables: vec![tool.clone()], ..Objects::default() },
        };
        let files: Vec<String> =
            call.file_paths().iter().map(|p| shell::resolve_path(p, Some(cwd))).collect();
        if FILE_WRITE_TOOLS.contains(&tool.as_str()) {
            o.writes.extend(files.iter().cloned());
        }
        o.paths.extend(files);
        if let Some(url) = call.url() {
            o.urls.push(url.to_string());
            if let Some(host) = url_host(url) {
                o.hosts.push(host);
            }
        }
        o.dedup();
        o
    }

    /// Objects of a security event: its process's command line and executable, its target.
    pub fn of_event(event: &SecurityEvent, cwd: Option<&str>) -> Objects {
        let process = event.body.process.as_ref();
        let event_cwd = process.and_then(|p| p.cwd.as_deref()).or(cwd);
        let mut o = process
            .and_then(|p| p.cmd_line.as_deref())
            .map(|c| Objects::of_command(c, event_cwd))
            .unwrap_or_default();
        if let Some(exe) = process.and_then(|p| p.exe.as_deref()) {
            let base = exe.rsplit(['/', '\\']).next().unwrap_or(exe).to_string();
            if let Some(f) = shell::family(&base) {
                o.families.push(f.to_string());
            }
            o.executables.push(base);
        }
        if let Some(target) = &event.body.target {
            if let Some(file) = &target.file {
                o.paths.push(shell::resolve_path(file, event_cwd));
            }
            if let Some(host) = &target.host {
                o.hosts.push(host.to_ascii_lowercase());
            }
            if let Some(url) = &target.url {
                o.urls.push(url.clone());
                o.hosts.extend(url_host(url));
            }
        }
        o.dedup();
        o
    }

    /// Adds everything `other` touches.
    pub fn merge(&mut self, other: Objects) {
        self.commands.extend(other.commands);
        self.executables.extend(other.executables);
        self.families.extend(other.families);
        self.paths.extend(other.paths);
        self.writes.extend(other.writes);
        self.hosts.extend(other.hosts);
        self.urls.extend(other.urls);
        self.runs_fetched_code |= other.runs_fetched_code;
        self.dedup();
    }

    /// Whether a call with these objects changes anything (writes, runs programs, fetches).
    pub fn is_mutating(&self, tool: &str) -> bool {
        !READ_ONLY_TOOLS.contains(&tool.to_ascii_lowercase().as_str())
    }

    fn dedup(&mut self) {
        for list in [
            &mut self.commands,
            &mut self.executables,
            &mut self.families,
            &mut self.paths,
            &mut self.writes,
            &mut self.hosts,
            &mut self.urls,
        ] {
            let mut seen = std::collections::HashSet::new();
            list.retain(|x| !x.is_empty() && seen.insert(x.clone()));
        }
    }
}

/// The host of an `http(s)`/`ftp` URL, lower-cased, without user info or port.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}
