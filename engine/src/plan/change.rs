//! A policy change planned in proportion to what it changed.
//!
//! A new revision that changes only what decides patches (approval rules,
//! manual Approvals, Exclusions) leaves the rest of the plan's frame as it
//! was: scopes, deployment policies, windows, locations, software,
//! settings. Given the plan of the previous revision over the same catalog
//! and fleet (`base`), [`plan_policy_change`]:
//!
//! 1. runs the fleet-wide steps again (rules, decisions, exclusions,
//!    grants), which cost patches × rules and nothing per device;
//! 2. finds the patches whose grants or exclusions changed (a grant
//!    compared with its gate's spec, not its gate's index, which moves when
//!    a gate is added before it);
//! 3. takes the base's counts for every gate the base counted over the
//!    same patch and stage before (the same fleet gives the same counts),
//!    judged by the gate's spec now, and counts only the others;
//! 4. plans again only the devices the change can reach differently: of a
//!    kind (platform, arch, language) a changed patch applies to, and in a
//!    scope of one of its grants from the first that differs on (before or
//!    after), or anywhere for a patch whose exclusions changed (they also
//!    decide removals where no grant reaches). Any other device holds no
//!    changed patch differently as an item, an exclusion or a removal, and
//!    its other items come from grants that did not change, so its plan is
//!    the base's, item for item.
//!
//! The result equals the full plan of the new revision: the plan-wide
//! parts computed anew, and every device's plan either the base's or
//! planned again (`engine/tests/policy_change.rs` checks it against
//! [`super::plan`]). The selectors' diagnostics are the base's: the scopes
//! and the fleet did not change.
//!
//! When anything else changed, or `base` is not of this fleet and catalog,
//! there is no shortcut: `None`, and the caller plans in full.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use patchward_api::{Device, Facts};

use super::class::{DeviceKind, kind_of};
use super::compile::GateSpec;
use super::device::{Decided, plan_devices};
use super::{CompiledPolicy, GateOutcome, Grant, Plan, PlanInput, exposed, in_id_order};
use crate::expr::eval::Evaluator;

/// What a policy change re-planned.
#[derive(Debug)]
pub struct PolicyChange {
    /// The new revision's plan, except `devices`: only the devices planned
    /// again, in id order. Every other device's plan is the base's.
    pub plan: Plan,
    /// The patches whose grants or exclusions changed, ascending.
    pub changed: Vec<u32>,
}

impl PolicyChange {
    /// The whole plan: the base's device plans with the re-planned ones in
    /// their place (what [`super::plan`] would have returned).
    pub fn into_full(self, base: &Plan) -> Plan {
        let mut replanned = self.plan.devices.iter().peekable();
        let mut devices = Vec::with_capacity(base.devices.len());
        for device in base.devices.iter() {
            match replanned.next_if(|r| r.id == device.id) {
                Some(planned) => devices.push(planned.clone()),
                None => devices.push(device.clone()),
            }
        }
        Plan { devices: Arc::new(devices), ..self.plan }
    }
}

/// Plans `input` (a new revision of `previous`) against `base`, the plan of
/// `previous` over the same catalog and fleet; `None` when the change is
/// more than rules, Approvals and Exclusions (see the module doc).
pub fn plan_policy_change(input: &PlanInput, previous: &CompiledPolicy, base: &Plan) -> Option<PolicyChange> {
    let devices = in_id_order(input.fleet);
    let same_fleet =
        devices.len() == base.devices.len() && devices.iter().zip(base.devices.iter()).all(|(d, b)| d.id == b.id);
    if !same_fleet {
        return None;
    }
    let mut prepared = PreparedChange::new(input, previous, base)?;
    if prepared.counts_gates() {
        // The scopes each device is in, as the base planned them.
        let in_scope = |device: usize, scope: u32| base.devices[device].scopes.binary_search(&scope).is_ok();
        prepared.count_gates(input, &devices, &in_scope);
    }
    let reach = prepared.reach(devices.iter().map(|d| kind_of(d)), input.catalog);
    let affected: Vec<&Device> = devices
        .iter()
        .zip(base.devices.iter())
        .filter(|(device, planned)| reach.reaches(kind_of(device), &planned.scopes))
        .map(|(device, _)| *device)
        .collect();
    Some(prepared.plan_in_order(input, &affected))
}

