//! Replays the correlation corpus through the real `haltwire serve`, as the held-out corpus is
//! run: sessions, ledger and outcomes over the session API, events over the signed generic
//! webhook, correlations read back from the SOC API. It prints every event the broker binds
//! differently from its label and asserts the same targets as `correlation_accuracy.rs`.
//!
//! Only scenarios whose sessions were registered before their base time and never ended can be
//! replayed (the API stamps registration and end times itself); each runs in a fresh broker
//! with its times shifted to start now.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("formattable time")
}

#[test]
fn the_broker_binds_the_corpus_as_the_harness_does() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/correlation");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|x| x == "json"));
    files.sort();
    let (mut replayed, mut events, mut agree) = (0, 0, 0);
    // (should bind, bound, correct session, correct session and call)
    let (mut should, mut bound, mut session_ok, mut call_ok) = (0, 0, 0, 0);
    let mut disagreements = Vec::new();
    for path in files {
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let sessions = s["sessions"].as_array().unwrap();
        if sessions.iter().any(|x| x["registered"].as_f64().unwrap() > 0.0 || !x["ended"].is_null()) {
            continue;
        }
        replayed += 1;
        let tmp = tempfile::tempdir().unwrap();
        let broker = Broker::start(&tmp.path().join("data"));
        let soc = broker.soc_token();
        let base = OffsetDateTime::now_utc() + time::Duration::seconds(2);
        let at = |v: &Value| base + time::Duration::seconds_f64(v.as_f64().unwrap());
        let json_ct = ("content-type", "application/json".to_string());
        let mut ids: HashMap<String, (String, String)> = HashMap::new();
        for x in sessions {
            let mut body = json!({"agent": x["agent"], "agent_session_id": x["agent_session_id"], "pid": x["pid"],
                                  "host": x["host"], "cwd": x["cwd"]});
            if let Some(user) = x.get("user") {
                body["user"] = user.clone();
            }
            let reply =
                broker.post("/v1/sessions", std::slice::from_ref(&json_ct), body.to_string().as_bytes());
            assert_eq!(reply.status, 201, "{}", reply.body);
            let v = reply.json();
            ids.insert(
                x["name"].as_str().unwrap().into(),
                (v["session_id"].as_str().unwrap().into(), v["token"].as_str().unwrap().into()),
            );
        }
        let names: HashMap<String, String> = ids.iter().map(|(n, (id, _))| (id.clone(), n.clone())).collect();
        for c in s["calls"].as_array().unwrap() {
            let (sid, token) = &ids[c["session"].as_str().unwrap()];
            let auth = ("authorization", format!("Bearer {token}"));
            let body = json!({"call_id": c["call_id"], "tool": c["tool"], "input": c["input"], "time": rfc3339(at(&c["at"]))});
            let reply = broker.post(
                &format!("/v1/sessions/{sid}/commands"),
                &[json_ct.clone(), auth.clone()],
                body.to_string().as_bytes(),
            );
            assert_eq!(reply.status, 201, "{}", reply.body);
            if let Some(outcome) = c.get("outcome") {
                let call = c["call_id"].as_str().unwrap();
                let reply = broker.post(
                    &format!("/v1/sessions/{sid}/commands/{call}/outcome"),
                    &[json_ct.clone(), auth],
                    outcome.to_string().as_bytes(),
                );
                assert!(reply.status < 300, "{}", reply.body);
            }
        }
        let mut posted = Vec::new();
        for e in s["events"].as_array().unwrap() {
            let mut body = e["body"].clone();
            body["time"] = json!(rfc3339(at(&e["at"])));
            if body["host"].is_null() {
                body.as_object_mut().unwrap().remove("host");
            }
            let msg = format!("msg_{}_{}", s["scenario"].as_str().unwrap(), e["id"].as_str().unwrap());
            let reply = broker.post_generic(&msg, now(), body.to_string().as_bytes());
            assert_eq!(reply.status, 202, "{}", reply.body);
            posted.push((e.clone(), reply.json()["event_id"].as_str().unwrap().to_string()));
        }
        for (e, id) in posted {
            let deadline = Instant::now() + Duration::from_secs(20);
            let c = loop {
                if let Some(c) = broker.event(&soc, &id).get("correlation").cloned() {
                    break c;
                }
                assert!(Instant::now() < deadline, "never correlated");
                std::thread::sleep(Duration::from_millis(20));
            };
            events += 1;
            let got = (c["status"] == "matched").then(|| {
                (names[c["session_id"].as_str().unwrap()].clone(), c["call_id"].as_str().map(String::from))
            });
            let want = e["expect"]
                .as_object()
                .map(|x| (x["session"].as_str().unwrap().to_string(), x["call"].as_str().map(String::from)));
            should += usize::from(want.is_some());
            bound += usize::from(got.is_some());
            session_ok +=
                usize::from(got.is_some() && got.as_ref().map(|g| &g.0) == want.as_ref().map(|w| &w.0));
            call_ok += usize::from(got.is_some() && got == want);
            if got == want {
                agree += 1;
            } else {
                disagreements.push(format!("{}/{}: want {want:?} got {got:?} {c}", s["scenario"], e["id"]));
            }
        }
    }
    println!("replayed {replayed} scenarios, {events} events; {agree} as labelled");
    for d in &disagreements {
        println!("  {d}");
    }
    let ratio = |n: usize, d: usize| if d == 0 { 1.0 } else { n as f64 / d as f64 };
    let (sp, cp) = (ratio(session_ok, bound), ratio(call_ok, bound));
    let (sr, cr) = (ratio(session_ok, should), ratio(call_ok, should));
    println!("session level: precision {sp:.4} recall {sr:.4}; call level: precision {cp:.4} recall {cr:.4}");
    assert!(replayed >= 30 && events >= 300, "too little replayed: {replayed} scenarios, {events} events");
    assert!(sp >= 0.99 && cp >= 0.99 && sr >= 0.95 && cr >= 0.95, "below target through serve");
}
