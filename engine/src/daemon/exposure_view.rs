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

/// Whether a patch's exposures pass a query: judged once per patch where
/// the patch decides it, else per exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatchTest {
    Never,
    Always,
    PerDevice,
}

/// Each active patch's [`PatchTest`]: its own fields (cve, patch,
/// severity), then a decision every device gets alike
/// ([`Plan::uniform_decision`]) or none can get ([`Plan::may_decide`]),
/// then whether any device can be overdue
/// on it ([`RowContext::never_overdue`]).
fn patch_tests(
    plan: &Plan,
    filter: &ExposureFilter,
    context: &RowContext,
    decision: Option<ExposureDecision>,
    overdue: Option<bool>,
) -> Vec<PatchTest> {
    let passes = filter.patches(context.catalog);
    (0..plan.patches.len() as u32)
        .map(|patch| {
            if !passes[patch as usize] {
                return PatchTest::Never;
            }
            let by_decision = match (decision, decision.and_then(|_| plan.uniform_decision(patch))) {
                (None, _) => PatchTest::Always,
                (Some(wanted), Some(uniform)) if wanted == uniform => PatchTest::Always,
                (Some(_), Some(_)) => PatchTest::Never,
                (Some(wanted), None) if plan.may_decide(patch, wanted) => PatchTest::PerDevice,
                (Some(_), None) => PatchTest::Never,
            };
            let by_overdue = match overdue {
                None => PatchTest::Always,
                Some(wanted) if context.never_overdue(plan, patch) => match wanted {
                    true => PatchTest::Never,
                    false => PatchTest::Always,
                },
                Some(_) => PatchTest::PerDevice,
            };
            match (by_decision, by_overdue) {
                (PatchTest::Never, _) | (_, PatchTest::Never) => PatchTest::Never,
                (PatchTest::Always, PatchTest::Always) => PatchTest::Always,
                _ => PatchTest::PerDevice,
            }
        })
        .collect()
}

/// The exposures that pass `filter` at the context's instant, by device
/// then patch: how many, and the picks in `offset..offset + limit` (all with
/// no limit).
///
/// A patch that decides a query for every device (its own fields, a
/// decision no device's grants or exclusions change, no chance of being
/// overdue) is judged once; such exposures are counted from each kind's
/// fixless list (narrowed once per kind) and the device's own exceptions,
/// never one by one. Only the rest is judged per exposure.
pub fn select<'a>(
    plan: &Plan,
    devices: &[&'a DevicePlan],
    filter: &ExposureFilter,
    context: &RowContext,
    offset: usize,
    limit: Option<usize>,
) -> Result<Selection<'a>, FilterError> {
    let (decision, overdue) = (filter.decision()?, filter.overdue()?);
    let tests = patch_tests(plan, filter, context, decision, overdue);
    let end = limit.map_or(usize::MAX, |l| offset.saturating_add(l));
    let mut kinds: HashMap<*const [u32], Narrowed> = HashMap::new();
    let mut selection = Selection { total: 0, picks: Vec::new() };
    for &device in devices.iter().filter(|d| chosen(&filter.device).is_none_or(|id| id == d.id)) {
        let set = &device.exposure;
        let narrowed = kinds.entry(Arc::as_ptr(&set.fixless)).or_insert_with(|| Narrowed::of(&set.fixless, &tests));
        let only = |list: &[u32], wanted: PatchTest| -> Vec<u32> {
            list.iter().copied().filter(|p| tests[*p as usize] == wanted).collect()
        };
        let always = ExposureSet {
            fixless: Arc::clone(&narrowed.always),
            present: only(&set.present, PatchTest::Always),
            needed: only(&set.needed, PatchTest::Always),
        };
        let checked: Vec<Exposure> = if narrowed.per_device.is_empty() && set.needed.is_empty() {
            Vec::new()
        } else {
            let candidates = ExposureSet {
                fixless: Arc::clone(&narrowed.per_device),
                present: only(&set.present, PatchTest::PerDevice),
                needed: only(&set.needed, PatchTest::PerDevice),
            };
            candidates
                .patches()
                .map(|patch| plan.exposure_of(device, patch))
                .filter(|e| decision.is_none_or(|d| d == e.decision))
                .filter(|e| overdue.is_none_or(|o| o == context.overdue(plan, &device.id, e.patch)))
                .collect()
        };
        let (first, last) = (selection.total, selection.total + always.len() + checked.len());
        if first < end && last > offset {
            let skip = offset.saturating_sub(first);
            let take = end.min(last) - first - skip;
            let merged = merge(always.patches(), checked.iter().map(|e| e.patch));
            let picked = merged.skip(skip).take(take).map(|patch| match checked.iter().find(|e| e.patch == patch) {
                Some(exposure) => (device, *exposure),
                None => (device, plan.exposure_of(device, patch)),
            });
            selection.picks.extend(picked);
        }
        selection.total = last;
    }
    Ok(selection)
}

/// A kind's fixless patches split by their test (those that never pass
/// are dropped).
struct Narrowed {
    always: Arc<[u32]>,
    per_device: Arc<[u32]>,
}

impl Narrowed {
    fn of(fixless: &[u32], tests: &[PatchTest]) -> Narrowed {
        let with = |wanted| fixless.iter().copied().filter(|p| tests[*p as usize] == wanted).collect();
        Narrowed { always: with(PatchTest::Always), per_device: with(PatchTest::PerDevice) }
    }
}

/// Two ascending, disjoint sequences of patches as one.
fn merge(a: impl Iterator<Item = u32>, b: impl Iterator<Item = u32>) -> impl Iterator<Item = u32> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
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
    summary.exposures = devices.iter().map(|d| d.exposure.len()).sum();
    // The Exposure view's own count of `?overdue=true`: judged per patch
    // where the patch decides it.
    let overdue = ExposureFilter { overdue: Some("true".into()), ..ExposureFilter::default() };
    summary.overdue = select(plan, devices, &overdue, context, 0, Some(0)).map_or(0, |s| s.total);
    if summary.exposures > 0 {
        summary.overdue_percent = (summary.overdue as f64 * 1000.0 / summary.exposures as f64).round() / 10.0;
    }
    summary.mean_time_to_remediate = tally.mean_seconds().map(|s| patchward_api::Duration::from_secs(s).to_string());
    summary
}
