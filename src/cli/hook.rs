//! `haltwire hook claude|codex`: the hook command an agent runs at each hook event, speaking the
//! agent's hook protocol on stdin/stdout. The logic is `agent::hook`; this file reads stdin,
//! resolves where the broker is, prints the answer and exits 0 (a hook's exit code has its own
//! meaning to the agent, so answers are always JSON on stdout).

use super::DataDirArg;
use crate::agent::client::BrokerClient;
use crate::agent::hook::{claude, codex, wire, AgentProfile, Hook, HookAnswer, HookConfig};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum HookCommand {
    /// Claude Code hooks (SessionStart, UserPromptSubmit, PreToolUse, PostToolUse,
    /// PostToolUseFailure, SessionEnd); installed by `haltwire install claude`.
    Claude(HookArgs),
    /// Codex hooks (SessionStart, UserPromptSubmit, PreToolUse, PostToolUse, SessionEnd);
    /// installed by `haltwire install codex`, and passed by `haltwire codex run|serve`.
    Codex(HookArgs),
}

#[derive(clap::Args)]
pub struct HookArgs {
    /// Deny tool calls when the broker cannot be asked (default: allow and warn the user).
    #[arg(long)]
    pub fail_closed: bool,
    /// Broker URL [env: HALTWIRE_URL] [default: http://127.0.0.1:4258, or `listen` from the config file]
    #[arg(long, env = "HALTWIRE_URL")]
    pub url: Option<String>,
    /// Budget for each broker call, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub dirs: DataDirArg,
}

pub fn run(cmd: HookCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HookCommand::Claude(args) => answer_hook(&args, claude::PROFILE, claude::parse, claude::output),
        HookCommand::Codex(args) => answer_hook(&args, codex::PROFILE, codex::parse, codex::output),
    }
}

/// Reads one hook input, lets the shared logic handle it, prints the agent's answer.
fn answer_hook<E: Copy>(
    args: &HookArgs,
    profile: AgentProfile,
    parse: fn(&[u8]) -> Result<wire::Input<E>, wire::ParseError>,
    output: fn(E, &HookAnswer) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut input = Vec::new();
    let read = std::io::stdin().lock().take(wire::MAX_INPUT_BYTES as u64 + 1).read_to_end(&mut input);
    let parsed = match read {
        Ok(_) => parse(&input),
        Err(_) => Err(wire::ParseError::NotJson("stdin unreadable".into())),
    };
    let (event, hook_event) = match parsed {
        Ok(wire::Input::Event(name, event)) => (name, event),
        Ok(wire::Input::Ignored(_)) => return Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("haltwire hook: {e}");
            print(&wire::unreadable_output(args.fail_closed, &e));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let hook = Hook::new(profile, hook_config(args));
    let answer = hook.handle(&hook_event);
    if let Some(text) = output(event, &answer) {
        print(&text);
    }
    hook.acknowledge(&answer, hook_event.session());
    Ok(ExitCode::SUCCESS)
}

/// Where the broker and its data directory are: flags, then environment, then the config
/// file (only read when one is named or `./haltwire.toml` exists), then the defaults.
fn hook_config(args: &HookArgs) -> HookConfig {
    let needs_config = args.url.is_none() || args.dirs.data_dir.is_none();
    let config = if needs_config {
        args.dirs.load_config().unwrap_or_else(|e| {
            eprintln!("haltwire hook: ignoring config: {e:#}");
            crate::config::Config::default()
        })
    } else {
        crate::config::Config::default()
    };
    let url = match (&args.url, config.listen) {
        (Some(u), _) => u.clone(),
        (None, Some(addr)) => format!("http://{addr}"),
        (None, None) => BrokerClient::resolve_url(None),
    };
    HookConfig {
        url,
        data_dir: args.dirs.resolve_data_dir(&config),
        fail_closed: args.fail_closed,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
    }
}

fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    // A closed stdout means the agent stopped listening; nothing useful is left to do.
    let _ = writeln!(out, "{text}").and_then(|_| out.flush());
}
