//! `POST /v1/ingest/{source}` against the real binary: authentication over raw bytes, the
//! status of every refusal, dedup, and what a stored event looks like when read back.
//! Requirement ids (R1…) refer to ../shared/reference/security.md; docs/security.md maps them.

mod common;

use common::*;

const UNAUTHORIZED: &str = "urn:haltwire:problem:unauthorized";

fn broker() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"));
    (dir, broker)
}

#[test]
fn signed_event_is_acknowledged_stored_and_read_back_verbatim() {
    let (_dir, broker) = broker();
    let body = br#"{"disposition":"blocked",   "host":"h1", "process":{"pid":77,"cmd_line":"rm -rf /"}}"#;
    let reply = broker.post_generic("msg_readback", now(), body);
    assert_eq!(reply.status, 202, "{}", reply.body);
    let ack = reply.json();
    assert_eq!(ack["duplicate"], false);
    let id = ack["event_id"].as_str().unwrap().to_string();

    let token = broker.soc_token();
    let event = broker.event(&token, &id);
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["source"], "generic");
    assert_eq!(event["integration"], "generic");
    assert_eq!(event["trust"], "signed");
    assert_eq!(event["disposition"], "blocked");
    assert_eq!(event["process"]["pid"], 77);
    // `raw` is the original bytes, spacing included.
    let raw = serde_json::to_string(&event["raw"]).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&raw).unwrap(),
        serde_json::from_slice::<serde_json::Value>(body).unwrap()
    );
    let text = broker.get(&format!("/v1/events/{id}"), Some(&token)).body;
    assert!(text.contains(std::str::from_utf8(body).unwrap()), "raw not verbatim: {text}");
}

#[test]
fn r1_oversized_body_is_refused_with_413_before_authentication() {
    let (_dir, broker) = broker();
    let body = vec![b' '; 256 * 1024 + 1];
    // Deliberately unsigned: the size check comes first, so the answer is 413, not 401.
    let reply = broker.post("/v1/ingest/generic", &[("content-type", "application/json".to_string())], &body);
    reply.assert_problem(413, "urn:haltwire:problem:payload-too-large");
}

#[test]
fn body_at_the_cap_is_accepted() {
    let (_dir, broker) = broker();
    let mut body = sample_event("at-cap");
    body.resize(256 * 1024, b' ');
    let reply = broker.post_generic("msg_atcap", now(), &body);
    assert_eq!(reply.status, 202, "{}", reply.body);
}

#[test]
fn r2_reserialized_body_fails_verification() {
    let (_dir, broker) = broker();
    let original = br#"{"host": "h1", "disposition": "blocked"}"#;
    let ts = now();
    let sig = broker.generic_secret().sign("msg_reser", ts, original);
    // The same JSON, serialized differently, is not what was signed.
    let reserialized =
        serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(original).unwrap()).unwrap();
    assert_ne!(&reserialized[..], &original[..]);
    let reply =
        broker.post("/v1/ingest/generic", &signed_headers("msg_reser", ts, sig.clone()), &reserialized);
    reply.assert_problem(401, UNAUTHORIZED);
    let reply = broker.post("/v1/ingest/generic", &signed_headers("msg_reser", ts, sig), original);
    assert_eq!(reply.status, 202);
}

#[test]
fn r3_missing_or_empty_signature_headers_are_refused() {
    let (_dir, broker) = broker();
    let body = sample_event("r3");
    let ts = now();
    let sig = broker.generic_secret().sign("msg_r3", ts, &body);
    let full = signed_headers("msg_r3", ts, sig);
    for drop in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let headers: Vec<_> = full.iter().filter(|(k, _)| *k != drop).cloned().collect();
        broker.post("/v1/ingest/generic", &headers, &body).assert_problem(401, UNAUTHORIZED);
    }
    let empty = signed_headers("msg_r3", ts, String::new());
    broker.post("/v1/ingest/generic", &empty, &body).assert_problem(401, UNAUTHORIZED);
    let garbage = signed_headers("msg_r3", ts, "not-a-signature".into());
    broker.post("/v1/ingest/generic", &garbage, &body).assert_problem(401, UNAUTHORIZED);
}

#[test]
fn r6_stale_and_future_timestamps_are_refused() {
    let (_dir, broker) = broker();
    let body = sample_event("r6");
    // A few seconds past the ±300 s window, so the second boundary between the test's clock
    // read and the broker's cannot flip the outcome (the unit tests pin the exact edge).
    for ts in [now() - 305, now() + 305] {
        broker.post_generic(&format!("msg_r6_{ts}"), ts, &body).assert_problem(401, UNAUTHORIZED);
    }
    assert_eq!(broker.post_generic("msg_r6_ok", now() - 200, &body).status, 202);
}

