//! `haltwire bench ingest|floor|verify|deliver|hook|startup`: measurement tooling (see `crate::bench` and
//! docs/performance.md). Hidden from the main help: operators do not need it to run a broker.
//!
//! This module only reads flags and key files and prints; the measuring is in `crate::bench`.

use crate::bench::floor::{self, FloorMode};
use crate::bench::load::{self, LoadSettings, Signer};
use crate::bench::startup::{self, StartupSettings};
use crate::ingest::auth::standard_webhooks::{parse_public_key, Ed25519Secret, HmacSecret};
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Load-generate signed events against /v1/ingest/{source}; prints a summary, then one JSON
    /// line. Exits 1 if any measured request did not get a 202.
    Ingest(IngestArgs),
    /// Serve the bare comparison handler (verify v1a, parse JSON, 202; or with
    /// `--only-read-body` just read the body, 202) until SIGINT/SIGTERM.
    Floor {
        /// Address to listen on (port 0 picks one; the line on stdout says which).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// The one trusted `whpk_…` key (not used with `--only-read-body`).
        #[arg(long, required_unless_present = "only_read_body", conflicts_with = "only_read_body")]
        public_key: Option<String>,
        /// Only read the body and answer 202: the framework floor, no verification, no parsing.
        #[arg(long)]
        only_read_body: bool,
    },
    /// Verifications per second on this thread with the broker's own verifier, no HTTP (the
    /// machine's ceiling); a second pass adds the JSON parse. Prints a summary, then one JSON line.
    Verify {
        /// Which signed scheme.
        #[arg(long, value_enum)]
        scheme: crate::bench::verify::Scheme,
        /// Seconds per pass.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Distinct pre-signed messages cycled through.
        #[arg(long, default_value_t = 256)]
        messages: usize,
    },
    /// Durable storage alone, no HTTP: CPU µs per event for bare sled in three layouts (an entry
    /// per event and per dedup key; a value per batch with dedup keys; a value per batch alone),
    /// each with a flush per batch, and for haltwire's store as the group committer drives it.
    /// Prints a summary, then one JSON line.
    Store {
        /// Events written per pass.
        #[arg(long, default_value_t = 30_000)]
        events: usize,
        /// Events per group commit (one flush each); the ingest bench at 64 connections sees
        /// about 28.
        #[arg(long, default_value_t = 28)]
        batch: usize,
        /// Existing directory in which the passes create (and remove) their sled directories.
        #[arg(long)]
        scratch: PathBuf,
    },
    /// Event posted → directive on the session's SSE stream, open loop against a running broker
    /// (registers its own session; every event becomes a block under the default policy).
    Deliver {
        /// Broker base URL.
        #[arg(long)]
        url: String,
        /// File holding the `generic` source's `whsec_…` secret (`<data_dir>/secrets/generic.whsec`).
        #[arg(long)]
        secret_file: PathBuf,
        /// Events per second.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Measured events.
        #[arg(long, default_value_t = 2000)]
        events: usize,
        /// Events sent first and left out of the figures.
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// Sender threads, each with one keep-alive connection.
        #[arg(long, default_value_t = 8)]
        senders: usize,
    },
    /// `haltwire hook claude` at PreToolUse: process start to decision, against a running broker.
    Hook {
        /// Broker base URL.
        #[arg(long)]
        url: String,
        /// The broker's data directory (its published directive keys).
        #[arg(long)]
        data_dir: PathBuf,
        /// Measured calls.
        #[arg(long, default_value_t = 500)]
        runs: usize,
        /// Calls made first and left out of the figures.
        #[arg(long, default_value_t = 20)]
        warmup: usize,
    },
    /// Time `haltwire serve` from exec to its first 200 from /readyz (fresh and warm data dir).
    Startup {
        /// Timed starts per kind.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Existing directory in which the runs create their data directories.
        #[arg(long)]
        scratch: PathBuf,
        /// Config file to start with.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Pin each broker to this CPU.
        #[arg(long)]
        server_cpu: Option<usize>,
    },
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("credential").required(true).args(["secret_file", "signing_key"])))]
pub struct IngestArgs {
    /// Broker base URL.
    #[arg(long)]
    url: String,
    /// The configured source to post to.
    #[arg(long)]
    source: String,
    /// For `standard-webhooks` sources: file holding the `whsec_…` secret (mode 0600).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// For `standard-webhooks-ed25519` sources: file holding the sender's `whsk_…` key (0600).
    #[arg(long)]
    signing_key: Option<PathBuf>,
    /// Measured requests.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Requests sent first and left out of the figures.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Pad each body to this many bytes (default: natural size, about 220).
    #[arg(long, default_value_t = 0)]
    body_bytes: usize,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Floor { listen, public_key, only_read_body } => {
            let mode = match public_key {
                _ if only_read_body => FloorMode::ReadBody,
                Some(key) => FloorMode::VerifyAndParse(parse_public_key(&key).context("--public-key")?),
                None => anyhow::bail!("--public-key is required unless --only-read-body is given"),
            };
            floor::run(listen, mode)?;
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Verify { scheme, seconds, messages } => {
            anyhow::ensure!(seconds.is_finite() && seconds > 0.0, "--seconds must be positive");
            let duration = std::time::Duration::from_secs_f64(seconds);
            let report = crate::bench::verify::run(&crate::bench::verify::VerifySettings {
                scheme,
                duration,
                messages,
            })?;
            println!("{}", report.summary());
            println!("{}", report.to_json());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Store { events, batch, scratch } => {
            let settings = crate::bench::store::StoreSettings {
                events,
                batch,
                cache_bytes: crate::config::StoreConfig::default().cache_bytes,
            };
            let report = crate::bench::store::run(&settings, &scratch)?;
            println!("{}", report.summary());
            println!("{}", report.to_json());
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Deliver { url, secret_file, rate, events, warmup, senders } => {
            let secret = HmacSecret::parse(&crate::secrets::read_secret_text(&secret_file)?)?;
            let report = crate::bench::deliver::run(crate::bench::deliver::DeliverSettings {
                url,
                secret,
                rate,
                events,
                warmup,
                senders,
            })?;
            println!("{}", report.summary());
            println!("{}", report.to_json());
            Ok(if report.missing == 0 && report.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        BenchCommand::Hook { url, data_dir, runs, warmup } => {
            let binary = std::env::current_exe().context("locating the haltwire binary")?;
            let settings = crate::bench::hook::HookSettings { binary, url, data_dir, runs, warmup };
            let report = crate::bench::hook::run(&settings)?;
            println!("{}", report.summary());
            println!("{}", report.to_json());
            Ok(if report.unexpected == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        BenchCommand::Startup { runs, scratch, config, server_cpu } => {
            let binary = std::env::current_exe().context("locating the haltwire binary")?;
            let report = startup::run(&StartupSettings { binary, scratch, config, runs, server_cpu })?;
            println!("{}", report.summary());
            println!("{}", report.to_json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let signer = match (&args.secret_file, &args.signing_key) {
        (Some(path), _) => Signer::Hmac(HmacSecret::parse(&crate::secrets::read_secret_text(path)?)?),
        (None, Some(path)) => {
            Signer::Ed25519(Ed25519Secret::parse(&crate::secrets::read_secret_text(path)?)?)
        }
        (None, None) => unreachable!("clap requires one credential"),
    };
    let report = load::run(LoadSettings {
        url: args.url,
        source: args.source,
        signer,
        events: args.events,
        warmup: args.warmup,
        connections: args.connections,
        rate: args.rate,
        body_bytes: args.body_bytes,
    })?;
    println!("{}", report.summary());
    println!("{}", report.to_json());
    Ok(if report.error_count() == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
