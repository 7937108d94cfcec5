//! `haltwire event send`: sign events with a source's credentials and post them, the way a
//! vendor integration would. Vendors use it to test their setup; the test suite uses it too.

use super::DataDirArg;
use crate::config::{AuthScheme, Config, SourceConfig, GENERIC_SOURCE};
use crate::ingest::auth::standard_webhooks::{Ed25519Secret, HmacSecret};
use crate::ingest::sources::generic_secret_path;
use anyhow::{anyhow, bail, Context};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

#[derive(clap::Subcommand)]
pub enum EventCommand {
    /// Sign and POST events to /v1/ingest/{source}. Input is one JSON document, or JSON lines
    /// (one event per line). Prints the broker's answer for each event, one line each.
    Send {
        /// The configured source to send as (its credentials sign the request).
        #[arg(long, default_value = GENERIC_SOURCE)]
        source: String,
        /// Broker URL [env: HALTWIRE_URL] [default: http://<listen from config, or 127.0.0.1:4258>]
        #[arg(long, env = "HALTWIRE_URL")]
        url: Option<String>,
        /// For `standard-webhooks-ed25519` sources: file holding the sender's `whsk_…` key.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// The `webhook-id` to send (only with a single event); default: a fresh id.
        #[arg(long)]
        id: Option<String>,
        /// File to read, or `-` for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        #[command(flatten)]
        dirs: DataDirArg,
    },
    /// Decode vendor events into haltwire's normalized form and print them, one JSON object
    /// per line (no broker needed). Input: one JSON document, JSON lines, or audit log lines.
    Decode {
        /// The integration (`haltwire integrations list` shows them).
        #[arg(long)]
        integration: String,
        /// Folder of integration overrides [default: `integrations_dir` from the config, else
        /// ./integrations if it exists]
        #[arg(long)]
        integrations_dir: Option<PathBuf>,
        /// File to read, or `-` for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        #[command(flatten)]
        dirs: DataDirArg,
    },
}

/// How to put credentials on a request.
enum Credentials {
    Hmac(HmacSecret),
    Ed25519(Ed25519Secret),
    Authorization(Zeroizing<String>),
}

pub fn run(cmd: EventCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        EventCommand::Send { source, url, signing_key, id, file, dirs } => {
            send(source, url, signing_key, id, file, dirs)
        }
        EventCommand::Decode { integration, integrations_dir, file, dirs } => {
            decode(&integration, integrations_dir, &file, &dirs)
        }
    }
}

