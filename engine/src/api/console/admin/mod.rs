//! The admin's views, one file each. Each takes its filters, sort and page
//! from the query string, answers CSV with `format=csv`, and counts with
//! the same functions as the admin API (`daemon::views`).

mod audit;
mod catalog;
mod compliance;
mod device;
mod devices;
mod installed;
mod review;
mod rollouts;
mod software;
mod status;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

pub use audit::audit;
pub use catalog::catalog;
pub use compliance::compliance;
pub use device::device;
pub use devices::devices;
pub use installed::installed;
pub use review::review;
pub use rollouts::rollouts;
pub use software::software;
pub use status::{ack_rewrite, status, sync};

use super::error_page;
use super::page::Flash;

/// A view's page when the engine has no policy in force yet.
fn no_policy(session: &super::Session) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(session),
        "No valid policy revision is in force yet: see Engine status.",
    )
}

fn flash_of(done: &Option<String>, error: &Option<String>) -> Option<Flash> {
    error.as_ref().map(Flash::error).or_else(|| done.as_ref().map(Flash::ok))
}

/// `?done=…` or `?error=…`: what the last action did, shown once.
#[derive(Deserialize, Default)]
pub struct FlashQuery {
    pub done: Option<String>,
    pub error: Option<String>,
}

/// Whether the query asks for CSV.
fn wants_csv(format: &Option<String>) -> bool {
    format.as_deref() == Some("csv")
}
