//! `haltwire doctor codex`: whether Codex will really run haltwire's hooks, asked of Codex
//! itself (`codex app-server`, `hooks/list`) rather than read from the files — an untrusted,
//! disabled or misconfigured hook is skipped silently and the tool call runs.
//!
//! For each event haltwire handles it reports whether the hook is present, trusted and
//! enabled; then whether the hook's program is executable and the broker it talks to answers.
//! Exit code 0 only when every hook would fire and reach a broker. It changes nothing.

use super::install::{codex_home, start_codex};
use crate::agent::client::BrokerClient;
use crate::agent::codex::hooks::{list_for_cwd, HookListing};
use crate::agent::hook::codex::EventName;
use crate::agent::install::hook_words;
use anyhow::Context;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum DoctorCommand {
    /// Codex: are haltwire's hooks present, trusted and going to fire?
    Codex(CodexDoctorArgs),
}

#[derive(clap::Args)]
pub struct CodexDoctorArgs {
    /// Codex's home directory [env: CODEX_HOME] [default: ~/.codex]
    #[arg(long, value_name = "DIR")]
    codex_home: Option<PathBuf>,
    /// The codex executable [env: CODEX_BIN]
    #[arg(long, env = "CODEX_BIN", default_value = "codex")]
    codex_bin: PathBuf,
    /// The project directory to check (project hooks count only there) [default: the current directory]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
}

pub fn run(cmd: DoctorCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DoctorCommand::Codex(args) => codex(args),
    }
}

fn codex(args: CodexDoctorArgs) -> anyhow::Result<ExitCode> {
    let home = codex_home(args.codex_home.as_deref())?;
    let cwd = match args.cwd {
        Some(dir) => dir,
        None => std::env::current_dir().context("current directory")?,
    };
    let server = start_codex(&args.codex_bin, &home)?;
    let version = server.version;
    let listing = list_for_cwd(server.conn(), &cwd.to_string_lossy());
    server.shutdown(Duration::from_secs(2));
    let listing = listing.context("hooks/list failed")?;
    println!("codex {}.{}.{}, home {}", version.0, version.1, version.2, home.display());
    let mut healthy = report_hooks(&listing);
    for warning in &listing.warnings {
        println!("  codex warning: {warning}");
    }
    for error in &listing.errors {
        println!("  codex error: {error}");
        healthy = false;
    }
    let Some(command) = listing.for_event(EventName::PreToolUse).and_then(|h| h.command.clone()) else {
        println!("result: NOT PROTECTED — run `haltwire install codex`");
        return Ok(ExitCode::FAILURE);
    };
    let words = hook_words(&command);
    healthy &= report_program(&command, words.as_deref());
    healthy &= report_broker(words.as_deref().unwrap_or_default());
    if healthy {
        println!("result: protected — the hooks will fire and reach the broker");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("result: NOT PROTECTED — see above");
        Ok(ExitCode::FAILURE)
    }
}

/// One line per event; whether all would fire.
fn report_hooks(listing: &HookListing) -> bool {
    let mut all = true;
    for event in EventName::ALL {
        let line = match listing.for_event(event) {
            None => {
                all = false;
                "missing — run `haltwire install codex`".to_string()
            }
            Some(h) if h.will_run() => format!("fires ({}, {})", h.trust_status, h.source),
            Some(h) => {
                all = false;
                let why = if !h.enabled {
                    "disabled".to_string()
                } else {
                    format!("{} — run `haltwire install codex` to trust it", h.trust_status)
                };
                format!("WILL NOT FIRE: {why}")
            }
        };
        println!("  {:<17} {line}", event.as_str());
    }
    all
}

/// The hook's program (the first of its `words`) exists and is executable.
fn report_program(command: &str, words: Option<&[String]>) -> bool {
    let Some(program) = words.and_then(|w| w.first()) else {
        println!("  hook command unreadable: {command}");
        return false;
    };
    let ok = std::fs::metadata(program).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if ok {
        println!("  hook program      {program}");
    } else {
        println!(
            "  hook program      MISSING or not executable: {program} — run `haltwire install codex` again"
        );
    }
    ok
}

/// The broker named in the hook command's `words` (or the hook's default) answers `/healthz`.
fn report_broker(words: &[String]) -> bool {
    let url = option_value(words, "--url").unwrap_or_else(|| BrokerClient::resolve_url(None));
    let healthy = BrokerClient::new(&url, Duration::from_secs(3)).map(|c| c.healthy()).unwrap_or(false);
    if healthy {
        println!("  broker            {url} answers");
    } else {
        println!("  broker            NOT REACHABLE at {url} — start it with `haltwire serve` (the hooks fail open meanwhile)");
    }
    let data_dir = option_value(words, "--data-dir");
    if let Some(dir) = &data_dir {
        let keys = Path::new(dir).join("keys").join("trusted");
        if !keys.is_dir() {
            println!("  directive keys    none in {} — notices cannot be verified", keys.display());
            return false;
        }
    }
    healthy
}

/// The value of `flag` among a hook command's words (after the program): `--flag VALUE` or
/// `--flag=VALUE`, as the hook's own option parser reads them.
fn option_value(words: &[String], flag: &str) -> Option<String> {
    let mut args = words.iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == flag {
            return args.next().cloned();
        }
        if let Some(value) = arg.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            return Some(value.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::install::{hook_command, HookOptions};

    #[test]
    fn options_of_a_hook_command_with_spaces_and_quotes_in_its_paths() {
        let data_dir = std::env::temp_dir().join("my data/o'neil");
        let options = HookOptions {
            fail_closed: true,
            url: Some("http://127.0.0.1:4258".into()),
            data_dir: Some(data_dir.clone()),
        };
        let command = hook_command("codex", &options).unwrap();
        let words = hook_words(&command).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(words[0], exe.canonicalize().unwrap_or(exe).to_string_lossy());
        assert_eq!(option_value(&words, "--data-dir").as_deref(), Some(data_dir.to_str().unwrap()));
        assert_eq!(option_value(&words, "--url").as_deref(), Some("http://127.0.0.1:4258"));
    }

    #[test]
    fn option_values_in_either_spelling_and_never_the_program() {
        let words: Vec<String> =
            ["--url=http://program", "hook", "codex", "--url=http://h:1", "--data-dir", "/d"]
                .map(String::from)
                .into();
        assert_eq!(option_value(&words, "--url").as_deref(), Some("http://h:1"));
        assert_eq!(option_value(&words, "--data-dir").as_deref(), Some("/d"));
        assert_eq!(option_value(&words[..5], "--data-dir"), None, "a flag without its value");
        assert_eq!(option_value(&words, "--fail-closed"), None);
    }
}
