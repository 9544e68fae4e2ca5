//! The engine daemon, `patchward serve`: what is in force, the fleet's plan
//! and every device's signed desired state, kept current by the
//! [`reconcile::Reconciler`] and served by the HTTP API (`crate::api`).
//!
//! [`Engine`] is the state both share. It plans the whole fleet when the
//! policy or the catalog changes (and when time or reports move statuses),
//! and only the device that changed when an agent uploads its inventory:
//! that device is planned against the fleet-wide decisions of the last full
//! plan (`plan::replan_devices`). Each device's desired state is signed once
//! per content and kept, so a poll that finds nothing new costs a map
//! lookup.
//!
//! Architecture invariants: the planner stays pure (this module gathers its
//! inputs and stores its outputs); a desired state is served only from a
//! valid policy revision (G2); a generation is stored before the state that
//! carries it is served, so generations never go back (G4).

mod approvals;
pub mod audit;
pub mod check_ins;
pub mod config;
pub mod exposure;
pub mod exposure_view;
pub mod media;
pub mod metrics;
mod policy_change;
pub mod reconcile;
mod replans;
pub mod replication;
mod requests;
mod rewrites;
pub mod serve;
mod signing;
pub mod status;
mod trend;
pub mod views;

pub use requests::{UserRequest, UserRequestKind, relayed_request};
pub use trend::TrendPoint;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ed25519_dalek::SigningKey;

use crate::clock::Clock;
use crate::follow::CommitInfo;
use crate::plan::{CompiledPolicy, DevicePlan, Plan, PlanCatalog, PlanInput, plan, replan_devices};
pub use crate::store::replicas::ServedDesired;
use crate::store::{Store, StoreError};

/// What is in force: a valid policy revision and the catalog the engine
/// plans with. Replaced whole when either changes.
pub struct InForce {
    pub policy: Arc<CompiledPolicy>,
    /// Shared: a policy change on the same catalog keeps it.
    pub catalog: Arc<PlanCatalog>,
    pub catalog_revision: u64,
    /// The commit, when the policy comes from a repository.
    pub commit: Option<CommitInfo>,
}

/// What is in force, its last full plan, and the devices planned since
/// (by id).
pub type PlanView = (Arc<InForce>, Arc<Plan>, HashMap<String, Arc<DevicePlan>>);

/// What every device is served, by id: read by every poll, so hashed fast.
type DesiredById = foldhash::HashMap<String, Arc<ServedDesired>>;

/// The plan in force and what was served from it.
#[derive(Default)]
struct Served {
    in_force: Option<Arc<InForce>>,
    /// The last full plan of the fleet.
    plan: Option<Arc<Plan>>,
    /// Devices planned since, against `plan`, by id.
    replanned: HashMap<String, Arc<DevicePlan>>,
    desired: DesiredById,
    /// When the full plan was made.
    planned_at: Option<jiff::Timestamp>,
    /// No state in `desired` expires before this (it may have been
    /// replaced by one that expires later: then a renewal is looked for
    /// early, never late). Kept so that [`Engine::replan_due`], asked at
    /// every report, does not read every state.
    earliest_expiry: Option<jiff::Timestamp>,
}

impl Served {
    /// Serves `state` to `device`.
    fn hold(&mut self, device: String, state: Arc<ServedDesired>) {
        self.earliest_expiry = Some(self.earliest_expiry.map_or(state.expires_at, |e| e.min(state.expires_at)));
        self.desired.insert(device, state);
    }
}

/// The revision of `policy`'s catalog: the sum of its sources' revisions,
/// so it only goes up while they do.
fn catalog_revision(sources: &[crate::store::SourceState], policy: &crate::policy::Policy) -> u64 {
    sources.iter().filter(|s| policy.catalog_sources.contains_key(&s.name)).map(|s| s.revision).sum()
}

