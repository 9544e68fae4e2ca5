//! The approval audit: after a full plan that a policy or catalog change
//! made, which devices gained or lost each patch, one audit entry per patch
//! and direction, by the commit's author.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Engine, InForce, views};
use crate::plan::{DevicePlan, Plan};
use crate::store::StoreError;

/// How many device ids an audit entry lists by name.
const AUDIT_DEVICES: usize = 20;

/// What a full plan changed, for the audit log: per patch, the devices
/// that gained or lost it. A removal because the approval was withdrawn
/// is the loss, not an approval.
fn approval_changes(
    (before, devices): (&Plan, &[&DevicePlan]),
    (after, after_devices): (&Plan, &[&DevicePlan]),
) -> Vec<(String, &'static str, Vec<String>)> {
    fn pairs<'a>(plan: &'a Plan, devices: &[&'a DevicePlan]) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
        let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for device in devices {
            for item in device.items.iter().filter(|i| !i.retracted) {
                out.entry(plan.patches[item.patch as usize].as_str()).or_default().insert(device.id.as_str());
            }
        }
        out
    }
    let (old, new) = (pairs(before, devices), pairs(after, after_devices));
    let empty = BTreeSet::new();
    let mut changes = Vec::new();
    for patch in old.keys().chain(new.keys()).collect::<BTreeSet<_>>() {
        let (was, is) = (old.get(patch).unwrap_or(&empty), new.get(patch).unwrap_or(&empty));
        let gained: Vec<String> = is.difference(was).map(|d| (*d).to_owned()).collect();
        let lost: Vec<String> = was.difference(is).map(|d| (*d).to_owned()).collect();
        if !gained.is_empty() {
            changes.push(((*patch).to_owned(), "approval.gained", gained));
        }
        if !lost.is_empty() {
            changes.push(((*patch).to_owned(), "approval.lost", lost));
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
        for (patch, action, devices) in approval_changes(before, after) {
            let listed: Vec<&String> = devices.iter().take(AUDIT_DEVICES).collect();
            crate::store::Store::wait(self.store.append_leader_audit(
                now,
                &actor,
                action,
                serde_json::json!({"patch": patch, "devices": devices.len(), "first": listed,
                    "revision": in_force.policy.revision}),
            ))?;
        }
        Ok(())
    }
}
