//! The console's Exposure view: "which devices are exposed to CVE-X, and
//! since when". Its rows are the admin API's (`GET /api/v1/exposure`,
//! through `crate::api::exposure_rows`), with the same filters and sort.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::list::{Page, SortHeaders, csv_link};
use super::page::{self, layout, select};
use super::{AdminSession, error_page, html_page};
use crate::api::{ApiState, EXPOSURE_COLUMNS, csv_response, exposure_page};
use crate::daemon::exposure_view::ExposureFilter;
use crate::daemon::views::{self, SortOrder};
use crate::plan::ExposureDecision;

const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct ExposureQuery {
    #[serde(flatten)]
    filter: ExposureFilter,
    #[serde(flatten)]
    order: SortOrder,
    offset: Option<usize>,
    format: Option<String>,
}

pub async fn exposure(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<ExposureQuery>,
) -> Response {
    let csv = query.format.as_deref() == Some("csv");
    let offset = if csv { 0 } else { query.offset.unwrap_or(0) };
    let limit = (!csv).then_some(PAGE);
    let (total, rows) = match exposure_page(&state, &query.filter, &query.order, offset, limit) {
        Ok(page) => page,
        Err(e) => return error_page(e.status, Some(&session), &e.message),
    };
    if csv {
        return csv_response(views::to_csv(EXPOSURE_COLUMNS, &rows));
    }
    let pairs = [query.filter.pairs(), query.order.pairs()].concat();
    let headers = SortHeaders { base: "/console/exposure", pairs: &pairs, order: &query.order };
    // Paged where the rows are picked (`exposure_page`), so not clamped here.
    let page = Page { offset, limit: PAGE, total, param: "offset" };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let decisions: Vec<String> = ExposureDecision::ALL.iter().map(|d| d.as_str().to_owned()).collect();
    let severities: Vec<String> = crate::catalog::feed::Severity::ALL.iter().map(|s| s.as_str().to_owned()).collect();
    let body = html! {
        form.filters method="get" action="/console/exposure" {
            label { "CVE " input type="text" name="cve" placeholder="CVE-2024-6232" value=(text(&query.filter.cve)); }
            label { "Patch " input type="text" name="patch" value=(text(&query.filter.patch)); }
            label { "Device " input type="text" name="device" value=(text(&query.filter.device)); }
            (select("severity", "Severity", &severities, &text(&query.filter.severity)))
            (select("decision", "Decision", &decisions, &text(&query.filter.decision)))
            (select("overdue", "Overdue", &["true".to_owned(), "false".to_owned()], &text(&query.filter.overdue)))
            button type="submit" { "Show" }
            a href=(csv_link("/console/exposure", &pairs)) { "Export CSV" }
        }
        p { span #exposure-count { (total) } (if total == 1 { " exposure matches." } else { " exposures match." }) }
        (page.pager("/console/exposure", &pairs))
        @if rows.is_empty() { (page::empty_state("no device is exposed to a patch that matches these filters")) } @else {
            table #exposure {
                thead { tr { (headers.th("Device", "device")) (headers.th("Patch", "patch")) th { "CVEs" } (headers.th("Severity", "severity"))
                    (headers.th("CVSS", "cvss")) (headers.th("Decision", "decision")) th { "Why" } (headers.th("Since", "since"))
                    th { "Target" } (headers.th("Overdue", "overdue")) } }
                tbody { @for row in &rows {
                    tr data-device=(row.device) data-patch=(row.patch) {
                        td { a href=(format!("/console/devices/{}", row.device)) { (row.device) } }
                        td { code { (row.patch) } }
                        td { (row.cves.join(" ")) }
                        td { (row.severity) }
                        td.num { (row.cvss.map(|s| format!("{s:.1}")).unwrap_or_default()) }
                        td { (row.decision.as_str()) }
                        td.muted { (row.reason) }
                        td { (row.since) }
                        td { (row.target.as_deref().unwrap_or("—")) }
                        td.overdue[row.overdue] { (if row.overdue { "yes" } else { "no" }) }
                    }
                } }
            }
        }
    };
    html_page(StatusCode::OK, layout("Exposure", Some(&session), "/console/exposure", None, body))
}
