//! `haltwire blocks list|clear`: the SOC's view of active blocks, over the broker's HTTP API.
//! It mints a short SOC token from the data directory's API token key, so it works wherever
//! the operator can read that key (normally: on the broker's machine, as its user).

use super::DataDirArg;
use crate::token::{Role, TokenKey};
use anyhow::{anyhow, bail, Context};
use std::process::ExitCode;
use uuid::Uuid;

#[derive(clap::Subcommand)]
pub enum BlocksCommand {
    /// List blocks (active by default), one per line.
    List {
        /// Show every block, not only active ones.
        #[arg(long)]
        all: bool,
        /// Only this session's blocks.
        #[arg(long)]
        session: Option<Uuid>,
        /// Print the JSON the API returns instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Clear (end) a block: the agent may retry again.
    Clear {
        block_id: Uuid,
        #[command(flatten)]
        conn: Connection,
    },
}

/// Where the broker is and how to authenticate to it.
#[derive(clap::Args)]
pub struct Connection {
    /// Broker URL [env: HALTWIRE_URL] [default: http://127.0.0.1:4258]
    #[arg(long, env = "HALTWIRE_URL")]
    url: Option<String>,
    #[command(flatten)]
    dirs: DataDirArg,
}

impl Connection {
    fn base(&self) -> anyhow::Result<String> {
        let config = self.dirs.load_config()?;
        Ok(self.url.clone().unwrap_or_else(|| match config.listen {
            Some(addr) => format!("http://{addr}"),
            None => format!("http://{}", crate::config::DEFAULT_LISTEN),
        }))
    }

    fn token(&self) -> anyhow::Result<String> {
        let config = self.dirs.load_config()?;
        let key = TokenKey::load(&self.dirs.resolve_data_dir(&config))
            .map_err(|e| anyhow!("{e} (run on the broker's machine, or pass --data-dir)"))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok(key.issue("haltwire-cli", Role::Soc, None, now, 300)?)
    }

    fn request(&self, method: &str, path: &str) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base()?.trim_end_matches('/'));
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let auth = format!("Bearer {}", self.token()?);
        let mut response = match method {
            "POST" => agent.post(&url).header("authorization", &auth).send_empty(),
            _ => agent.get(&url).header("authorization", &auth).call(),
        }
        .with_context(|| format!("cannot reach {url} (is `haltwire serve` running?)"))?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        if !(200..300).contains(&status) {
            bail!("{url} answered {status}: {}", body.trim());
        }
        Ok(serde_json::from_str(&body)?)
    }
}

pub fn run(cmd: BlocksCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BlocksCommand::List { all, session, json, conn } => {
            let mut query = Vec::new();
            if !all {
                query.push("status=active".to_string());
            }
            if let Some(s) = session {
                query.push(format!("session={s}"));
            }
            let answer = conn.request("GET", &format!("/v1/blocks?{}", query.join("&")))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            for block in answer["blocks"].as_array().into_iter().flatten() {
                println!(
                    "{}  {:<8} {:<12} session {}  policy {}  {}",
                    block["block_id"].as_str().unwrap_or("?"),
                    block["status"].as_str().unwrap_or("?"),
                    block["scope"].as_str().unwrap_or("?"),
                    block["session_id"].as_str().unwrap_or("?"),
                    block["policy_id"].as_str().unwrap_or("?"),
                    block["created_at"].as_str().unwrap_or("?"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BlocksCommand::Clear { block_id, conn } => {
            let block = conn.request("POST", &format!("/v1/blocks/{block_id}/clear"))?;
            println!(
                "{} {}",
                block["block_id"].as_str().unwrap_or("?"),
                block["status"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
