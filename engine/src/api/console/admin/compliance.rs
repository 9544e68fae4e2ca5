//! The compliance report: devices fully patched, pending and past their
//! deadline, the exposure, the trend, and counts by severity, category and
//! policy that drill down to the devices.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{FlashQuery, flash_of, no_policy, wants_csv};
use crate::api::console::page::{self, layout, when};
use crate::api::console::{AdminSession, html_page};
use crate::api::{ApiState, csv_response, plan_or_unavailable};
use crate::daemon::views;

/// The compliance page's query: a flash, or `format=csv` for the counts.
#[derive(Deserialize, Default)]
pub struct ComplianceQuery {
    #[serde(flatten)]
    flash: FlashQuery,
    format: Option<String>,
}

/// The compliance report: devices fully patched, pending and past their
/// deadline, with a chart, the trend, and counts by severity, category and
/// policy that drill down to the devices.
pub async fn compliance(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<ComplianceQuery>,
) -> Response {
    let flash = query.flash;
    let Ok((in_force, plan, replanned)) = plan_or_unavailable(&state) else { return no_policy(&session) };
    let now = state.engine.clock.now();
    let devices = views::device_plans(&plan, &replanned);
    let report = views::compliance(&in_force, &plan, &devices, now);
    if wants_csv(&query.format) {
        return csv_response(views::compliance_csv(&report));
    }
    let exposure = crate::api::exposure_summary(&state, &in_force, &plan, &devices).unwrap_or_default();
    let trend = state.engine.compliance_trend().unwrap_or_default();
    let group = |title: &str, key: &str, map: &BTreeMap<String, views::Counts>| {
        html! {
            h2 { "By " (title) }
            @if map.is_empty() { (page::empty_state("no item is planned, so there is nothing to count")) } @else {
                table.counts data-group=(key) {
                    thead { tr {
                        th { (title) } th.num { "installed" } th.num { "due" } th.num { "scheduled" }
                        th.num { "blocked" } th.num { "removed" } th.num { "overdue" }
                    } }
                    tbody {
                        @for (name, counts) in map {
                            tr data-name=(name) {
                                td { a href=(format!("/console/devices{}", page::query_string(&[(key, name.clone())]))) { (name) } }
                                td.num { (counts.installed) } td.num { (counts.due) } td.num { (counts.scheduled) }
                                td.num { (counts.blocked) } td.num { (counts.removed) }
                                td.num.overdue[counts.overdue > 0] { (counts.overdue) }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        div.cards {
            div.card { div.muted { "Devices" } div.figure #devices { (report.devices) } }
            div.card { div.muted { "Fully patched" }
                @if report.devices == report.without_items { div.figure #compliant-percent { "—" } div.muted { "nothing is planned for any device yet" } }
                @else { div.figure #compliant-percent { (format!("{:.1}", report.compliant_percent)) "%" }
                    @if report.without_items > 0 { div.muted #without-items { (page::count(report.without_items, "device has", "devices have")) " nothing planned" } } } }
            div.card { div.muted { "Pending" } div.figure #pending { (report.pending) } }
            div.card { div.muted { "Non-compliant (past deadline)" } div.figure #non-compliant { (report.non_compliant) } }
        }
        h2 { "Devices" }
        (page::stacked_bar(&[
            ("compliant", report.compliant, "compliant"),
            ("pending", report.pending, "pending"),
            ("non-compliant", report.non_compliant, "non-compliant"),
        ]))
        p { a href="/console/devices?compliance=non-compliant" { "Non-compliant devices" } " · "
            a href="/console/devices?compliance=pending" { "Pending devices" } " · "
            a href="/console?format=csv" { "Export CSV" } }
        h2 { "Exposure" }
        div.cards {
            div.card { div.muted { "Exposures (approved or not)" } div.figure #exposures { (exposure.exposures) } }
            div.card { div.muted { "Past remediation target" } div.figure #overdue-percent { (format!("{:.1}", exposure.overdue_percent)) "%" } }
            div.card { div.muted { "Mean time to remediate" } div.figure #mttr { (exposure.mean_time_to_remediate.as_deref().unwrap_or("—")) } }
        }
        p { a href="/console/exposure?overdue=true" { "Overdue exposure" } " · " a href="/console/exposure" { "All exposure" } }
        h2 { "Trend" }
        (page::trend_chart(&trend.iter().map(|p| (p.at, p.compliant_percent)).collect::<Vec<_>>()))
        (group("severity", "severity", &report.by_severity))
        (group("category", "category", &report.by_category))
        (group("policy", "policy", &report.by_policy))
        p.muted { "Policy revision " code { (report.policy_revision.as_deref().unwrap_or("—")) } ", at " (when(report.at)) "." }
    };
    html_page(
        StatusCode::OK,
        layout("Compliance", Some(&session), "/console", flash_of(&flash.done, &flash.error).as_ref(), body),
    )
}
