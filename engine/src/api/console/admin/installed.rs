//! What was installed (or removed) in a date range, by patch and by
//! device.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::wants_csv;
use crate::api::console::list::{DEFAULT_PAGE, Paging, SortHeaders, csv_link};
use crate::api::console::page::{layout, select, when};
use crate::api::console::{AdminSession, error_page, html_page};
use crate::api::{ApiState, RangeQuery, csv_response};
use crate::daemon::views;

/// What was installed (or removed) in a date range.
pub async fn installed(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<RangeQuery>,
) -> Response {
    let now = state.engine.clock.now();
    let (from, to) = match crate::api::time_range(query.from.as_deref(), query.to.as_deref(), now) {
        Ok(range) => range,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, Some(&session), &e.message),
    };
    let devices = match state.engine.enrolled_devices() {
        Ok(devices) => devices,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    let rows: Vec<_> =
        views::installed_between(&devices, from, to).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if wants_csv(&query.format) {
        return csv_response(views::to_csv(crate::api::INSTALLED_COLUMNS, &rows));
    }
    let pairs =
        [vec![("from", from.to_string()), ("to", to.to_string())], query.filter.pairs(), query.order.pairs()].concat();
    let headers = SortHeaders { base: "/console/installed", pairs: &pairs, order: &query.order };
    let page = Paging { offset: query.offset, limit: query.limit }.page(rows.len(), DEFAULT_PAGE);
    let mut by_patch: BTreeMap<&str, usize> = BTreeMap::new();
    for row in &rows {
        *by_patch.entry(row.patch.as_str()).or_default() += 1;
    }
    let body = html! {
        form.filters method="get" action="/console/installed" {
            label { "From " input type="date" name="from" value=(from.strftime("%Y-%m-%d").to_string()); }
            label { "To " input type="date" name="to" value=(to.strftime("%Y-%m-%d").to_string()); }
            label { "Device or item " input type="text" name="q" value=(query.filter.q.clone().unwrap_or_default()); }
            (select("action", "Action", &["install", "uninstall"].map(String::from), &query.filter.action.clone().unwrap_or_default()))
            button type="submit" { "Show" }
            a href=(csv_link("/console/installed", &pairs)) { "Export CSV" }
        }
        p { span #installed-count { (rows.len()) } " installs and removals from " (when(from)) " to " (when(to)) "." }
        @if !by_patch.is_empty() {
            table #by-patch { thead { tr { th { "Patch" } th.num { "Devices" } } }
                tbody { @for (patch, count) in &by_patch { tr data-patch=(patch) { td { code { (patch) } } td.num { (count) } } } } }
        }
        (page.pager("/console/installed", &pairs))
        table #installed {
            thead { tr {
                (headers.th("When", "at")) (headers.th("Device", "device")) (headers.th("Item", "patch"))
                (headers.th("Action", "action")) (headers.th("Policy", "policy"))
            } }
            tbody { @for row in page.rows(&rows) {
                tr data-device=(row.device) { td { (when(row.at)) } td { a href=(format!("/console/devices/{}", row.device)) { (row.device) } }
                     td { code { (row.patch) } } td { (row.action) } td { (row.policy.as_deref().unwrap_or("—")) } }
            } }
        }
    };
    html_page(StatusCode::OK, layout("Installed", Some(&session), "/console/installed", None, body))
}
