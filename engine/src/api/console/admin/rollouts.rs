//! Each approving rule's rollout of each patch: its stages (pilot, then
//! production), how many devices are done, due, scheduled or blocked in
//! each, and each gate with its counts.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::{no_policy, wants_csv};
use crate::api::console::list::{Paging, csv_link};
use crate::api::console::page::{layout, select, when, when_opt};
use crate::api::console::{AdminSession, html_page};
use crate::api::{ApiState, RolloutQuery, csv_response, plan_or_unavailable};
use crate::daemon::views;

/// Rollouts take room: fewer to a page.
const ROLLOUTS_PER_PAGE: usize = 20;

pub async fn rollouts(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<RolloutQuery>,
) -> Response {
    let Ok((in_force, plan, replanned)) = plan_or_unavailable(&state) else { return no_policy(&session) };
    let rollouts = crate::api::rollout_rows(&in_force, &plan, &replanned, &query.filter, &query.order);
    if wants_csv(&query.format) {
        return csv_response(views::to_csv(views::ROLLOUT_COLUMNS, &views::rollout_lines(&rollouts)));
    }
    let pairs = [query.filter.pairs(), query.order.pairs()].concat();
    let page = Paging { offset: query.offset, limit: query.limit }.page(rollouts.len(), ROLLOUTS_PER_PAGE);
    let rule_names: Vec<String> = plan.rules.iter().map(|r| r.name.clone()).collect();
    let sorts = ["rule", "patch", "severity", "title"].map(String::from);
    let body = html! {
        form.filters method="get" action="/console/rollouts" {
            label { "Patch " input type="text" name="q" value=(query.filter.q.clone().unwrap_or_default()) placeholder="id or title"; }
            (select("rule", "Rule", &rule_names, &query.filter.rule.clone().unwrap_or_default()))
            (select("severity", "Severity", &["critical", "high", "medium", "low", "informational"].map(String::from), &query.filter.severity.clone().unwrap_or_default()))
            (select("sort", "Sort by", &sorts, query.order.key().unwrap_or("")))
            (select("order", "Order", &["asc", "desc"].map(String::from), &query.order.order.clone().unwrap_or_default()))
            button type="submit" { "Filter" }
            a href=(csv_link("/console/rollouts", &pairs)) { "Export CSV" }
        }
        p.muted { span #rollout-count { (rollouts.len()) } (if rollouts.len() == 1 { " rollout" } else { " rollouts" }) ". A stage's counts are the devices whose item comes from that stage." }
        (page.pager("/console/rollouts", &pairs))
        @for rollout in page.rows(&rollouts) {
            section.rollout data-rule=(rollout.rule) data-patch=(rollout.patch) {
                h2 { code { (rollout.patch) } " — " (rollout.title) " " span.muted { "(" (rollout.severity) ", rule " (rollout.rule) ")" } }
                @if rollout.stages.is_empty() {
                    p.muted { "No stage deploys it: the rule skips it as superseded." }
                } @else {
                table.stages {
                    thead { tr {
                        th { "Stage" } th { "Scope" } th { "Policy" } th { "Not before" } th { "Deadline" }
                        th.num { "done" } th.num { "due" } th.num { "scheduled" } th.num { "blocked" } th { "Gate" }
                    } }
                    tbody { @for stage in &rollout.stages {
                        tr data-stage=(stage.stage) {
                            td { (stage.stage) } td { (stage.scope) } td { (stage.policy) }
                            td { (when(stage.not_before)) } td { (when_opt(stage.deadline)) }
                            td.num { (stage.done) } td.num { (stage.due) } td.num { (stage.scheduled) } td.num { (stage.blocked) }
                            td { @match &stage.gate {
                                Some(gate) => span class=(format!("condition-{}", gate.passed)) {
                                    (if gate.passed { "passed" } else { "waiting" }) ": " (gate.succeeded) " succeeded (min " (gate.min_succeeded) "), "
                                    (gate.failed) " failed (max rate " (gate.max_failure_rate) ")"
                                },
                                None => "—",
                            } }
                        }
                    } }
                }
                }
            }
        }
    };
    html_page(StatusCode::OK, layout("Rollouts", Some(&session), "/console/rollouts", None, body))
}
