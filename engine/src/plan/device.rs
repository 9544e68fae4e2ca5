//! A device's plan: the items its scopes' grants bring it, with their
//! status from its inventory and the gates; the patches an Exclusion
//! declines; removals of withdrawn approvals; its software assignments and
//! its exposure.
//!
//! Devices of one (platform, arch, language) share the list of patches
//! that can apply to them, so a device only looks at approved patches of
//! its own kind. Devices are planned in parallel, in the order given.

use std::collections::HashSet;
use std::sync::Arc;

use patchward_api::fixes::FixState;
use patchward_api::{Device, Report, ReportStatus};
use rayon::prelude::*;

use super::class::{Class, Classes, DeviceKind, Reach, kind_of};
use super::items::{ClassItems, DeviceItems};
use super::scopes::{LocationNet, locations};
use super::software::software_items;
use super::{
    CompiledPolicy, DeviceItem, DevicePlan, GateOutcome, Grant, ItemStatus, PlanCatalog, PlanInput, PlanPatch, exposed,
};
use crate::policy::model::ItemAction;

/// What the fleet-wide steps decided, which every device's plan reads.
pub(super) struct Decided<'a> {
    pub grants: &'a [Vec<Grant>],
    pub excluded_by: &'a [Vec<u32>],
    pub gates: &'a [GateOutcome],
    /// `membership[scope][device]`.
    pub membership: &'a [Vec<bool>],
}

/// What every device's planning reads: the plan so far.
struct Shared<'a> {
    catalog: &'a PlanCatalog,
    policy: &'a CompiledPolicy,
    grants: &'a [Vec<Grant>],
    excluded_by: &'a [Vec<u32>],
    gates: &'a [GateOutcome],
    locations: Vec<LocationNet>,
    exposure: exposed::ExposureIndex<'a>,
    /// Per patch id any active patch names as superseding it, the active
    /// patches it supersedes directly: what an inventory entry covers.
    superseded_by_id: foldhash::HashMap<&'a str, Vec<u32>>,
    now: jiff::Timestamp,
}

/// Every device's plan, in parallel, in the order of `devices`.
pub(super) fn plan_devices(input: &PlanInput, devices: &[&Device], decided: &Decided) -> Vec<DevicePlan> {
    let catalog = input.catalog;
    let classes = Classes::new(input, decided, devices);
    let mut superseded_by_id: foldhash::HashMap<&str, Vec<u32>> = Default::default();
    for (patch, plan_patch) in catalog.patches.iter().enumerate() {
        for newer in &plan_patch.view.superseded_by {
            superseded_by_id.entry(newer.as_str()).or_default().push(patch as u32);
        }
    }
    let shared = Shared {
        catalog,
        policy: input.policy,
        grants: decided.grants,
        excluded_by: decided.excluded_by,
        gates: decided.gates,
        locations: locations(input.policy),
        exposure: exposed::ExposureIndex::new(catalog),
        superseded_by_id,
        now: input.now,
    };
    let class_items: Vec<Arc<ClassItems>> =
        classes.classes.iter().map(|class| Arc::new(class_items(class, &shared))).collect();
    devices
        .par_iter()
        .with_min_len(super::PARALLEL_FROM)
        .zip(&classes.class_of)
        .map(|(device, class)| {
            let items = &class_items[*class as usize];
            plan_device(device, &classes.classes[*class as usize], items, &classes, &shared)
        })
        .collect()
}

/// What planning one device reads of it, found once.
struct Seen<'d> {
    device: &'d Device,
    class: &'d Class,
    /// The active patches its inventory lists or supersedes directly,
    /// ascending: a patch is present by inventory when it is here.
    covered: Vec<u32>,
    hits: exposed::PackageHits,
}

impl<'d> Seen<'d> {
    fn new(device: &'d Device, class: &'d Class, shared: &Shared) -> Seen<'d> {
        let mut covered = Vec::new();
        for id in &device.inventory.patches {
            covered.extend(shared.catalog.get(id));
            covered.extend_from_slice(shared.superseded_by_id.get(id.as_str()).map_or(&[], Vec::as_slice));
        }
        covered.sort_unstable();
        covered.dedup();
        Seen { device, class, covered, hits: shared.exposure.hits(device) }
    }

    fn in_scope(&self, scope: u32) -> bool {
        self.class.in_scope(scope)
    }

    /// The patch ids its inventory lists.
    fn inventory(&self) -> HashSet<&'d str> {
        self.device.inventory.patches.iter().map(String::as_str).collect()
    }
}

