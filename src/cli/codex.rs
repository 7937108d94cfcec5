//! `haltwire codex run|serve`: Codex driven through its app-server, with haltwire in the loop.
//!
//! This file only parses arguments, starts the server and picks the guard; the drivers are in
//! `crate::agent::codex`.
//!
//! With a broker (the default), the app-server is started with `haltwire hook codex` as a
//! `PreToolUse` hook (`-c` overrides), and every thread is started with that hook's trust in
//! its own config and checked to really run it: Codex 0.169 asks the client for approval only
//! on escalations, so the hook is what meets a plain retry. Approvals are still answered by the
//! gate. Only the gate is hooked: notices reach the model by `turn/steer`, which would repeat
//! them if hooks attached them too. A run that cannot be protected (no broker, hook not
//! trusted) stops with an error unless `--no-broker` was given.

use crate::agent::client::BrokerClient;
use crate::agent::codex::adapter::BrokerGuard;
use crate::agent::codex::guard::{Guard, Unguarded};
use crate::agent::codex::hooks::{gate_thread_config, session_flag_overrides};
use crate::agent::codex::protocol::ClientInfo;
use crate::agent::codex::run::{run_task, RunOptions};
use crate::agent::codex::server::{AppServer, ServerCommand};
use crate::directive::trust::TrustStore;
use crate::directive::verify::Verifier;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum CodexCommand {
    /// Run one task headless in a new Codex thread; every server message goes to stdout as a
    /// JSON line. Exit code 0 when the last turn completed.
    Run(RunArgs),
    /// A JSON-RPC proxy on stdin/stdout that an orchestrator talks to instead of
    /// `codex app-server`.
    Serve(ServeArgs),
}

/// How to start Codex.
#[derive(clap::Args, Clone)]
pub struct CodexArgs {
    /// The codex executable [env: CODEX_BIN] [default: codex on PATH]
    #[arg(long, env = "CODEX_BIN", default_value = "codex")]
    codex_bin: PathBuf,
    /// A Codex config override passed on as `codex app-server -c key=value` (repeatable).
    #[arg(short = 'c', long = "config", value_name = "key=value")]
    overrides: Vec<String>,
    /// Broker URL [env: HALTWIRE_URL] [default: http://127.0.0.1:4258]
    #[arg(long, env = "HALTWIRE_URL")]
    url: Option<String>,
    /// The broker's data directory, for its published directive keys [env: HALTWIRE_DATA_DIR]
    /// [default: ./haltwire-data]
    #[arg(long, env = "HALTWIRE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Run without a broker: nothing recorded, every approval accepted, no notices, no gate hook.
    #[arg(long)]
    no_broker: bool,
    /// Let the gate hook allow tool calls when the broker cannot be reached (default: deny,
    /// like the approvals).
    #[arg(long)]
    fail_open: bool,
}

impl CodexArgs {
    fn url(&self) -> String {
        BrokerClient::resolve_url(self.url.as_deref())
    }

    fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA_DIR))
    }

    fn command(&self) -> anyhow::Result<ServerCommand> {
        let mut cmd = ServerCommand::new(&self.codex_bin);
        cmd.config = self.overrides.clone();
        if !self.no_broker {
            // The URL as the guard's client normalizes it, so the hook finds the shared session.
            let url = BrokerClient::new(&self.url(), Duration::from_secs(5))?.base().to_string();
            let options = super::install::HookOptions {
                fail_closed: !self.fail_open,
                url: Some(url),
                data_dir: Some(self.data_dir()),
            };
            let hook = super::install::hook_command("codex", &options)?;
            cmd.config.extend(session_flag_overrides(&hook));
        }
        Ok(cmd)
    }

    /// `thread/start`'s `config` trusting the gate hook, or `None` without a broker.
    fn thread_config(&self, server: &AppServer, cwd: &str) -> anyhow::Result<Option<serde_json::Value>> {
        if self.no_broker {
            return Ok(None);
        }
        let config = gate_thread_config(server.conn(), cwd)
            .context("refusing to run unprotected: the gate hook is not available (pass --no-broker to run without haltwire)")?;
        Ok(Some(config))
    }

    /// The guard for a server: the broker's, unless `--no-broker`.
    fn guard(&self, server_pid: u32) -> anyhow::Result<Box<dyn Guard>> {
        if self.no_broker {
            return Ok(Box::new(Unguarded));
        }
        let client = BrokerClient::new(&self.url(), Duration::from_secs(5))?;
        if !client.healthy() {
            anyhow::bail!(
                "refusing to run unprotected: no haltwire broker answers at {} (start `haltwire serve`, set --url, or pass --no-broker)",
                client.base()
            );
        }
        let verifier = match TrustStore::load(&self.data_dir()) {
            Ok(trust) => Some(Verifier::new(trust)),
            Err(e) => {
                tracing::warn!(error = %e, "codex: no trusted directive keys; notices cannot be shown");
                None
            }
        };
        Ok(Box::new(BrokerGuard::new(client, verifier, server_pid)))
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Working directory of the thread [default: the current directory]
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Give up after this many seconds.
    #[arg(long)]
    timeout_secs: Option<u64>,
    #[command(flatten)]
    codex: CodexArgs,
    /// The task for Codex.
    prompt: String,
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    codex: CodexArgs,
}

pub fn run(cmd: CodexCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CodexCommand::Run(args) => run_one(args),
        CodexCommand::Serve(args) => serve(args),
    }
}

fn client() -> ClientInfo {
    ClientInfo { name: "haltwire".into(), version: env!("CARGO_PKG_VERSION").into() }
}

fn run_one(args: RunArgs) -> anyhow::Result<ExitCode> {
    let cwd = match args.cwd {
        Some(dir) => dir,
        None => std::env::current_dir().context("current directory")?,
    };
    let cwd = std::fs::canonicalize(&cwd).with_context(|| format!("--cwd {}", cwd.display()))?;
    let server = AppServer::start(&args.codex.command()?, client())?;
    let mut guard = args.codex.guard(server.pid())?;
    let cwd = cwd.display().to_string();
    let thread_config = args.codex.thread_config(&server, &cwd)?;
    let opts = RunOptions {
        require_gate: thread_config.is_some(),
        thread_config,
        cwd: Some(cwd),
        prompt: args.prompt,
        poll: Duration::from_millis(200),
        timeout: args.timeout_secs.map(Duration::from_secs),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let outcome = run_task(&server, guard.as_mut(), &opts, &mut out)?;
    server.shutdown(Duration::from_secs(2));
    Ok(if outcome.status == "completed" { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let server = AppServer::start(&args.codex.command()?, client())?;
    let guard = args.codex.guard(server.pid())?;
    let cwd = std::env::current_dir().context("current directory")?;
    let thread_config = args.codex.thread_config(&server, &cwd.to_string_lossy())?;
    crate::agent::codex::proxy::serve(
        &server,
        guard,
        crate::agent::codex::proxy::Protection { thread_config },
        std::io::stdin(),
        Box::new(std::io::stdout()),
        Duration::from_millis(200),
    )?;
    server.shutdown(Duration::from_secs(2));
    Ok(ExitCode::SUCCESS)
}
