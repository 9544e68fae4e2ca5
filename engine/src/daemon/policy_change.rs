//! A commit that changes only rules, Approvals and Exclusions, put in
//! force in proportion to what it changed (`plan::change`).
//!
//! The engine finds the devices the change can reach from its device
//! directory (each device's kind) and the plans it serves (each device's
//! scopes), reads and plans only those, signs only their states, and keeps
//! serving every other device what it served: its plan's items come from
//! grants the commit did not change. The new plan shares the device plans
//! of the one it replaces; the devices planned again join those planned
//! since it, as an inventory's re-plan does.
//!
//! Whenever that cannot hold, nothing is changed and the caller plans the
//! fleet: no plan in force, another catalog revision, a change to the
//! frame (scopes, deployment policies, windows, locations, software,
//! settings), or a gate the plan in force never counted.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Engine, InForce, ServedDesired, views};
use crate::follow::CommitInfo;
use crate::plan::{CompiledPolicy, DevicePlan, Plan, PlanInput, PreparedChange, kind_of_facts};
use crate::store::StoreError;

/// What is in force and served when the change begins.
struct Before {
    in_force: Arc<InForce>,
    plan: Arc<Plan>,
    replanned: HashMap<String, Arc<DevicePlan>>,
}

impl Engine {
    /// Puts `policy` in force by planning only what it changed; false when
    /// it cannot (see the module doc), and then nothing changed. Called
    /// under the planning lock.
    pub(super) fn apply_policy_change(
        &self,
        policy: &Arc<CompiledPolicy>,
        commit: &Option<CommitInfo>,
    ) -> Result<bool, StoreError> {
        let started = std::time::Instant::now();
        let Some(before) = self.served_before() else { return Ok(false) };
        if self.catalog_revision_for(&policy.policy)? != before.in_force.catalog_revision {
            return Ok(false);
        }
        let now = self.clock.now();
        let ledger = crate::store::Store::wait(self.store.ledger())?;
        let catalog = &before.in_force.catalog;
        let input = PlanInput { policy, catalog, fleet: &[], ledger: Some(&ledger), now };
        let Some(prepared) = PreparedChange::new(&input, &before.in_force.policy, &before.plan) else {
            return Ok(false);
        };
        if prepared.counts_gates() {
            return Ok(false);
        }
        let fleet = self.reached_devices(&prepared, &before)?;
        let change = prepared.plan(&PlanInput { fleet: &fleet, ..input });
        crate::store::Store::wait(self.store.record_ledger(&change.plan.ledger_additions))?;
        let planned: Vec<Arc<DevicePlan>> = Arc::try_unwrap(change.plan.devices)
            .unwrap_or_else(|shared| (*shared).clone())
            .into_iter()
            .map(Arc::new)
            .collect();
        let plan = Plan { devices: Arc::clone(&before.plan.devices), ..change.plan };
        let in_force = Arc::new(InForce {
            policy: Arc::clone(policy),
            catalog: Arc::clone(catalog),
            catalog_revision: before.in_force.catalog_revision,
            commit: commit.clone(),
        });
        let served_before: Vec<Option<&DevicePlan>> =
            planned.iter().map(|d| views::device_plan(&before.plan, &before.replanned, &d.id)).collect();
        let compared: Vec<(Option<&DevicePlan>, &DevicePlan)> =
            served_before.iter().copied().zip(planned.iter().map(Arc::as_ref)).collect();
        self.exposure.track_devices(&self.store, &plan, catalog, &compared, now)?;
        let (changed, after) = self.serve_change(plan, in_force.clone(), &planned, now)?;
        let was: Vec<&DevicePlan> = served_before.iter().flatten().copied().collect();
        let is: Vec<&DevicePlan> = planned.iter().map(Arc::as_ref).collect();
        self.audit_device_changes((&before.plan, &was), (&after, &is), &in_force, now)?;
        self.metrics.record_device_plans(planned.len());
        tracing::info!(devices = planned.len(), changed, elapsed = ?started.elapsed(), "planned a policy change");
        self.sample_compliance(now)?;
        self.in_force_changes.send_modify(|n| *n += 1);
        Ok(true)
    }

    fn served_before(&self) -> Option<Before> {
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        Some(Before {
            in_force: served.in_force.clone()?,
            plan: served.plan.clone()?,
            replanned: served.replanned.clone(),
        })
    }

    /// The devices the change can reach, read whole from the store: by the
    /// kind the directory holds and the scopes of the plan each is served
    /// (a device not planned yet is planned now).
    fn reached_devices(
        &self,
        prepared: &PreparedChange,
        before: &Before,
    ) -> Result<Vec<patchward_api::Device>, StoreError> {
        let entries = crate::store::Store::wait(self.store.device_entries())?;
        let reach = prepared.reach(entries.iter().map(|e| kind_of_facts(&e.facts)), &before.in_force.catalog);
        let mut fleet = Vec::new();
        for entry in &entries {
            let served = views::device_plan(&before.plan, &before.replanned, &entry.id);
            if served.is_none_or(|p| reach.reaches(kind_of_facts(&entry.facts), &p.scopes))
                && let Some(record) = crate::store::Store::wait(self.store.device(&entry.id))?
            {
                fleet.push(record.to_device());
            }
        }
        Ok(fleet)
    }

    /// Signs the planned devices' states and serves the new plan: theirs
    /// join the devices planned since (unchanged under the planning lock),
    /// every other device's state as it was. Whether a state changed, and
    /// the plan served.
    fn serve_change(
        &self,
        plan: Plan,
        in_force: Arc<InForce>,
        planned: &[Arc<DevicePlan>],
        now: jiff::Timestamp,
    ) -> Result<(bool, Arc<Plan>), StoreError> {
        // An unreadable record relays nothing; the agents' own records stand.
        let requests = self.all_user_requests().unwrap_or_default();
        let held: HashMap<&str, Arc<ServedDesired>> = {
            let served = self.served.read().unwrap_or_else(|p| p.into_inner());
            planned.iter().filter_map(|d| Some((d.id.as_str(), served.desired.get(&d.id)?.clone()))).collect()
        };
        let devices: Vec<&DevicePlan> = planned.iter().map(Arc::as_ref).collect();
        let previous = |id: &str| held.get(id).cloned();
        let signed = self.sign_devices(&plan, &in_force, &devices, &requests, &previous, now)?;
        let changed = signed.iter().any(|s| s.fresh);
        let plan = Arc::new(plan);
        {
            let mut served = self.served.write().unwrap_or_else(|p| p.into_inner());
            served.in_force = Some(in_force);
            served.plan = Some(Arc::clone(&plan));
            for (device, signed) in planned.iter().zip(signed) {
                served.hold(device.id.clone(), signed.state);
                served.replanned.insert(device.id.clone(), Arc::clone(device));
            }
        }
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        Ok((changed, plan))
    }
}
