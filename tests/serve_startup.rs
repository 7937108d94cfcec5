//! `haltwire serve` start-up, configuration and shutdown, against the real binary.

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn first_start_creates_owner_only_keys_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data);
    assert_eq!(std::fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
    for file in ["keys/directive.pem", "secrets/api-token.key", "secrets/generic.whsec"] {
        let meta = std::fs::metadata(data.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.mode() & 0o777, 0o600, "{file}");
    }
    let pem = std::fs::read_to_string(data.join("keys/directive.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let stderr = broker.wait_stderr("generic.whsec");
    assert!(stderr.contains("created broker signing key"), "{stderr}");
    assert!(stderr.contains("directive.pem"), "{stderr}");
    assert!(stderr.contains("generic.whsec"), "{stderr}");
    assert_eq!(broker.terminate(), Some(0));

    // A second start reuses everything and creates nothing.
    let broker = Broker::start(&data);
    let stderr = broker.wait_stderr("ready");
    assert!(stderr.contains("ready") && !stderr.contains("created"), "{stderr}");
    assert_eq!(std::fs::read_to_string(data.join("keys/directive.pem")).unwrap(), pem);
}

#[test]
fn r19_a_signing_key_readable_by_others_stops_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    Broker::start(&data).terminate();
    std::fs::set_permissions(data.join("keys/directive.pem"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let (code, stderr) = BrokerBuilder::new(&data).try_start().err().expect("must refuse to start");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("directive.pem") && stderr.contains("chmod 600"), "{stderr}");
}

fn start_with_config(toml: &str) -> Result<(tempfile::TempDir, Broker), (Option<i32>, String)> {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("haltwire.toml");
    std::fs::write(&config, toml).unwrap();
    let broker = BrokerBuilder::new(&dir.path().join("data")).config(&config).try_start()?;
    Ok((dir, broker))
}

#[test]
fn r4_a_source_without_credentials_is_a_start_error() {
    let (code, stderr) = start_with_config("[[source]]\nname = \"edr\"\n").err().expect("must not start");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("`auth` is required"), "{stderr}");
    let (_, stderr) = start_with_config("[[source]]\nname = \"edr\"\nauth = \"bearer\"\n").err().unwrap();
    assert!(stderr.contains("exactly one of `token`, `token_file`"), "{stderr}");
}

#[test]
fn r9_short_hmac_secret_and_weak_ed25519_key_are_start_errors() {
    let short = "[[source]]\nname = \"edr\"\nauth = \"standard-webhooks\"\nsecret = \"whsec_c2hvcnQ=\"\n";
    let (code, stderr) = start_with_config(short).err().expect("short secret must not start");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("edr"), "{stderr}");
    assert!(!stderr.contains("c2hvcnQ"), "the secret must not be echoed: {stderr}");
    // The identity point: a small-order key that would accept forgeries under plain `verify`.
    let weak = "[[source]]\nname = \"edr\"\nauth = \"standard-webhooks-ed25519\"\npublic_keys = [\"whpk_AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]\n";
    let (code, stderr) = start_with_config(weak).err().expect("weak key must not start");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("edr"), "{stderr}");
}

#[test]
fn unknown_config_key_is_reported_with_file_line_and_column() {
    let (code, stderr) =
        start_with_config("listen = \"127.0.0.1:0\"\n\n[store]\nretention = 3\n").err().unwrap();
    assert_eq!(code, Some(1));
    assert!(stderr.contains("haltwire.toml:4:1:"), "{stderr}");
    assert!(stderr.contains("retention"), "{stderr}");
}

#[test]
fn flags_override_the_config_file() {
    // The file says port 1 (unbindable as non-root would be, and wrong anyway); the flag wins.
    let (_dir, broker) = start_with_config("listen = \"127.0.0.1:1\"\n").unwrap();
    assert!(!broker.url.ends_with(":1"), "{}", broker.url);
    assert_eq!(broker.get("/healthz", None).status, 200);
}