#[test]
fn r7_message_id_with_a_dot_or_odd_timestamp_is_refused() {
    let (_dir, broker) = broker();
    let body = sample_event("r7");
    let ts = now();
    let secret = broker.generic_secret();
    let sig = secret.sign("msg.r7", ts, &body);
    broker
        .post("/v1/ingest/generic", &signed_headers("msg.r7", ts, sig), &body)
        .assert_problem(401, UNAUTHORIZED);
    let mut headers = signed_headers("msg_r7", ts, secret.sign("msg_r7", ts, &body));
    headers[2].1 = format!("{ts}.0");
    broker.post("/v1/ingest/generic", &headers, &body).assert_problem(401, UNAUTHORIZED);
}

#[test]
fn r8_any_valid_entry_verifies_but_more_than_eight_are_refused() {
    let (_dir, broker) = broker();
    let body = sample_event("r8");
    let ts = now();
    let good = broker.generic_secret().sign("msg_r8", ts, &body);
    let mixed = format!("v2,abc v1a,zzz garbage {good}");
    assert_eq!(broker.post("/v1/ingest/generic", &signed_headers("msg_r8", ts, mixed), &body).status, 202);
    // Nine entries, the last one valid: refused because of the count alone.
    let valid_b = broker.generic_secret().sign("msg_r8b", ts, &body);
    let nine = format!("{} {valid_b}", ["v1,AAAA"; 8].join(" "));
    broker
        .post("/v1/ingest/generic", &signed_headers("msg_r8b", ts, nine), &body)
        .assert_problem(401, UNAUTHORIZED);
    let eight = format!("{} {valid_b}", ["v1,AAAA"; 7].join(" "));
    assert_eq!(broker.post("/v1/ingest/generic", &signed_headers("msg_r8b", ts, eight), &body).status, 202);
}

#[test]
fn r12_every_authentication_failure_gets_the_same_answer() {
    let (_dir, broker) = broker();
    let body = sample_event("r12");
    let ts = now();
    let secret = broker.generic_secret();
    let wrong_key = haltwire::ingest::auth::standard_webhooks::HmacSecret::parse(
        &haltwire::ingest::auth::standard_webhooks::HmacSecret::generate(),
    )
    .unwrap();
    let answers = [
        broker.post(
            "/v1/ingest/generic",
            &signed_headers("msg_a", ts, wrong_key.sign("msg_a", ts, &body)),
            &body,
        ),
        broker.post(
            "/v1/ingest/generic",
            &signed_headers("msg_b", ts - 900, secret.sign("msg_b", ts - 900, &body)),
            &body,
        ),
        broker.post("/v1/ingest/generic", &[("content-type", "application/json".into())], &body),
        broker.post(
            "/v1/ingest/no-such-source",
            &signed_headers("msg_c", ts, secret.sign("msg_c", ts, &body)),
            &body,
        ),
    ];
    for answer in &answers {
        answer.assert_problem(401, UNAUTHORIZED);
        assert_eq!(answer.body, answers[0].body, "401 bodies must not tell failures apart");
        assert!(!answer.body.contains("v1,"), "must not echo signatures");
    }
}

#[test]
fn r16_duplicate_message_id_is_acknowledged_once_with_the_first_event_id() {
    let (_dir, broker) = broker();
    let body = sample_event("r16");
    let first = broker.post_generic("msg_dup", now(), &body).json();
    // A sender retry: same id, new timestamp and signature.
    let again = broker.post_generic("msg_dup", now() + 1, &body).json();
    assert_eq!(first["duplicate"], false);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
    let token = broker.soc_token();
    let stored: Vec<_> = broker.all_events(&token).into_iter().filter(|e| e["vendor_id"] == "r16").collect();
    assert_eq!(stored.len(), 1);
}

#[test]
fn r16_concurrent_copies_of_one_message_store_exactly_one_event() {
    let (_dir, broker) = broker();
    let body = sample_event("r16-concurrent");
    let ts = now();
    let broker = std::sync::Arc::new(broker);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let broker = broker.clone();
            let body = body.clone();
            std::thread::spawn(move || broker.post_generic("msg_race", ts, &body).json())
        })
        .collect();
    let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let fresh = answers.iter().filter(|a| a["duplicate"] == false).count();
    assert_eq!(fresh, 1, "{answers:?}");
    assert!(answers.iter().all(|a| a["event_id"] == answers[0]["event_id"]));
}

#[test]
fn r17_dedup_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let body = sample_event("r17");
    let ts = now();
    let first = {
        let broker = Broker::start(&data);
        let reply = broker.post_generic("msg_restart", ts, &body).json();
        assert_eq!(broker.terminate(), Some(0));
        reply
    };
    let broker = Broker::start(&data);
    let again = broker.post_generic("msg_restart", ts, &body).json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_id"], first["event_id"]);
}

