//! The hook stdin parsers (Claude Code and Codex shapes) on arbitrary bytes: a hook runs on
//! whatever the agent pipes in, so parsing may refuse but must never panic.
#![no_main]

use haltwire::agent::hook::{claude, codex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = claude::parse(data);
    let _ = codex::parse(data);
});
