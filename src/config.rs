//! `haltwire.toml`: the broker's configuration file, its defaults and its validation.
//!
//! Precedence is flags > environment > file > defaults; clap handles the first two and hands the
//! survivors to [`Config::load`]. Every struct rejects unknown keys so a typo is an error with a
//! `file:line:col`, not a silently ignored setting. This module only reads and checks settings;
//! it does not open the store, read secret files or bind sockets.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default listen address: loopback only, so a fresh install is not reachable from the network.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4258";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./haltwire-data";
/// Default request body cap (R1): 256 KiB, checked before any signature work.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Default folder of integration overrides, used only if it exists.
pub const DEFAULT_INTEGRATIONS_DIR: &str = "./integrations";
/// Default folder of retry policies, used only if it exists.
pub const DEFAULT_POLICIES_DIR: &str = "./policies";
/// The name of the source every fresh install has (native format, generated HMAC secret).
pub const GENERIC_SOURCE: &str = "generic";

/// The whole `haltwire.toml`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on. Default `127.0.0.1:4258`.
    pub listen: Option<SocketAddr>,
    /// Directory for the sled store, the broker key and generated secrets.
    /// Default `./haltwire-data`; a relative path is relative to the working directory.
    pub data_dir: Option<PathBuf>,
    /// Largest accepted ingest body in bytes; larger bodies get 413 before any crypto.
    /// Default 262144 (256 KiB).
    pub max_body_bytes: Option<usize>,
    /// Folder of retry policies (`*.yaml`), watched and hot-reloaded. Default: `./policies` if
    /// it exists, else the built-in default policy.
    pub policies_dir: Option<PathBuf>,
    /// Folder of integration mappings (`<name>/mapping.toml`) that replace or add to the
    /// built-in ones. Default: `./integrations` if it exists, else the built-ins only.
    pub integrations_dir: Option<PathBuf>,
    /// Storage settings.
    #[serde(default)]
    pub store: StoreConfig,
    /// Ingest queue settings.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// Agent session settings.
    #[serde(default)]
    pub sessions: SessionsConfig,
    /// HTTP connection limits.
    #[serde(default)]
    pub http: HttpConfig,
    /// `[deliver]`: directive queues and delivery channels.
    #[serde(default)]
    pub deliver: DeliverConfig,
    /// Configured senders, one `[[source]]` table each.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Files the broker tails, one `[[watch]]` table each.
    #[serde(default, rename = "watch")]
    pub watches: Vec<WatchConfig>,
}

/// `[store]`: retention and group commit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Events older than this many days are deleted by the retention sweep. Default 30.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// At most this many events are kept; the oldest go first. Default 1000000.
    #[serde(default = "default_max_events")]
    pub max_events: u64,
    /// sled page cache in bytes. Default 67108864 (64 MiB).
    #[serde(default = "default_cache_bytes")]
    pub cache_bytes: u64,
    /// Seconds between retention sweeps. Default 60.
    #[serde(default = "default_sweep_interval_secs")]
    pub sweep_interval_secs: u64,
}

fn default_retention_days() -> u32 {
    30
}
fn default_max_events() -> u64 {
    1_000_000
}
fn default_cache_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_sweep_interval_secs() -> u64 {
    60
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention_days: default_retention_days(),
            max_events: default_max_events(),
            cache_bytes: default_cache_bytes(),
            sweep_interval_secs: default_sweep_interval_secs(),
        }
    }
}

/// `[ingest]`: back-pressure limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Requests that may wait for the next group commit at once. Beyond it, ingest answers
    /// 429 with `Retry-After` instead of letting the queue grow. Default 4096.
    #[serde(default = "default_commit_queue")]
    pub commit_queue: usize,
}

fn default_commit_queue() -> usize {
    4096
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig { commit_queue: default_commit_queue() }
    }
}

/// `[http]`: limits that keep slow or numerous clients from exhausting the broker.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Connections served at once. Beyond it, new connections wait in the kernel's accept
    /// queue until one closes, instead of each costing a task and buffers. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client gets to send a request's headers; slower connections are closed
    /// (slow-loris). Default 10.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request may take from its headers to its answer, body included; beyond it
    /// the answer is 408. Default 30.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

fn default_max_connections() -> usize {
    1024
}

fn default_header_read_timeout_secs() -> u64 {
    10
}

