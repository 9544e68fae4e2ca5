//! The admin's read views as JSON and CSV: devices, a device, compliance,
//! audit, rollouts, software, catalog, exposure, installs, review. The
//! console reads the same functions.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::api::error::ApiQuery;
use crate::api::{Admin, ApiError, ApiState, ITEM_COLUMNS, ViewQuery, csv_response, plan_or_unavailable, wants_csv};
use crate::daemon::{exposure_view, views};

/// The device list's query: the console's filters and sort, then the page
/// and the format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DevicesQuery {
    #[serde(flatten)]
    filter: views::DeviceFilter,
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The devices the filter keeps (as the console's list: the same query,
/// order and figures), paged, with their items that pass it; or every such
/// item as CSV.
pub(crate) async fn devices(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<DevicesQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, replanned) = plan_or_unavailable(&state)?;
    let now = state.engine.clock.now();
    let devices = state.engine.enrolled_devices().map_err(ApiError::store)?;
    let items = views::ItemSource::new(&in_force, &plan, now);
    let lines = views::device_lines(&items, &replanned, devices, &query.filter);
    if csv {
        let rows: Vec<views::ItemRow> = lines.iter().flat_map(|l| l.rows(&items)).collect();
        return Ok(csv_response(views::to_csv(ITEM_COLUMNS, &rows)));
    }
    let (total, offset) = (lines.len(), query.offset.unwrap_or(0));
    let limit = query.limit.unwrap_or(100).min(10_000);
    let mut devices = Vec::new();
    for line in lines.iter().skip(offset).take(limit) {
        // The page's devices only are read whole (inventory and reports).
        let Some(record) = state.engine.device(&line.device.entry.id).map_err(ApiError::store)? else { continue };
        devices.push(DeviceView::new(record, line.compliance, line.location.map(str::to_owned), line.rows(&items)));
    }
    Ok(Json(DevicePage { total, offset, devices }).into_response())
}

/// One page of the device list.
#[derive(Serialize)]
pub(crate) struct DevicePage {
    total: usize,
    offset: usize,
    devices: Vec<DeviceView>,
}

/// A device as the API shows it: what it reported, and its items
/// (`compliance` is over all of them, `items` those the filter keeps).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceView {
    id: String,
    facts: patchward_api::Facts,
    inventory: patchward_api::Inventory,
    reports: Vec<patchward_api::Report>,
    enrolled_at: jiff::Timestamp,
    last_seen: jiff::Timestamp,
    compliance: views::Compliance,
    /// The Location its address falls in, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<String>,
    items: Vec<views::ItemRow>,
}

impl DeviceView {
    fn new(
        record: crate::store::fleet::DeviceRecord,
        compliance: views::Compliance,
        location: Option<String>,
        items: Vec<views::ItemRow>,
    ) -> DeviceView {
        DeviceView {
            id: record.id,
            facts: record.facts,
            inventory: record.inventory,
            reports: record.reports,
            enrolled_at: record.enrolled_at,
            last_seen: record.last_seen,
            compliance,
            location,
            items,
        }
    }
}

pub(crate) async fn device(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let record = state
        .engine
        .device(&id)
        .map_err(ApiError::store)?
        .ok_or_else(|| ApiError::not_found(format!("no device {id}")))?;
    let rows = device_rows(&state, &id)?;
    if csv {
        return Ok(csv_response(views::to_csv(ITEM_COLUMNS, &rows)));
    }
    let compliance = views::compliance_of(rows.iter().map(views::ItemRow::key));
    let location = device_location(&state, &id);
    Ok(Json(DeviceView::new(record, compliance, location, rows)).into_response())
}

/// The name of the Location a device's address falls in, by its plan.
pub(super) fn device_location(state: &ApiState, id: &str) -> Option<String> {
    let (_, plan, replanned) = plan_or_unavailable(state).ok()?;
    let device = views::device_plan(&plan, &replanned, id)?;
    device.location.and_then(|l| plan.location_names.get(l as usize)).cloned()
}

pub(crate) fn device_rows(state: &ApiState, id: &str) -> Result<Vec<views::ItemRow>, ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let now = state.engine.clock.now();
    let planned = views::device_plan(&plan, &replanned, id);
    Ok(planned.map(|p| views::item_rows(&in_force, &plan, p, now)).unwrap_or_default())
}

