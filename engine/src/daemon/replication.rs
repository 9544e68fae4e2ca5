//! Several replicas on one shared store: which one leads, and how the
//! others follow it.
//!
//! - **Leadership.** Every replica claims the lease in the database every
//!   third of its length. The holder leads: only it reconciles, syncs
//!   catalogs, plans, signs and fetches media (those loops wait while
//!   [`ReplicaRole::Follower`]), and its store writes as leader carry the lease's
//!   epoch, so once the lease has passed on they are refused. A graceful
//!   stop releases the lease and says so, and another replica claims it at
//!   once.
//! - **Following.** The leader publishes every state it signs to the store
//!   (same ETag, same bytes everywhere). Each replica listens for
//!   [`Signal`]s and, on each, on reconnecting and every few seconds,
//!   catches up from the last sequence number it applied; a state not yet
//!   held is read from the store when asked for.
//! - **Writes at a follower** (inventory, events) commit there; a signal
//!   asks the leader to plan the device again (or the fleet, for reports),
//!   and the inventory answer waits for the leader's [`Signal::Planned`].
//!
//! Architecture invariant: a follower never plans or signs; it serves
//! what the leader published.

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, ServedDesired};
use crate::store::StoreError;
use crate::store::replicas::{Fencing, Lease, Signal, SignedDesired};

/// What this replica does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaRole {
    /// Reconciles, plans, signs and publishes.
    Leader,
    /// Serves what the leader published.
    Follower,
}

/// This replica: its id, and where its API answers for the others.
#[derive(Clone, Debug)]
pub struct Replica {
    pub id: String,
    /// `http://HOST:PORT`, without a trailing slash.
    pub address: String,
}

/// How often a replica looks at the store for states it may have missed,
/// when no signal came.
const CATCH_UP_EVERY: Duration = Duration::from_secs(5);

/// How long a follower's inventory answer waits for the leader's plan.
pub const INVENTORY_WAIT: Duration = Duration::from_secs(10);

impl Engine {
    pub fn role(&self) -> ReplicaRole {
        *self.role.borrow()
    }

    pub fn is_leader(&self) -> bool {
        self.role() == ReplicaRole::Leader
    }

    /// Where the leader's API answers, while another replica leads.
    pub fn leader_address(&self) -> Option<String> {
        self.leader_address.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn set_role(&self, role: ReplicaRole) {
        self.role.send_if_modified(|r| std::mem::replace(r, role) != role);
    }

    /// Whether this replica can serve agents: the leader once a valid
    /// policy revision is in force; a follower while some replica leads
    /// (it serves what that one publishes).
    pub fn ready(&self) -> Result<(), &'static str> {
        match self.role() {
            ReplicaRole::Leader if self.in_force().is_none() => Err("no valid policy revision is in force yet"),
            ReplicaRole::Follower if self.status.snapshot().replica.leader_id.is_none() => Err("no replica leads yet"),
            _ => Ok(()),
        }
    }

    /// Waits until this replica leads; false once `stopped` fires.
    pub async fn lead_or_stop(&self, stopped: &mut tokio::sync::watch::Receiver<bool>) -> bool {
        let mut role = self.role.subscribe();
        loop {
            if *stopped.borrow() {
                return false;
            }
            if *role.borrow_and_update() == ReplicaRole::Leader {
                return true;
            }
            tokio::select! {
                _ = role.changed() => {}
                _ = stopped.changed() => {}
            }
        }
    }

    /// Holds `states` as served (a follower's copy of what the leader
    /// published); a state never replaces a newer generation.
    pub fn adopt(&self, states: Vec<SignedDesired>) {
        if states.is_empty() {
            return;
        }
        let mut changed = false;
        {
            let mut served = self.served.write().unwrap_or_else(|p| p.into_inner());
            for SignedDesired { device, state } in states {
                // The same generation re-signed (renewed) counts as newer.
                let newer = served.desired.get(&device).is_none_or(|held| {
                    held.generation < state.generation
                        || (held.generation == state.generation && held.etag != state.etag)
                });
                if newer {
                    changed = true;
                    served.hold(device, Arc::new(state));
                }
            }
        }
        if changed {
            self.changes.send_modify(|n| *n += 1);
        }
    }

