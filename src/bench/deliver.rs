//! `haltwire bench deliver`: event posted → directive available to the session, measured
//! end to end against a running broker.
//!
//! The bench registers one agent session (a `sleep` child as its process, channels `sse`),
//! opens the session's SSE stream, then posts blocking events for that process through the
//! `generic` source in an open loop at a fixed rate: event *i* is due at `t0 + i/R`, and its
//! latency runs from that intended time (so a stall is charged to every event behind it) to
//! the moment the SSE stream delivered the directive whose `event_id` is the one the `202`
//! named. Every event becomes a block through the shipped default policy, so each one passes
//! ingest (auth, decode, group commit), correlation, policy, block, enqueue, the delivery
//! flush and the stream's signing.
//!
//! Not here: starting the broker, judging the figures. Envelopes are decoded without
//! verification (the bench measures delivery, not the agent's verifier).

use super::stats::{micros, Latencies};
use super::BenchError;
use crate::directive::envelope::Envelope;
use crate::directive::payload::DirectivePayload;
use crate::ingest::auth::standard_webhooks::HmacSecret;
use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One run's parameters.
pub struct DeliverSettings {
    /// Broker base URL (`http://127.0.0.1:port`).
    pub url: String,
    /// The `generic` source's secret.
    pub secret: HmacSecret,
    pub rate: f64,
    pub events: usize,
    pub warmup: usize,
    /// Sender threads (each with its own keep-alive connection).
    pub senders: usize,
}

/// What a run measured.
pub struct DeliverReport {
    pub rate: f64,
    /// Intended send → directive received on the stream, for measured events.
    pub latencies: Latencies,
    /// Intended send → the ingest `202` (the durable-ingest share of the above).
    pub ingest: Latencies,
    /// `202` received → directive received (pipeline, delivery flush, stream; 0 when the
    /// directive arrived first).
    pub after_ack: Latencies,
    /// Measured events whose directive did not arrive within 10 s of the last send.
    pub missing: usize,
    /// Measured posts that did not get a `202`.
    pub errors: usize,
}

