//! `haltwire install claude [--project DIR | --user] [--print]`: adds haltwire's hooks to Claude
//! Code's `settings.json` (project or user), pointing at this binary by absolute path.
//!
//! `haltwire install codex [--codex-home DIR] [--print]`: adds them to Codex's user-level
//! `hooks.json`, then records their trust through Codex's own app-server (`hooks/list`,
//! `config/batchWrite`) and checks that Codex now reports them as trusted — an untrusted Codex
//! hook is skipped silently, so an install that stopped at the file would protect nothing.
//!
//! The merge itself is `agent::install`; this file finds, reads and atomically rewrites the file.

use crate::agent::codex::hooks::{list_for_cwd, trust_in_user_config, HookListing};
use crate::agent::codex::protocol::ClientInfo;
use crate::agent::codex::server::{AppServer, ServerCommand};
use crate::agent::hook::codex::EventName as CodexEvent;
use crate::agent::install::{merge_claude_hooks, merge_codex_hooks, shell_quote};
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum InstallCommand {
    /// Claude Code: merge haltwire's hooks into `.claude/settings.json`.
    Claude(ClaudeArgs),
    /// Codex: merge haltwire's hooks into `$CODEX_HOME/hooks.json` and trust them.
    Codex(CodexInstallArgs),
}

/// Options baked into the hook command.
#[derive(clap::Args, Clone)]
pub struct HookOptions {
    /// Make the hook deny tool calls when the broker cannot be reached.
    #[arg(long)]
    pub fail_closed: bool,
    /// Bake this broker URL into the hook command (else the hook uses HALTWIRE_URL or the default).
    #[arg(long)]
    pub url: Option<String>,
    /// Bake this broker data directory (for its directive keys) into the hook command.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct CodexInstallArgs {
    /// Codex's home directory [env: CODEX_HOME] [default: ~/.codex]
    #[arg(long, value_name = "DIR")]
    codex_home: Option<PathBuf>,
    /// The codex executable, run as `codex app-server` to record trust [env: CODEX_BIN]
    #[arg(long, env = "CODEX_BIN", default_value = "codex")]
    codex_bin: PathBuf,
    /// Print the merged hooks.json instead of writing it (nothing is trusted).
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    hook: HookOptions,
}

#[derive(clap::Args)]
#[group(multiple = false)]
pub struct Target {
    /// The project whose `.claude/settings.json` gets the hooks [default: the current directory]
    #[arg(long, value_name = "DIR")]
    project: Option<PathBuf>,
    /// The user's `~/.claude/settings.json` instead (every project).
    #[arg(long)]
    user: bool,
}

#[derive(clap::Args)]
pub struct ClaudeArgs {
    #[command(flatten)]
    target: Target,
    /// Print the merged settings instead of writing them.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    hook: HookOptions,
}

pub fn run(cmd: InstallCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InstallCommand::Claude(args) => claude(args),
        InstallCommand::Codex(args) => codex(args),
    }
}

