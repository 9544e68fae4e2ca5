//! The review queue and the held list, filtered, sorted, each paged on its
//! own. Deciding a patch is a commit: each queued patch shows the YAML to
//! commit, and where.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{no_policy, wants_csv};
use crate::api::console::list::{DEFAULT_PAGE, Page, Paging, SortHeaders, csv_link};
use crate::api::console::page::{self, layout, select, when};
use crate::api::console::{AdminSession, html_page};
use crate::api::{ApiState, csv_response, plan_or_unavailable};
use crate::daemon::views;

/// The YAML an admin commits to approve `patch` for a scope.
fn approval_yaml(patch: &str, policy: &str) -> String {
    let name = format!("approve-{}", patch.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    format!(
        "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata:\n  name: {name}\nspec:\n  patches: [{patch}]\n  scopes: [all]\n  policy: {policy}\n"
    )
}

fn exclusion_yaml(patch: &str) -> String {
    let name = format!("exclude-{}", patch.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    format!(
        "apiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata:\n  name: {name}\nspec:\n  patches: [{patch}]\n  reason: WHY (a reviewer reads this)\n"
    )
}

fn hold_yaml(patch: &str) -> String {
    let name = format!("hold-{}", patch.to_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
    format!(
        "apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata:\n  name: {name}\nspec:\n  priority: 1000\n  match: 'patch.id == \"{patch}\"'\n  action: hold\n"
    )
}

#[derive(Deserialize, Default)]
pub struct ReviewQuery {
    #[serde(flatten)]
    filter: views::ReviewFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    offset: Option<usize>,
    #[serde(rename = "heldOffset")]
    held_offset: Option<usize>,
    format: Option<String>,
}

/// The review queue and the held list, filtered, sorted, each paged on its
/// own. Deciding a patch is a commit: each queued patch shows the YAML to
/// commit, and where.
pub async fn review(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<ReviewQuery>,
) -> Response {
    let Ok((in_force, plan, _)) = plan_or_unavailable(&state) else { return no_policy(&session) };
    let rows: Vec<_> = views::review_rows(&in_force, &plan).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if wants_csv(&query.format) {
        return csv_response(views::to_csv(crate::api::REVIEW_COLUMNS, &rows));
    }
    let (queue, held): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.list == "review");
    let policy = plan.policy_names.first().cloned().unwrap_or_else(|| "POLICY".into());
    let pairs = [query.filter.pairs(), query.order.pairs()].concat();
    let headers = SortHeaders { base: "/console/review", pairs: &pairs, order: &query.order };
    let severities = ["critical", "high", "medium", "low", "informational"].map(String::from);
    let table = |id: &str, rows: &[views::ReviewRow], page: Page, actions: bool| {
        html! {
            @if rows.is_empty() { (page::empty_state("no patch is waiting here")) } @else {
                table #(id) {
                    thead { tr {
                        (headers.th("Patch", "patch")) (headers.th("Title", "title")) (headers.th("Severity", "severity"))
                        (headers.th("Released", "released")) (headers.th("Rule", "rule"))
                        @if actions { th { "To act on it, commit" } }
                    } }
                    tbody { @for row in page.rows(rows) {
                        @let patch = &row.patch;
                        tr data-patch=(patch) {
                            td { code { (patch) } } td { (row.title) } td { (row.severity) } td { (when(row.released)) } td { (row.rule) }
                            @if actions {
                                td {
                                    details { summary { "Approve" } (page::yaml_to_commit(&format!("approvals/approve-{}.yaml", patch.to_lowercase()), &approval_yaml(patch, &policy))) }
                                    details { summary { "Exclude" } (page::yaml_to_commit(&format!("exclusions/exclude-{}.yaml", patch.to_lowercase()), &exclusion_yaml(patch))) }
                                    details { summary { "Hold" } (page::yaml_to_commit(&format!("rules/hold-{}.yaml", patch.to_lowercase()), &hold_yaml(patch))) }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    let queue_page = Paging { offset: query.offset, limit: None }.page(queue.len(), DEFAULT_PAGE);
    let held_page =
        Paging { offset: query.held_offset, limit: None }.page(held.len(), DEFAULT_PAGE).in_param("heldOffset");
    let body = html! {
        p { "The console never changes policy. To decide a patch, commit the YAML shown to the policy repository and merge it through review; the engine applies it on its next sync." }
        form.filters method="get" action="/console/review" {
            label { "Search " input type="text" name="q" value=(query.filter.q.clone().unwrap_or_default()) placeholder="patch, title, rule"; }
            (select("severity", "Severity", &severities, &query.filter.severity.clone().unwrap_or_default()))
            button type="submit" { "Filter" }
            a href=(csv_link("/console/review", &pairs)) { "Export CSV" }
        }
        h2 { "Review queue (" span #review-count { (queue.len()) } ")" }
        (queue_page.pager("/console/review", &[pairs.clone(), vec![held_page.pair()]].concat()))
        @if !queue.is_empty() { (table("review-queue", &queue, queue_page, true)) }
        h2 { "Held (" span #held-count { (held.len()) } ")" }
        (held_page.pager("/console/review", &[pairs.clone(), vec![queue_page.pair()]].concat()))
        @if !held.is_empty() { (table("held", &held, held_page, false)) }
        p.muted { "A held patch is released by removing or changing the rule that holds it." }
    };
    html_page(StatusCode::OK, layout("Review queue", Some(&session), "/console/review", None, body))
}
