//! `haltwire bench verify`: the machine's verification ceiling — how many Standard Webhooks
//! messages one core can authenticate per second with no HTTP, no runtime and no store.
//!
//! It pre-signs a ring of distinct native events (the load generator's bodies, so the byte
//! counts match `haltwire bench ingest`), builds a [`SourceVerifier`] exactly as `serve` builds
//! one from a `[[source]]` table, and calls [`SourceVerifier::verify`] — the ingest route's own
//! authentication step, header checks and timestamp window included — in a tight loop on the
//! calling thread for a fixed time. A second pass adds the JSON parse the floor handler does, so
//! the figures decompose the floor: verify, verify + parse, then (in `bench floor`) HTTP on top.
//!
//! Not here: pinning (run it under `taskset`, as scripts/bench.sh does), judging the figures, and
//! any other scheme than the two signed ones (bearer, basic and JWT are not per-message crypto).

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

use super::load::{event_body, process_cpu, Signer};
use super::BenchError;
use crate::config::SourceConfig;
use crate::ingest::auth::standard_webhooks::{Ed25519Secret, HmacSecret};
use crate::ingest::auth::SourceVerifier;

/// The signed scheme to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// `standard-webhooks-ed25519` (`v1a`, Ed25519 `verify_strict`).
    Ed25519,
    /// `standard-webhooks` (`v1`, HMAC-SHA256).
    Hmac,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::Ed25519 => "ed25519",
            Scheme::Hmac => "hmac",
        }
    }
}

/// One run's parameters.
pub struct VerifySettings {
    pub scheme: Scheme,
    /// How long each pass (verify; verify + parse) runs.
    pub duration: Duration,
    /// Distinct pre-signed messages cycled through (more than fit one cache line of state, few
    /// enough to stay in the CPU caches like a hot server's working set).
    pub messages: usize,
}

/// What one pass measured.
#[derive(Debug, Clone, Copy)]
pub struct Pass {
    /// Successful verifications.
    pub count: u64,
    pub elapsed: Duration,
    /// This process's CPU time over the pass, as a share of one core (`None` off Linux); well
    /// below 100 % means the core was shared and the rate is low.
    pub cpu_pct: Option<f64>,
}

impl Pass {
    pub fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }

    /// Mean nanoseconds per message.
    pub fn ns_each(&self) -> f64 {
        if self.count > 0 {
            self.elapsed.as_nanos() as f64 / self.count as f64
        } else {
            0.0
        }
    }
}

/// The figures of both passes.
pub struct VerifyReport {
    pub scheme: Scheme,
    pub body_bytes: usize,
    pub verify: Pass,
    pub verify_parse: Pass,
}

impl VerifyReport {
    pub fn summary(&self) -> String {
        format!(
            "bench verify: {} on one thread, {}-byte bodies\n\
             verify only     {:.0} /s ({:.2} µs each, CPU {:.0} %)\n\
             verify + parse  {:.0} /s ({:.2} µs each, CPU {:.0} %)",
            self.scheme.name(),
            self.body_bytes,
            self.verify.per_sec(),
            self.verify.ns_each() / 1000.0,
            self.verify.cpu_pct.unwrap_or(f64::NAN),
            self.verify_parse.per_sec(),
            self.verify_parse.ns_each() / 1000.0,
            self.verify_parse.cpu_pct.unwrap_or(f64::NAN),
        )
    }

    /// One JSON object, printed as one line.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "bench": "verify",
            "scheme": self.scheme.name(),
            "body_bytes": self.body_bytes,
            "verify_per_sec": self.verify.per_sec().round() as u64,
            "verify_ns": self.verify.ns_each().round() as u64,
            "verify_cpu_pct": self.verify.cpu_pct.map(f64::round),
            "verify_parse_per_sec": self.verify_parse.per_sec().round() as u64,
            "verify_parse_ns": self.verify_parse.ns_each().round() as u64,
            "verify_parse_cpu_pct": self.verify_parse.cpu_pct.map(f64::round),
        })
    }
}

/// One pre-signed message: the headers the verifier reads and the exact body bytes.
pub struct Message {
    headers: HeaderMap,
    body: Vec<u8>,
}

