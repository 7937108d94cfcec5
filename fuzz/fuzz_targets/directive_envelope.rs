//! The agent-side directive path on arbitrary bytes: envelope parsing and opening, the full
//! verifier (audience, time, replay), and — since a fuzzer cannot forge signatures — the
//! payload schema and renderer directly. Nothing may panic; every rendered notice stays within
//! its bounds and free of host framing.
#![no_main]

use ed25519_dalek::SigningKey;
use haltwire::directive::payload::DirectivePayload;
use haltwire::directive::render::{notice, MAX_NOTICE_CHARS};
use haltwire::directive::trust::TrustStore;
use haltwire::directive::verify::{ReplayState, VerifiedDirective, Verifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
    let verifier = Verifier::new(TrustStore::from_keys(&[(key, None, None)]));
    let mut replay = ReplayState::default();
    let _ = verifier.verify(data, "0190e5c2-0000-7000-8000-000000000001", 1_800_000_000, &mut replay);

    if let Ok(payload) = serde_json::from_slice::<DirectivePayload>(data) {
        let text = notice(&VerifiedDirective { payload, signed_by: vec![] });
        assert!(text.chars().count() <= MAX_NOTICE_CHARS);
        assert!(!text.to_lowercase().contains("system-reminder"));
    }
});
