//! `haltwire verify FILE|-`: check one directive envelope against the broker's published keys
//! and print what it says and the notice an agent would show.
//!
//! A one-shot tool for operators and tests: it checks signature, schema, time window and —
//! with `--session` — the audience; replay needs a session's history, which only the agent side
//! keeps, so it is not checked here.

use super::DataDirArg;
use crate::directive::render::notice;
use crate::directive::trust::TrustStore;
use crate::directive::verify::Verifier;
use anyhow::Context as _;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct VerifyArgs {
    /// The envelope file, or `-` for stdin.
    pub file: PathBuf,
    /// The session the directive must be addressed to; without it the audience is shown, not checked.
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub dirs: DataDirArg,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.dirs.resolve_data_dir(&args.dirs.load_config()?);
    let trust = TrustStore::load(&data_dir)?;
    let raw = read_input(&args.file)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let audience = match &args.session {
        Some(session) => session.clone(),
        None => claimed_audience(&raw).unwrap_or_default(),
    };
    match Verifier::new(trust).verify_addressed(&raw, &audience, now) {
        Ok(verified) => {
            let p = &verified.payload;
            println!("verified: signed by {}", verified.signed_by.join(", "));
            println!("type:     {}", p.directive.kind.as_str());
            let checked = if args.session.is_some() { "" } else { " (not checked: pass --session)" };
            println!("session:  {}{checked}", p.aud);
            println!("seq:      {}   jti: {}", p.seq, p.jti);
            println!("payload:  {}", serde_json::to_string(p)?);
            println!("notice:\n{}", notice(&verified));
            Ok(ExitCode::SUCCESS)
        }
        Err(rejection) => {
            eprintln!("haltwire: rejected ({}): {rejection}", rejection.code());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn read_input(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let limit = crate::directive::envelope::MAX_ENVELOPE_BYTES as u64 + 1;
    if file.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut raw).context("reading stdin")?;
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut raw))
            .with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(raw)
}

/// The audience the payload claims, read only to print it; the signature still decides.
fn claimed_audience(raw: &[u8]) -> Option<String> {
    use base64::Engine as _;
    let envelope = crate::directive::envelope::Envelope::from_slice(raw).ok()?;
    let body = base64::engine::general_purpose::STANDARD
        .decode(&envelope.payload)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&envelope.payload))
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
    value.get("aud")?.as_str().map(String::from)
}
