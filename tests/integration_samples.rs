//! Every sample payload decodes to what its expectation file says.
//!
//! `tests/data/samples/*.expect.json` each name an input and the integration, and list, per
//! decoded event, the normalized fields that must be present with exactly these values (a
//! subset match: fields not listed are not checked, except that `absent` names fields that
//! must NOT be set — e.g. a vendor graph id that must never become `process.pid`). The expected
//! string `"${hostname}"` stands for this machine's name (local sources such as audit logs
//! without `node=` report the host they are read on).
//!
//! Inputs are either our own samples (`integrations/<name>/samples/…`, path relative to the
//! repository) or the published vendor payloads beside the repository
//! (`shared:edr/<file>` → `../shared/samples/edr/<file>`).

use haltwire::decode::{split_payloads, DecodedView, Integrations};
use std::path::Path;

#[path = "common/expect.rs"]
mod expect;

use expect::{dotted, input_path, repo, subset_mismatches, Expectation};

fn check(expect_file: &Path, integrations: &Integrations) -> Result<(), String> {
    let exp: Expectation = expect::load(expect_file)?;
    let input = input_path(&exp.input);
    let payload = std::fs::read_to_string(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let decoder = integrations.get(&exp.integration).ok_or(format!("no integration {}", exp.integration))?;
    let mut actual = Vec::new();
    for (line, chunk) in split_payloads(decoder.parser(), &payload) {
        let events =
            decoder.decode(chunk.as_bytes()).map_err(|e| format!("{}:{line}: {e}", input.display()))?;
        for event in &events {
            actual.push(serde_json::to_value(DecodedView::new(decoder.name(), event)).unwrap());
        }
    }
    if actual.len() != exp.events.len() {
        return Err(format!("{}: expected {} events, decoded {}", exp.about, exp.events.len(), actual.len()));
    }
    let mut problems = Vec::new();
    for (i, (e, a)) in exp.events.iter().zip(&actual).enumerate() {
        let mut mism = Vec::new();
        subset_mismatches(e, a, "", &mut mism);
        for field in &exp.absent {
            if let Some(v) = dotted(a, field) {
                mism.push(format!("{field}: must be absent, got {v}"));
            }
        }
        problems.extend(mism.into_iter().map(|m| format!("event {i}: {m}")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}:\n  {}\n  decoded: {}",
            exp.about,
            problems.join("\n  "),
            serde_json::to_string(&actual).unwrap()
        ))
    }
}

#[test]
fn every_sample_decodes_as_expected() {
    let integrations = Integrations::built_in().expect("built-in mappings compile");
    let files = expect::files();
    let shared_present = repo().join("../shared/samples").is_dir();
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        if text.contains("\"shared:") && !shared_present {
            eprintln!("skipping {} (../shared/samples is not beside this checkout)", file.display());
            continue;
        }
        checked += 1;
        if let Err(e) = check(file, &integrations) {
            failures.push(format!("{}: {e}", file.file_name().unwrap().to_string_lossy()));
        }
    }
    eprintln!("checked {checked} sample expectations");
    assert!(failures.is_empty(), "{} sample(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_built_in_integration_has_samples_and_a_setup_guide() {
    let integrations = Integrations::built_in().unwrap();
    let expectations: Vec<String> = std::fs::read_dir(repo().join("tests/data/samples"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    for (name, _, _) in integrations.list() {
        let folder = repo().join("integrations").join(name);
        assert!(folder.join("README.md").is_file(), "integrations/{name}/README.md is missing");
        let needle = format!("\"integration\": \"{name}\"");
        assert!(
            expectations.iter().any(|e| e.contains(&needle)),
            "no sample expectation for integration {name}"
        );
    }
}
