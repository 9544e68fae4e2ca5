//! `patchward serve`'s settings: embedded defaults, then the config file,
//! then the command-line flags, merged into one validated [`ServeConfig`].
//! Every default is written out in `examples/serve/patchward.yaml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use patchward_api::Duration;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::follow::signature::SignatureMode;

/// The config file of `patchward serve`, as written: every field optional;
/// `examples/serve/patchward.yaml` has them all with their defaults.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(title = "patchward serve config")]
pub struct ConfigFile {
    pub data: Option<PathBuf>,
    /// `postgres://USER@HOST:PORT/DB`: the store of several replicas.
    /// Unset: the embedded store in `DATA/store`.
    pub store: Option<String>,
    /// The engine's ed25519 signing key; created (mode 0600) if missing, so
    /// replicas given the same file share it. Unset: `DATA/engine-key`.
    pub signing_key: Option<PathBuf>,
    /// How long the leader's lease lasts (at most 15s): a dead leader is
    /// replaced within twice this. Only replicas on a shared store take it.
    pub leader_lease: Option<Duration>,
    /// Where the other replicas reach this one's API (`http://HOST:PORT`):
    /// followers relay the admin's reads of the plan to the leader there.
    /// Unset: the listen address, or this host's name when that is a
    /// wildcard.
    pub advertise_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
    #[serde(default)]
    pub media: MediaFile,
    #[serde(default)]
    pub policies: PoliciesFile,
    #[serde(default)]
    pub catalog: CatalogFile,
    #[serde(default)]
    pub desired_state: DesiredStateFile,
    #[serde(default)]
    pub limits: LimitsFile,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MediaFile {
    /// Where package media is kept. Replicas on a shared store must all
    /// reach one directory (a shared file system). Unset: `DATA/blobs`.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoliciesFile {
    /// A folder, a git repository's path, or a `file://`, `http(s)://` or
    /// `ssh://` URL.
    pub source: Option<String>,
    pub branch: Option<String>,
    pub poll_interval: Option<Duration>,
    /// The longest a fetch may take to connect to the repository's server.
    pub connect_timeout: Option<Duration>,
    /// The longest a fetch may wait for any one read from the server (a
    /// server that accepts and never answers is cut off after this).
    pub read_timeout: Option<Duration>,
    /// Where the HMAC secret of `POST /api/v1/sync` webhooks is.
    pub webhook_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub signatures: SignaturesFile,
    #[serde(default)]
    pub ssh: SshFile,
    /// A file holding `user:token`, for an `https://` repository that needs them.
    pub http_credentials_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SshFile {
    /// The private key offered to the repository's SSH server.
    pub private_key: Option<PathBuf>,
    /// The SSH server's host keys (known_hosts format, as `ssh-keyscan`
    /// writes it); no SSH server is trusted without them.
    pub known_hosts: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignaturesFile {
    pub mode: Option<SignatureMode>,
    pub allowed_signers: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogFile {
    /// Import the example feed built into the binary while a source has
    /// never been synced, so that a first start has patches to plan.
    pub bundled_feed: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DesiredStateFile {
    pub ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsFile {
    pub max_body_bytes: Option<usize>,
    pub max_json_depth: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub request_timeout: Option<Duration>,
    pub header_read_timeout: Option<Duration>,
    pub max_wait: Option<Duration>,
    pub device_requests_per_minute: Option<u32>,
    pub max_connections: Option<usize>,
}

/// The flags of `patchward serve` that override the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub store: Option<String>,
    pub signing_key: Option<PathBuf>,
    pub policies: Option<String>,
    pub branch: Option<String>,
    pub listen: Option<SocketAddr>,
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    pub max_header_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub header_read_timeout: std::time::Duration,
    /// The longest `?wait=` a long poll may ask for.
    pub max_wait: std::time::Duration,
    pub device_requests_per_minute: u32,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            max_json_depth: 64,
            max_header_bytes: 16 << 10,
            request_timeout: std::time::Duration::from_secs(30),
            header_read_timeout: std::time::Duration::from_secs(10),
            max_wait: std::time::Duration::from_secs(300),
            device_requests_per_minute: 600,
            max_connections: 20_000,
        }
    }
}

/// The longest the leader's lease may last: a dead leader is replaced
/// within 30 s.
pub const MAX_LEADER_LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// The settings `serve` runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeConfig {
    pub data: PathBuf,
    /// PostgreSQL's URL; `None`: the embedded store in `data`.
    pub store: Option<String>,
    /// The signing key's file; `None`: `DATA/engine-key`.
    pub signing_key: Option<PathBuf>,
    /// The leader's lease, on a shared store.
    pub leader_lease: std::time::Duration,
    /// The media directory; `None`: `DATA/blobs`.
    pub media_dir: Option<PathBuf>,
    /// Where the other replicas reach this one; `None`: from the listener.
    pub advertise_url: Option<String>,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub policies: String,
    pub branch: String,
    pub poll_interval: std::time::Duration,
    pub connect_timeout: std::time::Duration,
    pub read_timeout: std::time::Duration,
    pub webhook_secret_file: Option<PathBuf>,
    pub signature_mode: SignatureMode,
    pub allowed_signers: Option<PathBuf>,
    pub credentials: crate::follow::transport::FetchCredentials,
    pub bundled_feed: bool,
    pub desired_ttl: jiff::SignedDuration,
    pub limits: Limits,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            data: PathBuf::from("./patchward-data"),
            store: None,
            signing_key: None,
            leader_lease: MAX_LEADER_LEASE,
            media_dir: None,
            advertise_url: None,
            listen: "127.0.0.1:8420".parse().expect("a literal address"),
            metrics_listen: "127.0.0.1:9420".parse().expect("a literal address"),
            policies: "./policies".into(),
            branch: "main".into(),
            poll_interval: std::time::Duration::from_secs(60),
            connect_timeout: std::time::Duration::from_secs(15),
            read_timeout: std::time::Duration::from_secs(60),
            webhook_secret_file: None,
            signature_mode: SignatureMode::Off,
            allowed_signers: None,
            credentials: crate::follow::transport::FetchCredentials::default(),
            bundled_feed: true,
            desired_ttl: jiff::SignedDuration::from_hours(24),
            limits: Limits::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax { path: PathBuf, line: u32, col: u32, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid { path: String, field: &'static str, message: String },
}

impl ServeConfig {
    /// Defaults, then `file` (if any), then `flags`.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<ServeConfig, ConfigError> {
        let (parsed, origin) = match file {
            None => (ConfigFile::default(), "the command line".to_owned()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                let limits = crate::policy::yaml::YamlLimits::default();
                let parsed = crate::policy::yaml::from_str::<ConfigFile>(&text, &limits).map_err(|e| {
                    ConfigError::Syntax { path: path.to_owned(), line: e.pos.line, col: e.pos.col, message: e.message }
                })?;
                (parsed, path.display().to_string())
            }
        };
        let defaults = ServeConfig::default();
        let base_limits = defaults.limits.clone();
        let limits = Limits {
            max_body_bytes: parsed.limits.max_body_bytes.unwrap_or(base_limits.max_body_bytes),
            max_json_depth: parsed.limits.max_json_depth.unwrap_or(base_limits.max_json_depth),
            max_header_bytes: parsed.limits.max_header_bytes.unwrap_or(base_limits.max_header_bytes),
            request_timeout: parsed.limits.request_timeout.map_or(base_limits.request_timeout, Duration::as_std),
            header_read_timeout: parsed
                .limits
                .header_read_timeout
                .map_or(base_limits.header_read_timeout, Duration::as_std),
            max_wait: parsed.limits.max_wait.map_or(base_limits.max_wait, Duration::as_std),
            device_requests_per_minute: parsed
                .limits
                .device_requests_per_minute
                .unwrap_or(base_limits.device_requests_per_minute),
            max_connections: parsed.limits.max_connections.unwrap_or(base_limits.max_connections),
        };
        let config = ServeConfig {
            data: flags.data.or(parsed.data).unwrap_or(defaults.data),
            store: flags.store.or(parsed.store),
            signing_key: flags.signing_key.or(parsed.signing_key),
            leader_lease: parsed.leader_lease.map_or(defaults.leader_lease, Duration::as_std),
            media_dir: parsed.media.dir,
            advertise_url: parsed.advertise_url.map(|url| url.trim_end_matches('/').to_owned()),
            listen: flags.listen.or(parsed.listen).unwrap_or(defaults.listen),
            metrics_listen: flags.metrics_listen.or(parsed.metrics_listen).unwrap_or(defaults.metrics_listen),
            policies: flags.policies.or(parsed.policies.source).unwrap_or(defaults.policies),
            branch: flags.branch.or(parsed.policies.branch).unwrap_or(defaults.branch),
            poll_interval: parsed.policies.poll_interval.map_or(defaults.poll_interval, Duration::as_std),
            connect_timeout: parsed.policies.connect_timeout.map_or(defaults.connect_timeout, Duration::as_std),
            read_timeout: parsed.policies.read_timeout.map_or(defaults.read_timeout, Duration::as_std),
            webhook_secret_file: parsed.policies.webhook_secret_file,
            signature_mode: parsed.policies.signatures.mode.unwrap_or_default(),
            allowed_signers: parsed.policies.signatures.allowed_signers,
            credentials: crate::follow::transport::FetchCredentials {
                ssh_private_key: parsed.policies.ssh.private_key,
                ssh_known_hosts: parsed.policies.ssh.known_hosts,
                http_credentials: parsed.policies.http_credentials_file,
            },
            bundled_feed: parsed.catalog.bundled_feed.unwrap_or(defaults.bundled_feed),
            desired_ttl: parsed
                .desired_state
                .ttl
                .map_or(defaults.desired_ttl, |d| jiff::SignedDuration::from_secs(d.as_secs() as i64)),
            limits,
        };
        let invalid =
            |field, message: &str| ConfigError::Invalid { path: origin.clone(), field, message: message.into() };
        if config.signature_mode != SignatureMode::Off && config.allowed_signers.is_none() {
            return Err(invalid("policies.signatures.allowedSigners", "signature checks need an allowed-signers file"));
        }
        if config.poll_interval < std::time::Duration::from_secs(1) {
            return Err(invalid("policies.pollInterval", "must be at least 1s"));
        }
        if config.connect_timeout.is_zero() || config.read_timeout.is_zero() {
            return Err(invalid("policies.connectTimeout", "connectTimeout and readTimeout must be positive"));
        }
        if config.advertise_url.as_deref().is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(invalid("advertiseUrl", "must be an http:// or https:// URL"));
        }
        if config.leader_lease < std::time::Duration::from_secs(1) || config.leader_lease > MAX_LEADER_LEASE {
            return Err(invalid("leaderLease", "must be between 1s and 15s"));
        }
        if config.desired_ttl < jiff::SignedDuration::from_mins(5) {
            return Err(invalid("desiredState.ttl", "must be at least 5m"));
        }
        if config.limits.max_json_depth == 0 || config.limits.max_body_bytes < 1024 {
            return Err(invalid("limits", "maxJsonDepth must be positive and maxBodyBytes at least 1024"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patchward.yaml");
        std::fs::write(&path, "data: /srv/pw\nlisten: 0.0.0.0:8000\npolicies:\n  pollInterval: 30s\n").unwrap();
        let config = ServeConfig::load(
            Some(&path),
            Overrides { listen: Some("127.0.0.1:9000".parse().unwrap()), ..Overrides::default() },
        )
        .unwrap();
        assert_eq!(config.data, PathBuf::from("/srv/pw"));
        assert_eq!(config.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.poll_interval, std::time::Duration::from_secs(30));
        assert_eq!(config.metrics_listen, ServeConfig::default().metrics_listen);
    }

    #[test]
    fn the_documented_example_is_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/serve/patchward.yaml");
        assert_eq!(ServeConfig::load(Some(&path), Overrides::default()).unwrap(), ServeConfig::default());
    }

    #[test]
    fn the_high_availability_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ha/patchward.yaml");
        let config = ServeConfig::load(Some(&path), Overrides::default()).unwrap();
        assert!(config.store.as_deref().is_some_and(|s| s.starts_with("postgres://")));
        assert_eq!(config.media_dir.as_deref(), Some(Path::new("/srv/patchward/media")));
        assert_eq!(config.leader_lease, MAX_LEADER_LEASE);
    }

    #[test]
    fn a_lease_longer_than_fifteen_seconds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patchward.yaml");
        std::fs::write(&path, "leaderLease: 30s\n").unwrap();
        let error = ServeConfig::load(Some(&path), Overrides::default()).unwrap_err().to_string();
        assert!(error.contains("leaderLease"), "{error}");
    }

    #[test]
    fn a_bad_config_file_names_the_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("patchward.yaml");
        std::fs::write(&path, "data: x\npolicies:\n  pollIntervl: 30s\n").unwrap();
        let error = ServeConfig::load(Some(&path), Overrides::default()).unwrap_err().to_string();
        assert!(error.contains("patchward.yaml:3:"), "{error}");
        assert!(error.contains("pollIntervl"), "{error}");
    }
}