/// How the engine signs and renews desired states.
#[derive(Clone, Debug)]
pub struct EngineSettings {
    /// How long a desired state stays valid for the agent.
    pub desired_ttl: jiff::SignedDuration,
    /// At most one full plan for new reports per this long.
    pub report_replan: jiff::SignedDuration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            desired_ttl: jiff::SignedDuration::from_hours(24),
            report_replan: jiff::SignedDuration::from_secs(10),
        }
    }
}

pub struct Engine {
    pub store: Arc<Store>,
    pub key: SigningKey,
    pub clock: Arc<dyn Clock>,
    pub settings: EngineSettings,
    pub metrics: metrics::Metrics,
    pub status: status::StatusBoard,
    served: RwLock<Served>,
    /// Serializes planning: a full plan and a device's plan never race.
    planning: Mutex<()>,
    /// Devices waiting to be re-planned, planned together.
    replans: replans::ReplanQueue,
    /// Bumped whenever a desired state changes; long polls wait on it.
    changes: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever what is in force changes (the catalog task waits on
    /// it: a new revision may name new sources).
    in_force_changes: tokio::sync::watch::Sender<u64>,
    /// Reports arrived since the last full plan (gates may have moved).
    reports_changed: AtomicBool,
    /// Wakes the reconciler (`POST /api/v1/sync`).
    pub sync_requests: tokio::sync::Notify,
    /// Wakes the report re-planner ([`Engine::note_reports`]).
    pub reports_arrived: tokio::sync::Notify,
    /// Set on shutdown: long polls answer at once.
    stopping: AtomicBool,
    /// Since when each device has been exposed to each patch.
    pub exposure: exposure::ExposureBook,
    /// When each device last checked in (its "last seen").
    pub check_ins: check_ins::CheckIns,
    /// Whether this replica leads (always, on the embedded store).
    role: tokio::sync::watch::Sender<replication::ReplicaRole>,
    /// The leader planned a device a follower asked for (device, generation).
    planned: tokio::sync::broadcast::Sender<(String, u64)>,
    /// The leader released its lease: claim it now.
    pub lease_released: tokio::sync::Notify,
    /// Where the leader's API answers, while another replica leads.
    leader_address: RwLock<Option<String>>,
}

impl Engine {
    pub fn new(store: Arc<Store>, key: SigningKey, clock: Arc<dyn Clock>, settings: EngineSettings) -> Engine {
        Engine {
            store,
            key,
            clock,
            settings,
            metrics: metrics::Metrics::default(),
            status: status::StatusBoard::default(),
            served: RwLock::new(Served::default()),
            planning: Mutex::new(()),
            replans: Default::default(),
            changes: tokio::sync::watch::channel(0).0,
            in_force_changes: tokio::sync::watch::channel(0).0,
            reports_changed: AtomicBool::new(false),
            sync_requests: tokio::sync::Notify::new(),
            reports_arrived: tokio::sync::Notify::new(),
            stopping: AtomicBool::new(false),
            exposure: exposure::ExposureBook::default(),
            check_ins: check_ins::CheckIns::default(),
            role: tokio::sync::watch::channel(replication::ReplicaRole::Leader).0,
            planned: tokio::sync::broadcast::channel(1024).0,
            lease_released: tokio::sync::Notify::new(),
            leader_address: RwLock::new(None),
        }
    }

    pub fn in_force(&self) -> Option<Arc<InForce>> {
        self.served.read().unwrap_or_else(|p| p.into_inner()).in_force.clone()
    }

    /// The last full plan and the devices planned since, for the views.
    pub fn plan_view(&self) -> Option<PlanView> {
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        Some((served.in_force.clone()?, served.plan.clone()?, served.replanned.clone()))
    }

    /// Answers every long poll now: the engine is stopping.
    pub fn stop_waiters(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.changes.send_modify(|n| *n += 1);
    }

    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Waits for changes of what is in force.
    pub fn subscribe_in_force(&self) -> tokio::sync::watch::Receiver<u64> {
        self.in_force_changes.subscribe()
    }

    /// The status board as it stands, with the devices enrolled now (the
    /// board's own count moves only when the reconciler runs).
    pub fn status(&self) -> status::Status {
        let mut status = self.status.snapshot();
        if let Ok(count) = crate::store::Store::wait(self.store.device_count()) {
            status.devices = count;
        }
        status
    }

