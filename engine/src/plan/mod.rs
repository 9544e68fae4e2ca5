//! The planner: a pure, deterministic function from (compiled policy,
//! catalog, fleet, ledger, now) to every device's desired patch state.
//!
//! Architecture invariant: nothing here does IO or reads the wall clock.
//! The same [`plan`] backs the engine, `patchward plan` and `diff`, and the
//! benchmarks.
//!
//! The work is arranged so that it scales with what differs, not with
//! devices × patches:
//! - a rule is evaluated once per distinct combination of the patch fields
//!   it reads, a scope selector once per distinct combination of the device
//!   facts it reads;
//! - devices of one (platform, arch, language) share the list of patches
//!   that can apply to them, so a device only looks at approved patches of
//!   its own kind;
//! - devices are planned in parallel, and collected in id order.

pub mod catalog;
pub mod compile;
pub mod desired;
pub mod diff;
pub mod exposed;
pub mod exposure;
mod fields;
pub mod ledger;
pub mod report;
pub mod synthetic;

use std::collections::{BTreeMap, HashMap, HashSet};

use patchward_api::fixes::{FixState, PackageIndex};
use patchward_api::{Device, ReportStatus};
use rayon::prelude::*;

use crate::diagnostics::Diagnostic;
use crate::expr::eval::{CelValue, EvalError, Evaluator, JsonRecord, Record};
use crate::policy::model::{ItemAction, RuleAction, SupersededHandling};
pub use catalog::{PlanCatalog, PlanPatch};
pub use compile::CompiledPolicy;
use compile::{CompiledExprUse, GateSpec};
use fields::FieldKeys;
pub use ledger::{Ledger, LedgerEntry};

/// Everything a plan depends on.
pub struct PlanInput<'a> {
    pub policy: &'a CompiledPolicy,
    pub catalog: &'a PlanCatalog,
    pub fleet: &'a [Device],
    /// When each (rule, patch) pair first matched. `None` for an offline
    /// plan, which counts stage delays from the patch's release.
    pub ledger: Option<&'a Ledger>,
    pub now: jiff::Timestamp,
}

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
    fn precedence(&self) -> (jiff::Timestamp, u8, u16, Source) {
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
    pub items: Vec<DeviceItem>,
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
    /// By device id.
    pub devices: Vec<DevicePlan>,
    /// Runtime problems (rule errors, selector failures, approvals of
    /// unknown patches), each where it was written.
    pub diagnostics: Vec<Diagnostic>,
    /// Pairs that matched for the first time: what the engine adds to its
    /// ledger.
    pub ledger_additions: Vec<LedgerEntry>,
}

/// A rule's decision for one patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    None,
    By(u32),
    /// The rule outranks every match and failed to evaluate.
    Failed(u32),
}

/// A device's (platform, arch, language): what applicability lists test.
type DeviceKind<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// A scope's members, and the devices its selector failed on (with why).
type ScopeMembers = (Vec<bool>, Vec<(usize, String)>);

/// How many failing pairs a diagnostic lists by name.
const EXAMPLES: usize = 3;

