//! The command line: one clap tree, one small module per subcommand family.
//!
//! This is the binary's edge, so errors here are `anyhow` and are printed once, as
//! `haltwire: <message>`, with exit code 1 (2 for usage errors, from clap).

mod bench;
mod blocks;
mod codex;
mod doctor;
mod event;
mod hook;
mod inbox;
mod install;
mod integrations;
mod keys;
mod policy;
mod serve;
mod token;
mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "haltwire",
    version,
    about = "Security-signal broker: signed, enforced do-not-retry directives for AI coding agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (HTTP ingest, SOC API, metrics).
    Serve(serve::ServeArgs),
    /// Manage the broker's directive signing key, or mint webhook credentials for a vendor.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Issue API tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Send events to a broker, or decode vendor events offline.
    #[command(subcommand)]
    Event(event::EventCommand),
    /// List or clear active blocks (talks to a running broker).
    #[command(subcommand)]
    Blocks(blocks::BlocksCommand),
    /// List the integrations (decoders) this broker knows.
    #[command(subcommand)]
    Integrations(integrations::IntegrationsCommand),
    /// Measure ingest throughput, latency and start-up time (docs/performance.md).
    #[command(subcommand, hide = true)]
    Bench(bench::BenchCommand),
    /// Drive Codex through its app-server with haltwire in the loop.
    #[command(subcommand)]
    Codex(codex::CodexCommand),
    /// Check retry-policy folders and run the tests beside the policies.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Verify a directive envelope against the broker's published keys and print it.
    Verify(verify::VerifyArgs),
    /// Agent hook commands (the agent runs these; they speak its hook protocol on stdin/stdout).
    #[command(subcommand)]
    Hook(hook::HookCommand),
    /// Write (or print) an agent's configuration so its sessions report to this broker.
    #[command(subcommand)]
    Install(install::InstallCommand),
    /// Check that an agent's haltwire hooks are installed, trusted and will fire.
    #[command(subcommand)]
    Doctor(doctor::DoctorCommand),
    /// Read a session's directive inbox (agent side): print verified notices.
    #[command(subcommand)]
    Inbox(inbox::InboxCommand),
}

/// Where the data directory is, shared by every subcommand that reads it.
#[derive(clap::Args, Clone)]
pub struct DataDirArg {
    /// Data directory [env: HALTWIRE_DATA_DIR] [default: ./haltwire-data, or `data_dir` from the config file]
    #[arg(long, env = "HALTWIRE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file [env: HALTWIRE_CONFIG] [default: ./haltwire.toml if it exists]
    #[arg(long, env = "HALTWIRE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl DataDirArg {
    /// The config file, if one was named or `./haltwire.toml` exists.
    pub fn load_config(&self) -> anyhow::Result<haltwire_config::Config> {
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from("haltwire.toml")).filter(|p| p.exists()),
        };
        match path {
            Some(p) => Ok(haltwire_config::Config::load(&p)?),
            None => Ok(haltwire_config::Config::default()),
        }
    }

    /// Flag/env first, then the config file, then the default.
    pub fn resolve_data_dir(&self, config: &haltwire_config::Config) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| config.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(haltwire_config::DEFAULT_DATA_DIR))
    }
}

use crate::config as haltwire_config;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Token(cmd) => token::run(cmd),
        Command::Event(cmd) => event::run(cmd),
        Command::Integrations(cmd) => integrations::run(cmd),
        Command::Blocks(cmd) => blocks::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Codex(cmd) => codex::run(cmd),
        Command::Hook(cmd) => hook::run(cmd),
        Command::Install(cmd) => install::run(cmd),
        Command::Doctor(cmd) => doctor::run(cmd),
        Command::Verify(args) => verify::run(args),
        Command::Inbox(cmd) => inbox::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("haltwire: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` (or `HALTWIRE_LOG`) sets the filter, default `info`.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("HALTWIRE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