    /// Every enrolled device's directory entry, by id, each seen as late as
    /// it last checked in.
    pub fn enrolled_devices(&self) -> Result<Vec<views::EnrolledDevice>, StoreError> {
        let entries = crate::store::Store::wait(self.store.device_entries())?;
        let seen = |entry: &crate::store::directory::DeviceEntry| {
            self.check_ins.last(&entry.id).map_or(entry.last_seen, |at| at.max(entry.last_seen))
        };
        Ok(entries.into_iter().map(|entry| views::EnrolledDevice { last_seen: seen(&entry), entry }).collect())
    }

    /// One device, seen as late as it last checked in.
    pub fn device(&self, id: &str) -> Result<Option<crate::store::fleet::DeviceRecord>, StoreError> {
        let mut record = crate::store::Store::wait(self.store.device(id))?;
        if let Some(record) = record.as_mut() {
            self.check_ins.apply(record);
        }
        Ok(record)
    }

    /// Waits for desired-state changes (long polls): told once new states
    /// are served.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Puts `in_force` in force and plans the whole fleet with it. The
    /// approvals it gains or loses against the previous plan go to the
    /// audit log.
    pub fn install(&self, in_force: InForce) -> Result<(), StoreError> {
        let in_force = Arc::new(in_force);
        let _planning = self.planning.lock().unwrap_or_else(|p| p.into_inner());
        self.plan_fleet(in_force, true)
    }

    /// Puts a valid policy revision in force with the store's catalog (read
    /// under the planning lock, so a catalog sync cannot slip between).
    pub fn install_policy(&self, policy: Arc<CompiledPolicy>, commit: Option<CommitInfo>) -> Result<(), StoreError> {
        let _planning = self.planning.lock().unwrap_or_else(|p| p.into_inner());
        if self.apply_policy_change(&policy, &commit)? {
            return Ok(());
        }
        let (catalog, catalog_revision) = self.catalog_for(&policy.policy)?;
        self.plan_fleet(Arc::new(InForce { policy, catalog: Arc::new(catalog), catalog_revision, commit }), true)
    }

    /// The catalog changed: plan the policy in force with the store's.
    pub fn reload_catalog(&self) -> Result<(), StoreError> {
        let _planning = self.planning.lock().unwrap_or_else(|p| p.into_inner());
        let Some(current) = self.in_force() else { return Ok(()) };
        let (catalog, catalog_revision) = self.catalog_for(&current.policy.policy)?;
        let in_force = InForce {
            policy: current.policy.clone(),
            catalog: Arc::new(catalog),
            catalog_revision,
            commit: current.commit.clone(),
        };
        self.plan_fleet(Arc::new(in_force), true)
    }

    /// The active catalog of `policy` from the store, and its revision.
    fn catalog_for(&self, policy: &crate::policy::Policy) -> Result<(PlanCatalog, u64), StoreError> {
        let sources = crate::store::Store::wait(self.store.catalog_sources())?;
        let real = sources.iter().any(|s| policy.catalog_sources.contains_key(&s.name));
        let mut records = crate::store::Store::wait(self.store.catalog_patches())?;
        if real {
            // The bundled example stands in only until a real source imports.
            records.retain(|r| r.source != reconcile::BUNDLED_SOURCE);
        }
        let coverage = crate::catalog::coverage::CoverageSet::of_policy(policy);
        Ok((PlanCatalog::new(records, &coverage), catalog_revision(&sources, policy)))
    }

    /// The revision of `policy`'s catalog in the store, read from its
    /// sources alone.
    fn catalog_revision_for(&self, policy: &crate::policy::Policy) -> Result<u64, StoreError> {
        let sources = crate::store::Store::wait(self.store.catalog_sources())?;
        Ok(catalog_revision(&sources, policy))
    }