/// A policy change decided before any device: the new revision's
/// fleet-wide steps, the patches that changed and their gates. The engine
/// drives it over its own fleet: [`PreparedChange::reach`] says which
/// devices to plan again, [`PreparedChange::plan`] plans them.
pub struct PreparedChange {
    steps: super::FleetWide,
    touched: Vec<(u32, Touched)>,
    /// Gates the base did not count over the same patch and stage before,
    /// by index: counted over the fleet ([`Self::count_gates`]) before
    /// planning.
    uncounted: Vec<usize>,
    /// The selectors' diagnostics, the base's.
    selector_diagnostics: Vec<crate::diagnostics::Diagnostic>,
    evaluator: Evaluator,
}

impl PreparedChange {
    /// `None` when the change is more than rules, Approvals and Exclusions,
    /// or `base` is of another catalog. `input.fleet` is not read.
    pub fn new(input: &PlanInput, previous: &CompiledPolicy, base: &Plan) -> Option<PreparedChange> {
        if !same_frame(previous, input.policy) || base.patches.len() != input.catalog.len() {
            return None;
        }
        let evaluator = Evaluator::new(&input.policy.env, input.now);
        let mut steps = super::FleetWide::decide(input, &evaluator);
        let touched = changed_patches(previous, base, &steps);
        let uncounted = take_counts(&mut steps, previous, base);
        let selector_diagnostics = selector_diagnostics(input.policy, base).collect();
        Some(PreparedChange { steps, touched, uncounted, selector_diagnostics, evaluator })
    }

    /// The patches whose grants or exclusions changed, ascending.
    pub fn changed(&self) -> Vec<u32> {
        self.touched.iter().map(|(p, _)| *p).collect()
    }

    /// Whether some gate must be counted over the whole fleet first.
    pub fn counts_gates(&self) -> bool {
        !self.uncounted.is_empty()
    }

    /// Counts the gates the base did not, over `devices` (the whole fleet,
    /// in id order; `in_scope(device, scope)` by index into it).
    pub fn count_gates(
        &mut self,
        input: &PlanInput,
        devices: &[&Device],
        in_scope: &(dyn Fn(usize, u32) -> bool + Sync),
    ) {
        let granted = &mut self.steps.granted;
        let mut fresh: Vec<GateOutcome> = self.uncounted.iter().map(|&i| granted.gates[i].clone()).collect();
        let specs: Vec<(GateSpec, u32)> = self.uncounted.iter().map(|&i| granted.gate_specs[i]).collect();
        super::gates::count_gates(&mut fresh, &specs, input.catalog, devices, in_scope);
        for (index, gate) in std::mem::take(&mut self.uncounted).into_iter().zip(fresh) {
            granted.gates[index] = gate;
        }
    }