#[test]
fn r10_r18_bearer_and_basic_sources_mark_shared_secret_and_dedup_on_body() {
    let toml = "[[source]]\nname = \"kibana\"\nauth = \"bearer\"\ntoken = \"kibana-token-0123456789\"\n\
                [[source]]\nname = \"wazuh\"\nauth = \"basic\"\nusername = \"wazuh\"\npassword = \"pw-0123456789abcdef\"\n";
    let (_dir, broker) = start_with_config(toml).unwrap();
    let body = sample_event("bearer");
    let json = ("content-type", "application/json".to_string());
    let bearer = ("authorization", "Bearer kibana-token-0123456789".to_string());
    let first = broker.post("/v1/ingest/kibana", &[json.clone(), bearer.clone()], &body);
    assert_eq!(first.status, 202, "{}", first.body);
    let again = broker.post("/v1/ingest/kibana", &[json.clone(), bearer.clone()], &body).json();
    assert_eq!(again["duplicate"], true, "same body from a shared-secret source is a duplicate");
    let wrong = ("authorization", "Bearer kibana-token-012345678".to_string());
    broker
        .post("/v1/ingest/kibana", &[json.clone(), wrong], &body)
        .assert_problem(401, "urn:haltwire:problem:unauthorized");

    use base64::Engine as _;
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("wazuh:pw-0123456789abcdef"));
    let reply =
        broker.post("/v1/ingest/wazuh", &[json.clone(), ("authorization", basic)], &sample_event("basic"));
    assert_eq!(reply.status, 202, "{}", reply.body);

    let token = broker.soc_token();
    let id = first.json()["event_id"].as_str().unwrap().to_string();
    assert_eq!(broker.event(&token, &id)["trust"], "shared-secret");
}

#[test]
fn ed25519_source_accepts_a_rotated_key_and_event_send_signs_with_it() {
    use haltwire::ingest::auth::standard_webhooks::Ed25519Secret;
    let (old_secret, old_public) = Ed25519Secret::generate();
    let (new_secret, new_public) = Ed25519Secret::generate();
    let toml = format!(
        "[[source]]\nname = \"falco-signed\"\nauth = \"standard-webhooks-ed25519\"\npublic_keys = [\"{new_public}\", \"{old_public}\"]\n"
    );
    let (dir, broker) = start_with_config(&toml).unwrap();
    for (i, secret) in [old_secret, new_secret].iter().enumerate() {
        let key_file = dir.path().join(format!("sender{i}.whsk"));
        std::fs::write(&key_file, secret).unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let event_file = dir.path().join("event.json");
        std::fs::write(&event_file, sample_event(&format!("ed{i}"))).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["event", "send", "--source", "falco-signed", "--url", &broker.url, "--signing-key"])
            .arg(&key_file)
            .arg("--config")
            .arg(dir.path().join("haltwire.toml"))
            .arg(&event_file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ack: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(ack["duplicate"], false);
    }
}

#[test]
fn event_send_posts_json_lines_with_the_generic_secret() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data);
    let lines = format!(
        "{}\n{}\n",
        String::from_utf8(sample_event("l1")).unwrap(),
        String::from_utf8(sample_event("l2")).unwrap()
    );
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["event", "send", "--url", &broker.url, "--data-dir"])
        .arg(&data)
        .arg(&file)
        .env_remove("HALTWIRE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acks: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(acks.len(), 2);
    let token = broker.soc_token();
    let markers: Vec<_> = broker.all_events(&token).iter().map(|e| e["vendor_id"].clone()).collect();
    assert_eq!(markers, ["l1", "l2"]);
}

#[test]
fn r46_logs_carry_neither_secrets_nor_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerBuilder::new(&dir.path().join("data")).env("HALTWIRE_LOG", "trace").start();
    let secret_text = std::fs::read_to_string(dir.path().join("data/secrets/generic.whsec")).unwrap();
    let body = sample_event("secret-marker-in-body");
    let ts = now();
    assert_eq!(broker.post_generic("msg_logs", ts, &body).status, 202);
    broker.post_generic("msg_logs2", ts - 1000, &body);
    let stderr_handle = broker.stderr.clone();
    assert_eq!(broker.terminate(), Some(0));
    let logs = stderr_handle.lock().unwrap().clone();
    assert!(logs.contains("event accepted") && logs.contains("ingest refused"), "expected log lines: {logs}");
    let key = secret_text.trim().trim_start_matches("whsec_");
    assert!(!logs.contains(key), "secret leaked into logs");
    assert!(!logs.contains("secret-marker-in-body"), "event body leaked into logs");
    assert!(!logs.contains("v1,"), "signature leaked into logs");
}

#[test]
fn sigterm_drains_and_exits_cleanly_keeping_acknowledged_events() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let broker = Broker::start(&data);
    let id = broker.post_generic("msg_term", now(), &sample_event("term")).json()["event_id"].clone();
    assert_eq!(broker.terminate(), Some(0));
    let broker = Broker::start(&data);
    let token = broker.soc_token();
    assert_eq!(broker.event(&token, id.as_str().unwrap())["vendor_id"], "term");
}