    /// Plans the whole fleet again with what is in force.
    pub fn replan_all(&self) -> Result<(), StoreError> {
        let _planning = self.planning.lock().unwrap_or_else(|p| p.into_inner());
        let Some(in_force) = self.in_force() else { return Ok(()) };
        self.plan_fleet(in_force, false)
    }

    /// The `RetractionsAllowed` condition: false while the G3 guard
    /// withholds retractions, saying how many.
    fn report_withheld(&self, computed: &crate::plan::Plan, now: jiff::Timestamp) {
        let withheld: usize = computed.devices.iter().map(|d| d.withheld as usize).sum();
        let devices = computed.devices.iter().filter(|d| d.withheld > 0).count();
        let (allowed, reason, message) = match withheld {
            0 => (true, "PolicyGrants", "retractions follow the policy".to_owned()),
            n => (
                false,
                "PolicyGrantsNothing",
                format!(
                    "the policy holds no ApprovalRule and no Approval: {n} retraction(s) on {devices} device(s) are withheld and nothing is removed (G3); add a rule or an approval to let withdrawals take effect"
                ),
            ),
        };
        self.status.set(status::ConditionType::RetractionsAllowed, allowed, reason, message, now);
    }

    fn plan_fleet(&self, in_force: Arc<InForce>, audit_changes: bool) -> Result<(), StoreError> {
        let revision = in_force.policy.revision.as_deref().unwrap_or("-");
        let _plan = tracing::info_span!("plan", revision).entered();
        let started = std::time::Instant::now();
        let now = self.clock.now();
        self.reports_changed.store(false, Ordering::SeqCst);
        let fleet: Vec<patchward_api::Device> =
            crate::store::Store::wait(self.store.devices())?.iter().map(|r| r.to_device()).collect();
        let ledger = crate::store::Store::wait(self.store.ledger())?;
        let computed = plan(&PlanInput {
            policy: &in_force.policy,
            catalog: &in_force.catalog,
            fleet: &fleet,
            ledger: Some(&ledger),
            now,
        });
        crate::store::Store::wait(self.store.record_ledger(&computed.ledger_additions))?;
        self.report_withheld(&computed, now);
        let planned: Vec<&DevicePlan> = computed.devices.iter().collect();
        self.exposure.track_plan(&self.store, &planned, now)?;
        let previous: DesiredById = {
            let served = self.served.read().unwrap_or_else(|p| p.into_inner());
            served.desired.clone()
        };
        // An unreadable record relays nothing; the agents' own records stand.
        let requests = self.all_user_requests().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "users' requests unreadable: none relayed in this plan");
            HashMap::new()
        });
        let devices: Vec<&DevicePlan> = computed.devices.iter().collect();
        let held = |id: &str| previous.get(id).cloned();
        let signed = self.sign_devices(&computed, &in_force, &devices, &requests, &held, now)?;
        let desired: DesiredById = signed.into_iter().map(|s| (s.device, s.state)).collect();
        let changed = desired.iter().filter(|(id, d)| previous.get(*id).is_none_or(|p| p.etag != d.etag)).count();
        let before = {
            let mut served = self.served.write().unwrap_or_else(|p| p.into_inner());
            let before = served.plan.take().map(|plan| (plan, std::mem::take(&mut served.replanned)));
            *served = Served {
                in_force: Some(in_force.clone()),
                plan: Some(Arc::new(computed)),
                replanned: HashMap::new(),
                earliest_expiry: desired.values().map(|d| d.expires_at).min(),
                desired,
                planned_at: Some(now),
            };
            before
        };
        if audit_changes {
            let before = before.as_ref().map(|(plan, replanned)| (plan.as_ref(), replanned));
            self.audit_approval_changes(before, &in_force, now)?;
        }
        self.metrics.record_full_plan(started.elapsed(), fleet.len());
        tracing::info!(devices = fleet.len(), elapsed = ?started.elapsed(), "planned the fleet");
        self.sample_compliance(now)?;
        if changed > 0 {
            self.changes.send_modify(|n| *n += 1);
        }
        if audit_changes {
            self.in_force_changes.send_modify(|n| *n += 1);
        }
        Ok(())
    }

    /// Plans one device again (its facts or inventory changed) against the
    /// last full plan, and returns its generation. `None` while no policy
    /// is in force. Devices re-planned at once are planned together
    /// ([`replans`]).
    pub fn replan_device(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let _device = tracing::debug_span!("device", id).entered();
        let ticket = self.replans.enqueue(id);
        loop {
            match self.replans.wait_turn(ticket) {
                replans::Turn::Answered(replans::Answer::Planned(generation)) => return Ok(generation),
                replans::Turn::Answered(replans::Answer::Alone) => {
                    let _planning = self.planning.lock().unwrap_or_else(|p| p.into_inner());
                    return Ok(self.replan_now(&[id.to_owned()])?.remove(id).flatten());
                }
                replans::Turn::Combine(combiner) => self.plan_waiting(combiner),
            }
        }
    }

    /// The combiner's turn: under the planning lock, plans every device
    /// waiting and answers each.
    fn plan_waiting(&self, mut combiner: replans::Combiner<'_>) {
        let _planning = self.planning.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<String> = combiner.take().iter().map(|(_, id)| id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        match self.replan_now(&ids) {
            Ok(generations) => {
                combiner.answer(|id| replans::Answer::Planned(generations.get(id).copied().flatten()));
            }
            Err(e) => {
                tracing::warn!(error = %e, devices = ids.len(), "a batched re-plan failed: each device is planned alone");
                combiner.answer(|_| replans::Answer::Alone);
            }
        }
    }

    /// Under the planning lock: plans `ids` again against the last full
    /// plan; each one's generation (`None`: no policy in force, or a
    /// device the store does not know).
    fn replan_now(&self, ids: &[String]) -> Result<HashMap<String, Option<u64>>, StoreError> {
        let mut generations: HashMap<String, Option<u64>> = ids.iter().map(|id| (id.clone(), None)).collect();
        let (in_force, base, held) = {
            let served = self.served.read().unwrap_or_else(|p| p.into_inner());
            let (Some(in_force), Some(plan)) = (&served.in_force, &served.plan) else { return Ok(generations) };
            let held: HashMap<&str, (Option<Arc<ServedDesired>>, Option<DevicePlan>)> = ids
                .iter()
                .map(|id| {
                    let before = views::device_plan(plan, &served.replanned, id).cloned();
                    (id.as_str(), (served.desired.get(id).cloned(), before))
                })
                .collect();
            (in_force.clone(), plan.clone(), held)
        };
        let mut fleet = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(record) = crate::store::Store::wait(self.store.device(id))? {
                fleet.push(record.to_device());
            }
        }
        let now = self.clock.now();
        let input =
            PlanInput { policy: &in_force.policy, catalog: &in_force.catalog, fleet: &fleet, ledger: None, now };
        let planned = replan_devices(&input, &base);
        let compared: Vec<(Option<&DevicePlan>, &DevicePlan)> = planned
            .iter()
            .map(|device| (held.get(device.id.as_str()).and_then(|(_, before)| before.as_ref()), device))
            .collect();
        self.exposure.track_devices(&self.store, &base, &in_force.catalog, &compared, now)?;
        // An unreadable record relays nothing; the agent's own record stands.
        let requests: HashMap<String, Vec<UserRequest>> =
            planned.iter().map(|d| (d.id.clone(), self.user_requests(&d.id).unwrap_or_default())).collect();
        let devices: Vec<&DevicePlan> = planned.iter().collect();
        let previous = |id: &str| held.get(id).and_then(|(previous, _)| previous.clone());
        let signed = self.sign_devices(&base, &in_force, &devices, &requests, &previous, now)?;
        let changed = signed.iter().any(|s| s.fresh);
        for s in &signed {
            generations.insert(s.device.clone(), Some(s.state.generation));
        }
        {
            let mut served = self.served.write().unwrap_or_else(|p| p.into_inner());
            // A full plan of another policy may have landed meanwhile: it
            // planned these devices too, with newer inputs.
            if served.plan.as_ref().is_some_and(|p| Arc::ptr_eq(p, &base)) {
                for (device, signed) in planned.into_iter().zip(signed) {
                    served.hold(device.id.clone(), signed.state);
                    served.replanned.insert(device.id.clone(), Arc::new(device));
                }
            }
        }
        self.metrics.record_device_plans(fleet.len());
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
        Ok(generations)
    }

    /// The state held in memory for `id`, if it may answer an agent that
    /// saw generation `seen` (at a follower, one no older): a poll is
    /// answered from here without blocking.
    pub fn held_desired(&self, id: &str, seen: u64) -> Option<Arc<ServedDesired>> {
        let held = self.served.read().unwrap_or_else(|p| p.into_inner()).desired.get(id).cloned()?;
        (self.is_leader() || held.generation >= seen).then_some(held)
    }

    /// The desired state served to `id`; planned now if the device has none
    /// yet (enrolled since the last full plan). `None` while no policy is
    /// in force. A follower reads what the leader published instead.
    pub fn desired(&self, id: &str) -> Result<Option<Arc<ServedDesired>>, StoreError> {
        let found = self.served.read().unwrap_or_else(|p| p.into_inner()).desired.get(id).cloned();
        if let Some(found) = found {
            return Ok(Some(found));
        }
        if !self.is_leader() {
            // A follower never plans: the leader's state, if published.
            return self.desired_from_store(id, 0);
        }
        if self.replan_device(id)?.is_none() {
            return Ok(None);
        }
        Ok(self.served.read().unwrap_or_else(|p| p.into_inner()).desired.get(id).cloned())
    }

    /// Reports arrived: gates may pass. The next [`Engine::replan_if_due`]
    /// plans the fleet.
    pub fn note_reports(&self) {
        self.reports_changed.store(true, Ordering::SeqCst);
        self.reports_arrived.notify_one();
    }

    /// When reports that arrived since the last full plan make one due
    /// (`report_replan` after that plan), if any did.
    pub fn report_replan_at(&self) -> Option<jiff::Timestamp> {
        if !self.reports_changed.load(Ordering::SeqCst) {
            return None;
        }
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        served.planned_at?.checked_add(self.settings.report_replan).ok()
    }

    /// Whether a full plan is due at `now`: reports arrived (at most one
    /// plan per `report_replan`), a scheduled item's not-before passed, or
    /// served states are into the second half of their validity.
    pub fn replan_due(&self, now: jiff::Timestamp) -> bool {
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        let (Some(plan), Some(planned_at)) = (&served.plan, served.planned_at) else { return false };
        if now < planned_at {
            // The clock went back: statuses computed ahead of it would be
            // wrong now.
            return true;
        }
        let reports = self.reports_changed.load(Ordering::SeqCst)
            && planned_at.checked_add(self.settings.report_replan).is_ok_and(|at| now >= at);
        let half = self.settings.desired_ttl / 2;
        reports
            || next_transition(plan, planned_at).is_some_and(|at| now >= at)
            || served.earliest_expiry.is_some_and(|e| e.checked_sub(half).is_ok_and(|renew| now >= renew))
    }

    /// Plans the fleet when [`Engine::replan_due`] says so.
    pub fn replan_if_due(&self) -> Result<bool, StoreError> {
        if !self.replan_due(self.clock.now()) {
            return Ok(false);
        }
        self.replan_all()?;
        Ok(true)
    }

    /// When the next instant after `planned_at` is that turns a scheduled
    /// item due.
    pub fn next_replan_at(&self) -> Option<jiff::Timestamp> {
        let served = self.served.read().unwrap_or_else(|p| p.into_inner());
        next_transition(served.plan.as_ref()?, served.planned_at?)
    }
}

/// The earliest not-before after `planned_at` among the plan's grants: when
/// a scheduled item turns due (or blocked).
fn next_transition(plan: &Plan, planned_at: jiff::Timestamp) -> Option<jiff::Timestamp> {
    plan.grants.iter().flatten().map(|g| g.not_before).filter(|at| *at > planned_at).min()
}
