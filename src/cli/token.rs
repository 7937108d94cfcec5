//! `haltwire token issue`.

use super::DataDirArg;
use crate::token::{Role, TokenKey};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Print a signed API token (JWT) for a role. Needs the broker's data directory.
    Issue {
        /// The role: `soc` reads events and manages blocks.
        #[arg(long, value_enum)]
        role: Role,
        /// Who the token is for (recorded as `sub`).
        #[arg(long, default_value = "operator")]
        subject: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: i64,
        #[command(flatten)]
        dirs: DataDirArg,
    },
}

pub fn run(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Issue { role, subject, ttl, dirs } = cmd;
    if role == Role::Session {
        anyhow::bail!("session tokens are issued by the broker when a session registers (POST /v1/sessions)");
    }
    if !(1..=31 * 86_400).contains(&ttl) {
        anyhow::bail!("--ttl must be between 1 second and 31 days");
    }
    let data_dir = dirs.resolve_data_dir(&dirs.load_config()?);
    let key = TokenKey::load(&data_dir).map_err(|e| {
        anyhow::anyhow!("{e} (start `haltwire serve` once with this data directory to create the key)")
    })?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    println!("{}", key.issue(&subject, role, None, now, ttl)?);
    Ok(ExitCode::SUCCESS)
}