fn decode(
    integration: &str,
    dir: Option<PathBuf>,
    file: &Path,
    dirs: &DataDirArg,
) -> anyhow::Result<ExitCode> {
    let config = dirs.load_config()?;
    let dir = dir.or_else(|| config.integrations_dir());
    let integrations = crate::decode::Integrations::load(dir.as_deref())?;
    let decoder = integrations
        .get(integration)
        .ok_or_else(|| anyhow!("unknown integration {integration:?} (known: {})", integrations.names()))?;
    let text = read_input(file)?;
    let mut out = std::io::stdout().lock();
    let mut failures = 0;
    for (line, payload) in crate::decode::split_payloads(decoder.parser(), &text) {
        match decoder.decode(payload.as_bytes()) {
            Ok(events) => {
                for event in events {
                    let printed = crate::decode::DecodedView::new(decoder.name(), &event);
                    serde_json::to_writer(&mut out, &printed)?;
                    std::io::Write::write_all(&mut out, b"\n")?;
                }
            }
            Err(err) => {
                failures += 1;
                eprintln!("{}:{line}: {err}", file.display());
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn send(
    source: String,
    url: Option<String>,
    signing_key: Option<PathBuf>,
    id: Option<String>,
    file: PathBuf,
    dirs: DataDirArg,
) -> anyhow::Result<ExitCode> {
    let config = dirs.load_config()?;
    let data_dir = dirs.resolve_data_dir(&config);
    let credentials = credentials_for(&config, &source, &data_dir, signing_key.as_deref())?;
    let events = read_events(&file)?;
    if id.is_some() && events.len() != 1 {
        bail!("--id can only be used when sending a single event");
    }
    let base = url.unwrap_or_else(|| default_url(&config));
    let endpoint = format!("{}/v1/ingest/{}", base.trim_end_matches('/'), source);
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut failures = 0;
    for body in &events {
        let msg_id = id.clone().unwrap_or_else(|| format!("msg_{}", uuid::Uuid::now_v7().simple()));
        let (status, answer) = post(&agent, &endpoint, &credentials, &msg_id, body)?;
        if (200..300).contains(&status) {
            println!("{}", answer.trim());
        } else {
            failures += 1;
            eprintln!("haltwire: {endpoint} answered {status}: {}", answer.trim());
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn post(
    agent: &ureq::Agent,
    endpoint: &str,
    credentials: &Credentials,
    msg_id: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut request = agent.post(endpoint).header("content-type", "application/json");
    request = match credentials {
        Credentials::Hmac(secret) => {
            with_webhook_headers(request, msg_id, timestamp, secret.sign(msg_id, timestamp, body))
        }
        Credentials::Ed25519(secret) => {
            with_webhook_headers(request, msg_id, timestamp, secret.sign(msg_id, timestamp, body))
        }
        Credentials::Authorization(value) => request.header("authorization", value.as_str()),
    };
    let mut response = request.send(body).with_context(|| {
        format!("cannot reach {endpoint} (is `haltwire serve` running? only http:// URLs are supported)")
    })?;
    let status = response.status().as_u16();
    let answer = response.body_mut().read_to_string().unwrap_or_default();
    Ok((status, answer))
}

fn with_webhook_headers(
    request: ureq::RequestBuilder<ureq::typestate::WithBody>,
    msg_id: &str,
    timestamp: i64,
    signature: String,
) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
    request
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
}

fn default_url(config: &Config) -> String {
    match config.listen {
        Some(addr) => format!("http://{addr}"),
        None => format!("http://{}", crate::config::DEFAULT_LISTEN),
    }
}

fn credentials_for(
    config: &Config,
    source: &str,
    data_dir: &Path,
    signing_key: Option<&Path>,
) -> anyhow::Result<Credentials> {
    let Some(entry) = config.sources.iter().find(|s| s.name == source) else {
        if source == GENERIC_SOURCE {
            let path = generic_secret_path(data_dir);
            let secret = crate::secrets::read_secret_text(&path).map_err(|e| {
                anyhow!("{e} (start `haltwire serve` once with this data directory to create it)")
            })?;
            return Ok(Credentials::Hmac(HmacSecret::parse(&secret)?));
        }
        bail!("no [[source]] named {source:?} in the config file");
    };
    configured_credentials(entry, signing_key)
}

fn configured_credentials(entry: &SourceConfig, signing_key: Option<&Path>) -> anyhow::Result<Credentials> {
    use base64::Engine as _;
    let scheme = entry.auth.ok_or_else(|| anyhow!("source {:?} has no auth", entry.name))?;
    match scheme {
        AuthScheme::StandardWebhooks => {
            let secret = inline_or_file(
                entry.secret.as_ref().and_then(|s| s.to_vec().into_iter().next()),
                entry.secret_file.as_deref(),
            )?;
            Ok(Credentials::Hmac(HmacSecret::parse(&secret)?))
        }
        AuthScheme::StandardWebhooksEd25519 => {
            let path = signing_key.ok_or_else(|| {
                anyhow!("source {:?} verifies ed25519 signatures: pass --signing-key FILE with the sender's whsk_ key", entry.name)
            })?;
            let secret = crate::secrets::read_secret_text(path)?;
            Ok(Credentials::Ed25519(Ed25519Secret::parse(&secret)?))
        }
        AuthScheme::Bearer => {
            let token = inline_or_file(entry.token.clone(), entry.token_file.as_deref())?;
            Ok(Credentials::Authorization(Zeroizing::new(format!("Bearer {}", token.as_str()))))
        }
        AuthScheme::Basic => {
            let user = entry.username.clone().unwrap_or_default();
            let password = inline_or_file(entry.password.clone(), entry.password_file.as_deref())?;
            let pair = Zeroizing::new(format!("{user}:{}", password.as_str()));
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
            Ok(Credentials::Authorization(Zeroizing::new(format!("Basic {encoded}"))))
        }
        AuthScheme::Jwt => bail!(
            "source {:?} takes JWTs minted by the sender's identity provider; event send cannot mint them",
            entry.name
        ),
    }
}

fn inline_or_file(inline: Option<String>, file: Option<&Path>) -> anyhow::Result<Zeroizing<String>> {
    match (inline, file) {
        (Some(value), _) => Ok(Zeroizing::new(value)),
        (None, Some(path)) => Ok(crate::secrets::read_secret_text(path)?),
        (None, None) => bail!("the source has no credential to send with"),
    }
}

fn read_input(file: &Path) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
    } else {
        text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    }
    Ok(text)
}

/// One JSON document, or JSON lines. Each event is sent as the exact bytes given.
fn read_events(file: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = read_input(file)?;
    if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() {
        return Ok(vec![text.trim().as_bytes().to_vec()]);
    }
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(line) {
            bail!("{}:{}:{}: not JSON: {err}", file.display(), index + 1, err.column());
        }
        events.push(line.trim().as_bytes().to_vec());
    }
    if events.is_empty() {
        bail!("{}: no event to send", file.display());
    }
    Ok(events)
}
