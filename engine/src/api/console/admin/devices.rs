//! The devices list: filtered by id and by their items' severity,
//! category, policy and status, sorted and paged.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{no_policy, wants_csv};
use crate::api::console::list::{DEFAULT_PAGE, Paging, SortHeaders, csv_link};
use crate::api::console::page::{self, layout, select, when};
use crate::api::console::{AdminSession, error_page, html_page};
use crate::api::{ApiState, csv_response, plan_or_unavailable};
use crate::daemon::views::{self, ItemRow};

/// The device list's query: the filters and sort, then the page and the
/// format.
#[derive(Deserialize, Default)]
pub struct DevicesQuery {
    #[serde(flatten)]
    pub filter: views::DeviceFilter,
    offset: Option<usize>,
    limit: Option<usize>,
    pub format: Option<String>,
}

/// The devices, filtered by their id and by their items' severity,
/// category, policy and status, sorted, and paged; CSV gives every item of
/// every device the filters keep.
pub async fn devices(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<DevicesQuery>,
) -> Response {
    let Ok((in_force, plan, replanned)) = plan_or_unavailable(&state) else { return no_policy(&session) };
    let now = state.engine.clock.now();
    let devices = match state.engine.enrolled_devices() {
        Ok(devices) => devices,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    let items = views::ItemSource::new(&in_force, &plan, now);
    let lines = views::device_lines(&items, &replanned, devices, &query.filter);
    if wants_csv(&query.format) {
        let rows: Vec<ItemRow> = lines.iter().flat_map(|l| l.rows(&items)).collect();
        return csv_response(views::to_csv(crate::api::ITEM_COLUMNS, &rows));
    }
    let page = Paging { offset: query.offset, limit: query.limit }.page(lines.len(), DEFAULT_PAGE);
    let pairs = query.filter.pairs();
    let order = query.filter.order();
    let headers = SortHeaders { base: "/console/devices", pairs: &pairs, order: &order };
    // The severities and categories an item can have: its patch's, from
    // the catalog in force (not from the items again), and software's.
    let choices = |pick: fn(&crate::store::CatalogPatch) -> String, software: &str| -> Vec<String> {
        let mut set: BTreeSet<String> = in_force.catalog.patches.iter().map(|p| pick(&p.view.record)).collect();
        if !in_force.policy.assignments.is_empty() {
            set.insert(software.to_owned());
        }
        set.into_iter().collect()
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/console/devices" {
            label { "Device " input type="text" name="q" value=(text(&query.filter.q)) placeholder="id or hostname"; }
            label { "Item " input type="text" name="patch" value=(text(&query.filter.patch)) placeholder="KB5032190, 7zip@24.08"; }
            (select("severity", "Severity", &choices(|p| p.severity.as_str().to_owned(), views::SOFTWARE_SEVERITY), &text(&query.filter.severity)))
            (select("category", "Category", &choices(|p| p.patch.category.as_str().to_owned(), views::SOFTWARE_CATEGORY), &text(&query.filter.category)))
            (select("policy", "Policy", &plan.policy_names, &text(&query.filter.policy)))
            (select("status", "Item status", &["installed", "due", "scheduled", "blocked", "removed"].map(String::from), &text(&query.filter.status)))
            (select("compliance", "Compliance", &["compliant", "pending", "non-compliant"].map(String::from), &text(&query.filter.compliance)))
            button type="submit" { "Filter" }
            a href=(csv_link("/console/devices", &pairs)) { "Export CSV" }
        }
        (page.pager("/console/devices", &pairs))
        @if lines.is_empty() { (page::empty_state("no enrolled device matches these filters")) } @else {
            table #devices {
                thead { tr {
                    (headers.th("Device", "id")) (headers.th("Platform", "platform")) (headers.th("Location", "location"))
                    th { "Address" } (headers.th("Compliance", "compliance")) (headers.th("Pending items", "pending"))
                    th.num { "Items" } (headers.th("Last seen", "lastSeen"))
                } }
                tbody {
                    @for line in page.rows(&lines) {
                        @let entry = &line.device.entry;
                        tr data-device=(entry.id) {
                            td { a href=(format!("/console/devices/{}", entry.id)) { (entry.id) } }
                            td { (entry.facts.platform.as_deref().unwrap_or("—")) }
                            td.location { (line.location.unwrap_or("—")) }
                            td.address { (entry.facts.ip.as_deref().unwrap_or("—")) }
                            td class=(format!("compliance-{}", line.compliance.as_str())) { (line.compliance.as_str()) }
                            td.num { (line.pending) }
                            td.num { (line.kept.len()) }
                            td { (when(line.device.last_seen)) }
                        }
                    }
                }
            }
        }
        (page.pager("/console/devices", &pairs))
    };
    html_page(StatusCode::OK, layout("Devices", Some(&session), "/console/devices", None, body))
}