impl DeliverReport {
    pub fn summary(&self) -> String {
        let l = &self.latencies;
        format!(
            "bench deliver: open loop at {} events/s, {} delivered\n\
             event posted → directive on the SSE stream: p50 {} us  p90 {} us  p99 {} us  max {} us\n\
             of which post → 202:        p50 {} us  p99 {} us\n\
             202 → directive on stream:   p50 {} us  p99 {} us\n\
             missing {}  post errors {}",
            self.rate,
            l.count(),
            l.percentile_us(0.5),
            l.percentile_us(0.9),
            l.percentile_us(0.99),
            l.max_us(),
            self.ingest.percentile_us(0.5),
            self.ingest.percentile_us(0.99),
            self.after_ack.percentile_us(0.5),
            self.after_ack.percentile_us(0.99),
            self.missing,
            self.errors
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        let l = &self.latencies;
        serde_json::json!({
            "rate": self.rate, "delivered": l.count(), "p50_us": l.percentile_us(0.5),
            "p90_us": l.percentile_us(0.9), "p99_us": l.percentile_us(0.99), "max_us": l.max_us(),
            "ingest_p50_us": self.ingest.percentile_us(0.5), "ingest_p99_us": self.ingest.percentile_us(0.99),
            "after_202_p50_us": self.after_ack.percentile_us(0.5), "after_202_p99_us": self.after_ack.percentile_us(0.99),
            "missing": self.missing, "errors": self.errors,
        })
    }
}

fn io(context: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io { context: context.to_string(), source }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub fn run(settings: DeliverSettings) -> Result<DeliverReport, BenchError> {
    if !settings.rate.is_finite() || settings.rate <= 0.0 || settings.senders == 0 {
        return Err(BenchError::Settings("--rate and --senders must be positive".into()));
    }
    let mut sleeper =
        std::process::Command::new("sleep").arg("3600").spawn().map_err(io("starting the agent stand-in"))?;
    let result = measure(&settings, sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    result
}

fn measure(settings: &DeliverSettings, pid: u32) -> Result<DeliverReport, BenchError> {
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let registration = serde_json::json!({"agent": "generic", "agent_session_id": "bench-deliver",
        "pid": pid, "cwd": "/tmp", "channels": ["sse"]});
    let mut reply = agent()
        .post(format!("{}/v1/sessions", settings.url))
        .header("content-type", "application/json")
        .send(registration.to_string().as_bytes())
        .map_err(|e| BenchError::Settings(format!("registering the session: {e}")))?;
    let text = reply
        .body_mut()
        .read_to_string()
        .map_err(|e| BenchError::Settings(format!("registration answer: {e}")))?;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let (Some(sid), Some(token)) = (body["session_id"].as_str(), body["token"].as_str()) else {
        return Err(BenchError::Settings(format!("registration failed: {body}")));
    };

    // The stream reader: event id → time its directive arrived.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let stream = open_stream(&settings.url, sid, token)?;
    {
        let arrived = arrived.clone();
        std::thread::spawn(move || read_stream(stream, &arrived));
    }

    // Pre-sign every post, then release them on schedule through a pool of senders.
    let total = settings.warmup + settings.events;
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let requests: Vec<(String, String, Vec<u8>)> = (0..total)
        .map(|i| {
            let msg_id = format!("bd_{run}_{i}");
            let body = serde_json::json!({"host": host, "disposition": "blocked", "severity": "high",
                "vendor_id": msg_id, "process": {"pid": 900_000 + (i % 90_000), "cmd_line": format!("curl -fsSL http://bench{i}.example/a.sh"),
                "parent": {"pid": pid}}})
            .to_string()
            .into_bytes();
            let signature = settings.secret.sign(&msg_id, stamp, &body);
            (msg_id, signature, body)
        })
        .collect();
    let (tx, rx) = mpsc::channel::<(usize, Instant, (String, String, Vec<u8>))>();
    let rx = Arc::new(Mutex::new(rx));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let mut senders = Vec::new();
    for _ in 0..settings.senders {
        let (rx, sent, url) = (rx.clone(), sent.clone(), settings.url.clone());
        senders.push(std::thread::spawn(move || {
            let agent = agent();
            loop {
                let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok((i, due, (msg_id, signature, body))) = next else { break };
                let reply = agent
                    .post(format!("{url}/v1/ingest/generic"))
                    .header("content-type", "application/json")
                    .header("webhook-id", &msg_id)
                    .header("webhook-timestamp", stamp.to_string())
                    .header("webhook-signature", &signature)
                    .send(&body[..]);
                let id = reply.ok().filter(|r| r.status() == 202).and_then(|mut r| {
                    let text = r.body_mut().read_to_string().ok()?;
                    serde_json::from_str::<serde_json::Value>(&text).ok()?["event_id"]
                        .as_str()
                        .map(String::from)
                });
                sent.lock().unwrap_or_else(|e| e.into_inner()).push((i, due, id, Instant::now()));
            }
        }));
    }
    let t0 = Instant::now() + Duration::from_millis(50);
    for (i, request) in requests.into_iter().enumerate() {
        let due = t0 + Duration::from_secs_f64(i as f64 / settings.rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let _ = tx.send((i, due, request));
    }
    drop(tx);
    for s in senders {
        let _ = s.join();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(|e| e.into_inner()));
    let deadline = Instant::now() + Duration::from_secs(10);
    let measured: Vec<&Sent> =
        sent.iter().filter(|(i, _, id, _)| *i >= settings.warmup && id.is_some()).collect();
    loop {
        let got = arrived.lock().unwrap_or_else(|e| e.into_inner());
        let done = measured.iter().all(|(_, _, id, _)| id.as_ref().is_some_and(|id| got.contains_key(id)));
        drop(got);
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = arrived.lock().unwrap_or_else(|e| e.into_inner());
    let (mut samples, mut ingest, mut after_ack) = (Vec::new(), Vec::new(), Vec::new());
    let mut missing = 0;
    for (_, due, id, answered) in &measured {
        ingest.push(micros(answered.saturating_duration_since(*due)));
        match id.as_ref().and_then(|id| got.get(id)) {
            Some(at) => {
                samples.push(micros(at.saturating_duration_since(*due)));
                after_ack.push(micros(at.saturating_duration_since(*answered)));
            }
            None => missing += 1,
        }
    }
    let errors = sent.iter().filter(|(i, _, id, _)| *i >= settings.warmup && id.is_none()).count();
    Ok(DeliverReport {
        rate: settings.rate,
        latencies: Latencies::from_micros(samples),
        ingest: Latencies::from_micros(ingest),
        after_ack: Latencies::from_micros(after_ack),
        missing,
        errors,
    })
}

/// Index, intended send time, event id from the `202`, time the answer arrived.
type Sent = (usize, Instant, Option<String>, Instant);

fn open_stream(url: &str, sid: &str, token: &str) -> Result<BufReader<TcpStream>, BenchError> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut stream = TcpStream::connect(&addr).map_err(io("connecting the SSE stream"))?;
    stream.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    write!(
        stream,
        "GET /v1/sessions/{sid}/directives/stream HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .map_err(io("requesting the SSE stream"))?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map_err(io("reading the SSE headers"))? == 0 {
            return Err(BenchError::Settings("the SSE stream closed before its headers ended".into()));
        }
        if line == "\r\n" {
            return Ok(reader);
        }
    }
}

/// Records the arrival time of every directive by the event id inside its payload.
fn read_stream(mut reader: BufReader<TcpStream>, arrived: &Mutex<HashMap<String, Instant>>) {
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Some(data) = line.strip_prefix("data:") else { continue };
        let at = Instant::now();
        if let Some(event) = event_id(data.trim().as_bytes()) {
            arrived.lock().unwrap_or_else(|e| e.into_inner()).insert(event, at);
        }
    }
}

fn event_id(envelope: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let envelope = Envelope::from_slice(envelope).ok()?;
    let body = base64::engine::general_purpose::STANDARD.decode(envelope.payload.as_bytes()).ok()?;
    let payload: DirectivePayload = serde_json::from_slice(&body).ok()?;
    payload.directive.event_id.map(|id| id.to_string())
}
