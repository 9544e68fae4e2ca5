use patchward_api::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Category;
use crate::policy::yaml::Spanned;

/// A vendor patch feed the engine syncs into its catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogSourceSpec {
    /// `https`, `http` or `file` URL of the feed.
    pub url: Spanned<String>,
    #[serde(default)]
    pub format: FeedFormat,
    /// How often to sync.
    #[serde(default = "daily")]
    pub interval: Spanned<Duration>,
    /// `ed25519:BASE64` (the raw 32 bytes): the feed must carry a detached
    /// signature at URL + ".sig" made with this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<Spanned<String>>,
    /// For CSAF: the publisher's OpenPGP public key, armored inline or the
    /// absolute path of a key file. Every document of a provider (and a
    /// single document at URL) must then carry a signature by it (`.asc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openpgp_key: Option<Spanned<String>>,
    /// Pins the feed's content: its sha256, 64 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Spanned<String>>,
    #[serde(default)]
    pub coverage: Coverage,
    /// The whole transfer must finish within this.
    #[serde(default = "five_minutes")]
    pub timeout: Spanned<Duration>,
    /// A feed larger than this is refused.
    #[serde(default = "max_bytes")]
    pub max_bytes: Spanned<u64>,
    /// Attempts after the first when the server fails or times out, with
    /// exponential backoff.
    #[serde(default = "three")]
    pub retries: u32,
}

fn five_minutes() -> Spanned<Duration> {
    Spanned::new(Duration::from_secs(300), crate::diagnostics::Pos::UNKNOWN)
}

fn max_bytes() -> Spanned<u64> {
    Spanned::new(256 << 20, crate::diagnostics::Pos::UNKNOWN)
}

fn three() -> u32 {
    3
}

fn daily() -> Spanned<Duration> {
    Spanned::new(Duration::from_secs(86_400), crate::diagnostics::Pos::UNKNOWN)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeedFormat {
    /// patchward's own JSON feed (schemas/feed.json).
    #[default]
    Patchward,
    /// CSAF 2.0 advisories.
    Csaf,
    /// OSV records.
    Osv,
}

/// Which patches of the feed are active. An absent list means any; absent
/// `categories` means security only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Coverage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<Category>>,
}
