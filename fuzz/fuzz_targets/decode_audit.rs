//! The audit-record pre-parser on arbitrary text: grouping lines into events and turning each
//! group into JSON may fail, but must never panic or grow without bound.
#![no_main]

use haltwire::decode::audit::{group_lines, to_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (_, group) in group_lines(&text) {
        let _ = to_json(&group);
    }
});
