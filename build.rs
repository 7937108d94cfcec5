//! Embeds every `integrations/<name>/mapping.toml` into the binary, so a new vendor integration
//! is a folder of data, not a code change.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("integrations");
    println!("cargo:rerun-if-changed=integrations");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("mapping.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
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
