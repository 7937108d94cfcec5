//! The process tracker: remembers which live processes descend from which agent session, so
//! that an event about a process that has since been killed can still be attributed.
//!
//! A background task calls [`Tracker::scan`] a few times a second; it walks `/proc` once,
//! follows each process's parent chain, and records `(pid, start time) → session` for every
//! descendant of an active local session's agent process. Entries expire after
//! [`Tracker::TTL`]. A process that lives shorter than one scan interval is missed; the
//! event's own ancestry and the command match still apply to it. Memory is bounded.

use crate::sessions::procfs::Procfs;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most remembered processes; beyond it the oldest are forgotten first.
const MAX_ENTRIES: usize = 50_000;

/// Shared, cheap to clone.
#[derive(Clone, Default)]
pub struct Tracker {
    inner: std::sync::Arc<Mutex<HashMap<u32, Seen>>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    session: Uuid,
    last_seen: Instant,
}

/// An agent process to look under: (session, agent pid).
pub type Root = (Uuid, u32);

impl Tracker {
    /// How long an exited process stays attributable.
    pub const TTL: Duration = Duration::from_secs(600);

    /// Records every current descendant of the given agent processes.
    pub fn scan(&self, procfs: &Procfs, roots: &[Root]) {
        if roots.is_empty() {
            return;
        }
        let by_pid: HashMap<u32, Uuid> = roots.iter().map(|(s, p)| (*p, *s)).collect();
        let parents: HashMap<u32, u32> =
            procfs.pids().into_iter().filter_map(|pid| procfs.stat(pid).map(|s| (pid, s.ppid))).collect();
        let now = Instant::now();
        let mut found = Vec::new();
        for &pid in parents.keys() {
            if let Some(session) = owning_session(pid, &parents, &by_pid) {
                found.push((pid, session));
            }
        }
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (pid, session) in found {
            map.insert(pid, Seen { session, last_seen: now });
        }
        map.retain(|_, seen| now.duration_since(seen.last_seen) < Self::TTL);
        if map.len() > MAX_ENTRIES {
            let mut ages: Vec<(u32, Instant)> = map.iter().map(|(p, s)| (*p, s.last_seen)).collect();
            ages.sort_by_key(|(_, t)| *t);
            for (pid, _) in ages.into_iter().take(map.len() - MAX_ENTRIES) {
                map.remove(&pid);
            }
        }
    }

    /// Whether `pid` was recently seen running under `session`'s agent process.
    pub fn was_under(&self, pid: u32, session: Uuid) -> bool {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&pid).is_some_and(|s| s.session == session && s.last_seen.elapsed() < Self::TTL)
    }
}

/// The session whose agent process is `pid` or one of its ancestors (nearest wins).
fn owning_session(pid: u32, parents: &HashMap<u32, u32>, roots: &HashMap<u32, Uuid>) -> Option<Uuid> {
    let mut current = pid;
    for _ in 0..64 {
        if let Some(session) = roots.get(&current) {
            // The agent process itself is not its own descendant.
            return (current != pid).then_some(*session);
        }
        current = *parents.get(&current)?;
        if current <= 1 {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_of_this_test_process_is_tracked_and_remembered_after_it_exits() {
        let tracker = Tracker::default();
        let session = Uuid::now_v7();
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let child_pid = child.id();
        tracker.scan(&Procfs::default(), &[(session, me)]);
        assert!(tracker.was_under(child_pid, session));
        assert!(!tracker.was_under(child_pid, Uuid::now_v7()), "other sessions do not own it");
        assert!(!tracker.was_under(me, session), "the agent itself is not its own descendant");
        child.kill().unwrap();
        child.wait().unwrap();
        tracker.scan(&Procfs::default(), &[(session, me)]);
        assert!(tracker.was_under(child_pid, session), "remembered after exit");
    }
}
