use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Engine-wide settings; at most one Settings document per repository.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SettingsSpec {
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub download: DownloadPolicy,
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