pub(crate) async fn compliance(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ViewQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, replanned) = plan_or_unavailable(&state)?;
    let now = state.engine.clock.now();
    let devices = views::device_plans(&plan, &replanned);
    let mut report = views::compliance(&in_force, &plan, &devices, now);
    report.exposure = Some(exposure_summary(&state, &in_force, &plan, &devices)?);
    if csv {
        return Ok(csv_response(views::compliance_csv(&report)));
    }
    Ok(Json(report).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
    format: Option<String>,
    /// Only entries of this kind among the page (every kind when left out).
    kind: Option<crate::daemon::audit::AuditKind>,
}

pub(crate) async fn audit(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let mut entries = state
        .engine
        .store
        .audit(query.after.unwrap_or(0), query.limit.unwrap_or(1000).min(100_000))
        .await
        .map_err(ApiError::store)?;
    if let Some(kind) = query.kind {
        entries.retain(|e| kind.keeps(&e.action));
    }
    if csv {
        return Ok(audit_csv(&entries));
    }
    Ok(Json(serde_json::json!({"entries": entries})).into_response())
}

/// Audit entries as CSV, their detail as one JSON field.
pub(crate) fn audit_csv(entries: &[crate::store::fleet::AuditEntry]) -> Response {
    csv_response(views::to_csv(&["seq", "at", "actor", "action", "detail"], entries))
}

