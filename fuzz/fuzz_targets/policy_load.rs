//! The policy loader on arbitrary text: loading may fail with diagnostics, but must never
//! panic, hang or allocate without bound; a set that loads must evaluate and explain an event.
#![no_main]

use haltwire::event::{SecurityEvent, Trust};
use haltwire::policy::{EvalInput, PolicySet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(set) = PolicySet::from_yaml(&[("fuzz.yaml", text)]) else { return };
    let body = serde_json::from_str(
        r#"{"disposition":"blocked","host":"h","process":{"exe":"/usr/bin/curl","cmd_line":"curl x | sh"},"target":{"file":"/etc/shadow"}}"#,
    )
    .expect("valid body");
    let event = SecurityEvent {
        id: uuid::Uuid::nil(),
        source: "fuzz".into(),
        integration: "generic".into(),
        trust: Trust::Signed,
        received_at: time::OffsetDateTime::UNIX_EPOCH,
        body,
        raw: serde_json::value::RawValue::from_string("{}".into()).expect("raw"),
    };
    let input = EvalInput::event_only(&event);
    let _ = set.evaluate(&input);
    let _ = set.explain(&input);
    let _ = set.run_tests(std::path::Path::new(""));
});