pub fn plan(input: &PlanInput) -> Plan {
    let policy = input.policy;
    let catalog = input.catalog;
    let evaluator = Evaluator::new(&policy.env, input.now);
    let mut diagnostics = Vec::new();

    // Devices in id order, each id once: the plan must not depend on the
    // order of the fleet file.
    let mut order: Vec<usize> = (0..input.fleet.len()).collect();
    order.sort_by(|a, b| input.fleet[*a].id.cmp(&input.fleet[*b].id));
    order.dedup_by(|a, b| input.fleet[*a].id == input.fleet[*b].id);
    let devices: Vec<&Device> = order.iter().map(|i| &input.fleet[*i]).collect();

    let rules = match_rules(policy, catalog, &evaluator, &mut diagnostics);
    let decisions = decide(policy, catalog, &rules);
    let excluded_by = match_exclusions(policy, catalog, &evaluator, &mut diagnostics);

    let mut plan = Plan {
        now: input.now,
        policy_revision: policy.revision.clone(),
        patches: catalog.patches.iter().map(|p| p.id().to_owned()).collect(),
        rules: Vec::new(),
        approval_names: policy.approvals.iter().map(|a| a.name.clone()).collect(),
        exclusion_names: policy.exclusions.iter().map(|e| e.name.clone()).collect(),
        scope_names: policy.scopes.iter().map(|s| s.name.clone()).collect(),
        policy_names: policy.policies.clone(),
        location_names: policy.policy.locations.keys().cloned().collect(),
        review_queue: Vec::new(),
        held: Vec::new(),
        superseded: Vec::new(),
        undecided: Vec::new(),
        no_rule: Vec::new(),
        gates: Vec::new(),
        grants: Vec::new(),
        retractions: retraction_grants(policy),
        excluded_by: Vec::new(),
        verdicts: verdicts(policy, catalog, &decisions),
        exclusion_scopes: policy.exclusions.iter().map(|e| e.scopes.iter().map(|s| *s as u32).collect()).collect(),
        devices: Vec::new(),
        diagnostics: Vec::new(),
        ledger_additions: Vec::new(),
    };

    // Grants: how each patch reaches which scope.
    let mut grants: Vec<Vec<Grant>> = vec![Vec::new(); catalog.len()];
    let mut gate_specs: Vec<(GateSpec, u32)> = Vec::new();
    for (patch, decision) in decisions.iter().enumerate() {
        let patch_u32 = patch as u32;
        match *decision {
            Decision::None => plan.no_rule.push(patch_u32),
            Decision::Failed(rule) => plan.undecided.push(Listed { patch: patch_u32, rule }),
            Decision::By(rule) => {
                let compiled = &policy.rules[rule as usize];
                let listed = Listed { patch: patch_u32, rule };
                match compiled.action {
                    RuleAction::Review => plan.review_queue.push(listed),
                    RuleAction::Hold => plan.held.push(listed),
                    RuleAction::Approve => {
                        let view = &catalog.patches[patch].view;
                        if compiled.superseded == SupersededHandling::Skip && !view.superseded_by.is_empty() {
                            plan.superseded.push(listed);
                            continue;
                        }
                        let released = catalog.patches[patch].released();
                        let start = match input.ledger {
                            None => released,
                            Some(ledger) => released
                                .max(ledger.first_matched(&compiled.name, &plan.patches[patch]).unwrap_or(input.now)),
                        };
                        for (k, stage) in compiled.stages.iter().enumerate() {
                            let not_before = start.checked_add(stage.after).unwrap_or(jiff::Timestamp::MAX);
                            let gate = stage.gate.map(|spec| {
                                let previous = if k == 0 { None } else { Some(compiled.stages[k - 1].scope as u32) };
                                plan.gates.push(GateOutcome {
                                    patch: patch_u32,
                                    rule,
                                    stage: k as u16,
                                    succeeded: 0,
                                    failed: 0,
                                    passed: false,
                                });
                                gate_specs.push((spec, previous.unwrap_or(u32::MAX)));
                                (plan.gates.len() - 1) as u32
                            });
                            grants[patch].push(Grant {
                                source: Source::Rule(rule),
                                scope: stage.scope as u32,
                                stage: Some(k as u16),
                                policy: stage.policy as u32,
                                action: ItemAction::Install,
                                not_before,
                                deadline: stage.deadline.and_then(|d| not_before.checked_add(d).ok()),
                                gate,
                            });
                        }
                    }
                }
            }
        }
    }
    for (index, approval) in policy.approvals.iter().enumerate() {
        for id in &approval.patches {
            let Some(patch) = catalog.get(id) else {
                let why = if catalog.is_inactive(id) {
                    "is in the catalog but not active (out of coverage or obsolete)"
                } else {
                    "is not in the catalog"
                };
                diagnostics.push(approval.origin.warning(format!(
                    "Approval `{}` names patch {id}, which {why}; it approves nothing",
                    approval.name
                )));
                continue;
            };
            let not_before = approval.not_before.unwrap_or_else(|| catalog.patches[patch as usize].released());
            for &scope in &approval.scopes {
                grants[patch as usize].push(Grant {
                    source: Source::Approval(index as u32),
                    scope: scope as u32,
                    stage: None,
                    policy: approval.policy as u32,
                    action: approval.action,
                    not_before,
                    deadline: approval.deadline,
                    gate: None,
                });
            }
        }
    }
    for list in &mut grants {
        list.sort_by_key(Grant::precedence);
    }

    // Scope membership, then gates over it.
    let membership = scope_membership(policy, &devices, &evaluator, &mut diagnostics);
    let in_scope = |device: usize, scope: u32| scope == 0 || membership[scope as usize][device];
    count_gates(&mut plan.gates, &gate_specs, catalog, &devices, &in_scope);

    plan.devices = plan_devices(input, &devices, &grants, &excluded_by, &plan.gates, &membership);
    plan.grants = grants;
    plan.excluded_by = excluded_by;

    // The ledger: pairs seen for the first time now.
    if let Some(ledger) = input.ledger {
        for (rule, outcome) in rules.iter().enumerate() {
            let name = &policy.rules[rule].name;
            for &patch in &outcome.matched {
                let id = &plan.patches[patch as usize];
                if ledger.first_matched(name, id).is_none() {
                    plan.ledger_additions.push(LedgerEntry { rule: name.clone(), patch: id.clone(), at: input.now });
                }
            }
        }
    }
    let mut decided: Vec<Vec<u32>> = vec![Vec::new(); rules.len()];
    for (patch, decision) in decisions.iter().enumerate() {
        if let Decision::By(rule) = decision {
            decided[*rule as usize].push(patch as u32);
        }
    }
    for ((index, outcome), decided) in rules.into_iter().enumerate().zip(decided) {
        let compiled = &policy.rules[index];
        plan.rules.push(RuleOutcome {
            name: compiled.name.clone(),
            priority: compiled.priority,
            action: compiled.action,
            matched: outcome.matched,
            decided,
            errors: outcome.errors,
        });
    }
    diagnostics.sort();
    plan.diagnostics = diagnostics;
    plan
}

