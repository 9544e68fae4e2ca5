//! The hot path: an agent's idle poll of its desired state, answered from
//! memory before the router sees the request.
//!
//! Most of an engine's requests are agents asking "still the same?" with
//! the ETag they hold. The router answers them correctly but spends more
//! on routing, extractors and per-route layers than on the answer itself.
//! [`HotPath::answer`] takes only the requests it can answer exactly as
//! [`super::agent::desired`] would, and sends every other one on:
//!
//! - `GET /api/v1/device/desired-state` with no query (a long poll
//!   waits, so it takes the router's path, with its timeouts);
//! - a device credential this replica's store already confirmed (an
//!   unknown secret needs the store, and its error);
//! - a state held in memory that may answer this agent.
//!
//! The same steps then run as on the router's path, in the same order:
//! the device's rate budget and check-in ([`super::auth::admit_device`]),
//! then the answer and its count ([`super::desired_answer::desired_answer`]).
//! Authentication is never skipped: the credential is checked on every
//! request, only without a store round trip.

use std::sync::Arc;

use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};

use super::{ApiState, auth, desired_answer};

/// The route the hot path answers.
const DESIRED_STATE: &str = "/api/v1/device/desired-state";

#[derive(Clone)]
pub struct HotPath(Arc<ApiState>);

impl HotPath {
    pub fn new(state: Arc<ApiState>) -> HotPath {
        HotPath(state)
    }

    /// The answer to `request` if it is an idle poll answerable from
    /// memory (see the module's doc); `None` sends it to the router.
    pub fn answer<B>(&self, request: &Request<B>) -> Option<Response> {
        let state = &*self.0;
        let uri = request.uri();
        if request.method() != Method::GET || uri.path() != DESIRED_STATE || uri.query().is_some() {
            return None;
        }
        let headers = request.headers();
        let device = auth::confirmed_device(state, auth::bearer(headers).ok()?)?;
        let served = state.engine.held_desired(&device, desired_answer::seen_generation(headers))?;
        let answer =
            auth::admit_device(state, &device).and_then(|()| desired_answer::desired_answer(state, headers, &served));
        Some(answer.unwrap_or_else(IntoResponse::into_response))
    }
}
