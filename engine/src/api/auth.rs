//! Authentication as extractors: an agent's credential names its device,
//! an admin token grants the admin routes, a user token one device's
//! portal. A missing or unknown secret is 401; a known one without the
//! right is 403. Secrets are compared by their sha256 and never logged.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::{ApiError, ApiState};
use crate::store::fleet::{AccessToken, Role};

/// The `Authorization: Bearer` secret.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("no credential: send `Authorization: Bearer …`"))?;
    let text = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    match text.split_once(' ') {
        Some((scheme, secret)) if scheme.eq_ignore_ascii_case("bearer") && !secret.trim().is_empty() => {
            Ok(secret.trim())
        }
        _ => Err(ApiError::unauthorized("the Authorization header is not `Bearer …`")),
    }
}

/// Who a secret is.
#[derive(Clone)]
enum Caller {
    Device(String),
    Access(AccessToken),
}

/// Callers the store confirmed, by their secret's sha256. A device's
/// credential is issued once and never changes meaning, so once confirmed
/// it is checked here, without the store (a poll, the hottest path, costs
/// no database round trip). Admin and user tokens can be revoked, so the
/// store is asked each time; only while it cannot be reached are they
/// checked from here too (a revocation takes effect once it is back). A
/// secret never confirmed is refused with the store's error.
#[derive(Default)]
pub struct KnownCallers(std::sync::RwLock<foldhash::HashMap<SecretDigest, Caller>>);

/// A secret's sha256, as the key callers are known by in memory.
type SecretDigest = [u8; 32];

fn digest(secret: &str) -> SecretDigest {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

impl KnownCallers {
    fn remember(&self, hash: SecretDigest, caller: &Caller) {
        self.0.write().unwrap_or_else(|p| p.into_inner()).insert(hash, caller.clone());
    }

    fn get(&self, hash: &SecretDigest) -> Option<Caller> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).get(hash).cloned()
    }
}

/// The caller the store knows by `secret`, if any.
async fn lookup(state: &ApiState, secret: &str) -> Result<Option<Caller>, crate::store::StoreError> {
    let store = &state.engine.store;
    if let Some(device) = store.device_id_by_credential(secret).await? {
        return Ok(Some(Caller::Device(device)));
    }
    Ok(store.access_token(secret).await?.map(Caller::Access))
}

/// The device whose credential `secret` is, if the store already
/// confirmed it to this replica (no store round trip; `None` otherwise).
pub(super) fn confirmed_device(state: &ApiState, secret: &str) -> Option<String> {
    match state.known.get(&digest(secret)) {
        Some(Caller::Device(device)) => Some(device),
        _ => None,
    }
}

async fn identify(state: &ApiState, secret: &str) -> Result<Caller, ApiError> {
    let hash = digest(secret);
    if let Some(Caller::Device(device)) = state.known.get(&hash) {
        return Ok(Caller::Device(device));
    }
    let caller = match lookup(state, secret).await {
        Ok(Some(caller)) => {
            state.known.remember(hash, &caller);
            caller
        }
        Ok(None) => return Err(ApiError::unauthorized("unknown credential")),
        Err(e) if e.is_unreachable() => state.known.get(&hash).ok_or_else(|| ApiError::store(e))?,
        Err(e) => return Err(ApiError::store(e)),
    };
    match caller {
        Caller::Access(token) if token.revoked => Err(ApiError::unauthorized("the token was revoked")),
        Caller::Access(token) if token.expires_at.is_some_and(|at| at <= state.engine.clock.now()) => {
            Err(ApiError::unauthorized("the token expired"))
        }
        caller => Ok(caller),
    }
}

/// The device (by id) whose agent credential the request carries.
pub struct AgentDevice(pub String);

impl FromRequestParts<Arc<ApiState>> for AgentDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        match identify(state, bearer(&parts.headers)?).await? {
            Caller::Device(device) => {
                admit_device(state, &device)?;
                Ok(AgentDevice(device))
            }
            Caller::Access(_) => Err(ApiError::forbidden("an admin or user token is not a device credential")),
        }
    }
}

/// What every request of a device's agent passes once its credential is
/// known: its rate budget, and its check-in.
pub(super) fn admit_device(state: &ApiState, device: &str) -> Result<(), ApiError> {
    state.admit(device)?;
    state.engine.check_ins.note(device, state.engine.clock.now());
    Ok(())
}

/// A request carrying an admin token.
pub struct Admin;

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        match identify(state, bearer(&parts.headers)?).await? {
            Caller::Access(AccessToken { role: Role::Admin, .. }) => {
                // Every admin call is in the audit log (no secrets: the
                // path and the method only); reads apart from changes.
                let path = parts.uri.path().to_owned();
                let detail = serde_json::json!({"method": parts.method.as_str(), "path": path});
                let now = state.engine.clock.now();
                let read = parts.method == axum::http::Method::GET || parts.method == axum::http::Method::HEAD;
                let action = if read { crate::daemon::audit::READ } else { crate::daemon::audit::CHANGE };
                state.engine.store.append_audit(now, "admin", action, detail).await.map_err(ApiError::store)?;
                Ok(Admin)
            }
            Caller::Access(_) => Err(ApiError::forbidden("a user token cannot use the admin routes")),
            Caller::Device(_) => Err(ApiError::forbidden("a device credential cannot use the admin routes")),
        }
    }
}

/// A request carrying a user token: the one device it is bound to.
pub struct UserDevice(pub String);

impl FromRequestParts<Arc<ApiState>> for UserDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        match identify(state, bearer(&parts.headers)?).await? {
            Caller::Access(AccessToken { role: Role::User, device: Some(device), .. }) => {
                state.admit(&format!("user:{device}"))?;
                Ok(UserDevice(device))
            }
            Caller::Access(_) => Err(ApiError::forbidden("an admin token has no device: use the admin routes")),
            Caller::Device(_) => Err(ApiError::forbidden("a device credential cannot use the user routes")),
        }
    }
}