/// A verifier for `scheme` with a fresh key, and `count` messages signed with that key at
/// `timestamp`.
pub fn prepare(
    scheme: Scheme,
    count: usize,
    timestamp: i64,
) -> Result<(SourceVerifier, Vec<Message>), BenchError> {
    let (table, signer) = match scheme {
        Scheme::Ed25519 => {
            let (private, public) = Ed25519Secret::generate();
            let secret = Ed25519Secret::parse(&private).map_err(|e| check(format!("generated key: {e}")))?;
            (
                format!("auth = \"standard-webhooks-ed25519\"\npublic_keys = [\"{public}\"]"),
                Signer::Ed25519(secret),
            )
        }
        Scheme::Hmac => {
            let text = HmacSecret::generate();
            let secret = HmacSecret::parse(&text).map_err(|e| check(format!("generated secret: {e}")))?;
            (format!("auth = \"standard-webhooks\"\nsecret = \"{text}\""), Signer::Hmac(secret))
        }
    };
    let config: SourceConfig = toml::from_str(&format!("name = \"bench-verify\"\n{table}\n"))
        .map_err(|e| check(format!("source table: {e}")))?;
    let verifier = SourceVerifier::from_config(&config).map_err(|e| check(format!("source: {e}")))?;
    // Ids and markers shaped like the load generator's (a run id and a counter), so the bodies
    // and signed contents have the same length as in `haltwire bench ingest`.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let messages = (0..count)
        .map(|i| {
            let id = format!("msg_bench_{run}_{i:08}");
            let body = event_body(&format!("bench-{run}-{i:08}"), 0);
            let mut headers = HeaderMap::new();
            headers.insert("webhook-id", header(&id));
            headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
            headers.insert("webhook-signature", header(&signer.sign(&id, timestamp, &body)));
            Message { headers, body }
        })
        .collect();
    Ok((verifier, messages))
}

/// Ids and base64 signatures are plain ASCII, always valid header values.
fn header(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).expect("ASCII header value")
}

fn check(reason: String) -> BenchError {
    BenchError::Check(reason)
}

/// Both passes on the calling thread.
pub fn run(settings: &VerifySettings) -> Result<VerifyReport, BenchError> {
    if settings.messages == 0 || settings.duration.is_zero() {
        return Err(BenchError::Settings("--messages and --seconds must be positive".into()));
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (verifier, messages) = prepare(settings.scheme, settings.messages, now)?;
    // A short untimed pass first: page faults, branch predictors, the allocator.
    measure(&verifier, &messages, now, false, settings.duration / 10)?;
    Ok(VerifyReport {
        scheme: settings.scheme,
        body_bytes: messages[0].body.len(),
        verify: measure(&verifier, &messages, now, false, settings.duration)?,
        verify_parse: measure(&verifier, &messages, now, true, settings.duration)?,
    })
}

/// Verifies (and with `parse`, JSON-parses) the messages round-robin until `duration` has
/// passed. Any message that fails is an error: the bench and the verifier disagree, and a
/// rate of failures would measure the wrong thing.
pub fn measure(
    verifier: &SourceVerifier,
    messages: &[Message],
    now: i64,
    parse: bool,
    duration: Duration,
) -> Result<Pass, BenchError> {
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut count = 0u64;
    // The clock is read once per round, not per message, so timing stays off the measured path.
    while started.elapsed() < duration {
        for (i, message) in messages.iter().enumerate() {
            let verified = verifier.verify(&message.headers, &message.body, now);
            if verified.is_err() {
                return Err(check(format!("message {i} did not verify: {verified:?}")));
            }
            if parse && serde_json::from_slice::<serde_json::Value>(&message.body).is_err() {
                return Err(check(format!("message {i} is not JSON")));
            }
            count += 1;
        }
    }
    let elapsed = started.elapsed();
    let cpu_pct = cpu_before
        .zip(process_cpu())
        .map(|(before, after)| 100.0 * (after - before).as_secs_f64() / elapsed.as_secs_f64());
    Ok(Pass { count, elapsed, cpu_pct })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_verify_every_message_and_report_a_rate() {
        for scheme in [Scheme::Ed25519, Scheme::Hmac] {
            let settings = VerifySettings { scheme, duration: Duration::from_millis(30), messages: 4 };
            let report = run(&settings).unwrap();
            assert!(report.verify.count >= 4, "{scheme:?}");
            assert!(report.verify.per_sec() > 0.0 && report.verify_parse.per_sec() > 0.0);
            // Counted in whole rounds, so a pass never stops half-way through the ring.
            assert_eq!(report.verify.count % 4, 0);
            let json = report.to_json();
            assert_eq!(json["scheme"], scheme.name());
            assert!(json["verify_per_sec"].as_u64().unwrap() > 0);
        }
    }

    #[test]
    fn messages_signed_with_another_key_are_an_error_not_a_figure() {
        let now = 1_700_000_000;
        for scheme in [Scheme::Ed25519, Scheme::Hmac] {
            let (verifier, _) = prepare(scheme, 1, now).unwrap();
            let (_, foreign) = prepare(scheme, 2, now).unwrap();
            let result = measure(&verifier, &foreign, now, false, Duration::from_millis(5));
            assert!(matches!(result, Err(BenchError::Check(_))), "{scheme:?}");
        }
    }

    #[test]
    fn stale_messages_are_an_error_too() {
        let (verifier, messages) = prepare(Scheme::Hmac, 1, 1_700_000_000).unwrap();
        let later = 1_700_000_000 + 301;
        assert!(measure(&verifier, &messages, later, false, Duration::from_millis(5)).is_err());
    }
}
