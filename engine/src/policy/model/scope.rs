use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CelExpr, Ref};

/// A device group or rollout ring. A device is in it when the selector is
/// true for it or it is listed. The scope `all` always exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScopeSpec {
    /// A CEL expression over `device` and `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<CelExpr>,
    /// Device ids that are members whatever the selector says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Ref>,
}
