//! `haltwire bench startup`: how long `haltwire serve` takes from exec to its first `200` from
//! `/readyz`, with a fresh data directory (first start: keys, secrets and the sled store are
//! created) and with a warm one (everything exists already).
//!
//! Each run spawns `serve --listen 127.0.0.1:0`, reads the bound address from its one stdout
//! line, polls `/readyz` until it answers `200`, and stops the broker with SIGTERM (untimed).
//! The clock starts just before the spawn, so fork and exec are included.
//!
//! Not here: the broker's own start-up code (`crate::server`), and any judgement of the figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::median_ms;
use super::BenchError;

/// Longest a single start may take before the run is declared failed.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between readiness probes: short against the 150 ms budget, long enough not to compete
/// with the broker for its core.
const PROBE_INTERVAL: Duration = Duration::from_micros(200);

pub struct StartupSettings {
    /// The `haltwire` binary to start (normally this one).
    pub binary: PathBuf,
    /// Directory for the data directories the runs create; must exist.
    pub scratch: PathBuf,
    /// Passed to `serve --config`, so the sources being measured are the configured ones.
    pub config: Option<PathBuf>,
    /// Timed runs per kind (fresh, warm).
    pub runs: usize,
    /// Pin each broker to this CPU (as `taskset -c` would, without timing taskset's own exec).
    pub server_cpu: Option<usize>,
}

pub struct StartupReport {
    pub fresh: Vec<Duration>,
    pub warm: Vec<Duration>,
}

impl StartupReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "runs": self.fresh.len(),
            "fresh_median_ms": round2(median_ms(&self.fresh)),
            "fresh_max_ms": round2(max_ms(&self.fresh)),
            "warm_median_ms": round2(median_ms(&self.warm)),
            "warm_max_ms": round2(max_ms(&self.warm)),
        })
    }

    pub fn summary(&self) -> String {
        format!(
            "bench startup: exec to first 200 from /readyz, {} runs each\n\
             fresh data dir  median {:.1} ms  max {:.1} ms\n\
             warm data dir   median {:.1} ms  max {:.1} ms",
            self.fresh.len(),
            median_ms(&self.fresh),
            max_ms(&self.fresh),
            median_ms(&self.warm),
            max_ms(&self.warm),
        )
    }
}

fn max_ms(samples: &[Duration]) -> f64 {
    samples.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// Times `runs` starts on fresh data directories, then `runs` on one warm directory (created by
/// an untimed first start).
pub fn run(settings: &StartupSettings) -> Result<StartupReport, BenchError> {
    if settings.runs == 0 {
        return Err(BenchError::Settings("--runs must be at least 1".into()));
    }
    if settings.server_cpu.is_some_and(|cpu| cpu >= libc::CPU_SETSIZE as usize) {
        return Err(BenchError::Settings("--server-cpu is beyond the CPU set size".into()));
    }
    let mut fresh = Vec::with_capacity(settings.runs);
    for run in 0..settings.runs {
        fresh.push(time_one(
            settings,
            &settings.scratch.join(format!("fresh-{run}")),
            &format!("fresh {run}"),
        )?);
    }
    let warm_dir = settings.scratch.join("warm");
    time_one(settings, &warm_dir, "warm-up")?;
    let mut warm = Vec::with_capacity(settings.runs);
    for run in 0..settings.runs {
        warm.push(time_one(settings, &warm_dir, &format!("warm {run}"))?);
    }
    Ok(StartupReport { fresh, warm })
}

/// One start: spawn, wait for readiness, stop. Returns the time to readiness.
fn time_one(settings: &StartupSettings, data_dir: &Path, run: &str) -> Result<Duration, BenchError> {
    let failed = |reason: String| BenchError::Startup { run: run.to_string(), reason };
    let mut command = serve_command(settings, data_dir);
    let started = Instant::now();
    let mut child =
        command.spawn().map_err(|e| failed(format!("cannot start {}: {e}", settings.binary.display())))?;
    let ready = wait_ready(&mut child, started + START_TIMEOUT);
    let elapsed = started.elapsed();
    let stopped = stop(&mut child);
    ready.map_err(&failed)?;
    stopped.map_err(&failed)?;
    Ok(elapsed)
}

fn serve_command(settings: &StartupSettings, data_dir: &Path) -> Command {
    let mut command = Command::new(&settings.binary);
    command.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data_dir);
    if let Some(config) = &settings.config {
        command.arg("--config").arg(config);
    }
    // The broker must see only the flags above, whatever the caller's environment says.
    command.env_remove("HALTWIRE_CONFIG").env_remove("HALTWIRE_LISTEN").env_remove("HALTWIRE_DATA_DIR");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    if let Some(cpu) = settings.server_cpu {
        pin_child(&mut command, cpu);
    }
    command
}

/// Sets the child's CPU affinity between fork and exec.
fn pin_child(command: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: an all-zero cpu_set_t is the empty set; `cpu` was checked against CPU_SETSIZE.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: the closure runs between fork and exec, where only async-signal-safe calls are
    // allowed: it makes one syscall on a set built before the fork and allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// Reads the `haltwire listening on http://ADDR` line, then probes `/readyz` until `200`.
fn wait_ready(child: &mut Child, deadline: Instant) -> Result<(), String> {
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    lines.read_line(&mut line).map_err(|e| format!("reading stdout: {e}"))?;
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("haltwire listening on http://")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("unexpected first stdout line {line:?} (did serve fail to start?)"))?;
    // Kept open until the broker exits, so a late write to stdout cannot fail.
    child.stdout = Some(lines.into_inner());
    while Instant::now() < deadline {
        if probe_ready(addr) {
            return Ok(());
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
    Err(format!("not ready within {} s", START_TIMEOUT.as_secs()))
}

/// One `GET /readyz`; true only for a `200`.
fn probe_ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else { return false };
    let request = b"GET /readyz HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

/// SIGTERM, then wait for a clean exit (SIGKILL if it takes too long).
fn stop(child: &mut Child) -> Result<(), String> {
    let pid = libc::pid_t::try_from(child.id()).map_err(|_| "pid out of range".to_string())?;
    // SAFETY: kill(2) on our own child's pid, which cannot have been reaped yet (we hold it).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("serve exited with {status}")),
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waiting for serve: {e}")),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Err("serve did not stop within 20 s of SIGTERM".into())
}