fn claude(args: ClaudeArgs) -> anyhow::Result<ExitCode> {
    let path = settings_path(&args.target)?;
    let command = hook_command("claude", &args.hook)?;
    let mut settings = read_settings(&path)?;
    let changed = merge_claude_hooks(&mut settings, &command).with_context(|| path.display().to_string())?;
    write_or_print(&path, &settings, changed, args.print, &command)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the merged file (`--print`, returning `false`), or writes it when it changed and says
/// what happened (returning `true`).
fn write_or_print(
    path: &Path,
    settings: &serde_json::Value,
    changed: bool,
    print_only: bool,
    command: &str,
) -> anyhow::Result<bool> {
    let mut text = serde_json::to_string_pretty(settings)?;
    text.push('\n');
    if print_only {
        print!("{text}");
        return Ok(false);
    }
    if changed {
        write_atomically(path, text.as_bytes())?;
        println!("haltwire hooks installed in {}", path.display());
    } else {
        println!("haltwire hooks already installed in {}", path.display());
    }
    println!("hook command: {command}");
    Ok(true)
}

/// A JSON settings file, `{}` when absent or blank; anything else that is not JSON is an error
/// (the user's file is never replaced with a guess).
fn read_settings(path: &Path) -> anyhow::Result<serde_json::Value> {
    Ok(match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not valid JSON; fix it by hand first", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    })
}

fn codex(args: CodexInstallArgs) -> anyhow::Result<ExitCode> {
    let home = codex_home(args.codex_home.as_deref())?;
    let path = home.join("hooks.json");
    let command = hook_command("codex", &args.hook)?;
    let mut settings = read_settings(&path)?;
    let changed = merge_codex_hooks(&mut settings, &command).with_context(|| path.display().to_string())?;
    if !write_or_print(&path, &settings, changed, args.print, &command)? {
        return Ok(ExitCode::SUCCESS);
    }
    let server = start_codex(&args.codex_bin, &home)?;
    let cwd = std::env::current_dir().context("current directory")?;
    let cwd = cwd.to_string_lossy();
    let ours_in_file = |listing: HookListing| HookListing {
        hooks: listing.hooks.into_iter().filter(|h| h.source == "user" && h.is_haltwire()).collect(),
        ..listing
    };
    let listing = ours_in_file(list_for_cwd(server.conn(), &cwd)?);
    let trusted = trust_in_user_config(server.conn(), &listing)?;
    let after = list_for_cwd(server.conn(), &cwd)?;
    server.shutdown(std::time::Duration::from_secs(2));
    let missing: Vec<&str> = CodexEvent::ALL
        .iter()
        .filter(|e| !after.for_event(**e).is_some_and(|h| h.will_run()))
        .map(|e| e.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "Codex does not report haltwire's hooks as trusted and enabled for: {} (run `haltwire doctor codex` for details)",
            missing.join(", ")
        );
    }
    if trusted > 0 {
        println!("trusted {trusted} hook(s) in {}", home.join("config.toml").display());
    } else {
        println!("hooks already trusted");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--codex-home`, else `CODEX_HOME`, else `~/.codex`; created when missing (Codex does the same).
pub fn codex_home(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    let home = match flag {
        Some(dir) => dir.to_path_buf(),
        None => match std::env::var_os("CODEX_HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h),
            None => {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set")?;
                PathBuf::from(home).join(".codex")
            }
        },
    };
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    std::fs::canonicalize(&home).with_context(|| home.display().to_string())
}

/// `codex app-server` on `home`, for hook listing and trust only: plugins off, so starting it
/// makes no network call.
pub fn start_codex(program: &Path, home: &Path) -> anyhow::Result<AppServer> {
    let mut cmd = ServerCommand::new(program);
    cmd.config = vec!["features.plugins=false".into()];
    cmd.env = vec![("CODEX_HOME".into(), home.display().to_string())];
    let client = ClientInfo { name: "haltwire".into(), version: env!("CARGO_PKG_VERSION").into() };
    AppServer::start(&cmd, client).with_context(|| format!("cannot run `{} app-server`", program.display()))
}

fn settings_path(target: &Target) -> anyhow::Result<PathBuf> {
    if target.user {
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context("HOME is not set")?;
        return Ok(PathBuf::from(home).join(".claude").join("settings.json"));
    }
    let project = target.project.clone().unwrap_or_else(|| PathBuf::from("."));
    if !project.is_dir() {
        bail!("{}: not a directory", project.display());
    }
    Ok(project.join(".claude").join("settings.json"))
}

/// The command the agent runs: this binary by absolute path, `hook <agent>`, plus any baked-in
/// options.
pub fn hook_command(agent: &str, args: &HookOptions) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the haltwire binary's path")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let mut command = format!("{} hook {agent}", shell_quote(&exe.to_string_lossy()));
    if args.fail_closed {
        command.push_str(" --fail-closed");
    }
    if let Some(url) = &args.url {
        command.push_str(&format!(" --url {}", shell_quote(url)));
    }
    if let Some(dir) = &args.data_dir {
        let dir = std::path::absolute(dir).with_context(|| dir.display().to_string())?;
        command.push_str(&format!(" --data-dir {}", shell_quote(&dir.to_string_lossy())));
    }
    Ok(command)
}

/// Writes `path` via a temp file in the same directory and a rename, keeping the old file's
/// mode (new files get 0644 minus umask, like an editor would).
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("settings path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.haltwire-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}