    /// Publishes newly signed states for the other replicas, before they
    /// are served here.
    pub(super) fn publish(&self, states: Vec<SignedDesired>) -> Result<(), StoreError> {
        if states.is_empty() || !self.store.is_shared() {
            return Ok(());
        }
        crate::store::Store::wait(self.store.publish_desired(&states))
    }

    /// A follower's state for `id` at least as new as `generation` (what
    /// the agent last saw), from the store when the copy held is older.
    pub fn desired_from_store(&self, id: &str, generation: u64) -> Result<Option<Arc<ServedDesired>>, StoreError> {
        let held = self.served.read().unwrap_or_else(|p| p.into_inner()).desired.get(id).cloned();
        if let Some(held) = held.filter(|h| h.generation >= generation) {
            return Ok(Some(held));
        }
        let Some(stored) = crate::store::Store::wait(self.store.signed_desired(id))? else { return Ok(None) };
        self.adopt(vec![stored]);
        Ok(self.served.read().unwrap_or_else(|p| p.into_inner()).desired.get(id).cloned())
    }

    /// Wakes the reconciler: this replica's, or the leader's.
    pub fn request_sync(&self) {
        tracing::debug!(leader = self.is_leader(), "sync requested");
        if self.is_leader() {
            self.sync_requests.notify_one();
        } else if let Err(e) = crate::store::Store::wait(self.store.signal(&Signal::Sync)) {
            tracing::warn!(error = %e, "could not ask the leader to sync");
        }
    }

    /// Plans `device` again here, or asks the leader to.
    pub fn replan_or_ask(&self, device: &str) -> Result<(), StoreError> {
        if self.is_leader() {
            return self.replan_device(device).map(|_| ());
        }
        crate::store::Store::wait(self.store.signal(&Signal::Replan { device: device.to_owned() }))
    }

    /// Signals waiting inventory answers that the leader planned `device`.
    fn planned(&self, device: String, generation: u64) {
        let _ = self.planned.send((device, generation));
    }