fn default_request_timeout_secs() -> u64 {
    30
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_connections: default_max_connections(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            request_timeout_secs: default_request_timeout_secs(),
        }
    }
}

/// `[sessions]`: agent session lifetime.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session with no registration, command or outcome for this many seconds is ended.
    /// Default 86400 (one day). Local sessions also end as soon as their agent process exits.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

fn default_idle_timeout_secs() -> u64 {
    86_400
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig { idle_timeout_secs: default_idle_timeout_secs() }
    }
}

/// `[deliver]`: directive delivery queues and channels.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverConfig {
    /// Pending (unacknowledged) directives kept per session; beyond it the oldest are dropped
    /// and counted. Default 256.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// Concurrent SSE streams per session; more are refused with 429. Default 4.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Send SIGUSR1 to a session's registered agent pid after writing new inbox files.
    /// Default false (opt-in: an agent that does not handle SIGUSR1 would be killed by it).
    #[serde(default)]
    pub inbox_doorbell: bool,
    /// Base directory for inboxes instead of `$XDG_RUNTIME_DIR` (or `$HOME/.local/state`).
    /// Agent-side readers must be given the same base (`XDG_RUNTIME_DIR`).
    #[serde(default)]
    pub inbox_base: Option<PathBuf>,
}

fn default_max_pending() -> usize {
    crate::deliver::DEFAULT_MAX_PENDING
}

fn default_max_streams() -> usize {
    crate::deliver::DEFAULT_MAX_STREAMS
}

impl Default for DeliverConfig {
    fn default() -> Self {
        DeliverConfig {
            max_pending: default_max_pending(),
            max_streams: default_max_streams(),
            inbox_doorbell: false,
            inbox_base: None,
        }
    }
}

/// How a source authenticates. There is deliberately no "none".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthScheme {
    /// Standard Webhooks `v1`: HMAC-SHA256 with a `whsec_` secret.
    StandardWebhooks,
    /// Standard Webhooks `v1a`: Ed25519 with one or more `whpk_` public keys.
    StandardWebhooksEd25519,
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: Basic …`.
    Basic,
    /// `Authorization: Bearer <JWT>` with a pinned algorithm, `iss`, `aud` and `exp` required.
    Jwt,
}

/// One `[[source]]`: a named sender, the decoder for its payloads and its credentials.
///
/// The credential keys are flat (rather than nested per scheme) so the file reads like the
/// vendor's own settings page; [`SourceConfig::validate`] checks that exactly the keys the
/// chosen scheme needs are present. `Debug` shows credentials only as present or absent (R20).
#[derive(Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// URL path segment: `POST /v1/ingest/{name}`. `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// Decoder for this source's payloads. Default `generic` (haltwire's native event JSON).
    #[serde(default = "default_integration")]
    pub integration: String,
    /// Authentication scheme; required.
    pub auth: Option<AuthScheme>,
    /// `standard-webhooks`: the `whsec_…` secret (or `secret_file`). Several = rotation.
    #[serde(default)]
    pub secret: Option<Secrets>,
    /// `standard-webhooks` and `jwt` (HS*): file holding the secret.
    pub secret_file: Option<PathBuf>,
    /// `standard-webhooks-ed25519`: trusted `whpk_…` keys; several = rotation.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// `bearer`: the token (or `token_file`).
    pub token: Option<String>,
    /// `bearer`: file holding the token.
    pub token_file: Option<PathBuf>,
    /// `basic`: the user name.
    pub username: Option<String>,
    /// `basic`: the password (or `password_file`).
    pub password: Option<String>,
    /// `basic`: file holding the password.
    pub password_file: Option<PathBuf>,
    /// `jwt`: the one accepted algorithm (`HS256`, `HS384`, `HS512`, `RS256`, `ES256`, `EdDSA`, …).
    pub algorithm: Option<String>,
    /// `jwt`: PEM public key for asymmetric algorithms.
    pub public_key_file: Option<PathBuf>,
    /// `jwt`: required `iss` value.
    pub issuer: Option<String>,
    /// `jwt`: required `aud` value.
    pub audience: Option<String>,
}

/// A single secret or a list (rotation: the first signs, all verify). `Debug` is redacted.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum Secrets {
    One(String),
    Many(Vec<String>),
}

