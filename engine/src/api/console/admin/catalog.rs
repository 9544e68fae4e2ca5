//! The catalog: search, severity and CVSS, supersedence, obsolete, the
//! rules matching each patch; `?rule=NAME` shows what one rule matches and
//! whether it decides.

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
use crate::daemon::views;

#[derive(Deserialize, Default)]
pub struct CatalogQuery {
    #[serde(flatten)]
    filter: views::CatalogFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The catalog: search, severity and CVSS, supersedence, obsolete, the
/// rules matching each patch; `?rule=NAME` shows what one rule matches.
pub async fn catalog(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<CatalogQuery>,
) -> Response {
    let Ok((_, plan, _)) = plan_or_unavailable(&state) else { return no_policy(&session) };
    let rows = match crate::api::catalog_rows(&state, &query.filter) {
        Ok(rows) => query.order.apply(rows),
        Err(e) => return error_page(e.status, Some(&session), &e.message),
    };
    if wants_csv(&query.format) {
        return csv_response(views::to_csv(crate::api::CATALOG_COLUMNS, &rows));
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let filter = &query.filter;
    let pairs = [
        vec![
            ("q", text(&filter.q)),
            ("severity", text(&filter.severity)),
            ("rule", text(&filter.rule)),
            ("state", text(&filter.state)),
        ],
        query.order.pairs(),
    ]
    .concat();
    let headers = SortHeaders { base: "/console/catalog", pairs: &pairs, order: &query.order };
    let page = Paging { offset: query.offset, limit: query.limit }.page(rows.len(), DEFAULT_PAGE);
    let rule_names: Vec<String> = plan.rules.iter().map(|r| r.name.clone()).collect();
    let action_of = |name: &str| plan.rules.iter().find(|r| r.name == name).map_or("", |r| r.action.as_str());
    let chosen_rule = filter.rule.as_deref().filter(|r| !r.is_empty());
    let body = html! {
        form.filters method="get" action="/console/catalog" {
            label { "Search " input type="text" name="q" value=(text(&filter.q)) placeholder="id, title, product, CVE"; }
            (select("severity", "Severity", &["critical", "high", "medium", "low", "informational"].map(String::from), &text(&filter.severity)))
            (select("rule", "Matching rule", &rule_names, &text(&filter.rule)))
            (select("state", "State", &["active", "inactive", "obsolete"].map(String::from), &text(&filter.state)))
            button type="submit" { "Filter" }
            a href=(csv_link("/console/catalog", &pairs)) { "Export CSV" }
        }
        @if let Some(rule) = chosen_rule {
            @let decides = rows.iter().filter(|r| r.decided_by.as_deref() == Some(rule)).count();
            p #rule-summary { "Rule " code { (rule) } " says " strong { (action_of(rule)) } " for the patches it matches. It decides "
                (decides) " of the " (rows.len()) " listed; the others it matches but does not decide (a higher-ranked rule does, or they are skipped as superseded)." }
        }
        (page.pager("/console/catalog", &pairs))
        @if rows.is_empty() { (page::empty_state("no patch in the catalog matches these filters")) } @else {
            table #catalog {
                thead { tr {
                    (headers.th("Patch", "id")) (headers.th("Title", "title")) (headers.th("Product", "product"))
                    (headers.th("Severity", "severity")) (headers.th("CVSS", "cvss")) (headers.th("Missing on", "missing"))
                    (headers.th("Released", "released"))
                    th { "Supersedes" } th { "Superseded by" } th { "State" } th { "Matching rules" }
                } }
                tbody { @for row in page.rows(&rows) {
                    tr data-patch=(row.id) {
                        td { a href=(format!("/console/devices{}", page::query_string(&[("patch", row.id.clone())]))) title="the devices it is an item of" { code { (row.id) } } }
                        td { (row.title) @if !row.cves.is_empty() { br; span.muted { (row.cves.join(", ")) } } }
                        td { (row.vendor) " " (row.product) }
                        td { (row.severity) }
                        td.num { (row.cvss.map_or("—".to_owned(), |s| format!("{s:.1}"))) }
                        td.num.missing { a href=(format!("/console/exposure{}", page::query_string(&[("patch", row.id.clone())]))) title="the devices exposed to it" { (row.missing) } }
                        td { (when(row.released)) }
                        td { (row.supersedes.join(", ")) }
                        td { (row.superseded_by.join(", ")) }
                        td { @if let Some(at) = row.obsolete_since { "obsolete since " (when(at)) } @else if row.active { "active" } @else { "out of coverage" } }
                        td { @for rule in &row.matched_by {
                            @let decides = row.decided_by.as_ref() == Some(rule);
                            span.rule.decides[decides] {
                                a href=(format!("/console/catalog{}", page::query_string(&[("rule", rule.clone())]))) { (rule) }
                                " (" (action_of(rule)) @if decides { ", decides" } @else { ", outranked" } ") "
                            }
                        } }
                    }
                } }
            }
        }
        (page.pager("/console/catalog", &pairs))
    };
    html_page(StatusCode::OK, layout("Catalog", Some(&session), "/console/catalog", None, body))
}