    /// Waits for the leader's plan of `device` after its inventory was
    /// committed here; `None` if none came within [`INVENTORY_WAIT`].
    pub async fn await_leader_plan(&self, device: &str) -> Result<Option<u64>, StoreError> {
        let mut planned = self.planned.subscribe();
        self.store.signal(&Signal::Replan { device: device.to_owned() }).await?;
        let wait = async {
            loop {
                match planned.recv().await {
                    Ok((id, generation)) if id == device => return Some(generation),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        Ok(tokio::time::timeout(INVENTORY_WAIT, wait).await.ok().flatten())
    }
}

/// Claims the lease every third of `ttl`, and sets this replica's role,
/// fencing and status from the outcome; on stop, releases it.
pub async fn leadership_loop(
    engine: Arc<Engine>,
    replica: Replica,
    ttl: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let mut held: Option<Lease> = None;
    loop {
        held = claim_once(&engine, &replica, held, ttl).await;
        tokio::select! {
            _ = tokio::time::sleep(ttl / 3) => {}
            _ = engine.lease_released.notified() => {}
            _ = stopped.changed() => break,
        }
    }
    if let Some(lease) = held {
        engine.set_role(ReplicaRole::Follower);
        match engine.store.release_lease(&lease).await {
            Ok(()) => tracing::info!(epoch = lease.epoch, "released the leader's lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the leader's lease: it expires on its own"),
        }
    }
}

/// One claim: renews `held` or takes a free lease. A replica that cannot
/// reach the store stops leading (its writes would fail anyway).
async fn claim_once(engine: &Engine, replica: &Replica, held: Option<Lease>, ttl: Duration) -> Option<Lease> {
    let state = match engine.store.claim_lease(&replica.id, &replica.address, ttl).await {
        Ok(state) => state,
        Err(e) => {
            if held.is_some() {
                tracing::warn!(error = %e, "cannot renew the leader's lease: following until the store is back");
                step_down(engine);
            }
            return None;
        }
    };
    match &state.lease {
        Some(lease) if held.as_ref() != Some(lease) => {
            // Serve what the previous leader published before planning, so
            // unchanged states keep their ETags.
            catch_up(engine, &mut 0).await;
            engine.store.set_fencing(Fencing::Leader(lease.clone()));
            tracing::info!(epoch = lease.epoch, "this replica leads");
            engine.set_role(ReplicaRole::Leader);
            engine.sync_requests.notify_one();
        }
        Some(_) => {}
        None if held.is_some() => {
            tracing::warn!("the leader's lease passed to another replica");
            step_down(engine);
        }
        None => {}
    }
    engine.status.update(|s| {
        s.replica.leader = state.lease.is_some();
        s.replica.leader_id = state.leader.clone();
    });
    let relay_to = if state.lease.is_some() { None } else { state.leader_address.clone() };
    *engine.leader_address.write().unwrap_or_else(|p| p.into_inner()) = relay_to;
    state.lease
}

fn step_down(engine: &Engine) {
    engine.store.set_fencing(Fencing::Follower);
    engine.set_role(ReplicaRole::Follower);
    engine.status.update(|s| s.replica.leader = false);
}

/// Applies what was published after `*last` (a follower's catch-up).
async fn catch_up(engine: &Engine, last: &mut u64) {
    match engine.store.desired_since(*last).await {
        Ok((states, newest)) => {
            *last = newest;
            engine.adopt(states);
        }
        Err(e) => tracing::debug!(error = %e, "catching up with published states failed; trying again"),
    }
}

/// Listens for the other replicas' signals and acts on them, catching up
/// on every (re)connection and every [`CATCH_UP_EVERY`].
pub async fn signal_loop(engine: Arc<Engine>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let mut last = 0;
    loop {
        let mut listener = match engine.store.listen().await {
            Ok(Some(listener)) => listener,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen for signals yet");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stopped.changed() => return,
                }
            }
        };
        catch_up(&engine, &mut last).await;
        loop {
            tokio::select! {
                signal = listener.next() => match signal {
                    Some(signal) => on_signal(&engine, signal, &mut last).await,
                    None => break,
                },
                _ = tokio::time::sleep(CATCH_UP_EVERY) => if !engine.is_leader() { catch_up(&engine, &mut last).await },
                _ = stopped.changed() => return,
            }
        }
    }
}

async fn on_signal(engine: &Arc<Engine>, signal: Signal, last: &mut u64) {
    tracing::trace!(?signal, leader = engine.is_leader(), "signal");
    match signal {
        Signal::Desired { seq } if seq > *last && !engine.is_leader() => catch_up(engine, last).await,
        Signal::Desired { .. } => {}
        // On a task of its own: the signals behind it need not wait.
        Signal::Replan { device } if engine.is_leader() => {
            drop(tokio::spawn(replan_for_follower(engine.clone(), device)))
        }
        Signal::Replan { .. } => {}
        Signal::Planned { device, generation } => {
            if !engine.is_leader() {
                catch_up(engine, last).await;
            }
            engine.planned(device, generation);
        }
        Signal::Reports if engine.is_leader() => engine.note_reports(),
        Signal::Reports => {}
        Signal::Sync if engine.is_leader() => engine.sync_requests.notify_one(),
        Signal::Sync => {}
        Signal::Released => engine.lease_released.notify_one(),
    }
}

/// Plans `device` (its inputs changed at a follower) and says so, changed
/// or not: the follower's inventory answer waits for it.
async fn replan_for_follower(engine: Arc<Engine>, device: String) {
    let planner = engine.clone();
    let replanned = tokio::task::spawn_blocking(move || {
        let generation = planner.replan_device(&device)?;
        Ok::<_, StoreError>((device, generation))
    })
    .await;
    match replanned {
        Ok(Ok((device, Some(generation)))) => {
            if let Err(e) = engine.store.signal(&Signal::Planned { device, generation }).await {
                tracing::warn!(error = %e, "could not say a device was planned");
            }
        }
        Ok(Ok((_, None))) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "planning a device for a follower failed"),
        Err(_) => tracing::error!("planning a device for a follower panicked"),
    }
}

/// Writes the check-ins this replica saw, every [`super::check_ins::FLUSH_EVERY`]
/// and once more on stop, so every replica's views see them.
pub async fn check_in_loop(engine: Arc<Engine>, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(super::check_ins::FLUSH_EVERY) => false,
            _ = stopped.changed() => true,
        };
        let seen = engine.check_ins.take_unwritten();
        if let Err(e) = engine.store.record_check_ins(&seen).await {
            tracing::debug!(error = %e, "could not write check-ins; the next ones carry on");
        }
        if stopping {
            return;
        }
    }
}
