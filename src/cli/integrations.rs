//! `haltwire integrations list`.

use super::DataDirArg;
use crate::decode::{Integrations, Origin};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum IntegrationsCommand {
    /// Show every integration: built in, or read from a folder on disk.
    List {
        /// Folder of integration overrides [default: `integrations_dir` from the config, else
        /// ./integrations if it exists]
        #[arg(long)]
        integrations_dir: Option<PathBuf>,
        #[command(flatten)]
        dirs: DataDirArg,
    },
}

pub fn run(cmd: IntegrationsCommand) -> anyhow::Result<ExitCode> {
    let IntegrationsCommand::List { integrations_dir, dirs } = cmd;
    let config = dirs.load_config()?;
    let dir = integrations_dir.or_else(|| config.integrations_dir());
    let all = Integrations::load(dir.as_deref())?;
    for (name, description, origin) in all.list() {
        let origin = match origin {
            Origin::BuiltIn => "built-in".to_string(),
            Origin::Disk(path) => format!("overridden by {}", path.display()),
        };
        println!("{name:<12} {origin:<40} {description}");
    }
    Ok(ExitCode::SUCCESS)
}
