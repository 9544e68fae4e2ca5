//! A device user's routes: their own device, snooze, self-service install.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::api::device_rows;
use crate::api::limits::BoundedJson;
use crate::api::{ApiError, ApiState, UserDevice, plan_or_unavailable};
use crate::daemon::{UserRequest, UserRequestKind};

/// The user's own device: its pending items with their snoozes left, and
/// its history (the agent's events).
pub(super) async fn user_device(
    State(state): State<Arc<ApiState>>,
    UserDevice(id): UserDevice,
) -> Result<Response, ApiError> {
    let rows = device_rows(&state, &id)?;
    let requests = state.engine.user_requests(&id).map_err(ApiError::store)?;
    let (in_force, ..) = plan_or_unavailable(&state)?;
    let pending: Vec<serde_json::Value> = rows
        .iter()
        .filter(|r| r.pending())
        .map(|row| {
            let spec = &in_force.policy.policy.deployment_policies[&row.policy].spec;
            let (allowed, used) = UserRequest::snoozes(spec, &requests, &row.patch);
            let mut value = serde_json::to_value(row).unwrap_or_default();
            value["snoozesLeft"] = allowed.saturating_sub(used).into();
            value
        })
        .collect();
    let history = crate::store::Store::wait(state.engine.store.events(&id)).map_err(ApiError::store)?;
    let history: Vec<serde_json::Value> = history
        .into_iter()
        .rev()
        .take(200)
        .map(|e| serde_json::json!({"seq": e.seq, "at": e.received_at, "event": e.body}))
        .collect();
    Ok(Json(serde_json::json!({"device": id, "pending": pending, "requests": requests, "history": history}))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemRequest {
    item: String,
}

pub(super) async fn user_snooze(
    State(state): State<Arc<ApiState>>,
    UserDevice(id): UserDevice,
    BoundedJson(request): BoundedJson<ItemRequest>,
) -> Result<Response, ApiError> {
    user_request(&state, &id, &request.item, UserRequestKind::Snooze)
}

pub(super) async fn user_install(
    State(state): State<Arc<ApiState>>,
    UserDevice(id): UserDevice,
    BoundedJson(request): BoundedJson<ItemRequest>,
) -> Result<Response, ApiError> {
    user_request(&state, &id, &request.item, UserRequestKind::Install)
}

pub(super) fn user_request(
    state: &ApiState,
    device: &str,
    item: &str,
    kind: UserRequestKind,
) -> Result<Response, ApiError> {
    take_user_request(state, device, item, kind, &format!("user:{device}"))?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": kind, "item": item}))).into_response())
}

/// A user's snooze or self-service install of `item` on `device`, under
/// the admin's limits (the item's deployment policy): recorded and audited
/// as `actor`, or refused with why. The user API, the console's portal and
/// (through its events) the agent's CLI all come here.
pub(crate) fn take_user_request(
    state: &ApiState,
    device: &str,
    item: &str,
    kind: UserRequestKind,
    actor: &str,
) -> Result<UserRequest, ApiError> {
    let (in_force, ..) = plan_or_unavailable(state)?;
    let rows = device_rows(state, device)?;
    let row = rows
        .iter()
        .find(|r| r.patch == item && r.pending())
        .ok_or_else(|| ApiError::not_found(format!("{item} is not pending on this device")))?;
    let spec = &in_force.policy.policy.deployment_policies[&row.policy].spec;
    let requests = state.engine.user_requests(device).map_err(ApiError::store)?;
    match kind {
        UserRequestKind::Snooze => {
            if spec.admin_only {
                return Err(ApiError::forbidden(format!("policy {} is admin-only: no snoozes", row.policy)));
            }
            let (max, used) = UserRequest::snoozes(spec, &requests, item);
            if used >= max {
                return Err(ApiError::conflict(format!("{item}: all {max} snoozes of policy {} are used", row.policy)));
            }
            if row.overdue {
                return Err(ApiError::conflict(format!("{item} is past its deadline: it is mandatory now")));
            }
        }
        UserRequestKind::Install => {
            if !row.self_service {
                return Err(ApiError::forbidden(format!(
                    "{item} is not self-service: neither policy {} nor an assignment offers it on demand",
                    row.policy
                )));
            }
        }
    }
    let now = state.engine.clock.now();
    let until = (kind == UserRequestKind::Snooze).then(|| {
        let snooze_for = spec.prompt.as_ref().map_or(4 * 3600, |p| p.value.snooze_for.value.as_secs());
        now.checked_add(jiff::SignedDuration::from_secs(snooze_for as i64)).unwrap_or(now)
    });
    let request = UserRequest { item: item.to_owned(), kind, at: now, until };
    state.engine.add_user_request(device, request.clone()).map_err(ApiError::store)?;
    let _ = crate::store::Store::wait(state.engine.store.append_audit(
        now,
        actor,
        &format!("user.{}", kind.as_str()),
        serde_json::json!({"item": item, "policy": row.policy, "device": device}),
    ));
    Ok(request)
}
