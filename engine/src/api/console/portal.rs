//! The user's portal: their one device's pending items, with deadlines and
//! snoozes left; snooze and self-service install under the same rules as
//! the user API and the agent's CLI; and the device's history.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::admin::FlashQuery;
use super::page::{self, Flash, layout, post_form, when, when_opt};
use super::{UserSession, check_csrf, error_page, html_page};
use crate::api::{ApiState, device_rows, plan_or_unavailable, take_user_request};
use crate::daemon::{UserRequest, UserRequestKind};

pub async fn portal(
    State(state): State<Arc<ApiState>>,
    UserSession(session, device): UserSession,
    Query(flash): Query<FlashQuery>,
) -> Response {
    let Ok((in_force, ..)) = plan_or_unavailable(&state) else {
        return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), "The engine has no policy in force yet.");
    };
    let (rows, requests, events) = match (
        device_rows(&state, &device),
        state.engine.user_requests(&device).map_err(|e| e.to_string()),
        state.engine.store.events(&device).map_err(|e| e.to_string()),
    ) {
        (Ok(rows), Ok(requests), Ok(events)) => (rows, requests, events),
        _ => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), "The engine's store is unavailable."),
    };
    let pending: Vec<_> = rows.iter().filter(|r| r.pending()).collect();
    let body = html! {
        h2 { "Pending on this device (" span #pending-count { (pending.len()) } ")" }
        @if pending.is_empty() { p { "Nothing is pending: this device is up to date." } }
        @else {
            table #pending {
                thead { tr { th { "Item" } th { "Title" } th { "Severity" } th { "Status" } th { "Deadline" } th.num { "Snoozes left" } th { "" } } }
                tbody {
                    @for row in &pending {
                        @let spec = &in_force.policy.policy.deployment_policies[&row.policy].spec;
                        @let (allowed, used) = UserRequest::snoozes(spec, &requests, &row.patch);
                        @let left = allowed.saturating_sub(used);
                        tr data-patch=(row.patch) {
                            td { code { (row.patch) } }
                            td { (row.title) }
                            td { (row.severity) }
                            td class=(format!("status-{}", row.status)) { (row.status) @if row.overdue { " " span.overdue { "(mandatory now)" } } }
                            td { (when_opt(row.deadline)) }
                            td.num.snoozes-left { (left) }
                            td {
                                @if left > 0 && !row.overdue && !spec.admin_only {
                                    (post_form(&session, "/portal/snooze", "inline", html! { input type="hidden" name="item" value=(row.patch); }, "Snooze"))
                                }
                                @if row.self_service {
                                    " " (post_form(&session, "/portal/install", "inline", html! { input type="hidden" name="item" value=(row.patch); }, "Install now"))
                                }
                            }
                        }
                    }
                }
            }
        }
        @let done: Vec<_> = rows.iter().filter(|r| !r.pending()).collect();
        @if !done.is_empty() {
            h2 { "Up to date" }
            ul #done { @for row in done { li { code { (row.patch) } " " (row.title) " — " (row.status) } } }
        }
        h2 { "History" }
        table #history {
            thead { tr { th { "When" } th { "What" } th { "Item" } th { "Outcome" } } }
            tbody {
                @for event in events.iter().rev().take(200) {
                    @let body = &event.body;
                    tr {
                        td { (body.get("at").and_then(|a| a.as_str()).map_or_else(|| when(event.received_at), str::to_owned)) }
                        td { (body.get("kind").and_then(|k| k.as_str()).unwrap_or("event")) }
                        td { (body.get("patch").and_then(|p| p.as_str()).unwrap_or("")) }
                        td { (body.get("status").and_then(|s| s.as_str()).unwrap_or("")) " " (body.get("message").and_then(|m| m.as_str()).unwrap_or("")) }
                    }
                }
            }
        }
    };
    let flash = flash.error.map(Flash::error).or_else(|| flash.done.map(Flash::ok));
    html_page(StatusCode::OK, layout(&format!("Device {device}"), Some(&session), "/portal", flash.as_ref(), body))
}

#[derive(Deserialize)]
pub struct ItemForm {
    csrf: String,
    item: String,
}

/// A snooze or an install-now from the portal (`POST /portal/snooze`,
/// `/portal/install`): the user API's rules (`take_user_request`), then
/// back to the portal with what happened.
pub async fn request(
    State(state): State<Arc<ApiState>>,
    UserSession(session, device): UserSession,
    Path(kind): Path<UserRequestKind>,
    headers: HeaderMap,
    Form(form): Form<ItemForm>,
) -> Response {
    if let Err(refusal) = check_csrf(&session, &form.csrf, &headers) {
        return refusal.into_response();
    }
    let back = |key: &str, message: String| {
        Redirect::to(&format!("/portal{}", page::query_string(&[(key, message)]))).into_response()
    };
    match take_user_request(&state, &device, &form.item, kind, &format!("user:{device}")) {
        Ok(accepted) => {
            let message = match accepted.until {
                Some(until) => format!("{} snoozed until {}.", form.item, when(until)),
                None => format!("{} will be installed at the agent's next pass.", form.item),
            };
            back("done", message)
        }
        Err(e) => back("error", e.message),
    }
}
