//! The security officer's views of exposure: the rows of `GET
//! /api/v1/exposure` and of the console's Exposure view (one function, so
//! they cannot disagree), how many devices miss each patch (the catalog's
//! column), and the figures compliance shows beside deployment: the share
//! of exposure past its remediation target and the mean time to remediate.
//!
//! Filters that concern the patch (cve, patch, severity) are judged once per
//! patch, so a query over a large fleet scans small integers and renders
//! only the rows it keeps.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::plan::Exposure;
use crate::plan::exposed::ExposureSet;
use crate::plan::exposure::{ExposureRow, RowContext};
use crate::plan::{DevicePlan, ExposureDecision, Plan, PlanCatalog};
use crate::store::exposure::RemediationTally;

/// `?cve=&patch=&severity=&decision=&device=&overdue=`; every one optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ExposureFilter {
    /// A CVE id, any case.
    pub cve: Option<String>,
    pub patch: Option<String>,
    pub severity: Option<String>,
    /// approved, review, held, unmatched, excluded or superseded.
    pub decision: Option<String>,
    pub device: Option<String>,
    /// `true` or `false`.
    pub overdue: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("unknown decision `{0}`: approved, review, held, unmatched, excluded or superseded")]
    Decision(String),
    #[error("overdue must be true or false, not `{0}`")]
    Overdue(String),
}

fn chosen(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl ExposureFilter {
    fn decision(&self) -> Result<Option<ExposureDecision>, FilterError> {
        let Some(text) = chosen(&self.decision) else { return Ok(None) };
        ExposureDecision::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
            .map(Some)
            .ok_or_else(|| FilterError::Decision(text.to_owned()))
    }

    fn overdue(&self) -> Result<Option<bool>, FilterError> {
        match chosen(&self.overdue) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(FilterError::Overdue(other.to_owned())),
        }
    }

    /// Per active patch: whether its own fields pass.
    fn patches(&self, catalog: &PlanCatalog) -> Vec<bool> {
        let cve = chosen(&self.cve).map(str::to_ascii_uppercase);
        catalog
            .patches
            .iter()
            .map(|p| {
                let record = &p.view.record;
                chosen(&self.patch).is_none_or(|id| id == p.id())
                    && chosen(&self.severity).is_none_or(|s| s == record.severity.as_str())
                    && cve.as_deref().is_none_or(|cve| record.patch.cves.iter().any(|c| c.eq_ignore_ascii_case(cve)))
            })
            .collect()
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![
            ("cve", text(&self.cve)),
            ("patch", text(&self.patch)),
            ("severity", text(&self.severity)),
            ("decision", text(&self.decision)),
            ("device", text(&self.device)),
            ("overdue", text(&self.overdue)),
        ]
    }
}

/// One exposure a query keeps: its device and the exposure, not yet
/// rendered (a page renders only its own rows).
pub type Pick<'a> = (&'a DevicePlan, Exposure);

/// How many exposures pass a query, and those of one page of them.
pub struct Selection<'a> {
    pub total: usize,
    pub picks: Vec<Pick<'a>>,
}

