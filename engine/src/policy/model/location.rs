use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::yaml::Spanned;

/// An installation point: devices in these networks download from these
/// mirrors, within this bandwidth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LocationSpec {
    /// CIDR blocks, IPv4 or IPv6 (`10.20.0.0/16`).
    pub networks: Vec<Spanned<String>>,
    /// Base URLs that hold each blob at `MIRROR/{sha256}`, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bandwidth_kbps: Option<Spanned<u64>>,
}
