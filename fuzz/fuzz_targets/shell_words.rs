//! The shell reader on arbitrary command lines: word splitting, parsing, wrapper unwrapping
//! (bounded depth) and object extraction must never panic or recurse without bound.
#![no_main]

use haltwire::sessions::shell;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = shell::split_words(&text);
    let _ = shell::parse(&text);
    let _ = shell::facts(&text, Some("/work/project"));
});
