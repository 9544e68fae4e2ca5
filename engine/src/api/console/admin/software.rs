//! The software library: each package's versions (type, size, digest, the
//! assignments that use it), and each assignment's devices by status, with
//! the devices view one click away. Assigning is policy: it goes in git.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{no_policy, wants_csv};
use crate::api::ApiState;
use crate::api::console::list::{SortHeaders, csv_link};
use crate::api::console::page::{self, layout};
use crate::api::console::{AdminSession, html_page};
use crate::daemon::views;

#[derive(Deserialize, Default)]
pub struct SoftwareQuery {
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

pub async fn software(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<SoftwareQuery>,
) -> Response {
    let Ok(library) = crate::api::software_library(&state, &query.order) else { return no_policy(&session) };
    if wants_csv(&query.format) {
        return crate::api::assignments_csv(&library.assignments);
    }
    let pairs = query.order.pairs();
    let headers = SortHeaders { base: "/console/software", pairs: &pairs, order: &query.order };
    let devices_of = |a: &views::AssignmentRow, status: &str| {
        let pairs = [("patch", crate::plan::software_id(&a.package, &a.version)), ("status", status.to_owned())];
        format!("/console/devices{}", page::query_string(&pairs))
    };
    let body = html! {
        p.muted { "Packages and assignments are policy: add or change them as SoftwarePackage and SoftwareAssignment documents under " code { "policies/software/" } " in git." }
        h2 { "Assignments (" span #assignment-count { (library.assignments.len()) } ") " a href=(csv_link("/console/software", &pairs)) { "Export CSV" } }
        @if library.assignments.is_empty() { p { "No SoftwareAssignment is in force." } }
        @else {
            table #assignments {
                thead { tr {
                    (headers.th("Assignment", "name")) (headers.th("Package", "package")) (headers.th("Version", "version"))
                    (headers.th("State", "state")) th { "Scopes" } (headers.th("Policy", "policy"))
                    (headers.th("On demand", "selfService"))
                    th.num { "installed" } th.num { "due" } th.num { "removed" }
                } }
                tbody { @for a in &library.assignments {
                    tr data-assignment=(a.name) {
                        td { (a.name) } td { code { (a.package) } } td { (a.version) } td { (a.state) }
                        td { (a.scopes.join(", ")) } td { (a.policy) } td { (if a.self_service { "yes" } else { "no" }) }
                        td.num.installed { a href=(devices_of(a, "installed")) { (a.devices.installed) } }
                        td.num.due { a href=(devices_of(a, "due")) { (a.devices.due) } }
                        td.num.removed { a href=(devices_of(a, "removed")) { (a.devices.removed) } }
                    }
                } }
            }
        }
        h2 { "Packages (" span #package-count { (library.packages.len()) } ")" }
        @if library.packages.is_empty() { (page::empty_state("no SoftwarePackage is in force")) } @else {
            table #packages {
                thead { tr { th { "Package" } th { "Vendor" } th { "Version" } th { "Type" } th.num { "Size" } th { "sha256" } th { "Assigned by" } } }
                tbody { @for package in &library.packages { @for v in &package.versions {
                    tr data-package=(package.name) data-version=(v.version) {
                        td { code { (package.name) } @if let Some(name) = &package.display_name { " " span.muted { (name) } } }
                        td { (package.vendor.as_deref().unwrap_or("—")) } td { (v.version) } td { (v.kind) }
                        td.num { (v.size.map_or_else(|| "—".to_owned(), page::size)) }
                        td { code title=(v.sha256) { (v.sha256.get(..12).unwrap_or(&v.sha256)) "…" } }
                        td { (if v.assignments.is_empty() { "—".to_owned() } else { v.assignments.join(", ") }) }
                    }
                } } }
            }
        }
    };
    html_page(StatusCode::OK, layout("Software", Some(&session), "/console/software", None, body))
}
