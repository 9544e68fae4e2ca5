//! What the engine is doing: the revisions it applied and attempted, its
//! conditions, its catalog sources; and the two actions that are not
//! policy (sync now, acknowledge a rewrite).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{FlashQuery, flash_of};
use crate::api::ApiState;
use crate::api::console::page::{self, layout, post_form, when, when_opt};
use crate::api::console::{AdminSession, check_csrf, error_page, html_page};

/// What the engine is doing: the revisions it applied and attempted, its
/// conditions, its catalog sources; and the two actions that are not
/// policy.
pub async fn status(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(flash): Query<FlashQuery>,
) -> Response {
    let status = state.engine.status();
    // A plain folder has no commits: no author, signature or rewrite.
    let from_git = status.branch.is_some();
    let revision = |r: &Option<crate::daemon::status::RevisionStatus>| {
        html! {
            @match r {
                Some(r) if from_git => {
                    code { (r.revision) }
                    " by " (r.author.as_deref().unwrap_or("—")) ": "
                    q { (r.message.as_deref().unwrap_or("").lines().next().unwrap_or("")) }
                    " (signature " (r.signature.as_deref().unwrap_or("not checked")) ", at " (when(r.at)) ")"
                }
                Some(r) => { "the folder's contents " code { (r.revision) } ", read at " (when(r.at)) }
                None => "none",
            }
        }
    };
    let body = html! {
        dl.facts {
            dt { "Policy source" } dd { code { (status.source) } @if let Some(b) = &status.branch { " branch " code { (b) } } }
            dt { "Applied revision" } dd #applied { (revision(&status.applied)) }
            dt { "Attempted revision" } dd #attempted { (revision(&status.attempted)) }
            dt { "Catalog revision" } dd { (status.catalog_revision) @if status.bundled_feed { " (the bundled example feed)" } }
            dt { "Devices" } dd { (status.devices) }
        }
        @if !status.errors.is_empty() {
            h2 { "Errors of the attempted revision" }
            ul.errors { @for e in &status.errors { li { code { (e) } } } }
        }
        h2 { "Conditions" }
        table #conditions {
            thead { tr { th { "Condition" } th { "Status" } th { "Reason" } th { "Message" } th { "Since" } } }
            tbody { @for c in &status.conditions {
                tr {
                    td { (format!("{:?}", c.kind)) }
                    td class=(format!("condition-{}", c.status)) { (c.status) }
                    td { (c.reason) } td { (c.message) } td { (when(c.since)) }
                }
            } }
        }
        h2 { "Catalog sources" }
        @if status.catalog.is_empty() { (page::empty_state("no catalog source is configured; the bundled example feed is in use")) } @else {
            table #catalog-sources {
                thead { tr { th { "Source" } th { "URL" } th { "Revision" } th { "Last checked" } th { "Fresh" } th { "Refused" } } }
                tbody { @for s in &status.catalog {
                    tr {
                        td { (s.name) } td { code { (s.url) } }
                        td { (s.revision.map_or("—".into(), |r| r.to_string())) }
                        td { (when_opt(s.last_checked)) }
                        td class=(format!("condition-{}", s.fresh)) { (s.fresh) }
                        td { (s.refused.as_deref().unwrap_or("")) }
                    }
                } }
            }
        }
        h2 { "Actions" }
        (post_form(&session, "/console/sync", "inline", html! {}, "Sync now"))
        @if from_git {
            h2 { "Acknowledge a rewrite" }
            p { "A force-pushed branch is refused until an admin acknowledges its new head commit." }
            (post_form(&session, "/console/ack-rewrite", "filters", html! {
                label { "Commit " input type="text" name="commit" size="42" pattern="[0-9a-fA-F]{40}" required; }
            }, "Acknowledge"))
        }
    };
    html_page(
        StatusCode::OK,
        layout("Engine status", Some(&session), "/console/status", flash_of(&flash.done, &flash.error).as_ref(), body),
    )
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: String,
}

pub async fn sync(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    if let Err(refusal) = check_csrf(&session, &form.csrf, &headers) {
        return refusal.into_response();
    }
    crate::api::request_sync(&state, "admin", serde_json::json!({"via": "console"}));
    Redirect::to("/console/status?done=Sync+requested.").into_response()
}

#[derive(Deserialize)]
pub struct AckForm {
    csrf: String,
    commit: String,
}

pub async fn ack_rewrite(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    headers: HeaderMap,
    Form(form): Form<AckForm>,
) -> Response {
    if let Err(refusal) = check_csrf(&session, &form.csrf, &headers) {
        return refusal.into_response();
    }
    match crate::api::acknowledge_rewrite(&state, &form.commit, serde_json::json!({"via": "console"})) {
        Ok(commit) => Redirect::to(&format!("/console/status?done=Rewrite+to+{commit}+acknowledged.")).into_response(),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            Redirect::to(&format!("/console/status{}", page::query_string(&[("error", e.message)]))).into_response()
        }
        Err(e) => error_page(e.status, Some(&session), &e.message),
    }
}