/// The items every device of `class` shares: its fixless candidates'
/// grants, with their status where the patch is absent and where present.
fn class_items(class: &Class, shared: &Shared) -> ClassItems {
    ClassItems::new(class.fixless.iter().filter_map(|candidate| match candidate.reach {
        Reach::Excluded(_) => None,
        Reach::Grant(grant) => {
            let granted = &shared.grants[candidate.patch as usize][grant as usize];
            let absent = item_status(granted, false, shared);
            let item = DeviceItem { patch: candidate.patch, grant, status: absent, retracted: false };
            Some((item, item_status(granted, true, shared)))
        }
    }))
}

fn plan_device(
    device: &Device,
    class: &Class,
    class_items: &Arc<ClassItems>,
    classes: &Classes,
    shared: &Shared,
) -> DevicePlan {
    let (catalog, policy) = (shared.catalog, shared.policy);
    let seen = Seen::new(device, class, shared);
    // A device only says which of its class's items it has.
    let present = (class_items.patches().enumerate())
        .filter(|(_, patch)| seen.covered.binary_search(patch).is_ok())
        .map(|(position, _)| position as u32)
        .collect();
    let mut excluded: Vec<(u32, u32)> = (class.fixless.iter())
        .filter_map(|candidate| match candidate.reach {
            Reach::Excluded(exclusion) => Some((candidate.patch, exclusion)),
            Reach::Grant(_) => None,
        })
        .collect();
    let mut own = Vec::new();
    if !seen.hits.without_packages() {
        for &candidate in &class.fixed {
            let fixes = seen.hits.state(candidate.patch);
            match candidate.reach {
                _ if fixes == FixState::NotApplicable => {}
                Reach::Excluded(exclusion) => excluded.push((candidate.patch, exclusion)),
                Reach::Grant(grant) => {
                    let present = fixes == FixState::Fixed || seen.covered.binary_search(&candidate.patch).is_ok();
                    let status = item_status(&shared.grants[candidate.patch as usize][grant as usize], present, shared);
                    own.push(DeviceItem { patch: candidate.patch, grant, status, retracted: false });
                }
            }
        }
    }
    excluded.sort_unstable();
    let mut items = DeviceItems::new(Arc::clone(class_items), present, own);
    // G3: a policy that grants nothing never turns into "uninstall
    // everything patchward ever installed"; what it withholds is counted,
    // so the admin who emptied the policy is told.
    let found = retractions(&seen, shared, &items, &excluded);
    let mut withheld = 0;
    match policy.rules.is_empty() && policy.approvals.is_empty() {
        true => withheld = found.len() as u32,
        false => items.add_own(found),
    }
    let address = device.facts.ip.as_deref().and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    let location = address.and_then(|ip| shared.locations.iter().find(|l| l.net.contains(&ip)).map(|l| l.location));
    let software = software_items(policy, device, &|scope| seen.in_scope(scope));
    let kind = &classes.kinds[class.kind];
    let exposure = shared.exposure.device(catalog, device, &seen.hits, &kind.fixless, &kind.applies);
    let reads_fixes = device.inventory.packages.iter().any(|p| p.arch.is_some());
    let scopes = class.scopes.clone();
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
fn retractions(seen: &Seen, shared: &Shared, items: &DeviceItems, excluded: &[(u32, u32)]) -> Vec<DeviceItem> {
    let Shared { catalog, policy, grants, excluded_by, .. } = *shared;
    let Seen { device, hits, .. } = seen;
    let installed = |report: &&Report| {
        report.status == ReportStatus::Succeeded && report.action == Some(patchward_api::desired::Action::Install)
    };
    if !device.reports.iter().any(|r| installed(&r)) {
        return Vec::new();
    }
    let in_scope = |scope: u32| seen.in_scope(scope);
    let inventory = seen.inventory();
    let kind = kind_of(device);
    let kept: HashSet<&str> = items
        .iter()
        .filter(|i| grants[i.patch as usize][i.grant as usize].action == ItemAction::Install)
        .map(|i| catalog.patches[i.patch as usize].id())
        .collect();
    let mut found = Vec::new();
    for report in device.reports.iter().filter(installed) {
        let Some(patch) = catalog.get(&report.patch) else { continue };
        let Some(index) = report.policy.as_deref().and_then(|p| policy.policies.iter().position(|n| n == p)) else {
            continue;
        };
        let plan_patch = &catalog.patches[patch as usize];
        let granted = grants[patch as usize].iter().any(|g| in_scope(g.scope));
        let listed = items.find(patch).is_some() || excluded.iter().any(|(p, _)| *p == patch);
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

/// The platform, arch and language lists of a patch. An absent list means
/// any; a device without the fact meets only an absent list, so a device of
/// unknown platform gets no platform-specific patch.
pub(super) fn applies_by_lists(patch: &PlanPatch, (platform, arch, language): DeviceKind) -> bool {
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
pub(super) fn declines(mut scopes: impl ExactSizeIterator<Item = u32>, in_scope: impl Fn(u32) -> bool) -> bool {
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
