//! A short-lived memo of `/proc` ancestry chains, so that a burst of events from one process
//! tree does not read every ancestor's `/proc/<pid>/stat` again for each event.
//!
//! The correlator walks the event process's ancestry to init for every local event: one
//! `/proc` read per level, seven or more under a container, a terminal or a login shell, and
//! at a thousand events a second that walk was the largest single cost of correlation. The
//! levels above the event's own process rarely change, so a chain is remembered under the
//! (pid, start time) of the process it starts above, and reused only when
//! - that process was just read afresh from `/proc` (same pid *and* start time, so a reused
//!   pid never inherits another process's chain), and
//! - it still names the same parent (a reparented process gets a fresh walk), and
//! - the chain is younger than [`MEMO_TTL`].
//!
//! What can be stale within that time is a change *above* the first remembered parent (a
//! grandparent exiting and its child being reparented), which moves no agent process into or
//! out of the chain of a process that is still running under it.
//!
//! Deliberately not here: reading `/proc` itself ([`Procfs`]) and deciding anything from a
//! chain (the correlator scores it). The event's own process is always read afresh.

use crate::sessions::procfs::{ProcStat, Procfs};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a remembered chain may be reused by default.
pub const MEMO_TTL: Duration = Duration::from_secs(1);
/// Most chains remembered; beyond it the stale ones are forgotten, and all if that is not
/// enough (a fork bomb must not grow the broker's memory).
const MAX_CHAINS: usize = 4096;

/// Remembered ancestry chains, keyed by the process they start above.
#[derive(Debug)]
pub struct AncestryMemo {
    /// (pid, start time) → its ancestors, nearest first, and when they were read.
    chains: Mutex<HashMap<(u32, u64), Remembered>>,
    /// How long a chain may be reused: [`MEMO_TTL`] but in tests.
    ttl: Duration,
}

impl Default for AncestryMemo {
    fn default() -> Self {
        AncestryMemo::with_ttl(MEMO_TTL)
    }
}

#[derive(Debug)]
struct Remembered {
    /// When the chain was read from `/proc`; reused only within [`MEMO_TTL`] of it.
    read_at: Instant,
    /// The ancestors, nearest first (so `chain[0]` is the parent the key process named).
    chain: Arc<[ProcStat]>,
}

impl AncestryMemo {
    pub fn with_ttl(ttl: Duration) -> AncestryMemo {
        AncestryMemo { chains: Mutex::default(), ttl }
    }

    /// The live process `pid`, read afresh, and its ancestors nearest first, partly from the
    /// memo; `None` when `pid` is not running.
    pub fn lineage(&self, procfs: &Procfs, pid: u32) -> Option<(ProcStat, Vec<ProcStat>)> {
        let me = procfs.stat(pid)?;
        let now = Instant::now();
        // The chain is as old as its oldest part: the remembered rest, if one was used.
        let mut read_at = now;
        let mut recalled_at = None;
        let chain = procfs.ancestors_of(&me, |level| {
            let (rest, at) = self.recall(level, now)?;
            read_at = at;
            recalled_at = Some(key(level));
            Some(rest)
        });
        self.remember(&me, &chain, recalled_at, read_at, now);
        Some((me, chain))
    }

    /// The remembered ancestors of `level` and when they were read, if still fresh and `level`
    /// names the same parent.
    fn recall(&self, level: &ProcStat, now: Instant) -> Option<(Vec<ProcStat>, Instant)> {
        let chains = self.chains.lock().unwrap_or_else(PoisonError::into_inner);
        let remembered = chains.get(&key(level))?;
        let fresh = now.saturating_duration_since(remembered.read_at) < self.ttl;
        let same_parent = remembered.chain.first().is_some_and(|parent| parent.pid == level.ppid);
        (fresh && same_parent).then(|| (remembered.chain.to_vec(), remembered.read_at))
    }

    /// Remembers the chain above `me` and above each of its ancestors up to the level whose
    /// chain was recalled (that one and those above it are remembered already), all as read at
    /// `read_at`, so reusing a chain never extends its life.
    fn remember(
        &self,
        me: &ProcStat,
        chain: &[ProcStat],
        recalled_at: Option<(u32, u64)>,
        read_at: Instant,
        now: Instant,
    ) {
        let mut chains = self.chains.lock().unwrap_or_else(PoisonError::into_inner);
        if chains.len() + chain.len() > MAX_CHAINS {
            chains.retain(|_, r| now.saturating_duration_since(r.read_at) < self.ttl);
            if chains.len() + chain.len() > MAX_CHAINS {
                chains.clear();
            }
        }
        let levels = std::iter::once(me).chain(chain.iter());
        for (depth, level) in levels.enumerate() {
            let above = &chain[depth..];
            if above.is_empty() || recalled_at == Some(key(level)) {
                break;
            }
            chains.insert(key(level), Remembered { read_at, chain: above.into() });
        }
    }
}

