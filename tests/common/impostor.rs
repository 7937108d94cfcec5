//! A stand-in for the broker that the test fully controls (as an impostor on the broker's port
//! would): it registers the session, allows or denies by command, and serves a fixed list of
//! pending directives on every fetch — forged, for another session, expired, and one genuine.
//!
//! It also answers `/healthz`, so agent-side commands that check for a broker accept it.

use haltwire::directive::envelope::Envelope;
use haltwire::directive::payload::{Directive, DirectiveType, EventFacts, Retry, ScopeInfo};
use haltwire::directive::signer::DirectiveSigner;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

pub const SESSION: &str = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

pub fn directive(note: &str) -> Directive {
    Directive {
        kind: DirectiveType::DoNotRetry,
        block_id: uuid::Uuid::now_v7(),
        event_id: None,
        scope: ScopeInfo {
            kind: haltwire::block::ScopeKind::Similar,
            paths: vec![],
            hosts: vec![],
            executables: vec![],
        },
        retry: Retry::Never,
        note: Some(note.into()),
        data: EventFacts::default(),
    }
}

/// `forged` signed by an untrusted key but naming the trusted key's id.
pub fn forged(trusted: &DirectiveSigner, other: &DirectiveSigner, note: &str, now: i64) -> Envelope {
    let mut env = other.sign(SESSION, "jti-forged", 5, &directive(note), now);
    env.signatures[0].keyid = trusted.kid().to_string();
    env
}

pub struct Impostor {
    pub url: String,
    pub acks: Arc<Mutex<Vec<String>>>,
}

/// `deny` maps a command substring to the directive sent with the deny.
pub fn start(pending: Vec<Envelope>, deny: Vec<(&'static str, Envelope)>) -> Impostor {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let acks: Arc<Mutex<Vec<String>>> = Arc::default();
    let acks2 = acks.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (method, path) =
                (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let (status, answer) = route(&method, &path, &body, &pending, &deny, &acks2);
            let answer = answer.to_string();
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    Impostor { url, acks }
}

fn route(
    method: &str,
    path: &str,
    body: &Value,
    pending: &[Envelope],
    deny: &[(&str, Envelope)],
    acks: &Mutex<Vec<String>>,
) -> (u16, Value) {
    let session = format!("/v1/sessions/{SESSION}");
    match (method, path) {
        ("GET", "/healthz") => (200, json!({"status": "ok"})),
        ("POST", "/v1/sessions") => (201, json!({"session_id": SESSION, "token": "impostor-token"})),
        ("GET", p) if p == format!("{session}/directives") => (200, json!({"directives": pending})),
        ("POST", p) if p == format!("{session}/check") => {
            let command = body["input"]["command"].as_str().unwrap_or("");
            match deny.iter().find(|(needle, _)| command.contains(needle)) {
                Some((_, env)) => (
                    200,
                    json!({"decision": "deny", "block_id": uuid::Uuid::now_v7(), "note": "IMPOSTOR-NOTE-MARKER", "directive": env}),
                ),
                None => (200, json!({"decision": "allow"})),
            }
        }
        ("POST", p) if p.starts_with(&format!("{session}/directives/")) && p.ends_with("/ack") => {
            let jti = p.trim_end_matches("/ack").rsplit('/').next().unwrap_or("").to_string();
            acks.lock().unwrap().push(jti);
            (200, json!({"acknowledged": true}))
        }
        ("POST", p) if p.starts_with(&session) => (200, json!({"recorded": true})),
        _ => (404, json!({})),
    }
}

/// Markers in the hostile set that must never reach a model.
pub const NEVER_SHOWN: [&str; 6] = [
    "FORGED",
    "OTHER-SESSION-MARKER",
    "OTHER-DENY-MARKER",
    "EXPIRED-MARKER",
    "OUT-OF-ORDER-MARKER",
    "IMPOSTOR-NOTE-MARKER",
];
/// The one genuine pending directive's note; it must reach the model exactly once.
pub const GENUINE: &str = "GENUINE-MARKER";

/// An impostor serving the hostile set, with `trusted_dir` holding the key the agent side
/// trusts and `other_dir` anyone else's: pending directives that are forged (another key under
/// the trusted key's id), for another session, expired, out of order, and one genuine; a deny
/// for commands containing `forged` (forged directive) and `elsewhere` (another session's).
pub fn start_hostile(trusted_dir: &std::path::Path, other_dir: &std::path::Path, now: i64) -> Impostor {
    let (trusted, _) = DirectiveSigner::load_or_create(trusted_dir, now).unwrap();
    let (other, _) = DirectiveSigner::load_or_create(other_dir, now).unwrap();
    let elsewhere = "0190ffff-0000-7000-8000-000000000000";
    let pending = vec![
        forged(&trusted, &other, "FORGED-MARKER", now),
        trusted.sign(elsewhere, "jti-other", 2, &directive("OTHER-SESSION-MARKER"), now),
        trusted.sign(SESSION, "jti-expired", 3, &directive("EXPIRED-MARKER"), now - 1000),
        trusted.sign(SESSION, "jti-genuine", 4, &directive(GENUINE), now),
        trusted.sign(SESSION, "jti-stale", 1, &directive("OUT-OF-ORDER-MARKER"), now),
    ];
    let deny = vec![
        ("forged", forged(&trusted, &other, "FORGED-DENY-MARKER", now)),
        ("elsewhere", trusted.sign(elsewhere, "jti-x", 9, &directive("OTHER-DENY-MARKER"), now)),
    ];
    start(pending, deny)
}

/// What a model saw after an agent ran the hostile script against [`start_hostile`]: `inputs`
/// holds the whole text of each model request in order (the last one follows the final call),
/// `denials` the text the model got back for each call whose denial came with an unverifiable
/// directive (the `forged` and `elsewhere` commands), by call id.
///
/// Asserts that no marker of the hostile set reached any request; that the one genuine
/// directive reached the last request exactly once, although the impostor served it on every
/// fetch (replays produce no text); that those denials carry only the fixed text, never a
/// notice; and that only genuine directives were acknowledged.
pub fn assert_only_the_genuine_directive_shown(
    fake: &Impostor,
    inputs: &[String],
    denials: &[(&str, String)],
) {
    for (i, text) in inputs.iter().enumerate() {
        for marker in NEVER_SHOWN {
            assert!(!text.contains(marker), "request {i} carries {marker}");
        }
    }
    // Positive control: without it, an agent that showed nothing at all would pass.
    let last = inputs.last().expect("at least one model request");
    assert_eq!(last.matches(GENUINE).count(), 1, "{last}");
    let fixed = haltwire::directive::render::denied_without_notice();
    for (call, text) in denials {
        assert!(text.contains(fixed), "{call}: {text}");
        assert!(!text.contains(super::scenario::NOTICE_HEAD), "{call}: {text}");
    }
    let acks = fake.acks.lock().unwrap().clone();
    assert!(acks.contains(&"jti-genuine".to_string()), "{acks:?}");
    assert!(
        acks.iter().all(|j| j == "jti-genuine" || j == "jti-stale"),
        "only genuine ones are acknowledged: {acks:?}"
    );
}
