//! The agent's settings: embedded defaults, then the config file
//! (`/etc/patchward-agent/config.yaml`, or `--config FILE`), then the
//! command-line flags, merged into one validated [`Settings`]. Every
//! setting is written out with its default in
//! `examples/agent/patchward-agent.yaml`, and a test holds the two equal;
//! `schemas/agent-config.json` describes the file.
//!
//! The file is YAML, camelCase, every field optional. An unknown field is
//! an error with its line and column: a typo'd setting silently left at
//! its default is how a fleet ends up polling every second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::download::{Limits, MinRate};
use crate::local::{DEFAULT_RUNTIME_DIR, socket_path};
use patchward_api::agent_config::{LogFormat as Format, LogLevel as Level};

/// Where `run` looks for its config without `--config`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/patchward-agent/config.yaml";
/// The agent's own state: credential, pinned key, journal, cache. 0700.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/patchward-agent";
/// How often the agent asks for its desired state: the long poll's `wait`.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The longest one package manager run may take before it is killed.
pub const DEFAULT_INSTALL_TIMEOUT: Duration = crate::install::deb::DEFAULT_DPKG_TIMEOUT;

/// The config file as written: every field optional (its types are the
/// wire crate's, which generates its JSON Schema).
pub use patchward_api::agent_config::{ConfigFile, DownloadFile, LogFile, MinRateFile};

/// The flags that override the file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub server: Option<Url>,
    pub state: Option<PathBuf>,
    pub runtime: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub log_format: Option<Format>,
    pub log_level: Option<Level>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    pub format: Format,
    pub level: Level,
}

/// The settings the agent runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The engine's URL; `None` here means "the one `enroll` stored".
    pub server: Option<Url>,
    pub state: PathBuf,
    /// Holds the local socket (0755, apart from the 0700 state).
    pub runtime: PathBuf,
    /// The filesystem root the package managers act on, and facts are read under.
    pub root: PathBuf,
    pub poll_interval: Duration,
    /// Reported as facts; the engine's scopes select on them.
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    /// Per-source download limits; `max_bandwidth_kbps` stays `None`
    /// here, because the engine sets it per Location in the desired state.
    pub download: Limits,
    pub install_timeout: Duration,
    pub log: LogSettings,
    /// dnf's config file (`dnf.config`), when not the system's.
    pub dnf_config: Option<PathBuf>,
    /// dnf's `--releasever` under a root (`dnf.releasever`).
    pub dnf_releasever: Option<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            server: None,
            state: PathBuf::from(DEFAULT_STATE_DIR),
            runtime: PathBuf::from(DEFAULT_RUNTIME_DIR),
            root: PathBuf::from("/"),
            poll_interval: DEFAULT_POLL_INTERVAL,
            labels: BTreeMap::new(),
            groups: Vec::new(),
            download: Limits::default(),
            install_timeout: DEFAULT_INSTALL_TIMEOUT,
            log: LogSettings { format: Format::Text, level: Level::Info },
            dnf_config: None,
            dnf_releasever: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{col}: {message}")]
    Syntax { path: PathBuf, line: u64, col: u64, message: String },
    #[error("{origin}: {field}: {message}")]
    Invalid { origin: String, field: &'static str, message: String },
}

/// The config file `run` reads: `--config FILE` if given (it must exist),
/// else [`DEFAULT_CONFIG_PATH`] if it exists, else none (the defaults).
pub fn config_file_to_read(flag: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(path) => Some(path.to_owned()),
        None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
    }
}

fn seconds(d: patchward_api::Duration) -> Duration {
    d.as_std()
}

impl Settings {
    /// The local socket's path.
    pub fn socket(&self) -> PathBuf {
        socket_path(&self.runtime)
    }

