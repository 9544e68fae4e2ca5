//! At a follower, what reads the plan or the leader's own state (the admin
//! views, the status, the console's and the portal's pages) is relayed to
//! the leader, whose memory holds the plan; the answer comes back as the
//! leader gave it. Agents' routes, enrollment, media, health and sign-in
//! are answered here (they need only the store).
//!
//! A relayed request carries [`RELAYED`], so it is never relayed twice;
//! when the leader cannot be reached, this replica answers itself.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::HeaderName;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiState};

/// Marks a request a follower relayed.
pub const RELAYED: &str = "x-patchward-relayed";

/// How long a relayed request may take (a view of a large fleet).
const RELAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A client for relaying to the leader: straight to it, never through a
/// proxy from the environment, its answers passed on as sent (a gzipped
/// one stays gzipped, with its headers).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .timeout(RELAY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client without TLS settings builds")
}

/// Routes under this layer that every replica answers itself (the
/// agents' routes, enrollment, media and health are outside it: see
/// [`super::router`]).
fn answered_here(path: &str) -> bool {
    matches!(path, "/api/v1/status" | "/signin" | "/signout") || path.starts_with("/assets/")
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "content-length"
    ) || name.as_str().starts_with("proxy-")
}

/// The middleware: relays to the leader when this replica follows.
pub async fn relay_to_leader(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let leader = match state.engine.leader_address() {
        Some(leader) if !state.engine.is_leader() => leader,
        _ => return next.run(request).await,
    };
    if answered_here(request.uri().path()) || request.headers().contains_key(RELAYED) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, state.limits.max_body_bytes).await else {
        return ApiError::too_large("the request body is too large").into_response();
    };
    match forward(&state.relay, &leader, &parts, bytes.clone()).await {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(leader, error = %e, "the leader cannot be reached: answering here");
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
    }
}

async fn forward(
    client: &reqwest::Client,
    leader: &str,
    parts: &Parts,
    body: Bytes,
) -> Result<Response, reqwest::Error> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client.request(parts.method.clone(), format!("{leader}{path}")).body(body);
    for (name, value) in parts.headers.iter().filter(|(name, _)| !hop_by_hop(name)) {
        request = request.header(name, value);
    }
    let answer = request.header(RELAYED, "1").send().await?;
    let status = answer.status();
    let headers = answer.headers().clone();
    let mut response = Response::new(Body::from(answer.bytes().await?));
    *response.status_mut() = status;
    for (name, value) in headers.iter().filter(|(name, _)| !hop_by_hop(name)) {
        response.headers_mut().append(name, value.clone());
    }
    Ok(response)
}

/// The leader's status, as `authorization` may read it, for a follower to
/// answer with (its own `replica` in place of the leader's); `None` when
/// this replica leads or the leader cannot be reached.
pub async fn leaders_status(
    state: &ApiState,
    authorization: Option<&axum::http::HeaderValue>,
) -> Option<crate::daemon::status::Status> {
    let leader = state.engine.leader_address().filter(|_| !state.engine.is_leader())?;
    let mut request = state.relay.get(format!("{leader}/api/v1/status")).header(RELAYED, "1");
    if let Some(authorization) = authorization {
        request = request.header(axum::http::header::AUTHORIZATION, authorization);
    }
    let answer = request.send().await.ok()?.error_for_status().ok()?;
    serde_json::from_slice(&answer.bytes().await.ok()?).ok()
}
