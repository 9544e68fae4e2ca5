//! The admin's views. Each takes its filters, sort and page from the query
//! string, answers CSV with `format=csv`, and counts with the same
//! functions as the admin API.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{self, Flash, layout, pager, post_form, select, sort_header, when, when_opt};
use super::{AdminSession, check_csrf, error_page, html_page};
use crate::api::{ApiState, csv_response, plan_or_unavailable};
use crate::daemon::audit::{self, AuditKind};
use crate::daemon::views::{self, ItemRow};

/// The largest page a view shows; CSV exports are not paged.
const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 50;

/// A view's page when the engine has no policy in force yet.
fn no_policy(session: &super::Session) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        Some(session),
        "No valid policy revision is in force yet: see Engine status.",
    )
}

fn flash_of(done: &Option<String>, error: &Option<String>) -> Option<Flash> {
    error.as_ref().map(Flash::error).or_else(|| done.as_ref().map(Flash::ok))
}

#[derive(Deserialize, Default)]
pub struct FlashQuery {
    pub done: Option<String>,
    pub error: Option<String>,
}

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
    if query.format.as_deref() == Some("csv") {
        return csv_response(views::compliance_csv(&report));
    }
    let exposure = crate::api::exposure_summary(&state, &in_force, &plan, &devices).unwrap_or_default();
    let trend = state.engine.compliance_trend().unwrap_or_default();
    let group = |title: &str, key: &str, map: &std::collections::BTreeMap<String, views::Counts>| {
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

/// The device list's query: the filters and sort, then the page and the
/// format.
#[derive(Deserialize, Default)]
pub struct DevicesQuery {
    #[serde(flatten)]
    filter: views::DeviceFilter,
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
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
    let records = match state.engine.devices() {
        Ok(records) => records,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    let lines = views::device_lines(&in_force, &plan, &replanned, records, &query.filter, now);
    if query.format.as_deref() == Some("csv") {
        let rows: Vec<&ItemRow> = lines.iter().flat_map(|l| &l.rows).collect();
        return csv_response(views::to_csv(crate::api::ITEM_COLUMNS, &rows));
    }
    let (sort, descending) = (query.filter.sort_key(), query.filter.descending());
    let total = lines.len();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let offset = query.offset.unwrap_or(0).min(total.saturating_sub(1) / limit * limit);
    let pairs = query.filter.pairs();
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
    let header = |label: &str, key: &str| sort_header("/console/devices", &pairs, label, key, &sort, descending);
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
            a href=(format!("/console/devices{}", page::query_string(&[pairs.clone(), vec![("format", "csv".into())]].concat()))) { "Export CSV" }
        }
        (pager("/console/devices", &pairs, offset, limit, total))
        @if lines.is_empty() { (page::empty_state("no enrolled device matches these filters")) } @else {
            table #devices {
                thead { tr {
                    (header("Device", "id")) (header("Platform", "platform")) (header("Location", "location")) th { "Address" }
                    (header("Compliance", "compliance")) (header("Pending items", "pending")) th.num { "Items" }
                    (header("Last seen", "lastSeen"))
                } }
                tbody {
                    @for line in lines.iter().skip(offset).take(limit) {
                        tr data-device=(line.record.id) {
                            td { a href=(format!("/console/devices/{}", line.record.id)) { (line.record.id) } }
                            td { (line.record.facts.platform.as_deref().unwrap_or("—")) }
                            td.location { (line.location.as_deref().unwrap_or("—")) }
                            td.address { (line.record.facts.ip.as_deref().unwrap_or("—")) }
                            td class=(format!("compliance-{}", line.compliance.as_str())) { (line.compliance.as_str()) }
                            td.num { (line.rows.iter().filter(|r| r.pending()).count()) }
                            td.num { (line.rows.len()) }
                            td { (when(line.record.last_seen)) }
                        }
                    }
                }
            }
        }
        (pager("/console/devices", &pairs, offset, limit, total))
    };
    html_page(StatusCode::OK, layout("Devices", Some(&session), "/console/devices", None, body))
}

