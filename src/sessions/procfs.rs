//! Process facts from Linux `/proc`: parent, start time, command line, and the ancestor chain.
//!
//! Used two ways: to tell whether a registered agent process is still the same process (pid +
//! start time, so a reused pid cannot resurrect a session), and to walk a live process's
//! ancestry when an event arrives. Reading `/proc` races with processes exiting; every
//! function returns `None`/shorter chains rather than failing. The root is a parameter so
//! tests can point it at a fixture tree.

use std::path::{Path, PathBuf};

/// The deepest ancestry walked: real trees are shallow; a loop in corrupt data must end.
const MAX_DEPTH: usize = 64;
/// Room for one `/proc/<pid>/stat` line. Real lines are about 300 bytes (the command name is
/// at most 64); a longer one is read in full all the same.
const STAT_BUFFER: usize = 1024;

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// Field 22: clock ticks after boot. Together with `pid` it names one process for good.
    pub start_time: u64,
}

/// A `/proc` mount (the real one, or a fixture in tests).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs { root: PathBuf::from("/proc") }
    }
}

impl Procfs {
    pub fn at(root: &Path) -> Procfs {
        Procfs { root: root.to_path_buf() }
    }

    /// `stat` of a live process.
    pub fn stat(&self, pid: u32) -> Option<ProcStat> {
        let text = read_small(&self.root.join(pid.to_string()).join("stat"))?;
        parse_stat(&String::from_utf8_lossy(&text))
    }

    /// Whether `pid` is alive and (when given) is the same process that started at `start_time`.
    pub fn is_same_process(&self, pid: u32, start_time: Option<u64>) -> bool {
        match self.stat(pid) {
            Some(stat) => start_time.is_none_or(|t| t == stat.start_time),
            None => false,
        }
    }

    /// The process's ancestors, nearest first (its parent, grandparent, … up to pid 1).
    pub fn ancestors(&self, pid: u32) -> Vec<ProcStat> {
        self.stat(pid).map(|me| self.ancestors_of(&me, |_| None)).unwrap_or_default()
    }

    /// The ancestors of an already read process, nearest first. Before reading a level's parent
    /// the walk asks `known` for the rest of the chain above that level; where it answers, the
    /// walk stops reading `/proc` (the correlator remembers recent chains this way).
    pub fn ancestors_of(
        &self,
        start: &ProcStat,
        mut known: impl FnMut(&ProcStat) -> Option<Vec<ProcStat>>,
    ) -> Vec<ProcStat> {
        let mut chain: Vec<ProcStat> = Vec::new();
        let mut current = start.clone();
        while current.ppid != 0 && current.ppid != current.pid && chain.len() < MAX_DEPTH {
            if let Some(rest) = known(&current) {
                let room = MAX_DEPTH - chain.len();
                chain.extend(rest.into_iter().take(room));
                break;
            }
            let Some(parent) = self.stat(current.ppid) else { break };
            chain.push(parent.clone());
            current = parent;
        }
        chain
    }

    /// The command line of a live process, arguments joined by spaces (as EDRs report it).
    pub fn cmdline(&self, pid: u32) -> Option<String> {
        let raw = std::fs::read(self.root.join(pid.to_string()).join("cmdline")).ok()?;
        let parts: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Every pid currently listed.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Reads a small file with as few system calls as possible: one `read` into a buffer sized for
/// it, where `std::fs::read` would first `statx` (procfs reports size 0) and then grow its
/// buffer from 32 bytes. The correlator walks a process's ancestry once per event, so this is
/// on the event → directive path.
fn read_small(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buffer = vec![0u8; STAT_BUFFER];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            buffer.resize(buffer.len() * 2, 0);
        }
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buffer.truncate(filled);
    Some(buffer)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state), so field N is rest[N - 3].
    let ppid = rest.get(1)?.parse().ok()?;
    let start_time = rest.get(19)?.parse().ok()?;
    Some(ProcStat { pid, ppid, start_time })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name_parses() {
        let line =
            "4242 (my (odd) name) S 4200 4242 4200 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat, ProcStat { pid: 4242, ppid: 4200, start_time: 987654 });
    }

    #[test]
    fn garbage_is_none_not_a_panic() {
        for text in ["", "()", "12 (x", "x (y) S", "1 (a) S notanumber"] {
            assert!(parse_stat(text).is_none(), "{text}");
        }
    }

    #[test]
    fn this_process_is_found_and_its_ancestry_reaches_init() {
        let proc = Procfs::default();
        let me = std::process::id();
        let stat = proc.stat(me).expect("own stat");
        assert!(proc.is_same_process(me, Some(stat.start_time)));
        assert!(
            !proc.is_same_process(me, Some(stat.start_time + 1)),
            "another start time is another process"
        );
        let chain = proc.ancestors(me);
        assert_eq!(chain.first().map(|s| s.pid), Some(stat.ppid));
        assert!(chain.iter().any(|s| s.pid == 1) || chain.len() < MAX_DEPTH);
        assert!(proc.cmdline(me).is_some());
    }

    #[test]
    fn a_fixture_tree_is_walked_nearest_first() {
        let dir = tempfile::tempdir().unwrap();
        for (pid, ppid) in [(30, 20), (20, 10), (10, 1), (1, 0)] {
            let p = dir.path().join(pid.to_string());
            std::fs::create_dir(&p).unwrap();
            std::fs::write(
                p.join("stat"),
                format!("{pid} (p{pid}) S {ppid} 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 0 0", pid * 100),
            )
            .unwrap();
        }
        let proc = Procfs::at(dir.path());
        let pids: Vec<u32> = proc.ancestors(30).iter().map(|s| s.pid).collect();
        assert_eq!(pids, [20, 10, 1]);
        assert!(proc.ancestors(999).is_empty());
    }

    #[test]
    fn a_stat_line_longer_than_the_read_buffer_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("7");
        std::fs::create_dir(&p).unwrap();
        // A name longer than the buffer pushes the fields that matter past its end.
        let name = "n".repeat(STAT_BUFFER * 2);
        std::fs::write(
            p.join("stat"),
            format!("7 ({name}) S 3 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 4321 0 0"),
        )
        .unwrap();
        let stat = Procfs::at(dir.path()).stat(7).expect("parsed");
        assert_eq!(stat, ProcStat { pid: 7, ppid: 3, start_time: 4321 });
    }
}
