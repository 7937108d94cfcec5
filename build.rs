//! Embeds every `integrations/<name>/mapping.toml` into the binary, so a new vendor integration
//! is a folder of data, not a code change.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    // Anchored at the manifest, and loud when missing: an empty built-in set once slipped into
    // a build silently and every vendor integration vanished from the binary.
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("integrations");
    let dir = dir.as_path();
    println!("cargo:rerun-if-changed=integrations");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .filter(|e| e.path().join("mapping.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.is_empty(), "no integrations/*/mapping.toml under {}", dir.display());
    names.sort();
    let mut out = String::from("/// Built-in mappings: (integration name, mapping.toml text).\npub const BUILT_IN_MAPPINGS: &[(&str, &str)] = &[\n");
    for name in &names {
        println!("cargo:rerun-if-changed=integrations/{name}/mapping.toml");
        let path = std::fs::canonicalize(dir.join(name).join("mapping.toml")).expect("mapping path");
        writeln!(out, "    ({name:?}, include_str!({:?})),", path.display().to_string()).unwrap();
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("builtin_integrations.rs");
    std::fs::write(target, out).expect("write builtin_integrations.rs");
}
