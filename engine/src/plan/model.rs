//! What a plan is made of: every device's items, the grants they come
//! through, and what a reviewer wants to see. Indices everywhere: a patch
//! is its index in [`Plan::patches`], a scope its index in
//! [`Plan::scope_names`], so a plan of a million devices stays small.

use crate::diagnostics::Diagnostic;
use crate::policy::model::{ItemAction, RuleAction};

use super::LedgerEntry;
use super::exposed;
use super::items::DeviceItems;

/// Where an item's approval comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A rule, by its index in [`Plan::rules`] (precedence order).
    Rule(u32),
    /// A manual Approval, by its index in [`Plan::approval_names`].
    Approval(u32),
    /// Nothing grants any more a patch the device reported it installed:
    /// it is removed under the deployment policy it was installed under
    /// (by its index in [`Plan::policy_names`]). What a `git revert` of an
    /// approval does.
    Retraction(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// The inventory has it, or a patch that supersedes it, or the package
    /// at or above the fixed version.
    Installed,
    /// Not-before reached.
    Due,
    /// Not-before in the future.
    Scheduled,
    /// Not-before reached, but the stage's gate has not passed.
    Blocked,
    /// An uninstall whose patch is not (or no longer) on the device.
    Removed,
}

impl ItemStatus {
    /// The name the plan's JSON gives it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Installed => "installed",
            ItemStatus::Due => "due",
            ItemStatus::Scheduled => "scheduled",
            ItemStatus::Blocked => "blocked",
            ItemStatus::Removed => "removed",
        }
    }
}

/// One item of a device's desired state: a patch, the grant that brings it
/// to the device, and its status there. Twelve bytes, so a plan of 100,000
/// devices with hundreds of items each stays small; everything the devices
/// of a grant share lives once, in the grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceItem {
    pub patch: u32,
    /// Index into `Plan::grants[patch]`, or into `Plan::retractions` when
    /// `retracted`.
    pub grant: u32,
    pub status: ItemStatus,
    pub retracted: bool,
}

/// A way a patch reaches the devices of one scope: a rule's stage or a
/// manual Approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub source: Source,
    pub scope: u32,
    /// 0-based stage of a rule; `None` for an Approval.
    pub stage: Option<u16>,
    pub policy: u32,
    pub action: ItemAction,
    pub not_before: jiff::Timestamp,
    pub deadline: Option<jiff::Timestamp>,
    /// Index into [`Plan::gates`] of the gate this grant waits on.
    pub gate: Option<u32>,
}

impl Grant {
    /// DESIGN: the earliest not-before; on a tie a manual Approval beats a
    /// rule's stage, and an earlier stage a later one.
    pub(super) fn precedence(&self) -> (jiff::Timestamp, u8, u16, Source) {
        let kind = match self.source {
            Source::Approval(_) => 0,
            Source::Rule(_) => 1,
            Source::Retraction(_) => 2,
        };
        (self.not_before, kind, self.stage.unwrap_or(0), self.source)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePlan {
    pub id: String,
    /// Indices of the scopes the device is in (`all` is 0), ascending.
    pub scopes: Vec<u32>,
    /// The Location its address falls in (index into
    /// [`Plan::location_names`]).
    pub location: Option<u32>,
    pub items: DeviceItems,
    /// Patches approved for the device that an Exclusion removed:
    /// (patch, exclusion index).
    pub excluded: Vec<(u32, u32)>,
    /// Software assignments that reach the device.
    pub software: Vec<SoftwareItem>,
    /// The active patches that apply to the device and are not installed,
    /// whatever the policy decided ([`exposed`]).
    pub exposure: exposed::ExposureSet,
    /// Whether the device's agent reads an item's `fixes`. Agents that do
    /// name each package's architecture in their inventory; older ones
    /// refuse a desired state with fields they do not know, so they are
    /// never sent one (DESIGN, "Compatibility between releases").
    pub reads_fixes: bool,
    /// Retractions the G3 guard withholds from the device: the policy
    /// holds no ApprovalRule and no Approval, so nothing is removed.
    pub withheld: u32,
}

/// What the policy decided about a patch a device is exposed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExposureDecision {
    /// A grant brings it to the device (it may still be scheduled or blocked).
    Approved,
    /// The deciding rule says `review`.
    Review,
    /// The deciding rule says `hold`.
    Held,
    /// No rule decides it for this device: none matched, one failed, or the
    /// approving rule's stages do not reach the device's scopes.
    Unmatched,
    /// An Exclusion declines it for the device.
    Excluded,
    /// A newer patch supersedes it and the deciding rule skips superseded ones.
    Superseded,
}

impl ExposureDecision {
    pub const ALL: [ExposureDecision; 6] = [
        ExposureDecision::Approved,
        ExposureDecision::Review,
        ExposureDecision::Held,
        ExposureDecision::Unmatched,
        ExposureDecision::Excluded,
        ExposureDecision::Superseded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ExposureDecision::Approved => "approved",
            ExposureDecision::Review => "review",
            ExposureDecision::Held => "held",
            ExposureDecision::Unmatched => "unmatched",
            ExposureDecision::Excluded => "excluded",
            ExposureDecision::Superseded => "superseded",
        }
    }
}

