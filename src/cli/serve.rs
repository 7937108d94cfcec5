//! `haltwire serve`.

use super::DataDirArg;
use crate::config::DEFAULT_LISTEN;
use crate::server::{self, ServeSettings};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:4258, or `listen` from the config file]
    #[arg(long, env = "HALTWIRE_LISTEN")]
    listen: Option<SocketAddr>,
    #[command(flatten)]
    dirs: DataDirArg,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = args.dirs.load_config()?;
    let data_dir = args.dirs.resolve_data_dir(&config);
    let listen = match args.listen.or(config.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let prepared = server::prepare(ServeSettings { listen, data_dir: data_dir.clone(), config }).await?;
        // Before anything says the broker is up: a SIGTERM from then on shuts it down cleanly.
        let shutdown = server::shutdown_signal();
        for note in &prepared.created {
            eprintln!("haltwire: {note}");
        }
        // One stable line on stdout: scripts and tests read the bound port from it.
        let mut out = std::io::stdout().lock();
        writeln!(out, "haltwire listening on http://{}", prepared.local_addr)?;
        out.flush()?;
        drop(out);
        tracing::info!(
            addr = %prepared.local_addr,
            data_dir = %data_dir.display(),
            sources = ?prepared.source_names,
            watches = ?prepared.watch_names,
            "ready"
        );
        server::run(prepared, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
