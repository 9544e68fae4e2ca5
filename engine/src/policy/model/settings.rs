use patchward_api::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::catalog::feed::Severity;

/// Engine-wide settings; at most one Settings document per repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsSpec {
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub download: DownloadPolicy,
    /// How long a device may stay exposed to a patch of each severity
    /// before the exposure is overdue.
    #[serde(default)]
    pub remediation: Remediation,
}

/// Remediation targets per severity, from the seeds' table (critical 24h,
/// high 48h, medium 7d, low 30d; unrated 7d; informational none). `null`
/// sets no target for a severity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Remediation {
    #[serde(default = "target_critical")]
    pub critical: Option<Duration>,
    #[serde(default = "target_high")]
    pub high: Option<Duration>,
    #[serde(default = "target_medium")]
    pub medium: Option<Duration>,
    #[serde(default = "target_low")]
    pub low: Option<Duration>,
    #[serde(default = "target_unrated")]
    pub unrated: Option<Duration>,
    #[serde(default)]
    pub informational: Option<Duration>,
}

const HOUR: u64 = 3600;

fn target_critical() -> Option<Duration> {
    Some(Duration::from_secs(24 * HOUR))
}

fn target_high() -> Option<Duration> {
    Some(Duration::from_secs(48 * HOUR))
}

fn target_medium() -> Option<Duration> {
    Some(Duration::from_secs(7 * 24 * HOUR))
}

fn target_low() -> Option<Duration> {
    Some(Duration::from_secs(30 * 24 * HOUR))
}

fn target_unrated() -> Option<Duration> {
    target_medium()
}

impl Default for Remediation {
    fn default() -> Self {
        Remediation {
            critical: target_critical(),
            high: target_high(),
            medium: target_medium(),
            low: target_low(),
            unrated: target_unrated(),
            informational: None,
        }
    }
}

impl Remediation {
    /// The target for a severity; `None` where it has none.
    pub fn target(&self, severity: Severity) -> Option<Duration> {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Unrated => self.unrated,
            Severity::Informational => self.informational,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Retention {
    /// Purge the metadata of patches obsolete for longer than this.
    #[serde(default = "ninety")]
    pub obsolete_metadata_days: u32,
    /// Purge cached package files unused for longer than this.
    #[serde(default = "thirty")]
    pub unused_cache_days: u32,
}

fn ninety() -> u32 {
    90
}

fn thirty() -> u32 {
    30
}

impl Default for Retention {
    fn default() -> Self {
        Retention { obsolete_metadata_days: ninety(), unused_cache_days: thirty() }
    }
}

/// Which packages the engine fetches ahead into its blob store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DownloadPolicy {
    /// Approved patches some device still lacks.
    #[default]
    ApprovedNotInstalled,
    /// Every active patch some device lacks.
    AllNotInstalled,
}