    /// Which devices of these kinds the change can reach (see
    /// [`KindReach::reaches`]).
    pub fn reach<'k>(
        &self,
        kinds: impl Iterator<Item = DeviceKind<'k>>,
        catalog: &super::PlanCatalog,
    ) -> KindReach<'k> {
        let mut kinds: Vec<DeviceKind<'k>> = kinds.collect();
        kinds.sort_unstable();
        kinds.dedup();
        let by_kind = kinds.into_iter().map(|kind| (kind, touched_in(catalog, kind, &self.touched))).collect();
        KindReach { by_kind }
    }

    /// Plans `input.fleet`, the devices the change reaches, against the new
    /// steps; the plan's other devices are the base's.
    pub fn plan(self, input: &PlanInput) -> PolicyChange {
        self.plan_in_order(input, &in_id_order(input.fleet))
    }

    /// [`Self::plan`] of `devices`, in id order (`input.fleet` not read).
    fn plan_in_order(self, input: &PlanInput, devices: &[&Device]) -> PolicyChange {
        debug_assert!(self.uncounted.is_empty(), "gates counted before planning");
        let changed = self.changed();
        let PreparedChange { mut steps, selector_diagnostics, evaluator, .. } = self;
        // Selector failures are the base's: same scopes, same fleet.
        let mut ignored = Vec::new();
        let membership = super::scope_membership(input.policy, devices, &evaluator, &mut ignored);
        let decided = Decided {
            grants: &steps.granted.grants,
            excluded_by: &steps.excluded_by,
            gates: &steps.granted.gates,
            membership: &membership,
        };
        let planned = plan_devices(input, devices, &decided);
        steps.diagnostics.extend(selector_diagnostics);
        PolicyChange { plan: steps.into_plan(input, planned), changed }
    }
}

/// Which kinds of device a change reaches, and where.
pub struct KindReach<'k> {
    by_kind: HashMap<DeviceKind<'k>, Touched>,
}

impl KindReach<'_> {
    /// Whether the change can reach a device of `kind` in `scopes` (its
    /// plan's, ascending, `all` included) differently. A kind not given to
    /// [`PreparedChange::reach`] is reached.
    pub fn reaches(&self, kind: DeviceKind, scopes: &[u32]) -> bool {
        match self.by_kind.get(&kind) {
            None | Some(Touched::Everywhere) => true,
            Some(Touched::Scopes(touched)) => touched.iter().any(|s| scopes.binary_search(s).is_ok()),
        }
    }
}

/// A device's kind, from its facts.
pub fn kind_of_facts(facts: &Facts) -> DeviceKind<'_> {
    (facts.platform.as_deref(), facts.arch.as_deref(), facts.language.as_deref())
}

/// Whether the two revisions differ at most in what decides patches.
fn same_frame(previous: &CompiledPolicy, next: &CompiledPolicy) -> bool {
    let (a, b) = (&previous.policy, &next.policy);
    // G3 withholds every removal while a policy grants nothing at all.
    let grants_nothing = |p: &CompiledPolicy| p.rules.is_empty() && p.approvals.is_empty();
    a.scopes == b.scopes
        && a.windows == b.windows
        && a.deployment_policies == b.deployment_policies
        && a.catalog_sources == b.catalog_sources
        && a.locations == b.locations
        && a.settings == b.settings
        && a.packages == b.packages
        && a.assignments == b.assignments
        && previous.policies == next.policies
        && grants_nothing(previous) == grants_nothing(next)
}

/// A grant as a device's plan reads it: its gate by spec, not by index.
type GrantKey = (Grant, Option<(GateSpec, u32)>);

fn grant_key(grant: &Grant, spec: Option<(GateSpec, u32)>) -> GrantKey {
    (Grant { gate: None, ..*grant }, spec)
}

/// The spec of the gate of `grant` under `policy`, and the scope of the
/// stage before it (as `grants::Granted::gate_specs` holds them).
fn gate_spec(policy: &CompiledPolicy, grant: &Grant) -> Option<(GateSpec, u32)> {
    let (super::Source::Rule(rule), Some(stage)) = (grant.source, grant.stage) else { return None };
    let stages = &policy.rules[rule as usize].stages;
    let spec = stages[stage as usize].gate?;
    let previous = if stage == 0 { u32::MAX } else { stages[stage as usize - 1].scope as u32 };
    Some((spec, previous))
}

/// Which devices a changed patch can reach differently.
#[derive(Clone, Debug, PartialEq)]
enum Touched {
    /// Any device of a kind it applies to: its exclusions changed, which
    /// also decide removals where no grant reaches.
    Everywhere,
    /// The devices of a kind it applies to in one of these scopes: those of
    /// its grants from the first that differs on, before and after. A
    /// device reached by an earlier grant is reached by the same grant,
    /// at the same index, both times.
    Scopes(Vec<u32>),
}

