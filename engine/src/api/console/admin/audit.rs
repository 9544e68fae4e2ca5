//! The audit log, newest first: who did what and when, as commit authors,
//! admins, users and devices, filtered by kind.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::wants_csv;
use crate::api::ApiState;
use crate::api::console::list::{MAX_PAGE, csv_link};
use crate::api::console::page::{self, layout, when};
use crate::api::console::{AdminSession, error_page, html_page};
use crate::daemon::audit::{self, AuditKind};

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    #[serde(default)]
    kind: AuditKind,
    /// Show entries older than this sequence number (the "older" link).
    before: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The audit log, newest first: who did what and when, as commit authors,
/// admins, users and devices. Pages by sequence number (`before`), so a
/// page costs the page however long the log grows; CSV exports every
/// entry the filters keep.
pub async fn audit(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<AuditQuery>,
) -> Response {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let (actor, action) = (text(&query.actor), text(&query.action));
    let kind = query.kind;
    let keep = {
        let (actor, action) = (actor.clone(), action.clone());
        move |e: &crate::store::fleet::AuditHead<'_>| {
            kind.keeps(&e.action)
                && (actor.is_empty() || e.actor.contains(&actor))
                && (action.is_empty() || e.action.starts_with(&action))
        }
    };
    let csv = wants_csv(&query.format);
    let limit = if csv { usize::MAX } else { query.limit.unwrap_or(100).clamp(1, MAX_PAGE) };
    let (entries, older) = match state.engine.store.audit_newest(query.before, limit, keep).await {
        Ok(page) => page,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    if csv {
        return crate::api::audit_csv(&entries);
    }
    let total = state.engine.store.audit_len().await.unwrap_or(0);
    let pairs = vec![("kind", kind.as_str().to_owned()), ("actor", actor.clone()), ("action", action.clone())];
    let kinds: Vec<String> = AuditKind::ALL.iter().map(|k| k.as_str().to_owned()).collect();
    let link = |extra: Vec<(&'static str, String)>| {
        format!("/console/audit{}", page::query_string(&[pairs.clone(), extra].concat()))
    };
    let body = html! {
        form.filters method="get" action="/console/audit" {
            (page::choice("kind", "Kind", &kinds, kind.as_str()))
            label { "Who " input type="text" name="actor" value=(actor) placeholder="commit:alice, admin, user:…, device:…"; }
            label { "What " input type="text" name="action" value=(action) placeholder="approval., revision., agent."; }
            button type="submit" { "Filter" }
            a href=(csv_link("/console/audit", &pairs)) { "Export CSV" }
        }
        p.pager {
            @if !entries.is_empty() {
                (page::count(entries.len(), "entry", "entries")) " shown, #" span.from { (entries[entries.len() - 1].seq) }
                " to #" span.to { (entries[0].seq) } ", newest first; the log holds " span.total { (total) } ". "
            }
            @if query.before.is_some() { a rel="first" href=(link(Vec::new())) { "← newest" } " " }
            @if let (true, Some(last)) = (older, entries.last()) {
                a rel="next" href=(link(vec![("before", last.seq.to_string())])) { "older →" }
            }
        }
        @if entries.is_empty() { (page::empty_state("no entry of this kind matches")) } @else {
            table #audit {
                thead { tr { th.num { "#" } th { "When" } th { "Who" } th { "What" } th { "Detail" } } }
                tbody { @for e in &entries {
                    tr { td.num { (e.seq) } td { (when(e.at)) } td { (e.actor) } td { code { (e.action) } }
                        td { dl.fields { @for (name, value) in audit::detail_fields(&e.detail) { dt { (name) } dd { (value) } } } } }
                } }
            }
        }
    };
    html_page(StatusCode::OK, layout("Audit log", Some(&session), "/console/audit", None, body))
}
