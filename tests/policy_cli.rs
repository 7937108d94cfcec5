//! `haltwire policy check|test` as a user and CI run them: output lines and exit codes.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_haltwire");

fn run(args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(BIN)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HALTWIRE_CONFIG")
        .output()
        .expect("run haltwire");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn shipped_policies_check_and_pass_their_tests() {
    let (code, out) = run(&["policy", "check", "policies", "policies/examples"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 policies OK (hash "), "{out}");
    assert!(out.contains("5 policies OK (hash "), "{out}");

    let (code, out) = run(&["policy", "test", "policies", "policies/examples"]);
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap_or("");
    assert!(last.ends_with(" passed, 0 failed"), "{out}");
    assert_eq!(out.lines().count(), 1, "a passing run prints only the summary: {out}");
}

#[test]
fn check_reports_all_four_problems_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "a.yaml",
        "- policy: p\n  id: p\n  priorty: high\n  match:\n    process.cmd_line|re: 'a(b'\n  action: ignore\n",
    );
    write(
        dir.path(),
        "b.yaml",
        "- policy: q\n  id: q\n  match: {process.name|in_list: nope}\n  colour: red\n  action: ignore\n",
    );
    let path = dir.path().to_str().unwrap_or("");
    let (code, out) = run(&["policy", "check", path]);
    assert_eq!(code, 1, "{out}");
    let codes: Vec<&str> = out.lines().filter_map(|l| l.split("error[").nth(1)).map(|r| &r[..4]).collect();
    assert_eq!(codes, ["P011", "P034", "P040", "P011"], "{out}");
    assert!(out.contains("a.yaml:3:3: error[P011]"), "{out}");
    assert!(out.contains("b.yaml:3:33: error[P040]"), "{out}");
    assert!(out.contains(": 4 error(s)"), "{out}");
}

#[test]
fn test_prints_one_line_per_failure_then_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "p.yaml",
        "- policy: p\n  id: p\n  match: {stopped: true}\n  action: halt_session\n  tests:\n    \
         - {name: ok, event: {disposition: blocked}, expect: {policy: p}}\n    \
         - {name: wrong, event: {disposition: detected}, expect: {policy: p}}\n    \
         - {name: also wrong, event: {disposition: blocked}, expect: {policy: none}}\n",
    );
    let path = dir.path().to_str().unwrap_or("");
    let (code, out) = run(&["policy", "test", path]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].ends_with("p.yaml:7:7: p \"wrong\": FAIL: expected `p` to decide, but no policy matched"),
        "{out}"
    );
    assert!(lines[1]
        .contains("p.yaml:8:7: p \"also wrong\": FAIL: expected no policy to match, got `p` (halt_session)"));
    assert_eq!(lines[2], "1 passed, 2 failed");

    let (code, out) = run(&["policy", "test", "--explain", path]);
    assert_eq!(code, 1);
    assert!(out.contains("no match: stopped is false, which does not satisfy `stopped: true`"), "{out}");
    assert_eq!(out.lines().last(), Some("1 passed, 2 failed"));
}

#[test]
fn a_folder_that_does_not_load_counts_as_a_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "p.yaml", "- policy: p\n");
    let path = dir.path().to_str().unwrap_or("");
    let (code, out) = run(&["policy", "test", path]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.lines().last(), Some("0 passed, 1 failed"), "{out}");
}