/// Plans `input.fleet` against what `base` decided for the whole fleet:
/// its rule decisions, grants, exclusions and gate counts. What the engine
/// runs when a few devices change between full plans. A device planned so
/// equals its entry in a full plan whose gates count the same.
///
/// `base` must come from the same policy and catalog; `input.ledger` is not
/// read (the grants carry their instants).
pub fn replan_devices(input: &PlanInput, base: &Plan) -> Vec<DevicePlan> {
    let evaluator = Evaluator::new(&input.policy.env, input.now);
    let mut order: Vec<usize> = (0..input.fleet.len()).collect();
    order.sort_by(|a, b| input.fleet[*a].id.cmp(&input.fleet[*b].id));
    order.dedup_by(|a, b| input.fleet[*a].id == input.fleet[*b].id);
    let devices: Vec<&Device> = order.iter().map(|i| &input.fleet[*i]).collect();
    // Selector failures were reported by the full plan.
    let mut ignored = Vec::new();
    let membership = scope_membership(input.policy, &devices, &evaluator, &mut ignored);
    plan_devices(input, &devices, &base.grants, &base.excluded_by, &base.gates, &membership)
}

/// Each patch's decision before any device: the deciding rule's action
/// (an approval of a superseded patch a rule skips is `superseded`), or
/// unmatched.
fn verdicts(policy: &CompiledPolicy, catalog: &PlanCatalog, decisions: &[Decision]) -> Vec<Verdict> {
    let unmatched = |rule| Verdict { decision: ExposureDecision::Unmatched, rule };
    decisions
        .iter()
        .enumerate()
        .map(|(patch, decision)| match *decision {
            Decision::None => unmatched(Exposure::NOBODY),
            Decision::Failed(rule) => unmatched(rule),
            Decision::By(rule) => {
                let compiled = &policy.rules[rule as usize];
                let decision = match compiled.action {
                    RuleAction::Review => ExposureDecision::Review,
                    RuleAction::Hold => ExposureDecision::Held,
                    RuleAction::Approve
                        if compiled.superseded == SupersededHandling::Skip
                            && !catalog.patches[patch].view.superseded_by.is_empty() =>
                    {
                        ExposureDecision::Superseded
                    }
                    RuleAction::Approve => ExposureDecision::Approved,
                };
                Verdict { decision, rule }
            }
        })
        .collect()
}

/// One removal grant per deployment policy: due at once, everywhere the
/// device reported the patch installed under that policy.
fn retraction_grants(policy: &CompiledPolicy) -> Vec<Grant> {
    (0..policy.policies.len() as u32)
        .map(|index| Grant {
            source: Source::Retraction(index),
            scope: 0,
            stage: None,
            policy: index,
            action: ItemAction::Uninstall,
            not_before: jiff::Timestamp::UNIX_EPOCH,
            deadline: None,
            gate: None,
        })
        .collect()
}

/// What every device's planning reads: the plan so far.
struct Shared<'a> {
    catalog: &'a PlanCatalog,
    policy: &'a CompiledPolicy,
    grants: &'a [Vec<Grant>],
    excluded_by: &'a [Vec<u32>],
    gates: &'a [GateOutcome],
    membership: &'a [Vec<bool>],
    locations: Vec<LocationNet>,
    exposure: exposed::ExposureIndex<'a>,
    now: jiff::Timestamp,
}

/// What the devices of one (platform, arch, language) share: the patches
/// with a candidate that can apply to them, and the fixless patches they
/// are exposed to before their inventory is read.
struct KindPatches {
    reachable: Vec<u32>,
    fixless: std::sync::Arc<[u32]>,
    /// Per active patch, whether its lists admit the kind.
    applies: std::sync::Arc<[bool]>,
}

