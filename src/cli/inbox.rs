//! `haltwire inbox read|watch --session ID`: drain a session's inbox (agent side).
//!
//! Each verified directive's notice (the fixed template of `directive::render`) goes to stdout;
//! a file that fails any check produces no stdout text at all, only a reason code on stderr
//! (R34). `watch` drains again on `SIGUSR1` (the broker's opt-in doorbell), on a change in the
//! inbox directory, and every 5 s regardless, because signals coalesce and file-change queues
//! overflow (R44). It stops on SIGINT/SIGTERM.

use super::DataDirArg;
use crate::agent::inbox::{Drained, Inbox};
use crate::directive::render::notice;
use crate::directive::trust::TrustStore;
use crate::directive::verify::Verifier;
use anyhow::Context as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

/// Longest wait between two drains in `watch` (R44: ≤ 5 s).
const RESCAN: Duration = Duration::from_secs(5);

#[derive(clap::Subcommand)]
pub enum InboxCommand {
    /// Drain the inbox once: print verified notices, move files to done/ or rejected/.
    Read(InboxArgs),
    /// Drain now and again on SIGUSR1, on inbox changes and every 5 s, until interrupted.
    Watch(InboxArgs),
}

#[derive(clap::Args)]
pub struct InboxArgs {
    /// The haltwire session id (from registration).
    #[arg(long)]
    pub session: String,
    #[command(flatten)]
    pub dirs: DataDirArg,
}

pub fn run(cmd: InboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InboxCommand::Read(args) => {
            let (inbox, verifier) = open(&args)?;
            print(drain(&inbox, &verifier)?)?;
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Watch(args) => watch(&args),
    }
}

fn open(args: &InboxArgs) -> anyhow::Result<(Inbox, Verifier)> {
    let config = args.dirs.load_config()?;
    let data_dir = args.dirs.resolve_data_dir(&config);
    let trust = TrustStore::load(&data_dir)?;
    let inbox = match &config.deliver.inbox_base {
        Some(base) => Inbox::open_in(base, &args.session)?,
        None => Inbox::open(&args.session)?,
    };
    Ok((inbox, Verifier::new(trust)))
}

fn drain(inbox: &Inbox, verifier: &Verifier) -> anyhow::Result<Drained> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(inbox.drain_persisted(verifier, now)?)
}

/// Notices to stdout (one blank line between them); reason codes only to stderr.
fn print(drained: Drained) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for verified in &drained.accepted {
        writeln!(out, "{}\n", notice(verified)).context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    for rejected in &drained.rejected {
        eprintln!("haltwire: inbox: rejected {} ({})", rejected.name, rejected.reason);
    }
    Ok(())
}

fn watch(args: &InboxArgs) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{signal, SignalKind};
    let (inbox, verifier) = open(args)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let (tx, mut changed) = tokio::sync::mpsc::channel::<()>(1);
        // A file-change watcher is a wake-up only; without one (inotify limits) the rescan
        // still finds everything.
        let _watcher = file_watcher(&inbox, tx);
        loop {
            print(drain(&inbox, &verifier)?)?;
            tokio::select! {
                _ = usr1.recv() => {}
                _ = changed.recv() => {}
                _ = tokio::time::sleep(RESCAN) => {}
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn file_watcher(inbox: &Inbox, tx: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let mut watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = tx.try_send(());
    })
    .ok()?;
    watcher.watch(inbox.path(), notify::RecursiveMode::NonRecursive).ok()?;
    Some(watcher)
}
