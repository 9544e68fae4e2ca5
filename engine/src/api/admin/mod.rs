//! The admin's routes: its actions here (sync, by an admin or a signed
//! webhook; acknowledge a rewrite; the status; tokens), its read views in
//! [`views`].

pub(super) mod views;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use serde::Deserialize;

use crate::api::limits::BoundedJson;
use crate::api::{Admin, ApiError, ApiState, internal};
use crate::store::fleet::{AccessToken, EnrollmentToken, Role};

/// `X-Hub-Signature-256: sha256=HEX` over the body with the webhook secret.
pub(super) fn webhook_signed(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    use hmac::{KeyInit as _, Mac as _};
    let Some(given) = headers.get("x-hub-signature-256").and_then(|v| v.to_str().ok()) else { return false };
    let Some(hex_sig) = given.strip_prefix("sha256=") else { return false };
    let Ok(signature) = hex::decode(hex_sig) else { return false };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// Reconcile now: an admin, or a webhook signed with the shared secret.
pub(super) async fn sync(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = if headers.contains_key(header::AUTHORIZATION) {
        let mut parts = axum::http::Request::builder()
            .uri("/api/v1/sync")
            .method("POST")
            .body(())
            .map_err(internal)?
            .into_parts()
            .0;
        parts.headers = headers.clone();
        <Admin as axum::extract::FromRequestParts<Arc<ApiState>>>::from_request_parts(&mut parts, &state).await?;
        "admin"
    } else {
        let secret = state.webhook_secret.as_deref().ok_or_else(|| {
            ApiError::unauthorized("no credential, and no webhook secret is configured (policies.webhookSecretFile)")
        })?;
        if !webhook_signed(secret, &headers, &body) {
            return Err(ApiError::unauthorized("the webhook signature (X-Hub-Signature-256) does not verify"));
        }
        "webhook"
    };
    request_sync(&state, actor, serde_json::json!({}));
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"accepted": true}))).into_response())
}

/// Wakes the reconciler now, audited as `actor` (the API, the webhook and
/// the console all come here).
pub(crate) fn request_sync(state: &ApiState, actor: &str, detail: serde_json::Value) {
    let now = state.engine.clock.now();
    let _ = crate::store::Store::wait(state.engine.store.append_audit(now, actor, "sync.requested", detail));
    state.engine.request_sync();
}

/// Acknowledges a rewrite to `commit` (a full 40-hex sha, any case) and
/// reconciles now; the acknowledged sha, or why it was refused.
pub(crate) fn acknowledge_rewrite(
    state: &ApiState,
    commit: &str,
    detail: serde_json::Value,
) -> Result<String, ApiError> {
    let commit = commit.trim().to_ascii_lowercase();
    if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("commit must be a full 40-hex commit sha"));
    }
    // Acknowledged at two replicas at once, it is acknowledged (and
    // audited) once.
    if state.engine.acknowledge_rewrite(&commit).map_err(ApiError::store)? {
        let now = state.engine.clock.now();
        let mut detail = detail;
        detail["commit"] = commit.clone().into();
        let audit = state.engine.store.append_audit(now, "admin", "rewrite.acknowledged", detail);
        let _ = crate::store::Store::wait(audit);
    }
    state.engine.request_sync();
    Ok(commit)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AckRequest {
    commit: String,
}

pub(super) async fn ack_rewrite(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    BoundedJson(request): BoundedJson<AckRequest>,
) -> Result<Response, ApiError> {
    let commit = acknowledge_rewrite(&state, &request.commit, serde_json::json!({}))?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"acknowledged": commit}))).into_response())
}

/// The status; at a follower, the leader's (what is applied, the
/// conditions, the catalog) with this replica's own `replica`.
pub(super) async fn status(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    headers: axum::http::HeaderMap,
) -> Json<crate::daemon::status::Status> {
    let here = state.engine.status();
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    match super::relay::leaders_status(&state, authorization).await {
        Some(leaders) => Json(crate::daemon::status::Status { replica: here.replica, ..leaders }),
        None => Json(here),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct TokenRequest {
    kind: String,
    uses: Option<u32>,
    expires: Option<patchward_api::Duration>,
    device: Option<String>,
}

pub(super) async fn create_token(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    BoundedJson(request): BoundedJson<TokenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let engine = &state.engine;
    let now = engine.clock.now();
    let expires_at = request
        .expires
        .map(|d| now.checked_add(jiff::SignedDuration::from_secs(d.as_secs() as i64)))
        .transpose()
        .map_err(|_| ApiError::bad_request("expires is too far away"))?;
    let token = match request.kind.as_str() {
        "enrollment" => {
            if request.device.is_some() {
                return Err(ApiError::bad_request("an enrollment token is bound to no device"));
            }
            let token = crate::clock::new_secret("pwe_").map_err(internal)?;
            let record = EnrollmentToken { uses_left: request.uses.unwrap_or(1).max(1), expires_at, created_at: now };
            crate::store::Store::wait(engine.store.create_enrollment_token(&token, &record))
                .map_err(ApiError::store)?;
            token
        }
        "admin" | "user" => {
            let role = if request.kind == "admin" { Role::Admin } else { Role::User };
            if request.uses.is_some() {
                return Err(ApiError::bad_request("--uses is for enrollment tokens"));
            }
            match (role, &request.device) {
                (Role::User, None) => return Err(ApiError::bad_request("a user token needs --device ID")),
                (Role::Admin, Some(_)) => return Err(ApiError::bad_request("an admin token is bound to no device")),
                (Role::User, Some(id))
                    if crate::store::Store::wait(engine.store.device(id)).map_err(ApiError::store)?.is_none() =>
                {
                    return Err(ApiError::not_found(format!("no device {id}")));
                }
                _ => {}
            }
            let prefix = if role == Role::Admin { "pwa_" } else { "pwu_" };
            let token = crate::clock::new_secret(prefix).map_err(internal)?;
            let record =
                AccessToken { role, device: request.device.clone(), expires_at, created_at: now, revoked: false };
            crate::store::Store::wait(engine.store.create_access_token(&token, &record)).map_err(ApiError::store)?;
            token
        }
        other => {
            return Err(ApiError::bad_request(format!("unknown token kind `{other}`: enrollment, admin or user")));
        }
    };
    let detail = serde_json::json!({"kind": request.kind, "uses": request.uses, "device": request.device,
        "expiresAt": expires_at});
    let _ = crate::store::Store::wait(engine.store.append_audit(now, "admin", "token.created", detail));
    Ok(Json(serde_json::json!({"token": token, "kind": request.kind, "expiresAt": expires_at})))
}