/// Every device's items, in parallel, in the order of `devices`.
fn plan_devices(
    input: &PlanInput,
    devices: &[&Device],
    grants: &[Vec<Grant>],
    excluded_by: &[Vec<u32>],
    gates: &[GateOutcome],
    membership: &[Vec<bool>],
) -> Vec<DevicePlan> {
    let catalog = input.catalog;
    // Filtered by their lists once per kind: only patches with a candidate
    // for items; every fixless one for exposure.
    let reachable: Vec<u32> = (0..catalog.len() as u32).filter(|p| !grants[*p as usize].is_empty()).collect();
    let mut keys: Vec<DeviceKind> = devices
        .iter()
        .map(|d| (d.facts.platform.as_deref(), d.facts.arch.as_deref(), d.facts.language.as_deref()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let kinds: HashMap<DeviceKind, KindPatches> = keys
        .into_par_iter()
        .map(|key| {
            let applies = exposed::ExposureIndex::applies(catalog, key);
            let kind = KindPatches {
                reachable: reachable.iter().copied().filter(|p| applies[*p as usize]).collect(),
                fixless: exposed::ExposureIndex::fixless(catalog, &applies),
                applies,
            };
            (key, kind)
        })
        .collect();
    let shared = Shared {
        catalog,
        policy: input.policy,
        grants,
        excluded_by,
        gates,
        membership,
        locations: locations(input.policy),
        exposure: exposed::ExposureIndex::new(catalog),
        now: input.now,
    };
    devices
        .par_iter()
        .enumerate()
        .map(|(index, device)| {
            let facts = &device.facts;
            let key = (facts.platform.as_deref(), facts.arch.as_deref(), facts.language.as_deref());
            plan_device(index, device, &kinds[&key], &shared)
        })
        .collect()
}

/// What one rule's `match` says about every active patch.
pub struct RuleMatches {
    pub matched: Vec<u32>,
    /// Per patch: true when the match failed to evaluate.
    pub failed: Vec<bool>,
    pub errors: Vec<(u32, String)>,
}

/// Evaluates every rule's `match` over the catalog, once per distinct
/// combination of the fields it reads. Failures are also reported into
/// `diagnostics`, at the rule's `match`.
pub fn match_rules(
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    evaluator: &Evaluator,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<RuleMatches> {
    let keys = FieldKeys::new(policy.rules.iter().map(|r| &r.matcher.fields), catalog.patches.iter());
    let results: Vec<RuleMatches> = policy
        .rules
        .par_iter()
        .map(|rule| {
            let answers = evaluate_all(&rule.matcher, &keys, catalog.len(), evaluator, "patch", |p| {
                (&catalog.patches[p].cel, &catalog.patches[p] as &dyn Record)
            });
            let mut outcome =
                RuleMatches { matched: Vec::new(), failed: vec![false; catalog.len()], errors: Vec::new() };
            for (patch, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(true) => outcome.matched.push(patch as u32),
                    Ok(false) => {}
                    Err(e) => {
                        outcome.failed[patch] = true;
                        outcome.errors.push((patch as u32, e.to_string()));
                    }
                }
            }
            outcome
        })
        .collect();
    for (rule, outcome) in policy.rules.iter().zip(&results) {
        if outcome.errors.is_empty() {
            continue;
        }
        let examples: Vec<String> = outcome
            .errors
            .iter()
            .take(EXAMPLES)
            .map(|(p, e)| format!("{}: {e}", catalog.patches[*p as usize].id()))
            .collect();
        diagnostics.push(rule.matcher.origin.warning(format!(
            "rule `{}` failed to evaluate on {} patch(es), which it approves none of: {}",
            rule.name,
            outcome.errors.len(),
            examples.join("; ")
        )));
    }
    results
}

/// One answer per item, evaluating once per distinct key.
fn evaluate_all<'c>(
    expr: &CompiledExprUse,
    keys: &FieldKeys,
    count: usize,
    evaluator: &Evaluator,
    variable: &str,
    value_of: impl Fn(usize) -> (&'c CelValue, &'c dyn Record),
) -> Vec<Result<bool, EvalError>> {
    let evaluate = |item: usize| {
        let (value, record) = value_of(item);
        evaluator.evaluate_in(&expr.expr, variable, value, record)
    };
    if !keys.worth_sharing(&expr.fields) {
        return (0..count).map(evaluate).collect();
    }
    let mut cache: HashMap<fields::Key, Result<bool, EvalError>> = HashMap::new();
    (0..count)
        .map(|item| {
            let key = keys.key(&expr.fields, item);
            cache.entry(key).or_insert_with(|| evaluate(item)).clone()
        })
        .collect()
}

/// For each patch, the rule that decides it: the first in precedence order
/// that matches. A rule that outranks it and failed to evaluate makes the
/// patch undecided, since it might have said `hold`.
fn decide(policy: &CompiledPolicy, catalog: &PlanCatalog, rules: &[RuleMatches]) -> Vec<Decision> {
    let mut matched: Vec<Vec<bool>> = Vec::with_capacity(rules.len());
    for outcome in rules {
        let mut set = vec![false; catalog.len()];
        for &p in &outcome.matched {
            set[p as usize] = true;
        }
        matched.push(set);
    }
    (0..catalog.len())
        .map(|patch| {
            for rule in 0..policy.rules.len() {
                if rules[rule].failed[patch] {
                    return Decision::Failed(rule as u32);
                }
                if matched[rule][patch] {
                    return Decision::By(rule as u32);
                }
            }
            Decision::None
        })
        .collect()
}

/// For each patch, the exclusions that name or match it. An exclusion that
/// fails to evaluate on a patch excludes it (fail safe) and is reported.
fn match_exclusions(
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    evaluator: &Evaluator,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Vec<u32>> {
    let mut excluded_by: Vec<Vec<u32>> = vec![Vec::new(); catalog.len()];
    let no_fields = crate::expr::eval::FieldUse::Unused;
    let keys = FieldKeys::new(
        policy.exclusions.iter().map(|e| e.matcher.as_ref().map_or(&no_fields, |m| &m.fields)),
        catalog.patches.iter(),
    );
    for (index, exclusion) in policy.exclusions.iter().enumerate() {
        let answers = exclusion.matcher.as_ref().map(|matcher| {
            evaluate_all(matcher, &keys, catalog.len(), evaluator, "patch", |p| {
                (&catalog.patches[p].cel, &catalog.patches[p] as &dyn Record)
            })
        });
        let mut failures = Vec::new();
        for (patch, plan_patch) in catalog.patches.iter().enumerate() {
            let listed = exclusion.patches.contains(plan_patch.id());
            let matched = match answers.as_ref().map(|a| &a[patch]) {
                Some(Ok(answer)) => *answer,
                Some(Err(e)) => {
                    failures.push(format!("{}: {e}", plan_patch.id()));
                    true
                }
                None => false,
            };
            if listed || matched {
                excluded_by[patch].push(index as u32);
            }
        }
        if let (Some(matcher), false) = (&exclusion.matcher, failures.is_empty()) {
            diagnostics.push(matcher.origin.warning(format!(
                "exclusion `{}` failed to evaluate on {} patch(es), which it therefore excludes: {}",
                exclusion.name,
                failures.len(),
                failures.iter().take(EXAMPLES).cloned().collect::<Vec<_>>().join("; ")
            )));
        }
    }
    excluded_by
}

/// `membership[scope][device]`. `all` (scope 0) holds every device.
/// Selector failures are reported into `diagnostics`.
pub fn scope_membership(
    policy: &CompiledPolicy,
    devices: &[&Device],
    evaluator: &Evaluator,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Vec<bool>> {
    let device_json: Vec<serde_json::Value> = devices.par_iter().map(|d| device_json(d)).collect();
    let records: Vec<JsonRecord> = device_json.iter().map(|json| JsonRecord { json, timestamps: &[] }).collect();
    let no_fields = crate::expr::eval::FieldUse::Unused;
    let keys = FieldKeys::new(
        policy.scopes.iter().map(|s| s.selector.as_ref().map_or(&no_fields, |m| &m.fields)),
        records.iter(),
    );
    let results: Vec<ScopeMembers> = policy
        .scopes
        .par_iter()
        .map(|scope| {
            let mut members: Vec<bool> = devices.iter().map(|d| scope.devices.contains(&d.id)).collect();
            let mut failures = Vec::new();
            if let Some(selector) = &scope.selector {
                // A device's CEL value is built only when its key is new.
                let mut cache: HashMap<fields::Key, Result<bool, EvalError>> = HashMap::new();
                for (index, member) in members.iter_mut().enumerate() {
                    let key = keys.key(&selector.fields, index);
                    let answer = cache
                        .entry(key)
                        .or_insert_with(|| {
                            let value = CelValue::from_json(&device_json[index], &[]);
                            evaluator.evaluate(&selector.expr, "device", &value)
                        })
                        .clone();
                    match answer {
                        Ok(true) => *member = true,
                        Ok(false) => {}
                        Err(e) => failures.push((index, e.to_string())),
                    }
                }
            }
            (members, failures)
        })
        .collect();
    let mut membership = Vec::with_capacity(results.len());
    for (scope, (mut members, failures)) in policy.scopes.iter().zip(results) {
        if scope.name == crate::policy::SCOPE_ALL {
            members = vec![true; devices.len()];
        }
        if let (Some(selector), false) = (&scope.selector, failures.is_empty()) {
            let examples: Vec<String> =
                failures.iter().take(EXAMPLES).map(|(d, e)| format!("{}: {e}", devices[*d].id)).collect();
            diagnostics.push(selector.origin.warning(format!(
                "the selector of scope `{}` failed to evaluate for {} device(s), left out of the scope: {}",
                scope.name,
                failures.len(),
                examples.join("; ")
            )));
        }
        membership.push(members);
    }
    membership
}

/// What CEL sees as `device`: its id and every fact it has.
pub fn device_json(device: &Device) -> serde_json::Value {
    let mut value = serde_json::to_value(&device.facts).unwrap_or_else(|_| serde_json::json!({}));
    if let serde_json::Value::Object(map) = &mut value {
        map.insert("id".into(), serde_json::Value::String(device.id.clone()));
    }
    value
}

/// Counts each gate over the devices of the stage before it: a device
/// counts as succeeded when its inventory has the patch or its latest report
/// says so, as failed when its latest report says failed.
fn count_gates(
    gates: &mut [GateOutcome],
    specs: &[(GateSpec, u32)],
    catalog: &PlanCatalog,
    devices: &[&Device],
    in_scope: &(dyn Fn(usize, u32) -> bool + Sync),
) {
    if gates.is_empty() {
        return;
    }
    let gated: HashSet<u32> = gates.iter().map(|g| g.patch).collect();
    // (patch, device, succeeded), from every device's inventory and reports.
    let outcomes: Vec<Vec<(u32, bool)>> = devices
        .par_iter()
        .map(|device| {
            let mut latest: BTreeMap<u32, (jiff::Timestamp, bool)> = BTreeMap::new();
            for report in &device.reports {
                if let Some(patch) = catalog.get(&report.patch).filter(|p| gated.contains(p)) {
                    let succeeded = report.status == ReportStatus::Succeeded;
                    let entry = latest.entry(patch).or_insert((report.at, succeeded));
                    // The latest report wins; at the same instant a failure.
                    if report.at > entry.0 || (report.at == entry.0 && !succeeded) {
                        *entry = (report.at, succeeded);
                    }
                }
            }
            for id in &device.inventory.patches {
                if let Some(patch) = catalog.get(id).filter(|p| gated.contains(p)) {
                    latest.insert(patch, (jiff::Timestamp::MAX, true));
                }
            }
            latest.into_iter().map(|(p, (_, ok))| (p, ok)).collect()
        })
        .collect();
    let mut by_patch: HashMap<u32, Vec<(usize, bool)>> = HashMap::new();
    for (device, list) in outcomes.iter().enumerate() {
        for &(patch, ok) in list {
            by_patch.entry(patch).or_default().push((device, ok));
        }
    }
    for (gate, (spec, previous)) in gates.iter_mut().zip(specs) {
        let (mut succeeded, mut failed) = (0u32, 0u32);
        if *previous != u32::MAX {
            for &(device, ok) in by_patch.get(&gate.patch).map(Vec::as_slice).unwrap_or(&[]) {
                if in_scope(device, *previous) {
                    if ok {
                        succeeded += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        let total = succeeded + failed;
        let rate = if total == 0 { 0.0 } else { f64::from(failed) / f64::from(total) };
        gate.succeeded = succeeded;
        gate.failed = failed;
        gate.passed = succeeded >= spec.min_succeeded && rate <= spec.max_failure_rate;
    }
}

/// The platform, arch and language lists of a patch. An absent list means
/// any; a device without the fact meets only an absent list, so a device of
/// unknown platform gets no platform-specific patch.
fn applies_by_lists(patch: &PlanPatch, (platform, arch, language): DeviceKind) -> bool {
    let record = &patch.view.record.patch;
    let applicability = &record.applicability;
    // An advisory that names only fixed product versions (CSAF for
    // firmware or industrial products) says nothing a device's facts or
    // inventory can match: it applies to no device rather than to all.
    if record.fixes.is_empty() && !record.fixed_products.is_empty() && applicability.platforms.is_none() {
        return false;
    }
    let meets = |list: &Option<Vec<String>>, fact: Option<&str>| match list {
        None => true,
        Some(list) => fact.is_some_and(|fact| list.iter().any(|item| item == fact)),
    };
    meets(&applicability.platforms, platform)
        && meets(&applicability.arch, arch)
        && meets(&applicability.languages, language)
}

/// Whether an Exclusion with these scopes declines a device: one of them
/// holds it, or it names none (everywhere).
fn declines(mut scopes: impl ExactSizeIterator<Item = u32>, in_scope: impl Fn(u32) -> bool) -> bool {
    scopes.len() == 0 || scopes.any(in_scope)
}

/// What a patch's package fixes say about a device (DESIGN's rule, shared
/// with the agent's detection: `patchward_api::fixes`), read from what the
/// device's packages hit.
fn fix_state(catalog: &PlanCatalog, patch: u32, hits: &exposed::PackageHits) -> FixState {
    match catalog.patches[patch as usize].view.record.patch.fixes.is_empty() {
        true => FixState::NoFixes,
        false => hits.state(patch),
    }
}

struct LocationNet {
    net: ipnet::IpNet,
    location: u32,
}

fn locations(policy: &CompiledPolicy) -> Vec<LocationNet> {
    let mut nets = Vec::new();
    for (index, location) in policy.policy.locations.values().enumerate() {
        for network in &location.spec.networks {
            if let Ok(net) = network.value.parse::<ipnet::IpNet>() {
                nets.push(LocationNet { net, location: index as u32 });
            }
        }
    }
    // The most specific network wins; then the Location that sorts first.
    nets.sort_by(|a, b| b.net.prefix_len().cmp(&a.net.prefix_len()).then(a.location.cmp(&b.location)));
    nets
}

fn plan_device(index: usize, device: &Device, kind: &KindPatches, shared: &Shared) -> DevicePlan {
    let Shared { catalog, policy, grants, excluded_by, membership, .. } = *shared;
    let in_scope = |scope: u32| membership[scope as usize][index];
    let inventory: HashSet<&str> = device.inventory.patches.iter().map(String::as_str).collect();
    let packages = PackageIndex::new(&device.inventory.packages);
    let hits = shared.exposure.hits(device);
    let mut items = Vec::new();
    let mut excluded = Vec::new();
    for &patch in &kind.reachable {
        let plan_patch = &catalog.patches[patch as usize];
        let Some(grant_index) = grants[patch as usize].iter().position(|c| in_scope(c.scope)) else { continue };
        let fixes = fix_state(catalog, patch, &hits);
        if fixes == FixState::NotApplicable {
            continue;
        }
        let exclusions = &excluded_by[patch as usize];
        if let Some(&exclusion) = exclusions
            .iter()
            .find(|&&e| declines(policy.exclusions[e as usize].scopes.iter().map(|s| *s as u32), in_scope))
        {
            excluded.push((patch, exclusion));
            continue;
        }
        let present = fixes == FixState::Fixed
            || inventory.contains(plan_patch.id())
            || plan_patch.view.superseded_by.iter().any(|s| inventory.contains(s.as_str()));
        let status = item_status(&grants[patch as usize][grant_index], present, shared);
        items.push(DeviceItem { patch, grant: grant_index as u32, status, retracted: false });
    }
    // G3: a policy that grants nothing never turns into "uninstall
    // everything patchward ever installed"; what it withholds is counted,
    // so the admin who emptied the policy is told.
    let found =
        retractions(device, catalog, policy, grants, excluded_by, &items, &excluded, &in_scope, &inventory, &hits);
    let mut withheld = 0;
    match policy.rules.is_empty() && policy.approvals.is_empty() {
        true => withheld = found.len() as u32,
        false => items.extend(found),
    }
    items.sort_by_key(|item| item.patch);
    let address = device.facts.ip.as_deref().and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    let location = address.and_then(|ip| shared.locations.iter().find(|l| l.net.contains(&ip)).map(|l| l.location));
    let scopes = (0..membership.len() as u32).filter(|s| in_scope(*s)).collect();
    let software = software_items(policy, &inventory, &packages, &in_scope);
    let exposure = shared.exposure.device(catalog, device, &hits, &kind.fixless, &kind.applies);
    let reads_fixes = device.inventory.packages.iter().any(|p| p.arch.is_some());
    DevicePlan { id: device.id.clone(), scopes, location, items, excluded, software, exposure, reads_fixes, withheld }
}

/// DESIGN's status of an item a grant brings to a device.
fn item_status(grant: &Grant, present: bool, shared: &Shared) -> ItemStatus {
    match (grant.action, present) {
        (ItemAction::Install, true) => ItemStatus::Installed,
        (ItemAction::Uninstall, false) => ItemStatus::Removed,
        _ if grant.not_before > shared.now => ItemStatus::Scheduled,
        _ if grant.gate.is_some_and(|g| !shared.gates[g as usize].passed) => ItemStatus::Blocked,
        _ => ItemStatus::Due,
    }
}

/// The patches to remove from `device` because their approval was
/// withdrawn: the device's latest report says it installed the patch under
/// a deployment policy that still exists, the patch is still on it, and
/// nothing grants or excludes the patch there any more, nor supersedes it
/// with a patch the device has or gets. A patch the device had before
/// patchward (no install report) is never removed so.
#[allow(clippy::too_many_arguments)]
fn retractions(
    device: &Device,
    catalog: &PlanCatalog,
    policy: &CompiledPolicy,
    grants: &[Vec<Grant>],
    excluded_by: &[Vec<u32>],
    items: &[DeviceItem],
    excluded: &[(u32, u32)],
    in_scope: &dyn Fn(u32) -> bool,
    inventory: &HashSet<&str>,
    hits: &exposed::PackageHits,
) -> Vec<DeviceItem> {
    let facts = &device.facts;
    let kind = (facts.platform.as_deref(), facts.arch.as_deref(), facts.language.as_deref());
    let kept: HashSet<&str> = items
        .iter()
        .filter(|i| grants[i.patch as usize][i.grant as usize].action == ItemAction::Install)
        .map(|i| catalog.patches[i.patch as usize].id())
        .collect();
    let mut found = Vec::new();
    for report in &device.reports {
        if report.status != ReportStatus::Succeeded || report.action != Some(patchward_api::desired::Action::Install) {
            continue;
        }
        let Some(patch) = catalog.get(&report.patch) else { continue };
        let Some(index) = report.policy.as_deref().and_then(|p| policy.policies.iter().position(|n| n == p)) else {
            continue;
        };
        let plan_patch = &catalog.patches[patch as usize];
        let granted = grants[patch as usize].iter().any(|g| in_scope(g.scope));
        let listed = items.iter().any(|i| i.patch == patch) || excluded.iter().any(|(p, _)| *p == patch);
        let declined = excluded_by[patch as usize]
            .iter()
            .any(|&e| declines(policy.exclusions[e as usize].scopes.iter().map(|s| *s as u32), in_scope));
        let superseded =
            plan_patch.view.superseded_by.iter().any(|s| inventory.contains(s.as_str()) || kept.contains(s.as_str()));
        if granted || listed || declined || superseded || !applies_by_lists(plan_patch, kind) {
            continue;
        }
        let present = fix_state(catalog, patch, hits) == FixState::Fixed || inventory.contains(plan_patch.id());
        if present {
            found.push(DeviceItem { patch, grant: index as u32, status: ItemStatus::Due, retracted: true });
        }
    }
    found.sort_by_key(|item| item.patch);
    found.dedup_by_key(|item| item.patch);
    found
}

impl Plan {
    /// The grant that brings `item` to its device.
    pub fn grant(&self, item: &DeviceItem) -> &Grant {
        if item.retracted {
            &self.retractions[item.grant as usize]
        } else {
            &self.grants[item.patch as usize][item.grant as usize]
        }
    }
}

/// The id a device's inventory lists for an installed software version.
pub fn software_id(package: &str, version: &str) -> String {
    format!("{package}@{version}")
}

/// The software assignments whose scopes hold the device. A version is
/// present when the inventory lists `package@version`, or one of its
/// `package` detection rules holds against the inventory's packages (the
/// other detection rules need the device itself: the agent checks them).
fn software_items(
    policy: &CompiledPolicy,
    inventory: &HashSet<&str>,
    packages: &PackageIndex<'_>,
    in_scope: &dyn Fn(u32) -> bool,
) -> Vec<SoftwareItem> {
    let present = |package: &str, version: &crate::policy::model::PackageVersion| {
        inventory.contains(software_id(package, &version.version.value).as_str())
            || version.detection.iter().flat_map(|d| &d.any_of).any(|rule| match rule {
                crate::policy::model::DetectionRule::Package(p) => packages.at_least(p.manager, &p.name, &p.at_least),
                _ => false,
            })
    };
    let mut items = Vec::new();
    for (index, assignment) in policy.assignments.iter().enumerate() {
        if !assignment.scopes.iter().any(|s| in_scope(*s as u32)) {
            continue;
        }
        let Some(package) = policy.policy.packages.get(&assignment.package) else { continue };
        let versions = &package.spec.versions;
        let (action, status) = match assignment.state {
            crate::policy::model::AssignmentState::Present => {
                let wanted = versions.iter().find(|v| v.value.version.value == assignment.version);
                let installed = wanted.is_some_and(|v| present(&assignment.package, &v.value));
                (ItemAction::Install, if installed { ItemStatus::Installed } else { ItemStatus::Due })
            }
            // Absent: no version of the package may stay.
            crate::policy::model::AssignmentState::Absent => {
                let installed = versions.iter().any(|v| present(&assignment.package, &v.value));
                (ItemAction::Uninstall, if installed { ItemStatus::Due } else { ItemStatus::Removed })
            }
        };
        items.push(SoftwareItem { assignment: index as u32, action, status });
    }
    items
}
