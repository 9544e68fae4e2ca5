//! The security officer's views of exposure: the rows of `GET
//! /api/v1/exposure` and of the console's Exposure view (one function, so
//! they cannot disagree), how many devices miss each patch (the catalog's
//! column), and the figures compliance shows beside deployment: the share
//! of exposure past its remediation target and the mean time to remediate.
//!
//! Filters that concern the patch (cve, patch, severity) are judged once per
//! patch, so a query over a large fleet scans small integers and renders
//! only the rows it keeps.

use serde::{Deserialize, Serialize};

use super::InForce;
use crate::plan::Exposure;
use crate::plan::exposure::{ExposureRow, ExposureSince, RowContext, is_overdue, rows_of};
use crate::plan::{DevicePlan, ExposureDecision, Plan};
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
    fn patches(&self, in_force: &InForce) -> Vec<bool> {
        let cve = chosen(&self.cve).map(str::to_ascii_uppercase);
        in_force
            .catalog
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

/// The exposures that pass `filter` at `now`, by device then patch.
pub fn select<'a>(
    in_force: &InForce,
    plan: &Plan,
    devices: &[&'a DevicePlan],
    filter: &ExposureFilter,
    since: &dyn ExposureSince,
    now: jiff::Timestamp,
) -> Result<Vec<Pick<'a>>, FilterError> {
    let decision = filter.decision()?;
    let overdue = filter.overdue()?;
    let patches = filter.patches(in_force);
    let remediation = in_force.policy.remediation();
    let targets: Vec<_> = in_force.catalog.patches.iter().map(|p| remediation.target(p.view.record.severity)).collect();
    let is_late = |device: &DevicePlan, e: &Exposure| {
        let opened = since.since(&device.id, &plan.patches[e.patch as usize]).unwrap_or(plan.now).min(now);
        is_overdue(opened, targets[e.patch as usize], now)
    };
    let mut picks = Vec::new();
    for &device in devices.iter().filter(|d| chosen(&filter.device).is_none_or(|id| id == d.id)) {
        for exposure in &device.exposure {
            if patches[exposure.patch as usize]
                && decision.is_none_or(|d| d == exposure.decision)
                && overdue.is_none_or(|o| o == is_late(device, exposure))
            {
                picks.push((device, *exposure));
            }
        }
    }
    Ok(picks)
}

/// The rows of `picks`, in their order.
pub fn render(
    in_force: &InForce,
    plan: &Plan,
    picks: &[Pick<'_>],
    since: &dyn ExposureSince,
    now: jiff::Timestamp,
) -> Vec<ExposureRow> {
    let remediation = in_force.policy.remediation();
    let context = RowContext { catalog: &in_force.catalog, remediation: &remediation, since, now };
    picks
        .iter()
        .flat_map(|(device, exposure)| rows_of(plan, &device.id, std::slice::from_ref(exposure), &context))
        .collect()
}

/// Per active patch (by index), how many devices miss it.
pub fn missing_by_patch(plan: &Plan, devices: &[&DevicePlan]) -> Vec<usize> {
    let mut counts = vec![0; plan.patches.len()];
    for exposure in devices.iter().flat_map(|d| &d.exposure) {
        counts[exposure.patch as usize] += 1;
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
    in_force: &InForce,
    plan: &Plan,
    devices: &[&DevicePlan],
    since: &dyn ExposureSince,
    tally: RemediationTally,
    now: jiff::Timestamp,
) -> ExposureSummary {
    let remediation = in_force.policy.remediation();
    let targets: Vec<_> = in_force.catalog.patches.iter().map(|p| remediation.target(p.view.record.severity)).collect();
    let mut summary = ExposureSummary { remediated: tally.remediated, ..ExposureSummary::default() };
    for device in devices {
        for exposure in &device.exposure {
            summary.exposures += 1;
            let opened = since.since(&device.id, &plan.patches[exposure.patch as usize]).unwrap_or(plan.now);
            if is_overdue(opened, targets[exposure.patch as usize], now) {
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
