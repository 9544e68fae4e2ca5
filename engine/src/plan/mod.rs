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
//!
//! The steps, each in its own module: [`rules`] (matches, decisions,
//! exclusions, before any device), [`grants`] (how each patch reaches which
//! scope), [`scopes`] (which devices each scope holds), [`gates`] (each
//! stage's gate over the stage before), and [`device`] (one device's plan).

pub mod catalog;
mod change;
mod class;
pub mod compile;
pub mod desired;
mod device;
pub mod diff;
pub mod exposed;
pub mod exposure;
mod fields;
mod gates;
mod grants;
mod items;
pub mod ledger;
mod model;
pub mod report;
mod rules;
mod scopes;
mod software;
pub mod synthetic;

use patchward_api::Device;

use crate::expr::eval::Evaluator;
pub use catalog::{PlanCatalog, PlanPatch};
pub use change::{KindReach, PolicyChange, PreparedChange, kind_of_facts, plan_policy_change};
pub use class::DeviceKind;
pub use compile::CompiledPolicy;
use device::{Decided, applies_by_lists, declines};
pub use items::{ClassItems, DeviceItems};
pub use ledger::{Ledger, LedgerEntry};
pub use model::{
    DeviceItem, DevicePlan, Exposure, ExposureDecision, GateOutcome, Grant, ItemStatus, Listed, Plan, RuleOutcome,
    SoftwareItem, Source, Verdict,
};
pub use rules::{RuleMatches, match_rules};
pub use scopes::{device_json, scope_membership};
pub use software::software_id;

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

/// How many failing pairs a diagnostic lists by name.
const EXAMPLES: usize = 3;

pub fn plan(input: &PlanInput) -> Plan {
    let evaluator = Evaluator::new(&input.policy.env, input.now);
    let devices = in_id_order(input.fleet);
    let mut steps = FleetWide::decide(input, &evaluator);
    let membership = scope_membership(input.policy, &devices, &evaluator, &mut steps.diagnostics);
    let in_scope = |device: usize, scope: u32| scope == 0 || membership[scope as usize][device];
    let granted = &mut steps.granted;
    gates::count_gates(&mut granted.gates, &granted.gate_specs, input.catalog, &devices, &in_scope);
    let decided = Decided {
        grants: &steps.granted.grants,
        excluded_by: &steps.excluded_by,
        gates: &steps.granted.gates,
        membership: &membership,
    };
    let planned = device::plan_devices(input, &devices, &decided);
    steps.into_plan(input, planned)
}

/// The steps that run before any device: rules, their decisions, the
/// exclusions and the grants (gates not counted yet).
struct FleetWide {
    matches: Vec<RuleMatches>,
    decisions: Vec<rules::Decision>,
    excluded_by: Vec<Vec<u32>>,
    granted: grants::Granted,
    diagnostics: Vec<crate::diagnostics::Diagnostic>,
}

impl FleetWide {
    fn decide(input: &PlanInput, evaluator: &Evaluator) -> FleetWide {
        let (policy, catalog) = (input.policy, input.catalog);
        let mut diagnostics = Vec::new();
        let matches = match_rules(policy, catalog, evaluator, &mut diagnostics);
        let decisions = rules::decide(policy, catalog, &matches);
        let excluded_by = rules::match_exclusions(policy, catalog, evaluator, &mut diagnostics);
        let granted = grants::grant(input, &decisions, &mut diagnostics);
        FleetWide { matches, decisions, excluded_by, granted, diagnostics }
    }

    /// The plan, with `devices` planned against these steps.
    fn into_plan(self, input: &PlanInput, devices: Vec<DevicePlan>) -> Plan {
        let (policy, catalog) = (input.policy, input.catalog);
        let FleetWide { matches, decisions, excluded_by, granted, mut diagnostics } = self;
        let ledger_additions = input
            .ledger
            .map(|ledger| ledger::additions(ledger, policy, catalog, &matches, input.now))
            .unwrap_or_default();
        diagnostics.sort();
        Plan {
            now: input.now,
            policy_revision: policy.revision.clone(),
            patches: catalog.patches.iter().map(|p| p.id().to_owned()).collect(),
            rules: rules::outcomes(policy, matches, &decisions),
            approval_names: policy.approvals.iter().map(|a| a.name.clone()).collect(),
            exclusion_names: policy.exclusions.iter().map(|e| e.name.clone()).collect(),
            scope_names: policy.scopes.iter().map(|s| s.name.clone()).collect(),
            policy_names: policy.policies.clone(),
            location_names: policy.policy.locations.keys().cloned().collect(),
            review_queue: granted.review_queue,
            held: granted.held,
            superseded: granted.superseded,
            undecided: granted.undecided,
            no_rule: granted.no_rule,
            gates: granted.gates,
            grants: granted.grants,
            retractions: grants::retraction_grants(policy),
            excluded_by,
            verdicts: rules::verdicts(policy, catalog, &decisions),
            exclusion_scopes: policy.exclusions.iter().map(|e| e.scopes.iter().map(|s| *s as u32).collect()).collect(),
            devices: std::sync::Arc::new(devices),
            diagnostics,
            ledger_additions,
        }
    }
}

/// Devices in id order, each id once: the plan must not depend on the order
/// of the fleet file.
fn in_id_order(fleet: &[Device]) -> Vec<&Device> {
    let mut devices: Vec<&Device> = fleet.iter().collect();
    devices.sort_by(|a, b| a.id.cmp(&b.id));
    devices.dedup_by(|a, b| a.id == b.id);
    devices
}

/// Plans `input.fleet` against what `base` decided for the whole fleet:
/// its rule decisions, grants, exclusions and gate counts. What the engine
/// runs when a few devices change between full plans. A device planned so
/// equals its entry in a full plan whose gates count the same.
///
/// `base` must come from the same policy and catalog; `input.ledger` is not
/// read (the grants carry their instants).
/// Fewer devices than this are planned on the calling thread: a single
/// device's re-plan (at every inventory) handed to the thread pool and
/// back costs more than the planning, and wakes idle workers to spin.
pub(crate) const PARALLEL_FROM: usize = 64;

pub fn replan_devices(input: &PlanInput, base: &Plan) -> Vec<DevicePlan> {
    let evaluator = Evaluator::new(&input.policy.env, input.now);
    let devices = in_id_order(input.fleet);
    // Selector failures were reported by the full plan.
    let mut ignored = Vec::new();
    let membership = scope_membership(input.policy, &devices, &evaluator, &mut ignored);
    let decided =
        Decided { grants: &base.grants, excluded_by: &base.excluded_by, gates: &base.gates, membership: &membership };
    device::plan_devices(input, &devices, &decided)
}