// Hand-written so that logging a `Config` (it is `Debug`) can never print a credential (R20, R46).
impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secrets::One(_) => f.write_str("One([REDACTED])"),
            Secrets::Many(list) => write!(f, "Many([REDACTED; {}])", list.len()),
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |value: &Option<String>| value.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("SourceConfig")
            .field("name", &self.name)
            .field("integration", &self.integration)
            .field("auth", &self.auth)
            .field("secret", &self.secret)
            .field("secret_file", &self.secret_file)
            .field("public_keys", &self.public_keys)
            .field("token", &hidden(&self.token))
            .field("token_file", &self.token_file)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("password_file", &self.password_file)
            .field("algorithm", &self.algorithm)
            .field("public_key_file", &self.public_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl Secrets {
    /// The secrets as a list, in configured order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Secrets::One(s) => vec![s.clone()],
            Secrets::Many(v) => v.clone(),
        }
    }
}

/// How a watched file's bytes are cut into payloads for the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WatchFormat {
    /// One payload per `\n`-terminated line (Tetragon export, osquery results, any JSONL).
    #[default]
    Jsonl,
    /// One payload per audit event: the lines sharing `msg=audit(TIME:SERIAL)`, joined by `\n`
    /// (auditd's `audit.log`).
    Audit,
}

impl WatchFormat {
    /// The spelling in `haltwire.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchFormat::Jsonl => "jsonl",
            WatchFormat::Audit => "audit",
        }
    }
}

/// One `[[watch]]`: a local file (or a file-name pattern) whose events the broker tails.
///
/// Events from a watch carry trust `local`, because the operator configured this watch and each
/// file passed the owner and mode checks; a file is never read, or trusted, for where it lies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The file to tail, e.g. `/var/log/tetragon/tetragon.log`. The file-name part may be a
    /// pattern (`*`, `?`, `[…]`), e.g. `/var/log/osquery/*.results.log`; the directory part may
    /// not. Relative paths are relative to the config file's folder. Required.
    pub path: PathBuf,
    /// Names the watch in metrics, logs and checkpoints, and in the events' `source`
    /// (`watch:<name>`). `[A-Za-z0-9_-]{1,64}`, unique. Default: `path` as written (after
    /// resolving it). Renaming a watch starts its files over from the beginning (the
    /// checkpoints are per name); the 24 h line dedup keeps that from storing lines twice.
    pub name: Option<String>,
    /// Decoder for the payloads. Default `generic` (haltwire's native event JSON, one per line).
    #[serde(default = "default_integration")]
    pub integration: String,
    /// `jsonl` (one payload per line) or `audit` (one payload per audit event). Must match the
    /// integration's parser. Default `jsonl`.
    #[serde(default)]
    pub format: WatchFormat,
    /// Milliseconds between rescans of the directory: the fallback that finds new, rotated and
    /// grown files when filesystem notifications are missed or unavailable. 10-60000.
    /// Default 1000.
    #[serde(default = "default_rescan_interval_ms")]
    pub rescan_interval_ms: u64,
    /// Milliseconds a file that was renamed away or deleted is still read after it last grew,
    /// for writers that append to the old file until they reopen. 0-3600000. Default 5000.
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
}

fn default_rescan_interval_ms() -> u64 {
    1000
}
fn default_rotate_wait_ms() -> u64 {
    5000
}

impl WatchConfig {
    /// The name used for metrics, checkpoints and the events' `source`.
    pub fn effective_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.path.display().to_string())
    }

    /// The directory holding the watched file(s): the parent of `path` (`.` for a bare name).
    pub fn directory(&self) -> PathBuf {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The file-name pattern (a plain name matches only itself).
    pub fn file_pattern(&self) -> Result<glob::Pattern, String> {
        let name = self
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("`path` must end in a file name (UTF-8), not a directory")?;
        glob::Pattern::new(name).map_err(|e| format!("`path` file-name pattern {name:?}: {e}"))
    }

    /// Checks what the type system cannot: the path's shape, the name and the intervals.
    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("`path` is required".into());
        }
        self.file_pattern()?;
        let dir = self.directory();
        if dir.to_string_lossy().contains(['*', '?', '[', ']']) {
            return Err(format!(
                "`path`: patterns are allowed only in the file name, not in the directory {:?}",
                dir.display().to_string()
            ));
        }
        if let Some(name) = &self.name {
            if !valid_source_name(name) {
                return Err("`name` must be 1-64 characters of A-Z a-z 0-9 _ -".into());
            }
        }
        if !(10..=60_000).contains(&self.rescan_interval_ms) {
            return Err("`rescan_interval_ms` must be between 10 and 60000".into());
        }
        if self.rotate_wait_ms > 3_600_000 {
            return Err("`rotate_wait_ms` must be at most 3600000 (one hour)".into());
        }
        Ok(())
    }
}