    /// Defaults, then `file` (if any), then `flags`.
    pub fn load(file: Option<&Path>, flags: Overrides) -> Result<Settings, ConfigError> {
        let (parsed, origin) = match file {
            None => (ConfigFile::default(), "the command line".to_owned()),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                (parse(&text, path)?, path.display().to_string())
            }
        };
        let defaults = Settings::default();
        let invalid = |field, message: String| ConfigError::Invalid { origin: origin.clone(), field, message };
        let base = defaults.download;
        let download = Limits {
            max_bandwidth_kbps: None,
            stall_timeout: parsed.download.stall_timeout.map_or(base.stall_timeout, seconds),
            min_rate: match parsed.download.min_rate {
                None => base.min_rate,
                Some(MinRateFile { bytes_per_second: 0, .. }) => None,
                Some(MinRateFile { bytes_per_second, window }) => {
                    Some(MinRate { bytes_per_second, window: seconds(window) })
                }
            },
            total_timeout: match parsed.download.total_timeout {
                None => base.total_timeout,
                Some(d) if d.as_secs() == 0 => None,
                Some(d) => Some(seconds(d)),
            },
            max_resumes: parsed.download.max_resumes.unwrap_or(base.max_resumes),
        };
        // A relative path on the command line means the caller's directory;
        // in a file it would mean wherever the service happened to start.
        let from_flag = |path: Option<PathBuf>, field| -> Result<Option<PathBuf>, ConfigError> {
            path.map(|p| std::path::absolute(&p).map_err(|e| invalid(field, format!("{}: {e}", p.display()))))
                .transpose()
        };
        let settings = Settings {
            server: flags.server.or(parsed.server),
            state: from_flag(flags.state, "state")?.or(parsed.state).unwrap_or(defaults.state),
            runtime: from_flag(flags.runtime, "runtime")?.or(parsed.runtime).unwrap_or(defaults.runtime),
            root: from_flag(flags.root, "root")?.or(parsed.root).unwrap_or(defaults.root),
            poll_interval: parsed.poll_interval.map_or(defaults.poll_interval, seconds),
            labels: parsed.labels.unwrap_or(defaults.labels),
            groups: parsed.groups.unwrap_or(defaults.groups),
            download,
            install_timeout: parsed.install_timeout.map_or(defaults.install_timeout, seconds),
            log: LogSettings {
                format: flags.log_format.or(parsed.log.format).unwrap_or(defaults.log.format),
                level: flags.log_level.or(parsed.log.level).unwrap_or(defaults.log.level),
            },
            dnf_config: parsed.dnf.config,
            dnf_releasever: parsed.dnf.releasever,
        };
        settings.validate().map_err(|(field, message)| invalid(field, message))?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(server) = &self.server
            && !matches!(server.scheme(), "http" | "https")
        {
            return Err(("server", format!("`{}` is not an http(s) URL", server.scheme())));
        }
        for (field, path) in [("state", &self.state), ("runtime", &self.runtime), ("root", &self.root)] {
            if !path.is_absolute() {
                return Err((field, format!("`{}` must be an absolute path", path.display())));
            }
        }
        if self.state == self.runtime {
            return Err((
                "runtime",
                "must differ from `state`: the socket is open to every local user, the state is root's only".to_owned(),
            ));
        }
        if self.poll_interval < Duration::from_secs(1) {
            return Err(("pollInterval", "must be at least 1s".to_owned()));
        }
        if self.download.stall_timeout.is_zero() {
            return Err(("download.stallTimeout", "must be at least 1s".to_owned()));
        }
        if self.download.min_rate.is_some_and(|rate| rate.window.is_zero()) {
            return Err(("download.minRate.window", "must be at least 1s".to_owned()));
        }
        if self.install_timeout.is_zero() {
            return Err(("installTimeout", "must be at least 1s".to_owned()));
        }
        if let Some(key) = self.labels.keys().find(|k| k.trim().is_empty()) {
            return Err(("labels", format!("a label needs a name (found `{key}`)")));
        }
        if self.groups.iter().any(|g| g.trim().is_empty()) {
            return Err(("groups", "a group needs a name".to_owned()));
        }
        Ok(())
    }
}

fn parse(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let options = serde_saphyr::options! {
        // `yes`/`no`/`on`/`off` stay strings: no Norway problem.
        strict_booleans: true,
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // A config file is a few dozen lines; these refuse anything hostile.
        budget: serde_saphyr::budget! {
            max_depth: 16,
            max_documents: 1,
            max_nodes: 10_000,
            max_total_scalar_bytes: 1 << 20,
            max_aliases: 100,
            max_anchors: 100,
            flow_nesting_limit: 16,
            max_reader_input_bytes: None,
        },
    };
    serde_saphyr::from_str_with_options::<ConfigFile>(text, options).map_err(|error| {
        let (line, col) = error.location().map_or((0, 0), |l| (l.line(), l.column()));
        let message = match &error {
            serde_saphyr::Error::SerdeUnknownField { field, expected, .. } => format!(
                "unknown field `{field}`; expected one of {}",
                expected.iter().map(|e| format!("`{e}`")).collect::<Vec<_>>().join(", ")
            ),
            other => strip_location(&other.to_string()),
        };
        ConfigError::Syntax { path: path.to_owned(), line, col, message }
    })
}

/// serde-saphyr's Display appends " at line L, column C"; the position is
/// printed in front instead, as `path:line:col`.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}
