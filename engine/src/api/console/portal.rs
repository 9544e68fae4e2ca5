//! The user's portal: their one device's pending items, with deadlines and
//! snoozes left; snooze and self-service install under the same rules as
//! the user API and the agent's CLI; and the device's history.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use patchward_api::ReportStatus;
use patchward_api::desired::Action;
use patchward_api::events::{AgentEvent, EventKind};
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
        crate::store::Store::wait(state.engine.store.events(&device)).map_err(|e| e.to_string()),
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
        @let history: Vec<HistoryLine> = events.iter().rev().take(200).map(HistoryLine::of).collect();
        @if history.is_empty() { p.empty { "Nothing has happened on this device yet." } }
        @else {
            table #history {
                thead { tr { th { "When" } th { "Item" } th { "What happened" } } }
                tbody {
                    @for line in &history {
                        tr { td { (line.when) } td { (line.item) } td { (line.what) } }
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

/// One line of the portal's history, in words a user reads: no event
/// kinds, statuses or agent messages, but for a failure's reason.
struct HistoryLine {
    when: String,
    item: String,
    what: String,
}

impl HistoryLine {
    fn of(event: &crate::store::fleet::StoredEvent) -> HistoryLine {
        let Ok(parsed) = serde_json::from_value::<AgentEvent>(event.body.clone()) else {
            return HistoryLine {
                when: when(event.received_at),
                item: String::new(),
                what: "Something was recorded".into(),
            };
        };
        let reason = parsed.message.clone().unwrap_or_default();
        let what = match (parsed.kind, parsed.status, parsed.action) {
            (EventKind::Report, Some(ReportStatus::Succeeded), Some(Action::Uninstall)) => "Removed".to_owned(),
            (EventKind::Report, Some(ReportStatus::Succeeded), _) => "Installed".to_owned(),
            (EventKind::Report, Some(ReportStatus::Failed), Some(Action::Uninstall)) => {
                format!("Could not be removed: {reason}")
            }
            (EventKind::Report, _, _) => format!("Could not be installed: {reason}"),
            (EventKind::Step, _, _) => "In progress".to_owned(),
            (EventKind::Snooze, _, _) => "Put off".to_owned(),
            (EventKind::InstallRequest, _, _) => "Install requested".to_owned(),
            (EventKind::RefusedState, _, _) => "The device refused instructions it could not trust".to_owned(),
            (EventKind::Error, _, _) => format!("A problem: {reason}"),
        };
        HistoryLine { when: when(parsed.at), item: parsed.patch.unwrap_or_default(), what }
    }
}