/// One patch a device is exposed to, with its decision: found when read
/// ([`Plan::exposure_of`]); the why is rendered from `by`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub patch: u32,
    pub decision: ExposureDecision,
    /// Approved: the grant's index in `Plan::grants[patch]`; excluded: the
    /// exclusion's index; otherwise the deciding rule's index in
    /// `Plan::rules`, or [`Exposure::NOBODY`].
    pub by: u32,
}

impl Exposure {
    pub const NOBODY: u32 = u32::MAX;
}

/// What the policy decided about a patch, before any device: where an
/// exposure's decision comes from when no grant or exclusion reaches the
/// device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub decision: ExposureDecision,
    pub rule: u32,
}

/// A SoftwareAssignment on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftwareItem {
    /// Index into `CompiledPolicy::assignments`.
    pub assignment: u32,
    pub action: ItemAction,
    pub status: ItemStatus,
}

/// A rule's part in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleOutcome {
    pub name: String,
    pub priority: i64,
    pub action: RuleAction,
    /// Active patches whose `match` is true, decided by this rule or not.
    pub matched: Vec<u32>,
    /// The patches this rule decides.
    pub decided: Vec<u32>,
    /// Patches the match failed to evaluate on, with the error.
    pub errors: Vec<(u32, String)>,
}

/// A patch listed in the review queue, the held list, or skipped as
/// superseded, with the rule that put it there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub patch: u32,
    pub rule: u32,
}

/// A stage's gate for one patch, counted over the devices of the stage
/// before it.
#[derive(Clone, Debug, PartialEq)]
pub struct GateOutcome {
    pub patch: u32,
    pub rule: u32,
    pub stage: u16,
    pub succeeded: u32,
    pub failed: u32,
    pub passed: bool,
}

/// A plan: every device's items, and what a reviewer wants to see.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub now: jiff::Timestamp,
    pub policy_revision: Option<String>,
    /// Active patch ids, by index.
    pub patches: Vec<String>,
    pub rules: Vec<RuleOutcome>,
    pub approval_names: Vec<String>,
    pub exclusion_names: Vec<String>,
    pub scope_names: Vec<String>,
    pub policy_names: Vec<String>,
    pub location_names: Vec<String>,
    pub review_queue: Vec<Listed>,
    pub held: Vec<Listed>,
    pub superseded: Vec<Listed>,
    /// Patches no rule could decide because a rule that outranks the one
    /// that matched failed to evaluate on them (fail safe: not approved).
    pub undecided: Vec<Listed>,
    /// Active patches no rule matches: deployed only by a manual Approval.
    pub no_rule: Vec<u32>,
    pub gates: Vec<GateOutcome>,
    /// Per patch, the grants that bring it to devices, in precedence order.
    pub grants: Vec<Vec<Grant>>,
    /// Per deployment policy, the grant that removes under it a patch whose
    /// approval was withdrawn (see [`Source::Retraction`]).
    pub retractions: Vec<Grant>,
    /// Per patch, the exclusions that matched it (by index), whatever
    /// their scopes.
    pub excluded_by: Vec<Vec<u32>>,
    /// Per patch, what the policy decided before any device (for exposure).
    pub verdicts: Vec<Verdict>,
    /// Per exclusion, its scopes (none: everywhere).
    pub exclusion_scopes: Vec<Vec<u32>>,
    /// By device id. Shared: a policy change's plan keeps the device
    /// plans of the plan before it (`plan::change`).
    pub devices: std::sync::Arc<Vec<DevicePlan>>,
    /// Runtime problems (rule errors, selector failures, approvals of
    /// unknown patches), each where it was written.
    pub diagnostics: Vec<Diagnostic>,
    /// Pairs that matched for the first time: what the engine adds to its
    /// ledger.
    pub ledger_additions: Vec<LedgerEntry>,
}

impl Plan {
    /// The grant that brings `item` to its device.
    pub fn grant(&self, item: DeviceItem) -> &Grant {
        if item.retracted {
            &self.retractions[item.grant as usize]
        } else {
            &self.grants[item.patch as usize][item.grant as usize]
        }
    }
}