/// Every approving rule's rollout of every patch it decides, stage by
/// stage, with each gate's counts.
pub(crate) async fn rollouts(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<RolloutQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, replanned) = plan_or_unavailable(&state)?;
    let rollouts = rollout_rows(&in_force, &plan, &replanned, &query.filter, &query.order);
    if csv {
        return Ok(csv_response(views::to_csv(views::ROLLOUT_COLUMNS, &views::rollout_lines(&rollouts))));
    }
    let (total, offset) = (rollouts.len(), query.offset.unwrap_or(0));
    let page: Vec<_> = rollouts.into_iter().skip(offset).take(query.limit.unwrap_or(usize::MAX)).collect();
    Ok(Json(serde_json::json!({"total": total, "offset": offset, "rollouts": page})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolloutQuery {
    #[serde(flatten)]
    pub(crate) filter: views::RolloutFilter,
    #[serde(flatten)]
    pub(crate) order: views::SortOrder,
    pub(crate) offset: Option<usize>,
    pub(crate) limit: Option<usize>,
    pub(crate) format: Option<String>,
}

/// The rollouts `filter` keeps, in `order`: the API's and the console's.
pub(crate) fn rollout_rows(
    in_force: &crate::daemon::InForce,
    plan: &crate::plan::Plan,
    replanned: &std::collections::HashMap<String, Arc<crate::plan::DevicePlan>>,
    filter: &views::RolloutFilter,
    order: &views::SortOrder,
) -> Vec<views::Rollout> {
    let rollouts = views::rollouts(in_force, plan, &views::device_plans(plan, replanned));
    order.apply(rollouts.into_iter().filter(|r| filter.keeps(r)).collect())
}

/// The software library: packages and their versions, and each
/// assignment's devices by status.
pub(crate) async fn software(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<SoftwareQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let library = software_library(&state, &query.order)?;
    if csv {
        return Ok(assignments_csv(&library.assignments));
    }
    Ok(Json(library).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SoftwareQuery {
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

/// The software library with its assignments in `order`.
pub(crate) fn software_library(state: &ApiState, order: &views::SortOrder) -> Result<views::SoftwareLibrary, ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let mut library = views::software(&in_force, &plan, &views::device_plans(&plan, &replanned));
    library.assignments = order.apply(library.assignments);
    Ok(library)
}

/// The assignments as CSV, one line each with its devices' counts.
pub(crate) fn assignments_csv(assignments: &[views::AssignmentRow]) -> Response {
    csv_response(views::to_csv(views::ASSIGNMENT_COLUMNS, assignments))
}

/// The stored catalog with the engine's fields and the rules matching each
/// patch, filtered; `?rule=NAME` shows what a rule matches.
pub(crate) fn catalog_rows(
    state: &ApiState,
    filter: &views::CatalogFilter,
) -> Result<Vec<views::CatalogRow>, ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let records = crate::store::Store::wait(state.engine.store.catalog_patches()).map_err(ApiError::store)?;
    let coverage = crate::catalog::coverage::CoverageSet::of_policy(&in_force.policy.policy);
    let views = crate::catalog::view::views(records, &coverage);
    let mut rows: Vec<views::CatalogRow> = views::catalog_rows(&views, &plan, &views::device_plans(&plan, &replanned))
        .into_iter()
        .filter(|r| filter.keeps(r))
        .collect();
    rows.sort_by(|a, b| b.released.cmp(&a.released).then_with(|| a.id.cmp(&b.id)));
    Ok(rows)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CatalogQuery {
    #[serde(flatten)]
    filter: views::CatalogFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

pub(crate) const CATALOG_COLUMNS: &[&str] = &[
    "id",
    "title",
    "vendor",
    "product",
    "category",
    "severity",
    "cvss",
    "cves",
    "released",
    "supersedes",
    "supersededBy",
    "active",
    "obsoleteSince",
    "matchedBy",
    "missing",
];

pub(crate) async fn catalog(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<CatalogQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let rows = query.order.apply(catalog_rows(&state, &query.filter)?);
    if csv {
        return Ok(csv_response(views::to_csv(CATALOG_COLUMNS, &rows)));
    }
    Ok(Json(serde_json::json!({"total": rows.len(), "patches": rows})).into_response())
}

/// What compliance shows of exposure, from the engine's record.
pub(crate) fn exposure_summary(
    state: &ApiState,
    in_force: &crate::daemon::InForce,
    plan: &crate::plan::Plan,
    devices: &[&crate::plan::DevicePlan],
) -> Result<exposure_view::ExposureSummary, ApiError> {
    let engine = &state.engine;
    let since = engine.exposure.read(&engine.store).map_err(ApiError::store)?;
    let tally = crate::store::Store::wait(engine.store.remediation_tally()).map_err(ApiError::store)?;
    let remediation = in_force.policy.remediation();
    let context = exposure_context(in_force, &remediation, &since, engine.clock.now());
    Ok(exposure_view::exposure_summary(plan, devices, &context, tally))
}

/// How exposure rows are judged and rendered now, with the engine's record
/// of since when.
pub(super) fn exposure_context<'a>(
    in_force: &'a crate::daemon::InForce,
    remediation: &'a crate::policy::model::Remediation,
    since: &'a dyn crate::plan::exposure::ExposureSince,
    now: jiff::Timestamp,
) -> crate::plan::exposure::RowContext<'a> {
    crate::plan::exposure::RowContext { catalog: &in_force.catalog, remediation, since, now }
}

/// The exposure rows a query keeps: how many, and those of the page
/// `offset..offset + limit` in the query's order (every one with no limit).
/// The API's and the console's Exposure view alike. Without a sort only the
/// page's rows are rendered.
pub(crate) fn exposure_page(
    state: &ApiState,
    filter: &exposure_view::ExposureFilter,
    order: &views::SortOrder,
    offset: usize,
    limit: Option<usize>,
) -> Result<(usize, Vec<crate::plan::exposure::ExposureRow>), ApiError> {
    let (in_force, plan, replanned) = plan_or_unavailable(state)?;
    let engine = &state.engine;
    let since = engine.exposure.read(&engine.store).map_err(ApiError::store)?;
    let remediation = in_force.policy.remediation();
    let context = exposure_context(&in_force, &remediation, &since, engine.clock.now());
    let devices = views::device_plans(&plan, &replanned);
    let select = |offset, limit| {
        exposure_view::select(&plan, &devices, filter, &context, offset, limit)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    };
    if order.key().is_none() {
        let selection = select(offset, limit)?;
        return Ok((selection.total, exposure_view::render(&plan, &selection.picks, &context)));
    }
    // A sort reads every row: bounded, so a query over the whole estate
    // asks to be narrowed instead of rendering millions of rows.
    let counted = select(0, Some(0))?;
    if counted.total > MAX_SORTED_EXPOSURE {
        return Err(ApiError::bad_request(format!(
            "{} exposures match: narrow the query (cve, patch, severity, decision, device) to {MAX_SORTED_EXPOSURE} or fewer to sort them",
            counted.total
        )));
    }
    let selection = select(0, None)?;
    let sorted = order.apply(exposure_view::render(&plan, &selection.picks, &context));
    let page = sorted.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).collect();
    Ok((selection.total, page))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExposureQuery {
    #[serde(flatten)]
    filter: exposure_view::ExposureFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    offset: Option<usize>,
    limit: Option<usize>,
    format: Option<String>,
}

/// The most rows a sorted exposure query renders.
pub(super) const MAX_SORTED_EXPOSURE: usize = 100_000;

#[derive(serde::Serialize)]
pub(crate) struct ExposureList {
    total: usize,
    offset: usize,
    exposure: Vec<crate::plan::exposure::ExposureRow>,
}

pub(crate) const EXPOSURE_COLUMNS: &[&str] =
    &["device", "patch", "title", "cves", "severity", "cvss", "decision", "reason", "since", "target", "overdue"];

/// `GET /api/v1/exposure`: which devices are exposed to what, since when.
pub(crate) async fn exposure(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ExposureQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    if csv {
        let (_, rows) = exposure_page(&state, &query.filter, &query.order, 0, None)?;
        return Ok(csv_response(views::to_csv(EXPOSURE_COLUMNS, &rows)));
    }
    let offset = query.offset.unwrap_or(0);
    let (total, page) = exposure_page(&state, &query.filter, &query.order, offset, query.limit)?;
    Ok(Json(ExposureList { total, offset, exposure: page }).into_response())
}

pub(crate) const INSTALLED_COLUMNS: &[&str] = &["at", "device", "patch", "action", "policy"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RangeQuery {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    #[serde(flatten)]
    pub(crate) filter: views::InstalledFilter,
    #[serde(flatten)]
    pub(crate) order: views::SortOrder,
    pub(crate) offset: Option<usize>,
    pub(crate) limit: Option<usize>,
    pub(crate) format: Option<String>,
}

/// `from` and `to` as instants: RFC 3339, or a date (midnight UTC); `to`
/// defaults to now, `from` to seven days before it.
pub(crate) fn time_range(
    from: Option<&str>,
    to: Option<&str>,
    now: jiff::Timestamp,
) -> Result<(jiff::Timestamp, jiff::Timestamp), ApiError> {
    let parse = |name: &str, text: &str| -> Result<jiff::Timestamp, ApiError> {
        text.parse::<jiff::Timestamp>()
            .or_else(|_| {
                text.parse::<jiff::civil::Date>()
                    .and_then(|d| jiff::tz::TimeZone::UTC.to_timestamp(d.to_datetime(jiff::civil::Time::midnight())))
            })
            .map_err(|_| {
                ApiError::bad_request(format!("{name}: `{text}` is not an RFC 3339 instant or a YYYY-MM-DD date"))
            })
    };
    let to = match to.filter(|t| !t.is_empty()) {
        Some(text) => parse("to", text)?,
        None => now,
    };
    let from = match from.filter(|f| !f.is_empty()) {
        Some(text) => parse("from", text)?,
        None => to.checked_sub(jiff::SignedDuration::from_hours(7 * 24)).unwrap_or(to),
    };
    if from > to {
        return Err(ApiError::bad_request("from is after to"));
    }
    Ok((from, to))
}

/// What devices reported installed or removed in a date range.
pub(crate) async fn installed(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (from, to) = time_range(query.from.as_deref(), query.to.as_deref(), state.engine.clock.now())?;
    let devices = state.engine.enrolled_devices().map_err(ApiError::store)?;
    let rows: Vec<_> =
        views::installed_between(&devices, from, to).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if csv {
        return Ok(csv_response(views::to_csv(INSTALLED_COLUMNS, &rows)));
    }
    let (total, offset) = (rows.len(), query.offset.unwrap_or(0));
    let page: Vec<_> = rows.into_iter().skip(offset).take(query.limit.unwrap_or(usize::MAX)).collect();
    Ok(Json(serde_json::json!({"from": from, "to": to, "total": total, "offset": offset, "installed": page}))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReviewQuery {
    #[serde(flatten)]
    filter: views::ReviewFilter,
    #[serde(flatten)]
    order: views::SortOrder,
    format: Option<String>,
}

pub(crate) const REVIEW_COLUMNS: &[&str] = &["list", "patch", "title", "severity", "released", "rule"];

/// The review queue and the held list (each patch with the rule that put
/// it there), filtered and sorted; CSV has both, with a `list` column.
pub(crate) async fn review(
    State(state): State<Arc<ApiState>>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<ReviewQuery>,
) -> Result<Response, ApiError> {
    let csv = wants_csv(&query.format)?;
    let (in_force, plan, _) = plan_or_unavailable(&state)?;
    let rows: Vec<_> = views::review_rows(&in_force, &plan).into_iter().filter(|r| query.filter.keeps(r)).collect();
    let rows = query.order.apply(rows);
    if csv {
        return Ok(csv_response(views::to_csv(REVIEW_COLUMNS, &rows)));
    }
    let (queue, held): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.list == "review");
    Ok(Json(serde_json::json!({"reviewQueue": queue, "held": held})).into_response())
}
