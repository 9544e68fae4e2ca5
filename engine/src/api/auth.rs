//! Authentication as extractors: an agent's credential names its device,
//! an admin token grants the admin routes. A missing or unknown secret is
//! 401; a known one without the right is 403. Secrets are compared by
//! their sha256 and never logged.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::{ApiError, ApiState};
use crate::store::fleet::{DeviceRecord, secret_hash};

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

/// The device whose agent credential the request carries.
pub struct AgentDevice(pub DeviceRecord);

impl FromRequestParts<Arc<ApiState>> for AgentDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let secret = bearer(&parts.headers)?;
        if secret_hash(secret) == state.admin_token_hash {
            return Err(ApiError::forbidden("an admin token is not a device credential"));
        }
        match state.store.device_by_credential(secret).map_err(ApiError::store)? {
            Some(device) => Ok(AgentDevice(device)),
            None => Err(ApiError::unauthorized("unknown credential")),
        }
    }
}

/// A request carrying the admin token.
pub struct Admin;

impl FromRequestParts<Arc<ApiState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<ApiState>) -> Result<Self, ApiError> {
        let secret = bearer(&parts.headers)?;
        if secret_hash(secret) == state.admin_token_hash {
            return Ok(Admin);
        }
        if state.store.device_by_credential(secret).map_err(ApiError::store)?.is_some() {
            return Err(ApiError::forbidden("a device credential cannot use the admin routes"));
        }
        Err(ApiError::unauthorized("unknown credential"))
    }
}
