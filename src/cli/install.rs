//! `haltwire install claude [--project DIR | --user] [--print]`: adds haltwire's hooks to Claude
//! Code's `settings.json` (project or user), pointing at this binary by absolute path. The
//! merge itself is `agent::install`; this file finds, reads and atomically rewrites the file.

use crate::agent::install::{merge_claude_hooks, shell_quote};
use anyhow::{bail, Context};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum InstallCommand {
    /// Claude Code: merge haltwire's hooks into `.claude/settings.json`.
    Claude(ClaudeArgs),
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
    /// Make the hook deny tool calls when the broker cannot be reached.
    #[arg(long)]
    fail_closed: bool,
    /// Bake this broker URL into the hook command (else the hook uses HALTWIRE_URL or the default).
    #[arg(long)]
    url: Option<String>,
    /// Bake this broker data directory (for its directive keys) into the hook command.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(cmd: InstallCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InstallCommand::Claude(args) => claude(args),
    }
}

fn claude(args: ClaudeArgs) -> anyhow::Result<ExitCode> {
    let path = settings_path(&args.target)?;
    let command = hook_command(&args)?;
    let mut settings = match std::fs::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not valid JSON; fix it by hand first", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let changed = merge_claude_hooks(&mut settings, &command).with_context(|| path.display().to_string())?;
    let mut text = serde_json::to_string_pretty(&settings)?;
    text.push('\n');
    if args.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    if changed {
        write_atomically(&path, text.as_bytes())?;
        println!("haltwire hooks installed in {}", path.display());
    } else {
        println!("haltwire hooks already installed in {}", path.display());
    }
    println!("hook command: {command}");
    Ok(ExitCode::SUCCESS)
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

/// The command Claude Code runs: this binary by absolute path, plus any baked-in options.
fn hook_command(args: &ClaudeArgs) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the haltwire binary's path")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let mut command = format!("{} hook claude", shell_quote(&exe.to_string_lossy()));
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
    let tmp = dir.join(format!(".settings.json.haltwire-{}", std::process::id()));
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
