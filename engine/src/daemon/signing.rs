//! Signing desired states: a state's generation is decided by its
//! content (the digest leaves out what is not content), and a signed state
//! is kept and served again until its content changes or it reaches the
//! second half of its validity.

use std::collections::HashMap;
use std::sync::Arc;

use patchward_api::desired::DesiredState;
use rayon::prelude::*;

use super::{Engine, InForce, ServedDesired, UserRequest, relayed_request};
use crate::plan::desired::{DesiredContext, Envelope};
use crate::plan::{DevicePlan, Plan};
use crate::store::StoreError;
use crate::store::replicas::SignedDesired;
use crate::store::signed_body::SignedBody;

/// Devices signed at a time. A state's content and its JSON are many times
/// its signed body: a full plan of 300,000 devices holding every one at
/// once ran out of 23 GiB. A step holds a thousand, still enough to keep
/// both cores busy and the store's calls few.
const SIGNING_STEP: usize = 1024;

/// What every step of [`Engine::sign_devices`] reads.
struct SigningContext<'a> {
    desired: DesiredContext<'a>,
    in_force: &'a InForce,
    /// Users' requests, by device.
    requests: &'a HashMap<String, Vec<UserRequest>>,
    /// The state served now, by device.
    previous: &'a (dyn Fn(&str) -> Option<Arc<ServedDesired>> + Sync),
    now: jiff::Timestamp,
}

/// One device's desired state after [`Engine::sign_devices`].
pub(super) struct Signed {
    pub device: String,
    pub state: Arc<ServedDesired>,
    /// Signed now (not a state still good kept).
    pub fresh: bool,
}

/// `f` over `items`, in parallel when there are enough of them (as the
/// planner: a few handed to the thread pool and back cost more than the
/// work).
fn map_items<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if items.len() < crate::plan::PARALLEL_FROM {
        items.into_iter().map(f).collect()
    } else {
        items.into_par_iter().map(f).collect()
    }
}

/// The content of a desired state is what decides its generation: the
/// state without its envelope (generation, issue and expiry) and without
/// the policy commit (the state's and each item's source's), so a revision
/// that changes nothing a device must do leaves its state, and the
/// revision it names, as they were, and a commit re-signs only the states
/// it changes. Software items are due from their issue time: their
/// not-before is left out too. The digest is taken over the state's own
/// JSON with those fields blanked, then put back: no copy of the state.
pub(super) fn content_digest(state: &mut DesiredState) -> String {
    let epoch = jiff::Timestamp::UNIX_EPOCH;
    let envelope = (state.generation, state.issued_at, state.expires_at);
    (state.generation, state.issued_at, state.expires_at) = (0, epoch, epoch);
    let revision = std::mem::take(&mut state.policy_revision);
    let mut kept = Vec::with_capacity(state.items.len());
    for item in &mut state.items {
        let not_before = item.not_before;
        if item.source.kind == patchward_api::desired::SourceKind::Assignment {
            item.not_before = epoch;
        }
        kept.push((std::mem::take(&mut item.source.commit), not_before));
    }
    let bytes = serde_json::to_vec(&*state).expect("a desired state serializes");
    for (item, (commit, not_before)) in state.items.iter_mut().zip(kept) {
        (item.source.commit, item.not_before) = (commit, not_before);
    }
    state.policy_revision = revision;
    (state.generation, state.issued_at, state.expires_at) = envelope;
    crate::catalog::sha256_hex(&bytes)
}

impl Engine {
    /// Whether a served state can be served again as it is: same content,
    /// same generation, and not into the second half of its validity.
    pub(super) fn still_good(
        &self,
        served: &ServedDesired,
        digest: &str,
        generation: u64,
        now: jiff::Timestamp,
    ) -> bool {
        let half = self.settings.desired_ttl / 2;
        served.digest == digest
            && served.generation == generation
            && served.expires_at.checked_sub(half).is_ok_and(|renew_at| now < renew_at)
            && now >= served.issued_at
    }

    pub(super) fn content(
        &self,
        context: &DesiredContext,
        in_force: &InForce,
        device: &DevicePlan,
        requests: &[UserRequest],
        now: jiff::Timestamp,
    ) -> DesiredState {
        let envelope =
            Envelope { generation: 0, catalog_revision: in_force.catalog_revision, issued_at: now, expires_at: now };
        let mut state = context.state(device, &envelope);
        if !requests.is_empty() {
            for item in &mut state.items {
                item.user_request = relayed_request(requests, &item.patch);
            }
        }
        state
    }

