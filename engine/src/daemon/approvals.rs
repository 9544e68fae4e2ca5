//! The approval audit: after a plan that a policy or catalog change made
//! (in full, or of the devices a change reached), which devices gained or
//! lost each patch, one audit entry per patch and direction, by the
//! commit's author, all in one transaction.
//!
//! The plans are compared device by device: each device's granted patches
//! before and after, both ascending, are walked side by side. A fleet's
//! worth of (patch, device) pairs is never collected: at a million devices
//! that is a hundred million.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Engine, InForce, views};
use crate::plan::exposed::{Moved, diff_ascending};
use crate::plan::{DevicePlan, Plan};
use crate::store::StoreError;

/// How many device ids an audit entry lists by name.
const AUDIT_DEVICES: usize = 20;

/// The devices that gained and lost one patch.
#[derive(Default)]
struct PatchChange<'a> {
    gained: Vec<&'a str>,
    lost: Vec<&'a str>,
}

/// A device's granted (not retracted) patches, ascending, as indices into
/// its plan's patch table.
fn granted(device: Option<&DevicePlan>) -> Vec<u32> {
    let mut patches: Vec<u32> =
        device.map(|d| d.items.iter().filter(|i| !i.retracted).map(|i| i.patch).collect()).unwrap_or_default();
    patches.dedup();
    patches
}

impl<'a> PatchChange<'a> {
    fn add(&mut self, device: &'a str, moved: Moved) {
        match moved {
            Moved::Gained => self.gained.push(device),
            Moved::Lost => self.lost.push(device),
        }
    }
}

/// What a plan changed, for the audit log: per patch (ascending), the
/// devices that gained or lost it (each ascending). A removal because the
/// approval was withdrawn is the loss, not an approval.
fn approval_changes<'a>(
    (before, devices): (&'a Plan, &[&'a DevicePlan]),
    (after, after_devices): (&'a Plan, &[&'a DevicePlan]),
) -> Vec<(String, &'static str, Vec<String>)> {
    let mut was: HashMap<&str, &DevicePlan> = devices.iter().map(|d| (d.id.as_str(), *d)).collect();
    let mut pairs: Vec<(&str, Option<&DevicePlan>, Option<&DevicePlan>)> =
        after_devices.iter().map(|d| (d.id.as_str(), was.remove(d.id.as_str()), Some(*d))).collect();
    pairs.extend(was.into_values().map(|d| (d.id.as_str(), Some(d), None)));
    // The same catalog revision gives the same patch table: indices
    // compare as they are; otherwise they are compared by name.
    let same_table = before.patches == after.patches;
    let mut by_patch: BTreeMap<&str, PatchChange> = BTreeMap::new();
    for (id, old, new) in pairs {
        let (old, new) = (granted(old), granted(new));
        if same_table {
            let name = |p: u32| before.patches[p as usize].as_str();
            diff_ascending(&old, &new, |p, moved| by_patch.entry(name(p)).or_default().add(id, moved));
        } else {
            let names = |plan: &'a Plan, patches: &[u32]| {
                let mut names: Vec<&'a str> = patches.iter().map(|p| plan.patches[*p as usize].as_str()).collect();
                names.sort_unstable();
                names.dedup();
                names
            };
            let (old, new) = (names(before, &old), names(after, &new));
            diff_ascending(&old, &new, |p, moved| by_patch.entry(p).or_default().add(id, moved));
        }
    }
    let mut changes = Vec::new();
    for (patch, mut change) in by_patch {
        for (devices, action) in [(&mut change.gained, "approval.gained"), (&mut change.lost, "approval.lost")] {
            if !devices.is_empty() {
                devices.sort_unstable();
                changes.push((patch.to_owned(), action, devices.iter().map(|d| (*d).to_owned()).collect()));
            }
        }
    }
    changes
}

impl Engine {
    /// Audits what the plan now served changed against `before` (the plan
    /// it replaced, with its devices planned since).
    pub(super) fn audit_approval_changes(
        &self,
        before: Option<(&Plan, &HashMap<String, Arc<DevicePlan>>)>,
        in_force: &InForce,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let after = self.served.read().unwrap_or_else(|p| p.into_inner()).plan.clone();
        let (Some((before, replanned)), Some(after)) = (before, after) else { return Ok(()) };
        // The devices count as they were served.
        let devices = views::device_plans(before, replanned);
        let after_devices: Vec<&DevicePlan> = after.devices.iter().collect();
        self.audit_device_changes((before, &devices), (&after, &after_devices), in_force, now)
    }

