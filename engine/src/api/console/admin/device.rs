//! One device: its facts, its last report, its items and its packages.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::devices::DevicesQuery;
use super::{no_policy, wants_csv};
use crate::api::console::page::{self, layout, when, when_opt};
use crate::api::console::{AdminSession, error_page, html_page};
use crate::api::{ApiState, csv_response};
use crate::daemon::views::{self, ItemRow};

/// The items of one device's table.
fn items_table(rows: &[ItemRow]) -> Markup {
    html! {
        @if rows.is_empty() { (page::empty_state("the policy plans no item for this device")) } @else {
            table.items {
                thead { tr {
                    th { "Patch" } th { "Title" } th { "Severity" } th { "Action" } th { "Status" } th { "Source" }
                    th { "Stage" } th { "Policy" } th { "Windows" } th { "Not before" } th { "Deadline" }
                } }
                tbody {
                    @for row in rows {
                        tr data-patch=(row.patch) {
                            td { code { (row.patch) } }
                            td { (row.title) }
                            td { (row.severity) }
                            td { (row.action) }
                            td class=(format!("status-{}", row.status)) { (row.status) @if row.overdue { " " span.overdue { "(overdue)" } } }
                            td { (row.source) }
                            td { (row.stage.map_or("—".to_owned(), |s| s.to_string())) }
                            td { (row.policy) }
                            td { (if row.windows.is_empty() { "any time".to_owned() } else { row.windows.join(", ") }) }
                            td { (when(row.not_before)) }
                            td { (when_opt(row.deadline)) }
                        }
                    }
                }
            }
        }
    }
}

/// One device: its facts, its last report, and its items.
pub async fn device(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Path(id): Path<String>,
    Query(query): Query<DevicesQuery>,
) -> Response {
    let record = match state.engine.device(&id) {
        Ok(Some(record)) => record,
        Ok(None) => return error_page(StatusCode::NOT_FOUND, Some(&session), &format!("No device {id} is enrolled.")),
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    let rows = match crate::api::device_rows(&state, &id) {
        Ok(rows) => rows,
        Err(_) => return no_policy(&session),
    };
    if wants_csv(&query.format) {
        return csv_response(views::to_csv(crate::api::ITEM_COLUMNS, &rows));
    }
    let compliance = views::compliance_of(rows.iter().map(views::ItemRow::key));
    let facts = &record.facts;
    let fact = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let last_report = record.reports.iter().max_by_key(|r| r.at);
    let body = html! {
        p { "Compliance: "
            @if rows.is_empty() { strong #compliance data-compliance="nothing-applies" { "nothing applies: the policy plans no item for this device" } }
            @else { strong #compliance class=(format!("compliance-{}", compliance.as_str())) data-compliance=(compliance.as_str()) { (compliance.as_str()) } }
            " · " a href=(format!("/console/devices/{id}?format=csv")) { "Export CSV" } }
        h2 { "Facts" }
        dl.facts {
            dt { "Hostname" } dd { (fact(&facts.hostname)) }
            dt { "OS / platform" } dd { (fact(&facts.os)) " / " (fact(&facts.platform)) }
            dt { "Arch" } dd { (fact(&facts.arch)) }
            dt { "Language" } dd { (fact(&facts.language)) }
            dt { "Time zone" } dd { (fact(&facts.timezone)) }
            dt { "Address" } dd { (fact(&facts.ip)) }
            dt { "Labels" } dd { (facts.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")) }
            dt { "Groups" } dd { (facts.groups.join(", ")) }
            dt { "Enrolled" } dd { (when(record.enrolled_at)) }
            dt { "Last seen" } dd { (when(record.last_seen)) }
            dt { "Last report" } dd #last-report {
                @match last_report {
                    Some(report) => { (report.patch) " " (format!("{:?}", report.status).to_lowercase())
                        @if let Some(action) = report.action { " (" (format!("{action:?}").to_lowercase()) ")" }
                        " at " (when(report.at)) }
                    None => "none yet",
                }
            }
        }
        h2 { "Items" }
        (items_table(&rows))
        h2 { "Installed packages" }
        (installed_packages(&record.inventory, query.filter.q.as_deref().unwrap_or("")))
    };
    html_page(StatusCode::OK, layout(&format!("Device {id}"), Some(&session), "/console/devices", None, body))
}

/// How many packages the device page lists before it asks for a filter.
const PACKAGES_SHOWN: usize = 500;

/// A device's inventory: its packages (those whose name holds `filter`,
/// up to [`PACKAGES_SHOWN`]) and the catalog patches it reported.
fn installed_packages(inventory: &patchward_api::Inventory, filter: &str) -> Markup {
    let matching: Vec<&patchward_api::InstalledPackage> =
        inventory.packages.iter().filter(|p| filter.is_empty() || p.name.contains(filter)).collect();
    html! {
        p.muted { (page::count(inventory.packages.len(), "package", "packages")) ", "
            (page::count(inventory.patches.len(), "catalog patch", "catalog patches")) " reported." }
        @if !inventory.patches.is_empty() { p #patches { "Catalog patches: " (inventory.patches.join(", ")) } }
        @if inventory.packages.is_empty() { p.empty { "The device reported no packages." } }
        @else {
            form.filters method="get" {
                label { "Package " input type="text" name="q" value=(filter) placeholder="name"; }
                button type="submit" { "Filter" }
            }
            @if matching.is_empty() { p.empty { "No package matches." } }
            @else {
                table #packages {
                    thead { tr { th { "Package" } th { "Version" } th { "Arch" } th { "Manager" } th { "Source" } } }
                    tbody { @for package in matching.iter().take(PACKAGES_SHOWN) {
                        tr data-package=(package.name) {
                            td { code { (package.name) } } td { (package.version) }
                            td { (package.arch.as_deref().unwrap_or("—")) }
                            td { (format!("{:?}", package.manager).to_lowercase()) }
                            td { (package.source.as_deref().unwrap_or("—")) }
                        }
                    } }
                }
                @if matching.len() > PACKAGES_SHOWN {
                    p.muted { (matching.len() - PACKAGES_SHOWN) " more: filter by name to see them." }
                }
            }
        }
    }
}
