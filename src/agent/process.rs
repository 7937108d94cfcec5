//! Finding the agent's own process from inside a hook: the hook is a grandchild of the agent
//! (agent → `sh -c` → hook), so its parent chain in `/proc` leads to it.
//!
//! The broker registers the session with that pid and correlates security events by process
//! ancestry, so the pid must be the long-lived agent process, not the short-lived shell that
//! ran the hook. This module only reads `/proc`; it knows agents by the names the caller gives.

use std::path::Path;

/// How far up the parent chain we look before giving up (guards against cycles in a
/// malformed `/proc`).
const MAX_DEPTH: usize = 64;

/// One `/proc/<pid>/stat` line, the parts we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The command name (`comm`, at most 15 bytes).
    pub comm: String,
    /// The parent pid.
    pub ppid: u32,
}

/// Reads `/proc/<pid>/stat` under `proc_root`.
pub fn stat(proc_root: &Path, pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text)
}

/// Parses a stat line: `pid (comm) state ppid …`. The comm may hold spaces and parentheses, so
/// it runs from the first `(` to the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text.get(open + 1..close)?.to_string();
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let _state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some(ProcStat { comm, ppid })
}

/// The basename of `/proc/<pid>/exe`, when readable.
fn exe_name(proc_root: &Path, pid: u32) -> Option<String> {
    let target = std::fs::read_link(proc_root.join(pid.to_string()).join("exe")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

/// Whether a process name is one of `names`, also as `<name>.exe` (Claude Code's native binary
/// is `claude.exe` behind a `claude` symlink).
fn name_matches(name: &str, names: &[&str]) -> bool {
    let name = name.strip_suffix(".exe").unwrap_or(name);
    names.contains(&name)
}

/// The ancestors of `start` (its parent first), up to pid 1.
pub fn ancestors(proc_root: &Path, start: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pid = start;
    while out.len() < MAX_DEPTH {
        let Some(s) = stat(proc_root, pid) else { break };
        if s.ppid == 0 || out.contains(&s.ppid) {
            break;
        }
        out.push(s.ppid);
        if s.ppid == 1 {
            break;
        }
        pid = s.ppid;
    }
    out
}

/// The agent process above `start`: the pid in `hint` (the agent's own environment variable,
/// e.g. `CLAUDE_PID`) when it is really one of our ancestors, else the nearest ancestor named
/// one of `names`, else `None`.
pub fn find_agent(proc_root: &Path, start: u32, names: &[&str], hint: Option<u32>) -> Option<u32> {
    let chain = ancestors(proc_root, start);
    if let Some(h) = hint.filter(|h| chain.contains(h)) {
        return Some(h);
    }
    chain.into_iter().find(|&pid| {
        stat(proc_root, pid).is_some_and(|s| name_matches(&s.comm, names))
            || exe_name(proc_root, pid).is_some_and(|e| name_matches(&e, names))
    })
}

/// [`find_agent`] for this process on the real `/proc`, falling back to our parent.
pub fn agent_pid(names: &[&str], hint_env: &str) -> u32 {
    let hint = std::env::var(hint_env).ok().and_then(|v| v.trim().parse().ok());
    let me = std::process::id();
    find_agent(Path::new("/proc"), me, names, hint).unwrap_or_else(|| {
        // SAFETY: getppid has no preconditions and cannot fail.
        unsafe { libc::getppid() as u32 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(entries: &[(u32, &str, u32)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, comm, ppid) in entries {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("stat"), format!("{pid} ({comm}) S {ppid} 1 1 0 -1\n")).unwrap();
        }
        dir
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        assert_eq!(parse_stat("12 (a) b)) S 7 1"), Some(ProcStat { comm: "a) b)".into(), ppid: 7 }));
        assert_eq!(parse_stat("12 (claude) R 1 0"), Some(ProcStat { comm: "claude".into(), ppid: 1 }));
        for bad in ["", "12", "12 (x", "12 x) (", "12 (x) S", "12 (x) S notanumber"] {
            assert_eq!(parse_stat(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_nearest_named_ancestor_is_the_agent() {
        let proc =
            fake_proc(&[(50, "haltwire", 40), (40, "sh", 30), (30, "claude.exe", 20), (20, "bash", 1)]);
        assert_eq!(find_agent(proc.path(), 50, &["claude"], None), Some(30));
        assert_eq!(find_agent(proc.path(), 50, &["codex"], None), None);
    }

    #[test]
    fn a_hint_counts_only_when_it_is_an_ancestor() {
        let proc = fake_proc(&[
            (50, "haltwire", 40),
            (40, "sh", 30),
            (30, "node", 20),
            (20, "bash", 1),
            (99, "claude", 1),
        ]);
        assert_eq!(find_agent(proc.path(), 50, &["claude"], Some(30)), Some(30));
        // A hint pointing at an unrelated process is ignored; no ancestor is named claude.
        assert_eq!(find_agent(proc.path(), 50, &["claude"], Some(99)), None);
    }

    #[test]
    fn cycles_end_the_walk() {
        let proc = fake_proc(&[(50, "a", 40), (40, "b", 50)]);
        assert_eq!(ancestors(proc.path(), 50), vec![40, 50]);
        assert_eq!(find_agent(proc.path(), 50, &["claude"], None), None);
    }
}
