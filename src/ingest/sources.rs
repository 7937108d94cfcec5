//! The table of configured senders: name → (verifier, decoder).
//!
//! Built once at start from `[[source]]` entries. A fresh install has one source, `generic`
//! (haltwire's native format, Standard Webhooks v1), whose secret the broker generates on first
//! start in `<data_dir>/secrets/generic.whsec` so that `haltwire event send` works with no setup.
//! This module does not handle requests; it only resolves names to checked credentials.

use crate::config::{AuthScheme, SourceConfig, GENERIC_SOURCE};
use crate::decode::{self, Decoder, Integrations};
use crate::ingest::auth::standard_webhooks::HmacSecret;
use crate::ingest::auth::{AuthConfigError, SourceVerifier};
use crate::secrets::{self, SecretFileError};
use crate::telemetry::SourceSeries;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One configured sender, ready to authenticate and decode.
pub struct IngestSource {
    /// The `[[source]] name`, also the URL path segment and the `source` metric label.
    pub name: String,
    /// Checks credentials over the raw request; built (and its keys validated) at start.
    pub verifier: SourceVerifier,
    /// Turns the authenticated body into normalized events.
    pub decoder: Decoder,
    /// Its metric series, registered once.
    pub series: SourceSeries,
}

/// All senders by name. Immutable after start; shared by every request.
#[derive(Clone, Default)]
pub struct Sources {
    by_name: Arc<HashMap<String, Arc<IngestSource>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourcesError {
    /// The auth error already names the source.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    #[error("source {name:?}: unknown integration {integration:?} (known: {known})")]
    UnknownIntegration { name: String, integration: String, known: String },
    #[error(transparent)]
    SecretFile(#[from] SecretFileError),
}

impl Sources {
    /// Builds every configured source, adding the default `generic` one unless the config
    /// defines its own. Returns the path of a newly generated generic secret, if any.
    pub fn build(
        configured: &[SourceConfig],
        integrations: &Integrations,
        data_dir: &Path,
    ) -> Result<(Sources, Option<PathBuf>), SourcesError> {
        let mut configs = configured.to_vec();
        let mut created = None;
        if !configs.iter().any(|s| s.name == GENERIC_SOURCE) {
            let (config, new_secret) = default_generic_source(data_dir)?;
            created = new_secret;
            configs.push(config);
        }
        let mut by_name = HashMap::new();
        for config in &configs {
            let source = build_one(config, integrations)?;
            by_name.insert(config.name.clone(), Arc::new(source));
        }
        Ok((Sources { by_name: Arc::new(by_name) }, created))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<IngestSource>> {
        self.by_name.get(name)
    }

    /// Source names, sorted, for start-up messages.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}

fn build_one(config: &SourceConfig, integrations: &Integrations) -> Result<IngestSource, SourcesError> {
    let decoder = integrations.get(&config.integration).ok_or_else(|| SourcesError::UnknownIntegration {
        name: config.name.clone(),
        integration: config.integration.clone(),
        known: integrations.names(),
    })?;
    let verifier = SourceVerifier::from_config(config)?;
    Ok(IngestSource { name: config.name.clone(), verifier, decoder, series: SourceSeries::default() })
}

/// Where the generated `generic` source secret lives.
pub fn generic_secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets").join("generic.whsec")
}

fn default_generic_source(data_dir: &Path) -> Result<(SourceConfig, Option<PathBuf>), SecretFileError> {
    let path = generic_secret_path(data_dir);
    let mut created = None;
    if !path.exists() {
        let secret = zeroize::Zeroizing::new(HmacSecret::generate());
        secrets::create_secret_file(&path, secret.as_bytes())?;
        created = Some(path.clone());
    }
    let config = SourceConfig {
        name: GENERIC_SOURCE.to_string(),
        integration: decode::GENERIC.to_string(),
        auth: Some(AuthScheme::StandardWebhooks),
        secret_file: Some(path),
        ..SourceConfig::default()
    };
    Ok((config, created))
}