/// The patches whose grants (with their gates' specs) or exclusions
/// differ between `base` and the new steps, ascending, with the devices
/// each can reach differently.
fn changed_patches(previous: &CompiledPolicy, base: &Plan, steps: &super::FleetWide) -> Vec<(u32, Touched)> {
    let granted = &steps.granted;
    let new_key = |g: &Grant| grant_key(g, g.gate.map(|i| granted.gate_specs[i as usize]));
    let old_key = |g: &Grant| grant_key(g, gate_spec(previous, g));
    let mut changed = Vec::new();
    for p in 0..base.patches.len() {
        let (old, new) = (&base.grants[p], &granted.grants[p]);
        if base.excluded_by[p] != steps.excluded_by[p] {
            changed.push((p as u32, Touched::Everywhere));
            continue;
        }
        let same = old.iter().zip(new).take_while(|(o, n)| old_key(o) == new_key(n)).count();
        if same == old.len() && same == new.len() {
            continue;
        }
        let mut scopes: Vec<u32> = old[same..].iter().chain(&new[same..]).map(|g| g.scope).collect();
        scopes.sort_unstable();
        scopes.dedup();
        changed.push((p as u32, Touched::Scopes(scopes)));
    }
    changed
}

/// Takes the base's counts into the new steps' gates: a gate's counts
/// depend on its patch and the scope of the stage before it, over the
/// fleet, so where the base counted a gate with both the same, its counts
/// are taken (judged by the new spec). The others' indices, to count.
fn take_counts(steps: &mut super::FleetWide, previous: &CompiledPolicy, base: &Plan) -> Vec<usize> {
    let stage_before = |rule: u32, stage: u16| match stage {
        0 => u32::MAX,
        k => previous.rules[rule as usize].stages[k as usize - 1].scope as u32,
    };
    let counted: HashMap<(u32, u32), (u32, u32)> =
        base.gates.iter().map(|g| ((g.patch, stage_before(g.rule, g.stage)), (g.succeeded, g.failed))).collect();
    let granted = &mut steps.granted;
    let mut uncounted = Vec::new();
    for (index, gate) in granted.gates.iter_mut().enumerate() {
        let (spec, before) = &granted.gate_specs[index];
        match counted.get(&(gate.patch, *before)) {
            Some(&(succeeded, failed)) => super::gates::judge(gate, succeeded, failed, spec),
            None => uncounted.push(index),
        }
    }
    uncounted
}

/// What the changed patches that apply to `kind` touch, together.
fn touched_in(catalog: &super::PlanCatalog, kind: DeviceKind, changed: &[(u32, Touched)]) -> Touched {
    let applies = exposed::ExposureIndex::applies(catalog, kind);
    let mut scopes = Vec::new();
    for (_, touched) in changed.iter().filter(|(p, _)| applies[*p as usize]) {
        match touched {
            Touched::Everywhere => return Touched::Everywhere,
            Touched::Scopes(touched) => scopes.extend_from_slice(touched),
        }
    }
    scopes.sort_unstable();
    scopes.dedup();
    Touched::Scopes(scopes)
}

/// The base's diagnostics about scope selectors (where a selector of the
/// policy was written).
fn selector_diagnostics<'b>(
    policy: &CompiledPolicy,
    base: &'b Plan,
) -> impl Iterator<Item = crate::diagnostics::Diagnostic> + 'b {
    let origins: HashSet<(String, u32, u32)> = policy
        .scopes
        .iter()
        .filter_map(|s| s.selector.as_ref())
        .map(|s| (s.origin.path.to_string(), s.origin.pos.line, s.origin.pos.col))
        .collect();
    base.diagnostics.iter().filter(move |d| origins.contains(&(d.path.clone(), d.line, d.col))).cloned()
}
