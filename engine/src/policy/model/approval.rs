use patchward_api::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CelExpr, Ref, Timestamp};
use crate::policy::yaml::Spanned;

/// Approves (or queues, or holds) the patches its `match` selects, rolled
/// out stage by stage. Where rules overlap, the highest `priority` decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalRuleSpec {
    #[serde(default)]
    pub priority: Spanned<i64>,
    /// A CEL expression over `patch` and `now`.
    #[serde(rename = "match")]
    pub match_: CelExpr,
    pub action: Spanned<RuleAction>,
    #[serde(default)]
    pub superseded: SupersededHandling,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<Spanned<Stage>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Approve through the stages.
    Approve,
    /// List in the plan's review queue; approved by no rule.
    Review,
    /// List as held; approved by no rule.
    Hold,
}

impl RuleAction {
    /// The name as written in the YAML.
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleAction::Approve => "approve",
            RuleAction::Review => "review",
            RuleAction::Hold => "hold",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SupersededHandling {
    /// A patch superseded by another in the catalog is not deployed.
    #[default]
    Skip,
    Include,
}

/// One step of a rollout: the scope it reaches, how long after the approval
/// starts, and under which deployment policy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Stage {
    pub scope: Ref,
    #[serde(default)]
    pub after: Spanned<Duration>,
    pub policy: Ref,
    /// Counted from the stage's not-before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Spanned<Duration>>,
    /// Held until the previous stage's devices succeed well enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<Spanned<Gate>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gate {
    /// failed / (succeeded + failed) must not exceed this, 0 to 1.
    #[serde(default = "no_failures")]
    pub max_failure_rate: Spanned<f64>,
    #[serde(default)]
    pub min_succeeded: u32,
}

fn no_failures() -> Spanned<f64> {
    Spanned::new(0.0, crate::diagnostics::Pos::UNKNOWN)
}

/// A manual approval: the urgent path. Due at once, or at `notBefore`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApprovalSpec {
    /// Patch ids from the catalog.
    pub patches: Spanned<Vec<String>>,
    pub scopes: Spanned<Vec<Ref>>,
    pub policy: Ref,
    #[serde(default)]
    pub action: ItemAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Spanned<Timestamp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Spanned<Timestamp>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemAction {
    #[default]
    Install,
    Uninstall,
}

impl ItemAction {
    /// The name as written in the YAML and the plan.
    pub const fn as_str(self) -> &'static str {
        match self {
            ItemAction::Install => "install",
            ItemAction::Uninstall => "uninstall",
        }
    }
}

/// Declines: removes matching patches from its scopes, whatever approved them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExclusionSpec {
    /// A CEL expression over `patch` and `now`.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub match_: Option<CelExpr>,
    /// Patch ids, beside or instead of `match`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<String>,
    /// Where the exclusion applies; every device when left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<Ref>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