    /// Audits, per patch, which of these devices gained or lost it from
    /// `before` to `after` (each plan with the devices compared in it).
    pub(super) fn audit_device_changes(
        &self,
        before: (&Plan, &[&DevicePlan]),
        after: (&Plan, &[&DevicePlan]),
        in_force: &InForce,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let actor = in_force.commit.as_ref().map_or("policy".to_owned(), |c| format!("commit:{}", c.author));
        let entries: Vec<(String, serde_json::Value)> = approval_changes(before, after)
            .into_iter()
            .map(|(patch, action, devices)| {
                let listed: Vec<&String> = devices.iter().take(AUDIT_DEVICES).collect();
                let detail = serde_json::json!({"patch": patch, "devices": devices.len(), "first": listed,
                    "revision": in_force.policy.revision});
                (action.to_owned(), detail)
            })
            .collect();
        if entries.is_empty() {
            return Ok(());
        }
        crate::store::Store::wait(self.store.append_leader_audits(now, &actor, entries)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::catalog::coverage::CoverageSet;
    use crate::plan::synthetic::{Size, generate};
    use crate::plan::{CompiledPolicy, PlanCatalog, PlanInput};

    /// The oracle: every (patch, device) pair of both plans, in sets.
    fn by_pairs(
        (before, devices): (&Plan, &[&DevicePlan]),
        (after, after_devices): (&Plan, &[&DevicePlan]),
    ) -> Vec<(String, &'static str, Vec<String>)> {
        fn pairs(plan: &Plan, devices: &[&DevicePlan]) -> BTreeSet<(String, String)> {
            let granted = |d: &&DevicePlan| {
                let items = d.items.iter().filter(|i| !i.retracted);
                items.map(|i| (plan.patches[i.patch as usize].clone(), d.id.clone())).collect::<Vec<_>>()
            };
            devices.iter().flat_map(granted).collect()
        }
        let (old, new) = (pairs(before, devices), pairs(after, after_devices));
        let mut out: BTreeMap<String, [Vec<String>; 2]> = BTreeMap::new();
        new.difference(&old).for_each(|(p, d)| out.entry(p.clone()).or_default()[0].push(d.clone()));
        old.difference(&new).for_each(|(p, d)| out.entry(p.clone()).or_default()[1].push(d.clone()));
        let moved = |(p, [gained, lost]): (String, [Vec<String>; 2])| {
            let gained = (!gained.is_empty()).then(|| (p.clone(), "approval.gained", gained));
            gained.into_iter().chain((!lost.is_empty()).then_some((p, "approval.lost", lost)))
        };
        out.into_iter().flat_map(moved).collect()
    }

    fn policy(dir: &std::path::Path, text: &str) -> CompiledPolicy {
        std::fs::write(dir.join("policy.yaml"), text).unwrap();
        let source = crate::policy::PolicySource::Folder(dir.to_owned());
        let load = crate::policy::load_policy(&source, &crate::policy::PolicyLimits::default()).unwrap();
        let policy = load.policy.unwrap_or_else(|| panic!("{:#?}", load.diagnostics));
        CompiledPolicy::compile(policy, None).unwrap()
    }

    /// Device by device finds what the sets of all pairs find: for a rule
    /// changed, for devices gone and new, and for another catalog (another
    /// patch table).
    #[test]
    fn comparing_device_by_device_finds_what_all_pairs_find() {
        let scenario = generate(Size { patches: 400, rules: 50, scopes: 20, devices: 300 }, 11);
        let dir = tempfile::tempdir().unwrap();
        let text = &scenario.policy_files[0].1;
        let edited = text.replacen("after: 7d", "after: 1d", 3);
        let (first, second) = (policy(dir.path(), text), policy(dir.path(), &edited));
        let format = crate::policy::model::FeedFormat::Patchward;
        let (records, _) = crate::catalog::offline_catalog(format, &scenario.feed, scenario.now).unwrap();
        let coverage = CoverageSet::of_policy(&first.policy);
        let fewer: Vec<_> = records.iter().skip(1).step_by(2).cloned().collect();
        let (catalog, smaller) = (PlanCatalog::new(records, &coverage), PlanCatalog::new(fewer, &coverage));
        let later = scenario.now.checked_add(jiff::SignedDuration::from_hours(24 * 5)).unwrap();
        let plan =
            |policy, catalog, fleet, now| crate::plan::plan(&PlanInput { policy, catalog, fleet, ledger: None, now });
        let before = plan(&first, &catalog, &scenario.fleet[..250], scenario.now);
        let cases = [
            ("a rule changed, devices gone and new", plan(&second, &catalog, &scenario.fleet[50..], later)),
            ("another patch table", plan(&first, &smaller, &scenario.fleet[..], scenario.now)),
        ];
        for (case, after) in cases {
            let (was, is): (Vec<&DevicePlan>, Vec<&DevicePlan>) =
                (before.devices.iter().collect(), after.devices.iter().collect());
            let expected = by_pairs((&before, &was), (&after, &is));
            assert!(expected.iter().any(|c| c.1 == "approval.gained"), "{case}: the case gains");
            assert!(expected.iter().any(|c| c.1 == "approval.lost"), "{case}: the case loses");
            assert_eq!(approval_changes((&before, &was), (&after, &is)), expected, "{case}");
        }
    }
}
