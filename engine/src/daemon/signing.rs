//! Signing desired states: a state's generation is decided by its
//! content (the digest leaves out what is not content), and a signed state
//! is kept and served again until its content changes or it reaches the
//! second half of its validity.

use patchward_api::desired::DesiredState;

use super::{Engine, InForce, ServedDesired, UserRequest, relayed_request};
use crate::plan::desired::{Envelope, desired_state};
use crate::plan::{DevicePlan, Plan};

/// The content of a desired state is what decides its generation; these
/// fields are not content.
pub(super) fn content_digest(state: &DesiredState) -> String {
    let mut value = serde_json::to_value(state).unwrap_or(serde_json::Value::Null);
    if let serde_json::Value::Object(map) = &mut value {
        map.remove("issuedAt");
        map.remove("expiresAt");
        map.remove("generation");
        // Software items are due from their issue time: keep it out too.
        if let Some(serde_json::Value::Array(items)) = map.get_mut("items") {
            for item in items.iter_mut().filter(|i| i["source"]["kind"] == "assignment") {
                if let serde_json::Value::Object(item) = item {
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
