//! `haltwire keys generate|show`.

use super::DataDirArg;
use crate::directive::keys::BrokerKey;
use crate::ingest::auth::standard_webhooks::{Ed25519Secret, HmacSecret};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate the broker's directive signing key (refuses to replace one without --force),
    /// or print new webhook credentials for a vendor with --webhook.
    Generate {
        /// Print webhook credentials instead: `hmac` (whsec_, for auth = "standard-webhooks")
        /// or `ed25519` (whsk_ for the sender, whpk_ for `public_keys`).
        #[arg(long, value_enum)]
        webhook: Option<WebhookKind>,
        /// Replace an existing broker key (directives signed with the old key stop verifying).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        dirs: DataDirArg,
    },
    /// Replace the directive signing key; the old key keeps co-signing for an overlap window so
    /// agents keep verifying while they pick up the new public key. Restart the broker after.
    Rotate {
        /// How long the old key keeps signing, in seconds.
        #[arg(long, default_value_t = 3600)]
        overlap_secs: i64,
        #[command(flatten)]
        dirs: DataDirArg,
    },
    /// Show the broker's public key and key id.
    Show {
        #[command(flatten)]
        dirs: DataDirArg,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum WebhookKind {
    Hmac,
    Ed25519,
}

pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::Generate { webhook: Some(kind), .. } => {
            print_webhook_credentials(kind);
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Generate { webhook: None, force, dirs } => {
            let data_dir = dirs.resolve_data_dir(&dirs.load_config()?);
            crate::secrets::ensure_private_dir(&data_dir)?;
            let key = BrokerKey::generate(&data_dir, force)?;
            print_public(&key, &data_dir)?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { overlap_secs, dirs } => {
            let data_dir = dirs.resolve_data_dir(&dirs.load_config()?);
            let until = time::OffsetDateTime::now_utc().unix_timestamp() + overlap_secs.max(0);
            let key = BrokerKey::rotate(&data_dir, until)?;
            print_public(&key, &data_dir)?;
            println!(
                "the previous key co-signs until {until} (Unix time); restart the broker to use the new key"
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Show { dirs } => {
            let data_dir = dirs.resolve_data_dir(&dirs.load_config()?);
            let key = BrokerKey::load(&data_dir)?;
            print_public(&key, &data_dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_public(key: &BrokerKey, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let info = key.public_info(data_dir)?;
    println!("kid:        {}", info.kid);
    println!("public key: {}", info.public_key);
    println!("private key file: {}", info.path.display());
    print!("{}", info.public_key_pem);
    Ok(())
}

fn print_webhook_credentials(kind: WebhookKind) {
    match kind {
        WebhookKind::Hmac => {
            let secret = zeroize::Zeroizing::new(HmacSecret::generate());
            println!("# both sides keep this secret: auth = \"standard-webhooks\"");
            println!("secret = \"{}\"", secret.as_str());
        }
        WebhookKind::Ed25519 => {
            let (secret, public) = Ed25519Secret::generate();
            let secret = zeroize::Zeroizing::new(secret);
            println!("# sender signs with (keep secret): {}", secret.as_str());
            println!("# broker config, auth = \"standard-webhooks-ed25519\":");
            println!("public_keys = [\"{public}\"]");
        }
    }
}
