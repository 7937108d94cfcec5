//! File ingest with the real binary: `[[watch]]` files appended to, completed, rotated and
//! truncated, refused when unsafe, and the acceptance test: a writer appends, rotates and
//! truncates while the broker is SIGKILLed and restarted, and at the end there is exactly one
//! event per line written.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A temp folder with `logs/` (mode 0700), a data dir and a config watching `logs/<pattern>`.
struct Setup {
    /// Keeps the folder alive.
    _root: tempfile::TempDir,
    logs: PathBuf,
    data: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new(pattern: &str) -> Setup {
        Setup::with(pattern, "")
    }

    /// A watch of `logs/<pattern>` with more keys for its `[[watch]]` table.
    fn with(pattern: &str, keys: &str) -> Setup {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config = root.path().join("haltwire.toml");
        std::fs::write(
            &config,
            format!(
                "[[watch]]\nname = \"edr\"\npath = \"{}\"\nrescan_interval_ms = 50\nrotate_wait_ms = 300\n{keys}",
                logs.join(pattern).display()
            ),
        )
        .unwrap();
        Setup { data: root.path().join("data"), _root: root, logs, config }
    }

    fn start(&self) -> Broker {
        BrokerBuilder::new(&self.data).config(&self.config).start()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    fn append(&self, name: &str, text: &str) {
        append(&self.path(name), text.as_bytes());
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

fn line(i: u64) -> String {
    format!("{{\"disposition\":\"blocked\",\"vendor_id\":\"L{i}\",\"process\":{{\"pid\":4242}}}}\n")
}

fn lines(range: std::ops::Range<u64>) -> String {
    range.map(line).collect()
}

/// Markers of all stored events, once at least `want` are there (or the deadline passed).
/// Then waits a little longer so a duplicate arriving late would be seen too.
fn wait_for(broker: &Broker, token: &str, want: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = broker.all_events(token);
        if events.len() >= want || Instant::now() > deadline {
            std::thread::sleep(Duration::from_millis(400));
            return broker.all_events(token);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Asserts exactly one event per marker `L{range}`, and nothing else.
fn assert_exactly(events: &[serde_json::Value], range: std::ops::Range<u64>) {
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for event in events {
        let marker = event["vendor_id"].as_str().expect("vendor_id");
        let n: u64 = marker[1..].parse().unwrap();
        *seen.entry(n).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).map(|(n, _)| *n).collect();
    let missing: Vec<_> = range.clone().filter(|n| !seen.contains_key(n)).collect();
    let extra: Vec<_> = seen.keys().filter(|n| !range.contains(n)).collect();
    assert!(
        twice.is_empty() && missing.is_empty() && extra.is_empty(),
        "stored twice: {twice:?}\nmissing: {missing:?}\nnever written: {extra:?}"
    );
}

#[test]
fn file_created_after_start_appended_lines_and_a_partial_line_completed_later() {
    let setup = Setup::new("events.log");
    let broker = setup.start();
    let token = broker.soc_token();
    setup.append("events.log", &lines(0..3));
    setup.append("events.log", "{\"vendor_id\":\"L3\",");
    let events = wait_for(&broker, &token, 3);
    assert_exactly(&events, 0..3);
    let first = &events[0];
    assert_eq!(first["source"], "watch:edr");
    assert_eq!(first["trust"], "local");
    assert_eq!(first["integration"], "generic");
    assert_eq!(first["disposition"], "blocked");

    setup.append("events.log", "\"disposition\":\"denied\"}\n");
    setup.append("events.log", &lines(4..6));
    assert_exactly(&wait_for(&broker, &token, 6), 0..6);
    let metrics = broker.get("/metrics", None).body;
    assert!(metrics.contains("haltwire_file_lines_total{watch=\"edr\",outcome=\"stored\"} 6"), "{metrics}");
}

#[test]
fn rename_rotation_and_copytruncate_mid_stream() {
    let setup = Setup::new("events.log");
    setup.append("events.log", &lines(0..20)); // before start: read from the beginning
    let broker = setup.start();
    let token = broker.soc_token();
    assert_exactly(&wait_for(&broker, &token, 20), 0..20);

    // Rename rotation; the writer appends to the old file once more before it reopens.
    let mut old = std::fs::OpenOptions::new().append(true).open(setup.path("events.log")).unwrap();
    std::fs::rename(setup.path("events.log"), setup.path("events.log.1")).unwrap();
    old.write_all(lines(20..30).as_bytes()).unwrap();
    setup.append("events.log", &lines(30..40));
    assert_exactly(&wait_for(&broker, &token, 40), 0..40);

    // copytruncate, with lines written after the broker's last read: they are only in the copy.
    setup.append("events.log", &lines(40..45));
    std::fs::copy(setup.path("events.log"), setup.path("events.log.2")).unwrap();
    std::fs::OpenOptions::new().write(true).open(setup.path("events.log")).unwrap().set_len(0).unwrap();
    setup.append("events.log", &lines(45..50));
    assert_exactly(&wait_for(&broker, &token, 50), 0..50);

    // Undecodable lines are counted and skipped; the next good line still arrives.
    setup.append("events.log", "not json\n{\"vendor_id\":\"L50\",\"trust\":\"signed\"}\n");
    setup.append("events.log", &lines(51..52));
    let events = wait_for(&broker, &token, 51);
    assert_eq!(events.len(), 51, "L50 claims a trust tier and is refused by the generic decoder");
    let metrics = broker.get("/metrics", None).body;
    assert!(
        metrics.contains("haltwire_file_lines_total{watch=\"edr\",outcome=\"undecodable\"} 2"),
        "{metrics}"
    );
    assert!(broker.stderr().contains("line skipped"), "{}", broker.stderr());
    assert_eq!(broker.terminate(), Some(0));
}

/// auditd's own log, tailed: every auditd sample of this repository, appended to one
/// `audit.log` in uneven pieces (lines cut in two, events cut between their records) and with a
/// SIGKILL and restart halfway, gives exactly the events its expectation file lists, once each.
/// Most events have no EOE record (auditd writes none after a lone AVC or SECCOMP, and the last
/// event of a quiet log waits for nothing): they are completed once the file is idle.
#[test]
fn auditd_log_tailed_as_audit_format_gives_each_sample_event_once() {
    let setup = Setup::with("audit.log", "format = \"audit\"\nintegration = \"auditd\"\n");
    let samples: Vec<(String, expect::Expectation)> = expect::all()
        .into_iter()
        .filter(|(_, e)| e.integration == "auditd" && e.input.starts_with("integrations/auditd/samples/"))
        .map(|(f, e)| (f.file_name().unwrap().to_string_lossy().into_owned(), e))
        .collect();
    assert!(samples.len() >= 5, "auditd samples: {}", samples.len());
    let text: String =
        samples.iter().map(|(_, e)| std::fs::read_to_string(expect::input_path(&e.input)).unwrap()).collect();
    let want: usize = samples.iter().map(|(_, e)| e.events.len()).sum();

    // Pieces of 1..300 bytes, so lines and events arrive split.
    let mut rng = Lcg(7);
    let mut pieces = Vec::new();
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let take = (1 + rng.next() as usize % 300).min(rest.len());
        pieces.push(&rest[..take]);
        rest = &rest[take..];
    }
    let half = pieces.len() / 2;
    let broker = setup.start();
    for piece in &pieces[..half] {
        append(&setup.path("audit.log"), piece);
        std::thread::sleep(Duration::from_millis(3));
    }
    std::thread::sleep(Duration::from_millis(300));
    broker.kill9();
    for piece in &pieces[half..] {
        append(&setup.path("audit.log"), piece);
    }
    let broker = setup.start();
    let token = broker.soc_token();
    let events = wait_for(&broker, &token, want);

    let mut problems = Vec::new();
    for (file, exp) in &samples {
        for (i, expected) in exp.events.iter().enumerate() {
            let id = &expected["vendor_id"];
            let found: Vec<_> = events.iter().filter(|e| &e["vendor_id"] == id).collect();
            if found.len() != 1 {
                problems.push(format!("{file} event {i} ({id}): stored {} times", found.len()));
                continue;
            }
            let mut mismatches = Vec::new();
            expect::subset_mismatches(expected, found[0], "", &mut mismatches);
            for field in &exp.absent {
                if let Some(v) = expect::dotted(found[0], field) {
                    mismatches.push(format!("{field}: must be absent, got {v}"));
                }
            }
            problems.extend(mismatches.into_iter().map(|m| format!("{file} event {i} ({id}): {m}")));
        }
    }
    for event in &events {
        assert_eq!(event["source"], "watch:edr");
        assert_eq!(event["trust"], "local");
        assert_eq!(event["integration"], "auditd");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(events.len(), want, "no other events");
    let metrics = broker.get("/metrics", None).body;
    assert!(!metrics.contains("outcome=\"undecodable\""), "{metrics}");
}

#[test]
fn group_writable_directory_refuses_to_start() {
    let setup = Setup::new("events.log");
    std::fs::set_permissions(&setup.logs, std::fs::Permissions::from_mode(0o770)).unwrap();
    let (code, stderr) = match BrokerBuilder::new(&setup.data).config(&setup.config).try_start() {
        Ok(_) => panic!("started with a group-writable watched directory"),
        Err(failure) => failure,
    };
    assert_ne!(code, Some(0));
    assert!(stderr.contains("watch \"edr\"") && stderr.contains("group or others may write"), "{stderr}");
}

#[test]
fn symlinks_fifos_and_hard_links_are_not_read() {
    let setup = Setup::new("*.log");
    let outside = setup.logs.parent().unwrap().join("outside.log");
    std::fs::write(&outside, lines(100..101)).unwrap();
    std::os::unix::fs::symlink(&outside, setup.path("link.log")).unwrap();
    let fifo = std::ffi::CString::new(setup.path("fifo.log").into_os_string().into_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    setup.append("linked.log", &lines(200..201));
    std::fs::hard_link(setup.path("linked.log"), setup.logs.join("second-name")).unwrap();
    setup.append("real.log", &lines(0..2));

    let broker = setup.start();
    let token = broker.soc_token();
    let events = wait_for(&broker, &token, 2);
    assert_exactly(&events, 0..2);
    let stderr = broker.stderr();
    for reason in ["\"symlink\"", "\"not_regular\"", "\"hard_link\""] {
        assert!(stderr.contains(reason), "{reason}: {stderr}");
    }
    let metrics = broker.get("/metrics", None).body;
    assert!(metrics.contains("haltwire_file_refused_total{watch=\"edr\",reason=\"symlink\"} 1"), "{metrics}");
}

/// Small deterministic generator so a failing run can be replayed from its printed seed.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// Appends `total` lines to `logs/events.log`, sometimes in two writes (a partial line for a
/// while), and every few dozen lines rotates: by rename (to a fresh `events.log.N`, which the
/// watch pattern matches) or by copytruncate (copy to `events.log.N`, then truncate).
fn write_with_rotations(
    logs: PathBuf,
    total: u64,
    seed: u64,
    written: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
) {
    let mut rng = Lcg(seed);
    let live = logs.join("events.log");
    let open = || std::fs::OpenOptions::new().create(true).append(true).open(&live).unwrap();
    let mut file = open();
    let mut generation = 0;
    let mut next_rotation = 40 + rng.next() % 80;
    for i in 0..total {
        let text = line(i);
        if rng.next().is_multiple_of(5) {
            let cut = 1 + (rng.next() as usize % (text.len() - 1));
            file.write_all(&text.as_bytes()[..cut]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            file.write_all(&text.as_bytes()[cut..]).unwrap();
        } else {
            file.write_all(text.as_bytes()).unwrap();
        }
        written.store(i + 1, Ordering::SeqCst);
        if i + 1 == next_rotation {
            generation += 1;
            let rotated = logs.join(format!("events.log.{generation}"));
            if rng.next().is_multiple_of(2) {
                std::fs::rename(&live, &rotated).unwrap();
                file = open();
            } else {
                std::fs::copy(&live, &rotated).unwrap();
                file.set_len(0).unwrap(); // O_APPEND: the next write lands at 0
            }
            next_rotation += 40 + rng.next() % 80;
        }
        std::thread::sleep(Duration::from_micros(500 + rng.next() % 1000));
    }
    done.store(true, Ordering::SeqCst);
}

#[test]
fn acceptance_append_rotate_truncate_while_sigkilled_exactly_one_event_per_line() {
    const LINES: u64 = 1500;
    let seed = std::env::var("HALTWIRE_FILE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now() as u64);
    eprintln!("file crash test seed {seed} (HALTWIRE_FILE_CRASH_SEED to replay)");
    let mut rng = Lcg(seed ^ 0x5eed);
    let setup = Setup::new("events.log*");
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (logs, written, done) = (setup.logs.clone(), written.clone(), done.clone());
        std::thread::spawn(move || write_with_rotations(logs, LINES, seed, written, done))
    };
    let mut kills = 0;
    let mut logs = Vec::new();
    while !done.load(Ordering::SeqCst) {
        let broker = setup.start();
        std::thread::sleep(Duration::from_millis(150 + rng.next() % 450));
        let log = broker.stderr.clone();
        broker.kill9();
        logs.push(log);
        kills += 1;
        // Sometimes stay down for a while: rotations happen with nobody watching.
        std::thread::sleep(Duration::from_millis(rng.next() % 300));
    }
    writer.join().unwrap();
    assert!(kills >= 3, "only {kills} kills: the writer finished too fast to mean anything");
    eprintln!("{kills} SIGKILLs while {} lines were written", written.load(Ordering::SeqCst));

    let broker = setup.start();
    let token = broker.soc_token();
    let events = wait_for(&broker, &token, LINES as usize);
    logs.push(broker.stderr.clone());
    let outcome = std::panic::catch_unwind(|| assert_exactly(&events, 0..LINES));
    if outcome.is_err() {
        // Every run's log, for the post-mortem: which file was taken for what, and when.
        if let Ok(path) = std::env::var("HALTWIRE_FILE_CRASH_LOG") {
            let text: Vec<String> = logs.iter().map(|l| l.lock().unwrap().clone()).collect();
            std::fs::write(&path, text.join("\n=== SIGKILL; restart ===\n")).unwrap();
            eprintln!("broker logs written to {path}");
        } else {
            eprintln!("set HALTWIRE_FILE_CRASH_LOG=<file> to keep the broker logs of a failing seed");
        }
        panic!("seed {seed} failed (HALTWIRE_FILE_CRASH_SEED={seed} to replay)");
    }
    assert_eq!(events.len() as u64, LINES);
}
