//! What a device's user asked for (a snooze, a self-service install):
//! recorded in the store, and relayed to the agent in its next desired
//! state.

use std::collections::HashMap;

use super::Engine;
use crate::store::StoreError;

/// Where a device's requests are kept among the engine's states.
const REQUESTS: &str = "requests/";

/// A snooze or a self-service install a device's user asked for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRequest {
    pub item: String,
    pub kind: UserRequestKind,
    pub at: jiff::Timestamp,
    /// For a snooze: until when the item is put off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<jiff::Timestamp>,
}

/// What a device's user may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRequestKind {
    /// Put the item off (within the policy's `maxSnoozes`).
    Snooze,
    /// Install it now (where `selfService` allows).
    Install,
}

impl UserRequestKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            UserRequestKind::Snooze => "snooze",
            UserRequestKind::Install => "install",
        }
    }
}

/// What the agent is told of its user's requests for `item`: how many
/// snoozes are used, the latest end of one, the latest install request.
pub fn relayed_request(requests: &[UserRequest], item: &str) -> Option<patchward_api::deployment::UserRequest> {
    let mine: Vec<&UserRequest> = requests.iter().filter(|r| r.item == item).collect();
    if mine.is_empty() {
        return None;
    }
    let snoozes = || mine.iter().filter(|r| r.kind == UserRequestKind::Snooze);
    Some(patchward_api::deployment::UserRequest {
        snoozes_used: snoozes().count() as u32,
        snoozed_until: snoozes().filter_map(|r| r.until).max(),
        install_requested_at: mine.iter().filter(|r| r.kind == UserRequestKind::Install).map(|r| r.at).max(),
    })
}

impl UserRequest {
    /// `(allowed, used)` snoozes of `item` under `spec`: none where the
    /// policy is admin-only or does not prompt.
    pub fn snoozes(
        spec: &crate::policy::model::DeploymentPolicySpec,
        requests: &[UserRequest],
        item: &str,
    ) -> (u32, u32) {
        let allowed = if spec.admin_only { 0 } else { spec.prompt.as_ref().map_or(0, |p| p.value.max_snoozes) };
        let used = requests.iter().filter(|r| r.item == item && r.kind == UserRequestKind::Snooze).count() as u32;
        (allowed, used)
    }
}

impl Engine {
    /// Every device's requests, by device (one read, for a plan of the
    /// fleet).
    pub fn all_user_requests(&self) -> Result<HashMap<String, Vec<UserRequest>>, StoreError> {
        let stored = crate::store::Store::wait(self.store.engine_states::<Vec<UserRequest>>(REQUESTS))?;
        Ok(stored.into_iter().filter_map(|(name, r)| Some((name.strip_prefix(REQUESTS)?.to_owned(), r))).collect())
    }

    pub fn user_requests(&self, device: &str) -> Result<Vec<UserRequest>, StoreError> {
        crate::store::Store::wait(self.store.engine_state(&format!("{REQUESTS}{device}")))
            .map(Option::unwrap_or_default)
    }

    /// Records a user's request and plans the device again (or has the
    /// leader do it), so that its next desired state relays it to the
    /// agent.
    pub fn add_user_request(&self, device: &str, request: UserRequest) -> Result<(), StoreError> {
        let change = move |requests: &mut Vec<UserRequest>| requests.push(request);
        crate::store::Store::wait(self.store.update_engine_state(&format!("{REQUESTS}{device}"), change))?;
        self.replan_or_ask(device)
    }
}
