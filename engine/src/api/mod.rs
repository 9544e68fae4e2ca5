//! The HTTP API, versioned under `/api/v1`. [`router`] is the one place
//! routes are declared; authentication is an extractor ([`auth`]); every
//! failure is an [`ApiError`], which becomes `{error, message}` with its
//! status.
//!
//! Architecture invariant: only this module knows HTTP. An agent's routes
//! name no device: its identity comes from its credential (G7); a user
//! token reaches only the device it is bound to.

mod admin;
mod agent;
pub mod auth;
mod blobs;
pub mod console;
mod desired_answer;
mod error;
mod hot;
pub mod limits;
mod relay;
mod user;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

pub(crate) use admin::views::{
    CATALOG_COLUMNS, EXPOSURE_COLUMNS, INSTALLED_COLUMNS, REVIEW_COLUMNS, RangeQuery, RolloutQuery, assignments_csv,
    audit_csv, catalog_rows, device_rows, exposure_page, exposure_summary, rollout_rows, software_library, time_range,
};
pub(crate) use admin::{acknowledge_rewrite, request_sync};
pub use auth::{Admin, AgentDevice, UserDevice};
pub use error::ApiError;
pub use hot::HotPath;
use limits::RateLimiter;
pub(crate) use user::take_user_request;

use crate::daemon::Engine;
use crate::daemon::config::Limits;
use crate::daemon::media::BlobStore;

pub struct ApiState {
    pub engine: Arc<Engine>,
    pub blobs: Arc<BlobStore>,
    pub limits: Limits,
    /// The HMAC secret of `POST /api/v1/sync` webhooks.
    pub webhook_secret: Option<Vec<u8>>,
    pub rate: RateLimiter,
    /// The console's signed-in browsers.
    pub sessions: console::session::Sessions,
    /// Callers the store confirmed, for when it cannot be reached.
    pub known: auth::KnownCallers,
    /// Relays a follower's plan reads to the leader.
    pub relay: reqwest::Client,
}

impl ApiState {
    pub fn new(engine: Arc<Engine>, blobs: Arc<BlobStore>, limits: Limits, webhook_secret: Option<Vec<u8>>) -> Self {
        let rate = RateLimiter::new(limits.device_requests_per_minute);
        ApiState {
            engine,
            blobs,
            limits,
            webhook_secret,
            rate,
            sessions: Default::default(),
            known: Default::default(),
            relay: relay::client(),
        }
    }

    /// Takes one request from `caller`'s rate budget (T31).
    pub fn admit(&self, caller: &str) -> Result<(), ApiError> {
        self.rate.take(caller, self.engine.clock.now()).map_err(|seconds| {
            self.engine.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError { retry_after: Some(seconds), ..ApiError::too_many("too many requests from this device") }
        })
    }
}

/// Every route, in one place. The agents' routes, enrollment, media and
/// health need only the store, so every replica answers them itself: they
/// sit outside the layer that relays to the leader, and a poll (the
/// hottest path) pays nothing for it.
pub fn router(state: Arc<ApiState>) -> axum::Router {
    let body_limit = state.limits.max_body_bytes;
    let answered_here = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/enroll", post(agent::enroll))
        .route("/api/v1/device/inventory", put(agent::inventory))
        .route("/api/v1/device/desired-state", get(agent::desired))
        .route("/api/v1/device/events", post(agent::events))
        .route("/api/v1/blobs/{sha256}", get(agent::blob));
    axum::Router::new()
        .route("/api/v1/sync", post(admin::sync))
        .route("/api/v1/ack-rewrite", post(admin::ack_rewrite))
        .route("/api/v1/status", get(admin::status))
        .route("/api/v1/tokens", post(admin::create_token))
        .route("/api/v1/devices", get(admin::views::devices))
        .route("/api/v1/devices/{id}", get(admin::views::device))
        .route("/api/v1/compliance", get(admin::views::compliance))
        .route("/api/v1/audit", get(admin::views::audit))
        .route("/api/v1/rollouts", get(admin::views::rollouts))
        .route("/api/v1/software", get(admin::views::software))
        .route("/api/v1/catalog", get(admin::views::catalog))
        .route("/api/v1/installed", get(admin::views::installed))
        .route("/api/v1/review", get(admin::views::review))
        .route("/api/v1/exposure", get(admin::views::exposure))
        .route("/api/v1/user/device", get(user::user_device))
        .route("/api/v1/user/snooze", post(user::user_snooze))
        .route("/api/v1/user/install", post(user::user_install))
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(state.clone(), relay::relay_to_leader))
        .merge(answered_here)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

async fn readyz(State(state): State<Arc<ApiState>>) -> Result<&'static str, ApiError> {
    state.engine.ready().map_err(ApiError::unavailable)?;
    Ok("ready\n")
}

/// Runs store or planning work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(internal)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewQuery {
    format: Option<String>,
}

pub(crate) fn wants_csv(format: &Option<String>) -> Result<bool, ApiError> {
    match format.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!("unknown format `{other}`: json or csv"))),
    }
}

pub(crate) fn csv_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], text).into_response()
}

pub(crate) const ITEM_COLUMNS: &[&str] = &[
    "device",
    "patch",
    "title",
    "severity",
    "category",
    "action",
    "status",
    "source",
    "stage",
    "policy",
    "windows",
    "notBefore",
    "deadline",
    "overdue",
];

pub(crate) fn plan_or_unavailable(state: &ApiState) -> Result<crate::daemon::PlanView, ApiError> {
    state.engine.plan_view().ok_or_else(|| ApiError::unavailable("no valid policy revision is in force yet"))
}