    /// The signing step of every plan, full or of a few devices: each
    /// device's content (with its users' requests, by device), its digest,
    /// the generations in one store call, then a state still good in
    /// `previous` kept or a new one signed; the new ones are published for
    /// the other replicas. In the order of `devices`, [`SIGNING_STEP`]
    /// devices at a time.
    pub(super) fn sign_devices(
        &self,
        plan: &Plan,
        in_force: &InForce,
        devices: &[&DevicePlan],
        requests: &HashMap<String, Vec<UserRequest>>,
        previous: &(dyn Fn(&str) -> Option<Arc<ServedDesired>> + Sync),
        now: jiff::Timestamp,
    ) -> Result<Vec<Signed>, StoreError> {
        let desired = DesiredContext::new(plan, &in_force.policy, &in_force.catalog);
        let context = SigningContext { desired, in_force, requests, previous, now };
        let mut signed = Vec::with_capacity(devices.len());
        for step in devices.chunks(SIGNING_STEP) {
            signed.extend(self.sign_step(&context, step)?);
        }
        Ok(signed)
    }

    fn sign_step(&self, context: &SigningContext, devices: &[&DevicePlan]) -> Result<Vec<Signed>, StoreError> {
        let SigningContext { desired, in_force, requests, previous, now } = context;
        let now = *now;
        let contents = map_items(devices.to_vec(), |device| {
            let mine = requests.get(&device.id).map_or(&[][..], Vec::as_slice);
            let mut content = self.content(desired, in_force, device, mine, now);
            let digest = content_digest(&mut content);
            (content, digest)
        });
        let pairs: Vec<(&str, &str)> =
            devices.iter().zip(&contents).map(|(d, (_, digest))| (d.id.as_str(), digest.as_str())).collect();
        let generations = crate::store::Store::wait(self.store.desired_generations(&pairs))?;
        let numbered: Vec<((DesiredState, String), u64)> = contents.into_iter().zip(generations).collect();
        let signed = map_items(numbered, |((content, digest), generation)| {
            let device = content.device.clone();
            match previous(&device).filter(|old| self.still_good(old, &digest, generation, now)) {
                Some(kept) => Signed { device, state: kept, fresh: false },
                None => Signed { device, state: Arc::new(self.sign(content, digest, generation, now)), fresh: true },
            }
        });
        let fresh = signed.iter().filter(|s| s.fresh);
        self.publish(fresh.map(|s| SignedDesired { device: s.device.clone(), state: (*s.state).clone() }).collect())?;
        Ok(signed)
    }

    pub(super) fn sign(
        &self,
        content: DesiredState,
        digest: String,
        generation: u64,
        now: jiff::Timestamp,
    ) -> ServedDesired {
        let expires_at = now.checked_add(self.settings.desired_ttl).unwrap_or(now);
        let payload = DesiredState { generation, expires_at, issued_at: now, ..content };
        let bytes = serde_json::to_vec(&payload).expect("a desired state serializes");
        let envelope = patchward_api::dsse::sign(patchward_api::dsse::DESIRED_STATE_TYPE, &bytes, &self.key);
        let json = serde_json::to_vec(&envelope).expect("an envelope serializes");
        ServedDesired {
            generation,
            etag: format!("\"{generation}-{}\"", now.as_second()),
            body: SignedBody::compress(&json),
            issued_at: now,
            expires_at,
            digest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(revision: &str, status: &str, issued: &str) -> DesiredState {
        let item = serde_json::json!({
            "patch": "KB1", "action": "install", "status": status,
            "source": {"kind": "rule", "name": "security", "commit": revision}, "stage": 1,
            "policy": {"name": "fast", "mode": "immediate"}, "windows": [],
            "notBefore": "2026-01-01T00:00:00Z", "deadline": null, "packages": []
        });
        DesiredState {
            device: "ws-1".into(),
            generation: 3,
            policy_revision: revision.into(),
            catalog_revision: 1,
            issued_at: issued.parse().unwrap(),
            expires_at: "2099-01-01T00:00:00Z".parse().unwrap(),
            mirrors: vec![],
            max_bandwidth_kbps: None,
            items: vec![serde_json::from_value(item).unwrap()],
        }
    }

    /// A new commit or issue time alone is not new content; what the
    /// device must do is.
    #[test]
    fn the_digest_covers_what_the_device_must_do_and_not_the_commit() {
        let digest = |revision, status, issued| content_digest(&mut state(revision, status, issued));
        let first = digest("c0ffee", "due", "2026-01-01T00:00:00Z");
        assert_eq!(first, digest("deadbeef", "due", "2026-02-01T00:00:00Z"));
        assert_ne!(first, digest("c0ffee", "blocked", "2026-01-01T00:00:00Z"));
        // The fields left out are put back.
        let mut taken = state("c0ffee", "due", "2026-01-01T00:00:00Z");
        content_digest(&mut taken);
        assert_eq!(taken, state("c0ffee", "due", "2026-01-01T00:00:00Z"));
    }
}
