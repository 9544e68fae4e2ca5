//! Signing desired states: a state's generation is decided by its
//! content (the digest leaves out what is not content), and a signed state
//! is kept and served again until its content changes or it reaches the
//! second half of its validity.

use std::collections::HashMap;
use std::sync::Arc;

use patchward_api::desired::DesiredState;
use rayon::prelude::*;

use super::{Engine, InForce, ServedDesired, UserRequest, relayed_request};
use crate::plan::desired::{Envelope, desired_state};
use crate::plan::{DevicePlan, Plan};
use crate::store::StoreError;
use crate::store::replicas::SignedDesired;

/// Fewer devices than this are signed on the calling thread: a batch of a
/// few handed to the thread pool and back costs more than the work.
const PARALLEL_FROM: usize = 64;

/// One device's desired state after [`Engine::sign_devices`].
pub(super) struct Signed {
    pub device: String,
    pub state: Arc<ServedDesired>,
    /// Signed now (not a state still good kept).
    pub fresh: bool,
}

/// `f` over `items`, in parallel when there are enough of them.
fn map_items<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    if items.len() < PARALLEL_FROM {
        items.into_iter().map(f).collect()
    } else {
        items.into_par_iter().map(f).collect()
    }
}

/// The content of a desired state is what decides its generation; these
/// fields are not content. Nor is the policy commit (the state's and each
/// item's source's): a revision that changes nothing a device must do
/// leaves its state, and the revision it names, as they were, so a commit
/// re-signs only the states it changes.
pub(super) fn content_digest(state: &DesiredState) -> String {
    let mut value = serde_json::to_value(state).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut value {
        map.remove("issuedAt");
        map.remove("expiresAt");
        map.remove("generation");
        map.remove("policyRevision");
        if let Some(serde_json::Value::Array(items)) = map.get_mut("items") {
            for item in items.iter_mut() {
                if let Some(serde_json::Value::Object(source)) = item.get_mut("source") {
                    source.remove("commit");
                }
                // Software items are due from their issue time: keep it out too.
                if item["source"]["kind"] == "assignment"
                    && let serde_json::Value::Object(item) = item
                {
                    item.remove("notBefore");
                }
            }
        }
    }
    crate::catalog::sha256_hex(value.to_string().as_bytes())
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
        computed: &Plan,
        in_force: &InForce,
        device: &DevicePlan,
        requests: &[UserRequest],
        now: jiff::Timestamp,
    ) -> DesiredState {
        let envelope =
            Envelope { generation: 0, catalog_revision: in_force.catalog_revision, issued_at: now, expires_at: now };
        let mut state = desired_state(computed, &in_force.policy, &in_force.catalog, device, &envelope);
        if !requests.is_empty() {
            for item in &mut state.items {
                item.user_request = relayed_request(requests, &item.patch);
            }
        }
        state
    }

    /// The signing step of every plan, full or of a few devices: each
    /// device's content (with its users' requests, by device), its digest,
    /// every generation in one store call, then a state still good in
    /// `previous` kept or a new one signed; the new ones are published for
    /// the other replicas. In the order of `devices`.
    pub(super) fn sign_devices(
        &self,
        plan: &Plan,
        in_force: &InForce,
        devices: &[&DevicePlan],
        requests: &HashMap<String, Vec<UserRequest>>,
        previous: &(dyn Fn(&str) -> Option<Arc<ServedDesired>> + Sync),
        now: jiff::Timestamp,
    ) -> Result<Vec<Signed>, StoreError> {
        let contents = map_items(devices.to_vec(), |device| {
            let mine = requests.get(&device.id).map_or(&[][..], Vec::as_slice);
            let content = self.content(plan, in_force, device, mine, now);
            let digest = content_digest(&content);
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
        let body = serde_json::to_vec(&envelope).expect("an envelope serializes").into();
        ServedDesired {
            generation,
            etag: format!("\"{generation}-{}\"", now.as_second()),
            body,
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
        let digest = |revision, status, issued| content_digest(&state(revision, status, issued));
        let first = digest("c0ffee", "due", "2026-01-01T00:00:00Z");
        assert_eq!(first, digest("deadbeef", "due", "2026-02-01T00:00:00Z"));
        assert_ne!(first, digest("c0ffee", "blocked", "2026-01-01T00:00:00Z"));
    }
}
