//! Every built-in JSON integration (and `generic`) on arbitrary bytes: decoding may fail,
//! but must never panic, hang or allocate without bound.
#![no_main]

use haltwire::decode::{mapping::ParserKind, Integrations};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static ALL: OnceLock<Integrations> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let all = ALL.get_or_init(|| Integrations::built_in().expect("built-in mappings compile"));
    for (name, _, _) in all.list() {
        let decoder = all.get(name).expect("listed");
        if decoder.parser() == ParserKind::Json {
            let _ = decoder.decode(data);
        }
    }
});
