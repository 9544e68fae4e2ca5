//! The agent's config file as written (`/etc/patchward-agent/config.yaml`):
//! every field optional, camelCase, unknown fields refused. The agent
//! merges it over its embedded defaults into its settings; its JSON Schema
//! (`schemas/agent-config.json`) is generated from these types, like every
//! other file format patchward reads.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// The engine's URL; `enroll --server` stores it in the state directory.
    #[schemars(with = "Option<String>", extend("format" = "uri"))]
    pub server: Option<url::Url>,
    /// The agent's own state (credential, pinned key, journal, outbox,
    /// cache), kept 0700: `/var/lib/patchward-agent`.
    pub state: Option<PathBuf>,
    /// Holds the local socket, 0755: `/run/patchward-agent`.
    pub runtime: Option<PathBuf>,
    /// The filesystem root the package managers act on: `/`.
    pub root: Option<PathBuf>,
    /// How long each long poll for the desired state waits: `60s`.
    pub poll_interval: Option<Duration>,
    /// Facts the engine's scopes select on.
    pub labels: Option<BTreeMap<String, String>>,
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub download: DownloadFile,
    /// The longest one package manager run may take: `30m`.
    pub install_timeout: Option<Duration>,
    #[serde(default)]
    pub log: LogFile,
    /// How fixes are installed through dnf on rpm systems.
    #[serde(default)]
    pub dnf: DnfFile,
}

/// dnf's configuration as the agent runs it.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnfFile {
    /// A dnf.conf to run dnf with (`-c`); otherwise the system's own.
    pub config: Option<PathBuf>,
    /// `--releasever` under a root other than `/`, when dnf cannot find it
    /// in the root's rpm database.
    pub releasever: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DownloadFile {
    /// A transfer that receives nothing this long is cut: `60s`.
    pub stall_timeout: Option<Duration>,
    pub min_rate: Option<MinRateFile>,
    /// The longest a whole transfer may take: `6h`; `0s`: no limit.
    pub total_timeout: Option<Duration>,
    /// How many times one source is resumed with a Range request: 3.
    pub max_resumes: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MinRateFile {
    /// `0`: no minimum rate.
    pub bytes_per_second: u64,
    pub window: Duration,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LogFile {
    pub format: Option<LogFormat>,
    pub level: Option<LogLevel>,
}

/// How severe a log line is; a logger keeps its level and everything above.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<LogLevel, String> {
        match text {
            "debug" => Ok(LogLevel::Debug),
            "info" => Ok(LogLevel::Info),
            "warn" => Ok(LogLevel::Warn),
            "error" => Ok(LogLevel::Error),
            other => Err(format!("`{other}` is not a log level; expected one of debug, info, warn, error")),
        }
    }
}

/// How a log line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (`timestamp`, `level`, `message`, the
    /// fields, `target`, the spans), for log shippers.
    Json,
    /// `AT LEVEL span{fields}: message key=value`, for people reading
    /// `journalctl`.
    #[default]
    Text,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<LogFormat, String> {
        match text {
            "json" => Ok(LogFormat::Json),
            "text" => Ok(LogFormat::Text),
            other => Err(format!("`{other}` is not a log format; expected json or text")),
        }
    }
}