/// The items of one device's table (also the portal's, without actions).
pub fn items_table(rows: &[ItemRow]) -> Markup {
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
    if query.format.as_deref() == Some("csv") {
        return csv_response(views::to_csv(crate::api::ITEM_COLUMNS, &rows));
    }
    let compliance = views::compliance_of(&rows);
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
    if query.format.as_deref() == Some("csv") {
        return csv_response(views::to_csv(crate::api::REVIEW_COLUMNS, &rows));
    }
    let (queue, held): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.list == "review");
    let policy = plan.policy_names.first().cloned().unwrap_or_else(|| "POLICY".into());
    let pairs = [query.filter.pairs(), query.order.pairs()].concat();
    let header = |label: &str, key: &str| {
        sort_header("/console/review", &pairs, label, key, query.order.key().unwrap_or(""), query.order.descending())
    };
    let severities = ["critical", "high", "medium", "low", "informational"].map(String::from);
    let table = |id: &str, rows: &[views::ReviewRow], offset: usize, actions: bool| {
        html! {
            @if rows.is_empty() { (page::empty_state("no patch is waiting here")) } @else {
                table #(id) {
                    thead { tr {
                        (header("Patch", "patch")) (header("Title", "title")) (header("Severity", "severity"))
                        (header("Released", "released")) (header("Rule", "rule")) @if actions { th { "To act on it, commit" } }
                    } }
                    tbody { @for row in rows.iter().skip(offset).take(DEFAULT_PAGE) {
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
    let (offset, held_offset) = (query.offset.unwrap_or(0), query.held_offset.unwrap_or(0));
    let body = html! {
        p { "The console never changes policy. To decide a patch, commit the YAML shown to the policy repository and merge it through review; the engine applies it on its next sync." }
        form.filters method="get" action="/console/review" {
            label { "Search " input type="text" name="q" value=(query.filter.q.clone().unwrap_or_default()) placeholder="patch, title, rule"; }
            (select("severity", "Severity", &severities, &query.filter.severity.clone().unwrap_or_default()))
            button type="submit" { "Filter" }
            a href=(format!("/console/review{}", page::query_string(&[pairs.clone(), vec![("format", "csv".into())]].concat()))) { "Export CSV" }
        }
        h2 { "Review queue (" span #review-count { (queue.len()) } ")" }
        (page::pager_by("/console/review", &[pairs.clone(), vec![("heldOffset", held_offset.to_string())]].concat(), "offset", offset, DEFAULT_PAGE, queue.len()))
        @if !queue.is_empty() { (table("review-queue", &queue, offset, true)) }
        h2 { "Held (" span #held-count { (held.len()) } ")" }
        (page::pager_by("/console/review", &[pairs.clone(), vec![("offset", offset.to_string())]].concat(), "heldOffset", held_offset, DEFAULT_PAGE, held.len()))
        @if !held.is_empty() { (table("held", &held, held_offset, false)) }
        p.muted { "A held patch is released by removing or changing the rule that holds it." }
    };
    html_page(StatusCode::OK, layout("Review queue", Some(&session), "/console/review", None, body))
}

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
    let keep = |e: &crate::store::fleet::AuditEntry| {
        kind.keeps(&e.action)
            && (actor.is_empty() || e.actor.contains(&actor))
            && (action.is_empty() || e.action.starts_with(&action))
    };
    let csv = query.format.as_deref() == Some("csv");
    let limit = if csv { usize::MAX } else { query.limit.unwrap_or(100).clamp(1, MAX_PAGE) };
    let (entries, older) = match state.engine.store.audit_newest(query.before, limit, keep) {
        Ok(page) => page,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    if csv {
        return crate::api::audit_csv(&entries);
    }
    let total = state.engine.store.audit_len().unwrap_or(0);
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
            a href=(link(vec![("format", "csv".into())])) { "Export CSV" }
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

/// Each approving rule's rollout of each patch: its stages (pilot, then
/// production), how many devices are done, due, scheduled or blocked in
/// each, and each gate with its counts.
#[derive(Deserialize, Default)]
pub struct RolloutQuery {
    #[serde(flatten)]
    filter: views::RolloutFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    offset: Option<usize>,
    format: Option<String>,
}

pub async fn rollouts(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<RolloutQuery>,
) -> Response {
    let Ok((in_force, plan, replanned)) = plan_or_unavailable(&state) else { return no_policy(&session) };
    let rollouts = crate::api::rollout_rows(&in_force, &plan, &replanned, &query.filter, &query.order);
    if query.format.as_deref() == Some("csv") {
        return csv_response(views::to_csv(views::ROLLOUT_COLUMNS, &views::rollout_csv_rows(&rollouts)));
    }
    let pairs = [query.filter.pairs(), query.order.pairs()].concat();
    let offset = query.offset.unwrap_or(0);
    const ROLLOUTS_PER_PAGE: usize = 20;
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
            a href=(format!("/console/rollouts{}", page::query_string(&[pairs.clone(), vec![("format", "csv".into())]].concat()))) { "Export CSV" }
        }
        p.muted { span #rollout-count { (rollouts.len()) } (if rollouts.len() == 1 { " rollout" } else { " rollouts" }) ". A stage's counts are the devices whose item comes from that stage." }
        (pager("/console/rollouts", &pairs, offset, ROLLOUTS_PER_PAGE, rollouts.len()))
        @for rollout in rollouts.iter().skip(offset).take(ROLLOUTS_PER_PAGE) {
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
    if query.format.as_deref() == Some("csv") {
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
    let header = |label: &str, key: &str| {
        sort_header("/console/catalog", &pairs, label, key, query.order.key().unwrap_or(""), query.order.descending())
    };
    let total = rows.len();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let offset = query.offset.unwrap_or(0);
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
            a href=(format!("/console/catalog{}", page::query_string(&[pairs.clone(), vec![("format", "csv".into())]].concat()))) { "Export CSV" }
        }
        @if let Some(rule) = chosen_rule {
            @let decides = rows.iter().filter(|r| r.decided_by.as_deref() == Some(rule)).count();
            p #rule-summary { "Rule " code { (rule) } " says " strong { (action_of(rule)) } " for the patches it matches. It decides "
                (decides) " of the " (rows.len()) " listed; the others it matches but does not decide (a higher-ranked rule does, or they are skipped as superseded)." }
        }
        (pager("/console/catalog", &pairs, offset, limit, total))
        @if rows.is_empty() { (page::empty_state("no patch in the catalog matches these filters")) } @else {
            table #catalog {
                thead { tr {
                    (header("Patch", "id")) (header("Title", "title")) (header("Product", "product")) (header("Severity", "severity"))
                    (header("CVSS", "cvss")) (header("Missing on", "missing")) (header("Released", "released"))
                    th { "Supersedes" } th { "Superseded by" } th { "State" } th { "Matching rules" }
                } }
                tbody { @for row in rows.iter().skip(offset).take(limit) {
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
        (pager("/console/catalog", &pairs, offset, limit, total))
    };
    html_page(StatusCode::OK, layout("Catalog", Some(&session), "/console/catalog", None, body))
}

#[derive(Deserialize, Default)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    #[serde(flatten)]
    filter: views::InstalledFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    offset: Option<usize>,
    format: Option<String>,
}

/// The software library: each package's versions (type, size, digest, the
/// assignments that use it), and each assignment's devices by status, with
/// the devices view one click away. Assigning is policy: it goes in git.
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
    if query.format.as_deref() == Some("csv") {
        return crate::api::assignments_csv(&library.assignments);
    }
    let pairs = query.order.pairs();
    let header = |label: &str, key: &str| {
        sort_header("/console/software", &pairs, label, key, query.order.key().unwrap_or(""), query.order.descending())
    };
    let devices_of = |a: &views::AssignmentRow, status: &str| {
        let pairs = [("patch", crate::plan::software_id(&a.package, &a.version)), ("status", status.to_owned())];
        format!("/console/devices{}", page::query_string(&pairs))
    };
    let body = html! {
        p.muted { "Packages and assignments are policy: add or change them as SoftwarePackage and SoftwareAssignment documents under " code { "policies/software/" } " in git." }
        h2 { "Assignments (" span #assignment-count { (library.assignments.len()) } ") " a href=(format!("/console/software{}", page::query_string(&[pairs.clone(), vec![("format", "csv".into())]].concat()))) { "Export CSV" } }
        @if library.assignments.is_empty() { p { "No SoftwareAssignment is in force." } }
        @else {
            table #assignments {
                thead { tr {
                    (header("Assignment", "name")) (header("Package", "package")) (header("Version", "version")) (header("State", "state"))
                    th { "Scopes" } (header("Policy", "policy")) (header("On demand", "selfService"))
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

/// What was installed (or removed) in a date range.
pub async fn installed(
    State(state): State<Arc<ApiState>>,
    AdminSession(session): AdminSession,
    Query(query): Query<RangeQuery>,
) -> Response {
    let now = state.engine.clock.now();
    let (from, to) = match crate::api::time_range(query.from.as_deref(), query.to.as_deref(), now) {
        Ok(range) => range,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, Some(&session), &e.message),
    };
    let records = match state.engine.devices() {
        Ok(records) => records,
        Err(e) => return error_page(StatusCode::SERVICE_UNAVAILABLE, Some(&session), &e.to_string()),
    };
    let rows: Vec<_> =
        views::installed_between(&records, from, to).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if query.format.as_deref() == Some("csv") {
        return csv_response(views::to_csv(crate::api::INSTALLED_COLUMNS, &rows));
    }
    let pairs =
        [vec![("from", from.to_string()), ("to", to.to_string())], query.filter.pairs(), query.order.pairs()].concat();
    let header = |label: &str, key: &str| {
        sort_header("/console/installed", &pairs, label, key, query.order.key().unwrap_or(""), query.order.descending())
    };
    let offset = query.offset.unwrap_or(0);
    let mut by_patch: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for row in &rows {
        *by_patch.entry(row.patch.as_str()).or_default() += 1;
    }
    let body = html! {
        form.filters method="get" action="/console/installed" {
            label { "From " input type="date" name="from" value=(from.strftime("%Y-%m-%d").to_string()); }
            label { "To " input type="date" name="to" value=(to.strftime("%Y-%m-%d").to_string()); }
            label { "Device or item " input type="text" name="q" value=(query.filter.q.clone().unwrap_or_default()); }
            (select("action", "Action", &["install", "uninstall"].map(String::from), &query.filter.action.clone().unwrap_or_default()))
            button type="submit" { "Show" }
            a href=(format!("/console/installed{}", page::query_string(&[pairs.clone(), vec![("format", "csv".into())]].concat()))) { "Export CSV" }
        }
        p { span #installed-count { (rows.len()) } " installs and removals from " (when(from)) " to " (when(to)) "." }
        @if !by_patch.is_empty() {
            table #by-patch { thead { tr { th { "Patch" } th.num { "Devices" } } }
                tbody { @for (patch, count) in &by_patch { tr data-patch=(patch) { td { code { (patch) } } td.num { (count) } } } } }
        }
        (pager("/console/installed", &pairs, offset, DEFAULT_PAGE, rows.len()))
        table #installed {
            thead { tr { (header("When", "at")) (header("Device", "device")) (header("Item", "patch")) (header("Action", "action")) (header("Policy", "policy")) } }
            tbody { @for row in rows.iter().skip(offset).take(DEFAULT_PAGE) {
                tr data-device=(row.device) { td { (when(row.at)) } td { a href=(format!("/console/devices/{}", row.device)) { (row.device) } }
                     td { code { (row.patch) } } td { (row.action) } td { (row.policy.as_deref().unwrap_or("—")) } }
            } }
        }
    };
    html_page(StatusCode::OK, layout("Installed", Some(&session), "/console/installed", None, body))
}