fn default_integration() -> String {
    GENERIC_SOURCE.to_string()
}

/// A configuration problem, located as precisely as the parser allows.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax { path: String, line: usize, col: usize, message: String },
    #[error("{path}: source {index} ({name:?}): {message}")]
    Source { path: String, index: usize, name: String, message: String },
    /// `index` counts `[[watch]]` tables from 0; `name` is the watch's effective name.
    #[error("{path}: watch {index} ({name:?}): {message}")]
    Watch { path: String, index: usize, name: String, message: String },
}

impl Config {
    /// The integrations folder to load: the configured one, else `./integrations` if present.
    pub fn integrations_dir(&self) -> Option<PathBuf> {
        self.integrations_dir
            .clone()
            .or_else(|| Some(PathBuf::from(DEFAULT_INTEGRATIONS_DIR)).filter(|p| p.is_dir()))
    }

    /// The policy folder to load: the configured one, else `./policies` if present.
    pub fn policies_dir(&self) -> Option<PathBuf> {
        self.policies_dir.clone().or_else(|| Some(PathBuf::from(DEFAULT_POLICIES_DIR)).filter(|p| p.is_dir()))
    }

    /// Reads and validates a config file. `path` is only used for messages and for resolving
    /// relative `*_file` paths.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        let mut config = Config::parse(&text, &shown)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_relative_files(base);
        config.validate(&shown)?;
        Ok(config)
    }

    /// Parses TOML text without touching the file system.
    pub fn parse(text: &str, shown_path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| {
            let (line, col) = err.span().map(|span| line_col(text, span.start)).unwrap_or((1, 1));
            ConfigError::Syntax {
                path: shown_path.to_string(),
                line,
                col,
                message: err.message().to_string(),
            }
        })
    }

    /// Checks what the type system cannot: source names, duplicates, per-scheme credentials.
    pub fn validate(&self, shown_path: &str) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (index, source) in self.sources.iter().enumerate() {
            let fail = |message: String| ConfigError::Source {
                path: shown_path.to_string(),
                index,
                name: source.name.clone(),
                message,
            };
            source.validate().map_err(fail)?;
            if !seen.insert(source.name.as_str()) {
                return Err(fail("duplicate source name".to_string()));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for (index, watch) in self.watches.iter().enumerate() {
            let name = watch.effective_name();
            let fail = |message: String| ConfigError::Watch {
                path: shown_path.to_string(),
                index,
                name: name.clone(),
                message,
            };
            watch.validate().map_err(fail)?;
            if !names.insert(name.clone()) {
                return Err(fail("duplicate watch name".to_string()));
            }
            if !paths.insert(watch.path.clone()) {
                return Err(fail("another watch has the same `path`".to_string()));
            }
        }
        Ok(())
    }

    fn resolve_relative_files(&mut self, base: &Path) {
        for watch in &mut self.watches {
            if watch.path.is_relative() {
                watch.path = base.join(&watch.path);
            }
        }
        for dir in [self.integrations_dir.as_mut(), self.policies_dir.as_mut()].into_iter().flatten() {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        for source in &mut self.sources {
            for file in [
                &mut source.secret_file,
                &mut source.token_file,
                &mut source.password_file,
                &mut source.public_key_file,
            ] {
                if let Some(p) = file.as_mut() {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                }
            }
        }
    }
}

impl SourceConfig {
    /// Checks the name and that the chosen scheme has exactly the credentials it needs (R4).
    pub fn validate(&self) -> Result<(), String> {
        if !valid_source_name(&self.name) {
            return Err("`name` must be 1-64 characters of A-Z a-z 0-9 _ -".into());
        }
        let Some(scheme) = self.auth else {
            return Err("`auth` is required (standard-webhooks, standard-webhooks-ed25519, bearer, basic, jwt); there is no unauthenticated source".into());
        };
        let present: Vec<&str> = [
            ("secret", self.secret.is_some()),
            ("secret_file", self.secret_file.is_some()),
            ("public_keys", !self.public_keys.is_empty()),
            ("token", self.token.is_some()),
            ("token_file", self.token_file.is_some()),
            ("username", self.username.is_some()),
            ("password", self.password.is_some()),
            ("password_file", self.password_file.is_some()),
            ("algorithm", self.algorithm.is_some()),
            ("public_key_file", self.public_key_file.is_some()),
            ("issuer", self.issuer.is_some()),
            ("audience", self.audience.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect();
        let (allowed, one_of, required): (&[&str], &[&str], &[&str]) = match scheme {
            AuthScheme::StandardWebhooks => (&["secret", "secret_file"], &["secret", "secret_file"], &[]),
            AuthScheme::StandardWebhooksEd25519 => (&["public_keys"], &["public_keys"], &[]),
            AuthScheme::Bearer => (&["token", "token_file"], &["token", "token_file"], &[]),
            AuthScheme::Basic => {
                (&["username", "password", "password_file"], &["password", "password_file"], &["username"])
            }
            AuthScheme::Jwt => (
                &["algorithm", "secret", "secret_file", "public_key_file", "issuer", "audience"],
                &["secret", "secret_file", "public_key_file"],
                &["algorithm", "issuer", "audience"],
            ),
        };
        if let Some(extra) = present.iter().find(|k| !allowed.contains(k)) {
            return Err(format!("`{extra}` is not used by auth = \"{}\"", scheme_name(scheme)));
        }
        for key in required {
            if !present.contains(key) {
                return Err(format!("auth = \"{}\" requires `{key}`", scheme_name(scheme)));
            }
        }
        let given = one_of.iter().filter(|k| present.contains(k)).count();
        if given != 1 {
            return Err(format!(
                "auth = \"{}\" needs exactly one of {}",
                scheme_name(scheme),
                one_of.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        Ok(())
    }
}

/// The scheme's spelling in `haltwire.toml`.
pub fn scheme_name(scheme: AuthScheme) -> &'static str {
    match scheme {
        AuthScheme::StandardWebhooks => "standard-webhooks",
        AuthScheme::StandardWebhooksEd25519 => "standard-webhooks-ed25519",
        AuthScheme::Bearer => "bearer",
        AuthScheme::Basic => "basic",
        AuthScheme::Jwt => "jwt",
    }
}

/// Source names become URL path segments and metric labels, so they are kept plain.
pub fn valid_source_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_reported_with_line_and_column() {
        let err = Config::parse("listen = \"127.0.0.1:1\"\nlisten_port = 3\n", "h.toml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("h.toml:2:1: "), "{text}");
        assert!(text.contains("listen_port"), "{text}");
    }

    #[test]
    fn source_without_auth_is_rejected() {
        let cfg = Config::parse("[[source]]\nname = \"x\"\n", "h.toml").unwrap();
        let err = cfg.validate("h.toml").unwrap_err().to_string();
        assert!(err.contains("`auth` is required"), "{err}");
    }

    #[test]
    fn credentials_of_another_scheme_are_rejected() {
        let cfg = Config::parse(
            "[[source]]\nname = \"x\"\nauth = \"bearer\"\ntoken = \"t\"\npublic_keys = [\"whpk_x\"]\n",
            "h.toml",
        )
        .unwrap();
        let err = cfg.validate("h.toml").unwrap_err().to_string();
        assert!(err.contains("`public_keys` is not used"), "{err}");
    }

    #[test]
    fn secret_and_secret_file_together_are_rejected() {
        let cfg = Config::parse(
            "[[source]]\nname = \"x\"\nauth = \"standard-webhooks\"\nsecret = \"whsec_a\"\nsecret_file = \"f\"\n",
            "h.toml",
        )
        .unwrap();
        assert!(cfg.validate("h.toml").unwrap_err().to_string().contains("exactly one of"));
    }

    #[test]
    fn duplicate_source_names_are_rejected() {
        let cfg = Config::parse(
            "[[source]]\nname = \"x\"\nauth = \"bearer\"\ntoken = \"t\"\n[[source]]\nname = \"x\"\nauth = \"bearer\"\ntoken = \"u\"\n",
            "h.toml",
        )
        .unwrap();
        assert!(cfg.validate("h.toml").unwrap_err().to_string().contains("duplicate"));
    }

    #[test]
    fn source_name_must_be_a_plain_path_segment() {
        assert!(valid_source_name("edr-hmac_2"));
        assert!(!valid_source_name("a/b"));
        assert!(!valid_source_name(""));
        assert!(!valid_source_name(&"a".repeat(65)));
    }

    #[test]
    fn debug_never_shows_credentials() {
        let cfg = Config::parse(
            "[[source]]\nname = \"a\"\nauth = \"bearer\"\ntoken = \"tok-SECRET-1\"\n\
             [[source]]\nname = \"b\"\nauth = \"basic\"\nusername = \"u\"\npassword = \"pw-SECRET-2\"\n\
             [[source]]\nname = \"c\"\nauth = \"standard-webhooks\"\nsecret = [\"whsec_SECRET3\", \"whsec_SECRET4\"]\n\
             [[source]]\nname = \"d\"\nauth = \"jwt\"\nalgorithm = \"HS256\"\nsecret = \"jwt-SECRET-5\"\n",
            "h.toml",
        )
        .unwrap();
        let shown = format!("{cfg:?} {cfg:#?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(
            shown.contains("token: Some(\"[REDACTED]\")") && shown.contains("Many([REDACTED; 2])"),
            "{shown}"
        );
    }

    #[test]
    fn defaults_apply_when_sections_are_absent() {
        let cfg = Config::parse("", "h.toml").unwrap();
        assert_eq!(cfg.store.retention_days, 30);
        assert_eq!(cfg.ingest.commit_queue, 4096);
        assert!(cfg.sources.is_empty());
    }

    #[test]
    fn watch_defaults_and_formats() {
        let cfg = Config::parse(
            "[[watch]]\npath = \"/var/log/tetragon/tetragon.log\"\n\
             [[watch]]\npath = \"/var/log/audit/audit.log\"\nname = \"auditd\"\nformat = \"audit\"\n",
            "h.toml",
        )
        .unwrap();
        cfg.validate("h.toml").unwrap();
        let (first, second) = (&cfg.watches[0], &cfg.watches[1]);
        assert_eq!(first.integration, "generic");
        assert_eq!(first.format, WatchFormat::Jsonl);
        assert_eq!(first.rescan_interval_ms, 1000);
        assert_eq!(first.rotate_wait_ms, 5000);
        assert_eq!(first.effective_name(), "/var/log/tetragon/tetragon.log");
        assert_eq!(first.directory(), PathBuf::from("/var/log/tetragon"));
        assert_eq!(second.format, WatchFormat::Audit);
        assert_eq!(second.effective_name(), "auditd");
    }

    #[test]
    fn watch_errors_name_the_watch() {
        let cases = [
            ("[[watch]]\npath = \"/var/*/x.log\"\nname = \"w1\"\n", "only in the file name"),
            ("[[watch]]\npath = \"/var/log/[x.log\"\nname = \"w1\"\n", "pattern"),
            ("[[watch]]\npath = \"/var/log/x.log\"\nname = \"a b\"\n", "`name`"),
            ("[[watch]]\npath = \"/var/log/x.log\"\nname = \"w1\"\nrescan_interval_ms = 0\n", "rescan"),
            ("[[watch]]\npath = \"/a/x.log\"\nname = \"w1\"\n[[watch]]\npath = \"/b/x.log\"\nname = \"w1\"\n", "duplicate watch name"),
            ("[[watch]]\npath = \"/a/x.log\"\n[[watch]]\npath = \"/a/x.log\"\nname = \"w1\"\n", "same `path`"),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, "h.toml").unwrap().validate("h.toml").unwrap_err().to_string();
            assert!(err.starts_with("h.toml: watch "), "{err}");
            assert!(["\"w1\"", "\"a b\"", "/a/x.log"].iter().any(|n| err.contains(n)), "{err}");
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn watch_rejects_unknown_keys_and_formats() {
        let err = Config::parse("[[watch]]\npath = \"/x\"\nfollow = true\n", "h.toml").unwrap_err();
        assert!(err.to_string().starts_with("h.toml:3:1: "), "{err}");
        let err = Config::parse("[[watch]]\npath = \"/x\"\nformat = \"csv\"\n", "h.toml").unwrap_err();
        assert!(err.to_string().contains("jsonl"), "{err}");
    }

    #[test]
    fn relative_watch_paths_are_resolved_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haltwire.toml");
        std::fs::write(&file, "[[watch]]\npath = \"logs/x.jsonl\"\n").unwrap();
        let cfg = Config::load(&file).unwrap();
        assert_eq!(cfg.watches[0].path, dir.path().join("logs/x.jsonl"));
    }
}