/// A process for good: its pid and its start time.
fn key(process: &ProcStat) -> (u32, u64) {
    (process.pid, process.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Writes `/proc/<pid>/stat` for a fixture process.
    fn process(root: &Path, pid: u32, ppid: u32, start_time: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat =
            format!("{pid} (p{pid}) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start_time} 1000 100");
        std::fs::write(dir.join("stat"), stat).unwrap();
    }

    fn gone(root: &Path, pid: u32) {
        std::fs::remove_dir_all(root.join(pid.to_string())).unwrap();
    }

    fn pids(chain: &[ProcStat]) -> Vec<u32> {
        chain.iter().map(|s| s.pid).collect()
    }

    /// init (1) ← shell (10) ← agent (20) ← tool (30)
    fn tree() -> (tempfile::TempDir, Procfs) {
        let dir = tempfile::tempdir().unwrap();
        process(dir.path(), 1, 0, 1);
        process(dir.path(), 10, 1, 100);
        process(dir.path(), 20, 10, 200);
        process(dir.path(), 30, 20, 300);
        let procfs = Procfs::at(dir.path());
        (dir, procfs)
    }

    #[test]
    fn a_fresh_chain_is_reused_without_reading_the_levels_above_again() {
        let (dir, procfs) = tree();
        let memo = AncestryMemo::default();
        let (me, chain) = memo.lineage(&procfs, 30).unwrap();
        assert_eq!((me.pid, pids(&chain)), (30, vec![20, 10, 1]));
        // The shell's stat disappears; a second walk from a sibling of the tool still knows it.
        gone(dir.path(), 10);
        process(dir.path(), 31, 20, 310);
        let (_, chain) = memo.lineage(&procfs, 31).unwrap();
        assert_eq!(pids(&chain), [20, 10, 1], "the agent's chain came from the memo");
        // Without the memo the walk stops where /proc does.
        assert_eq!(pids(&procfs.ancestors(31)), [20]);
    }

    #[test]
    fn a_walk_that_ends_in_a_recalled_chain_remembers_the_levels_it_read() {
        let (dir, procfs) = tree();
        let memo = AncestryMemo::default();
        memo.lineage(&procfs, 30).unwrap();
        process(dir.path(), 31, 20, 310);
        process(dir.path(), 32, 31, 320);
        memo.lineage(&procfs, 32).unwrap();
        // The sibling's own level was read and is remembered; the agent's is not read again.
        gone(dir.path(), 20);
        let (_, chain) = memo.lineage(&procfs, 32).unwrap();
        assert_eq!(pids(&chain), [31, 20, 10, 1]);
    }

    #[test]
    fn the_process_itself_is_always_read_afresh() {
        let (dir, procfs) = tree();
        let memo = AncestryMemo::default();
        memo.lineage(&procfs, 30).unwrap();
        gone(dir.path(), 30);
        assert!(memo.lineage(&procfs, 30).is_none(), "an exited process has no lineage");
    }

    #[test]
    fn a_reparented_process_is_walked_again() {
        let (dir, procfs) = tree();
        let memo = AncestryMemo::default();
        memo.lineage(&procfs, 30).unwrap();
        // The agent exits; its child is reparented to init.
        gone(dir.path(), 20);
        process(dir.path(), 30, 1, 300);
        let (_, chain) = memo.lineage(&procfs, 30).unwrap();
        assert_eq!(pids(&chain), [1]);
    }

    #[test]
    fn a_reused_pid_does_not_inherit_the_old_process_chain() {
        let (dir, procfs) = tree();
        let memo = AncestryMemo::default();
        memo.lineage(&procfs, 30).unwrap();
        // Pid 20 is reused by a process started later under init; same parent pid as before
        // would not matter: its start time differs.
        process(dir.path(), 20, 1, 999);
        process(dir.path(), 30, 20, 1000);
        gone(dir.path(), 10);
        let (_, chain) = memo.lineage(&procfs, 30).unwrap();
        assert_eq!(pids(&chain), [20, 1]);
    }

    #[test]
    fn an_expired_chain_is_read_again() {
        let (dir, procfs) = tree();
        let memo = AncestryMemo::with_ttl(Duration::ZERO);
        memo.lineage(&procfs, 30).unwrap();
        gone(dir.path(), 10);
        let (_, chain) = memo.lineage(&procfs, 30).unwrap();
        assert_eq!(pids(&chain), [20], "nothing was reused");
    }

    #[test]
    fn the_memo_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        process(dir.path(), 1, 0, 1);
        let procfs = Procfs::at(dir.path());
        let memo = AncestryMemo::default();
        for pid in 2..(MAX_CHAINS as u32 + 100) {
            process(dir.path(), pid, 1, u64::from(pid));
            memo.lineage(&procfs, pid).unwrap();
        }
        let held = memo.chains.lock().unwrap().len();
        assert!(held <= MAX_CHAINS, "{held} chains held");
    }
}
