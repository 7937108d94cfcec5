//! Sample expectations (`tests/data/samples/*.expect.json`): what decoding a sample input must
//! give, as a subset match. Shared by the decoding test (`integration_samples.rs`) and the
//! file-ingest test that tails the same inputs (`file_ingest.rs`).

#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// What this case shows, printed on failure.
    pub about: String,
    pub integration: String,
    pub input: String,
    /// One entry per decoded event, in order.
    pub events: Vec<Value>,
    /// Dotted field paths that must be absent in every event.
    #[serde(default)]
    pub absent: Vec<String>,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn input_path(input: &str) -> PathBuf {
    match input.strip_prefix("shared:") {
        Some(rest) => repo().join("../shared/samples").join(rest),
        None => repo().join(input),
    }
}

/// `a.b.c` inside a JSON value.
pub fn dotted<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k)).filter(|v| !v.is_null())
}

/// Every leaf of `expected` equals the same place in `actual`; returns the mismatches.
pub fn subset_mismatches(expected: &Value, actual: &Value, at: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let here = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
                match a.get(k) {
                    Some(av) => subset_mismatches(ev, av, &here, out),
                    None => out.push(format!("{here}: expected {ev}, missing")),
                }
            }
        }
        (Value::String(e), a) if e == "${hostname}" => {
            let here = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
            if a.as_str() != Some(here.as_str()) {
                out.push(format!("{at}: expected this machine's name {here:?}, got {a}"));
            }
        }
        (e, a) if e != a => out.push(format!("{at}: expected {e}, got {a}")),
        _ => {}
    }
}

/// The paths of every expectation file, sorted by name.
pub fn files() -> Vec<PathBuf> {
    let dir = repo().join("tests/data/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".expect.json"))
        .collect();
    files.sort();
    files
}

/// Every expectation file, sorted by name, with its path.
pub fn all() -> Vec<(PathBuf, Expectation)> {
    files()
        .into_iter()
        .map(|f| {
            let exp = load(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f, exp)
        })
        .collect()
}

/// One expectation file.
pub fn load(path: &Path) -> Result<Expectation, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("bad expectation file: {e}"))
}