/// The exposures that pass `filter` at the context's instant, by device
/// then patch: how many, and the picks in `offset..offset + limit` (all with
/// no limit).
///
/// Filters on the patch alone (cve, patch, severity) are judged once per
/// patch and per kind of device, so counting a device costs its own
/// exceptions, not its exposure; a decision or overdue filter reads each
/// exposure.
pub fn select<'a>(
    plan: &Plan,
    devices: &[&'a DevicePlan],
    filter: &ExposureFilter,
    context: &RowContext,
    offset: usize,
    limit: Option<usize>,
) -> Result<Selection<'a>, FilterError> {
    let decision = filter.decision()?;
    let overdue = filter.overdue()?;
    let passes = filter.patches(context.catalog);
    let end = limit.map_or(usize::MAX, |l| offset.saturating_add(l));
    // Each kind's fixless patches that pass, once per kind.
    let mut kinds: HashMap<*const [u32], Arc<[u32]>> = HashMap::new();
    let mut selection = Selection { total: 0, picks: Vec::new() };
    for &device in devices.iter().filter(|d| chosen(&filter.device).is_none_or(|id| id == d.id)) {
        let set = &device.exposure;
        let fixless = kinds
            .entry(Arc::as_ptr(&set.fixless))
            .or_insert_with(|| set.fixless.iter().copied().filter(|p| passes[*p as usize]).collect());
        let narrowed = ExposureSet {
            fixless: Arc::clone(fixless),
            present: set.present.iter().copied().filter(|p| passes[*p as usize]).collect(),
            needed: set.needed.iter().copied().filter(|p| passes[*p as usize]).collect(),
        };
        if decision.is_none() && overdue.is_none() {
            let count = narrowed.len();
            let (first, last) = (selection.total, selection.total + count);
            if first < end && last > offset {
                let skip = offset.saturating_sub(first);
                let take = end.min(last) - first - skip;
                let picked = narrowed.patches().skip(skip).take(take).map(|p| (device, plan.exposure_of(device, p)));
                selection.picks.extend(picked);
            }
            selection.total = last;
            continue;
        }
        for patch in narrowed.patches() {
            let exposure = plan.exposure_of(device, patch);
            let late = || context.overdue(plan, &device.id, patch);
            if decision.is_none_or(|d| d == exposure.decision) && overdue.is_none_or(|o| o == late()) {
                if (offset..end).contains(&selection.total) {
                    selection.picks.push((device, exposure));
                }
                selection.total += 1;
            }
        }
    }
    Ok(selection)
}

/// The rows of `picks`, in their order.
pub fn render(plan: &Plan, picks: &[Pick<'_>], context: &RowContext) -> Vec<ExposureRow> {
    picks.iter().map(|(device, exposure)| context.row(plan, &device.id, exposure)).collect()
}

/// Per active patch (by index), how many devices miss it: each kind's
/// fixless patches counted once per kind, then each device's exceptions.
pub fn missing_by_patch(plan: &Plan, devices: &[&DevicePlan]) -> Vec<usize> {
    let mut counts = vec![0usize; plan.patches.len()];
    let mut kinds: HashMap<*const [u32], (&[u32], usize)> = HashMap::new();
    for device in devices {
        let set = &device.exposure;
        kinds.entry(Arc::as_ptr(&set.fixless)).or_insert((&set.fixless, 0)).1 += 1;
        for &p in &set.present {
            counts[p as usize] = counts[p as usize].wrapping_sub(1);
        }
        for &p in &set.needed {
            counts[p as usize] += 1;
        }
    }
    for (fixless, devices) in kinds.values() {
        for &p in *fixless {
            counts[p as usize] = counts[p as usize].wrapping_add(*devices);
        }
    }
    counts
}

/// What compliance shows of exposure.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExposureSummary {
    /// Open (device, patch) exposures.
    pub exposures: usize,
    /// Those past their remediation target.
    pub overdue: usize,
    /// `overdue / exposures`, in percent (0 with none).
    pub overdue_percent: f64,
    /// Exposures closed so far.
    pub remediated: u64,
    /// Their mean length, as a duration (`1d4h`), or null before the first.
    pub mean_time_to_remediate: Option<String>,
}

pub fn exposure_summary(
    plan: &Plan,
    devices: &[&DevicePlan],
    context: &RowContext,
    tally: RemediationTally,
) -> ExposureSummary {
    let mut summary = ExposureSummary { remediated: tally.remediated, ..ExposureSummary::default() };
    for device in devices {
        for patch in device.exposure.patches() {
            summary.exposures += 1;
            if context.overdue(plan, &device.id, patch) {
                summary.overdue += 1;
            }
        }
    }
    if summary.exposures > 0 {
        summary.overdue_percent = (summary.overdue as f64 * 1000.0 / summary.exposures as f64).round() / 10.0;
    }
    summary.mean_time_to_remediate = tally.mean_seconds().map(|s| patchward_api::Duration::from_secs(s).to_string());
    summary
}