#[test]
fn wrong_content_type_is_415_after_authentication() {
    let (_dir, broker) = broker();
    let body = sample_event("ct");
    let ts = now();
    let mut headers = signed_headers("msg_ct", ts, broker.generic_secret().sign("msg_ct", ts, &body));
    headers[0].1 = "text/plain".into();
    broker
        .post("/v1/ingest/generic", &headers, &body)
        .assert_problem(415, "urn:haltwire:problem:unsupported-media-type");
}

#[test]
fn malformed_json_is_400_and_schema_mismatch_is_422() {
    let (_dir, broker) = broker();
    broker
        .post_generic("msg_bad1", now(), b"{not json")
        .assert_problem(400, "urn:haltwire:problem:malformed-json");
    broker
        .post_generic("msg_bad2", now(), br#"{"disposition":"allowed"}"#)
        .assert_problem(422, "urn:haltwire:problem:invalid-event");
    // A sender cannot set the trust tier or the id.
    broker
        .post_generic("msg_bad3", now(), br#"{"trust":"signed"}"#)
        .assert_problem(422, "urn:haltwire:problem:invalid-event");
    // Refused events are not stored.
    let token = broker.soc_token();
    assert!(broker.all_events(&token).is_empty());
}

#[test]
fn soc_routes_need_a_soc_token() {
    let (_dir, broker) = broker();
    broker.get("/v1/events", None).assert_problem(401, UNAUTHORIZED);
    broker.get("/v1/events", Some("eyJhbGciOiJub25lIn0.e30.")).assert_problem(401, UNAUTHORIZED);
    let token = broker.soc_token();
    assert_eq!(broker.get("/v1/events", Some(&token)).status, 200);
    broker
        .get("/v1/events/00000000-0000-7000-8000-000000000000", Some(&token))
        .assert_problem(404, "urn:haltwire:problem:not-found");
    broker.get("/v1/events/nope", Some(&token)).assert_problem(400, "urn:haltwire:problem:invalid-request");
    broker
        .get("/v1/events?limit=0", Some(&token))
        .assert_problem(400, "urn:haltwire:problem:invalid-request");
    broker
        .get("/v1/events?since=yesterday", Some(&token))
        .assert_problem(400, "urn:haltwire:problem:invalid-request");
}

#[test]
fn event_listing_pages_in_arrival_order_and_honours_since() {
    let (_dir, broker) = broker();
    let token = broker.soc_token();
    for i in 0..5 {
        assert_eq!(
            broker.post_generic(&format!("msg_page{i}"), now(), &sample_event(&format!("p{i}"))).status,
            202
        );
    }
    let page = broker.get("/v1/events?limit=2", Some(&token)).json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["events"][0]["vendor_id"], "p0");
    let next = page["next"].as_str().unwrap();
    let page2 = broker.get(&format!("/v1/events?limit=2&after={next}"), Some(&token)).json();
    assert_eq!(page2["events"][0]["vendor_id"], "p2");
    let all = broker.all_events(&token);
    let markers: Vec<_> = all.iter().map(|e| e["vendor_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(markers, ["p0", "p1", "p2", "p3", "p4"]);
    let future = broker.get("/v1/events?since=2999-01-01T00:00:00Z", Some(&token)).json();
    assert!(future["events"].as_array().unwrap().is_empty());
}

#[test]
fn health_readiness_metrics_and_openapi_are_served() {
    let (_dir, broker) = broker();
    assert_eq!(broker.get("/healthz", None).status, 200);
    assert_eq!(broker.get("/readyz", None).status, 200);
    broker.post_generic("msg_metrics", now(), &sample_event("m")).json();
    broker.post_generic("msg_metrics2", now() - 1000, &sample_event("m")).assert_problem(401, UNAUTHORIZED);
    let metrics = broker.get("/metrics", None);
    assert_eq!(metrics.status, 200);
    for needle in [
        "haltwire_ingest_accepted_total{source=\"generic\",trust=\"signed\"} 1",
        "haltwire_ingest_rejected_total{source=\"generic\",reason=",
        "haltwire_store_flush_seconds",
    ] {
        assert!(metrics.body.contains(needle), "missing {needle} in\n{}", metrics.body);
    }
    let openapi = broker.get("/openapi.json", None).json();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["/v1/ingest/{source}", "/v1/events", "/v1/events/{id}", "/healthz", "/metrics"] {
        assert!(openapi["paths"].get(path).is_some(), "openapi lacks {path}");
    }
}

#[test]
fn routing_misses_and_wrong_methods_answer_problem_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    broker.get("/v1/ingest/generic", None).assert_problem(405, "urn:haltwire:problem:method-not-allowed");
    broker.get("/no/such/route", None).assert_problem(404, "urn:haltwire:problem:no-such-route");
}
