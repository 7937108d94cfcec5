//! Webhook ingest through vendor integrations, with the real binary: a source's integration
//! decodes its payloads, vendor batches store one event each, and an integration folder on
//! disk (`integrations_dir`) adds or overrides a mapping without a rebuild.

mod common;

use common::*;

const ACME_MAPPING: &str = r#"
integration = "acme"
description = "Acme EDR test integration"
disposition_default = "detected"
[envelope]
events = ["/alerts"]
[fields]
host = "${root}/sensor/host"
vendor_id = "/id"
"process.pid" = "/proc/os_pid"
"process.cmd_line" = "/proc/cmd"
[[disposition]]
when = { path = "/action", equals = "blocked" }
value = "blocked"
"#;

fn acme_broker() -> (tempfile::TempDir, Broker) {
    let dir = tempfile::tempdir().unwrap();
    let integrations = dir.path().join("integrations/acme");
    std::fs::create_dir_all(&integrations).unwrap();
    std::fs::write(integrations.join("mapping.toml"), ACME_MAPPING).unwrap();
    let config = dir.path().join("haltwire.toml");
    std::fs::write(
        &config,
        "integrations_dir = \"integrations\"\n[[source]]\nname = \"acme-edr\"\nintegration = \"acme\"\nauth = \"bearer\"\ntoken = \"acme-token-0123456789\"\n",
    )
    .unwrap();
    let broker = BrokerBuilder::new(&dir.path().join("data")).config(&config).start();
    (dir, broker)
}

fn post_acme(broker: &Broker, body: &[u8]) -> Reply {
    broker.post(
        "/v1/ingest/acme-edr",
        &[
            ("content-type", "application/json".to_string()),
            ("authorization", "Bearer acme-token-0123456789".to_string()),
        ],
        body,
    )
}

#[test]
fn a_vendor_batch_stores_one_normalized_event_per_alert_exactly_once() {
    let (_dir, broker) = acme_broker();
    let body = br#"{"sensor":{"host":"lab-3"},"alerts":[
        {"id":"a-1","action":"blocked","proc":{"os_pid":4100,"cmd":"curl x | sh"}},
        {"id":"a-2","action":"alert","proc":{"os_pid":4101,"cmd":"nc -l 4444"}}]}"#;
    let first = post_acme(&broker, body);
    assert_eq!(first.status, 202, "{}", first.body);
    let ack = first.json();
    assert_eq!(ack["duplicate"], false);
    assert_eq!(ack["event_ids"].as_array().unwrap().len(), 2);
    assert_eq!(ack["event_ids"][0], ack["event_id"]);

    let again = post_acme(&broker, body).json();
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["event_ids"], ack["event_ids"]);

    let token = broker.soc_token();
    let events = broker.all_events(&token);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["integration"], "acme");
    assert_eq!(events[0]["trust"], "shared-secret");
    assert_eq!(events[0]["host"], "lab-3");
    assert_eq!(events[0]["disposition"], "blocked");
    assert_eq!(events[0]["process"]["pid"], 4100);
    assert_eq!(events[1]["disposition"], "detected", "an alert without enforcement is only detected");
    assert_eq!(events[1]["vendor_id"], "a-2");
    // Each event keeps its own alert verbatim, not the whole batch.
    assert_eq!(events[1]["raw"]["id"], "a-2");
    assert!(events[1]["raw"].get("sensor").is_none());
}

#[test]
fn a_payload_the_integration_cannot_read_is_422_and_stores_nothing() {
    let (_dir, broker) = acme_broker();
    post_acme(&broker, br#"{"alerts":[1,2]}"#).assert_problem(422, "urn:haltwire:problem:invalid-event");
    post_acme(&broker, br#"{"alerts":[]}"#).assert_problem(422, "urn:haltwire:problem:invalid-event");
    post_acme(&broker, b"not json").assert_problem(400, "urn:haltwire:problem:malformed-json");
    let token = broker.soc_token();
    assert!(broker.all_events(&token).is_empty());
}

#[test]
fn a_broken_integration_folder_stops_the_broker_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let integrations = dir.path().join("integrations/acme");
    std::fs::create_dir_all(&integrations).unwrap();
    std::fs::write(
        integrations.join("mapping.toml"),
        "integration = \"acme\"\ndescription = \"x\"\n[fields]\nhots = \"/h\"\n",
    )
    .unwrap();
    let config = dir.path().join("haltwire.toml");
    std::fs::write(&config, "integrations_dir = \"integrations\"\n").unwrap();
    let (code, stderr) = BrokerBuilder::new(&dir.path().join("data"))
        .config(&config)
        .try_start()
        .err()
        .expect("must not start");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("acme/mapping.toml:4:1: unknown field `hots`"), "{stderr}");
}

#[test]
fn a_source_naming_an_unknown_integration_is_a_start_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haltwire.toml");
    std::fs::write(&config, "[[source]]\nname = \"x\"\nintegration = \"nope\"\nauth = \"bearer\"\ntoken = \"tok-0123456789abcdef\"\n").unwrap();
    let (code, stderr) =
        BrokerBuilder::new(&dir.path().join("data")).config(&config).try_start().err().unwrap();
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unknown integration \"nope\""), "{stderr}");
}

#[test]
fn event_decode_names_the_line_of_bad_input_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, "{\"host\":\"a\"}\n{\"host\": 5}\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["event", "decode", "--integration", "generic"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("events.jsonl:2:") && stderr.contains("host: invalid type"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "the good line is still printed: {stdout}");
}
