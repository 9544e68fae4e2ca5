//! Exposure as a security officer reads it: one row per (device, patch)
//! where an active patch applies and is not installed, whatever the policy
//! decided, with its CVEs, severity and CVSS, the decision and why, since
//! when the device has been exposed, and how that compares with the
//! remediation target for its severity (`Settings.spec.remediation`).
//!
//! The planner finds the exposures ([`super::DevicePlan::exposure`]); this
//! module renders them. `plan --format json`, `GET /api/v1/exposure` and the
//! console's Exposure view all take their rows from [`rows`], so they
//! cannot disagree.
//!
//! "Since" is the engine's record of when it first saw the device exposed
//! (an [`ExposureSince`]); an offline plan has no such record and writes the
//! instant it plans for.

use schemars::JsonSchema;
use serde::Serialize;

use super::{DevicePlan, Exposure, ExposureDecision, Plan, PlanCatalog};
use crate::policy::model::Remediation;

/// When a device was first seen exposed to a patch (whose `firstSeen` is
/// given), as recorded.
pub trait ExposureSince {
    fn since(&self, device: &str, patch: &str, first_seen: jiff::Timestamp) -> Option<jiff::Timestamp>;

    /// The one rule that dates `device`'s exposures, when the record has
    /// one: what lets a query judge "overdue" per kind of device rather
    /// than per pair. It must agree with [`ExposureSince::since`].
    fn rule(&self, _device: &str) -> DatingRule<'_> {
        DatingRule::PerPair
    }
}

/// How a device's exposures are dated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatingRule<'a> {
    /// No single rule: every pair is asked.
    PerPair,
    /// Nothing recorded for the device: every exposure dates from the plan.
    FromPlan,
    /// From the later of `baseline` and the patch's `firstSeen`, except the
    /// patches in `exceptions` (by id), dated on their own.
    LaterOf { baseline: jiff::Timestamp, exceptions: Vec<&'a str> },
}

/// No record: an offline plan.
pub struct NoRecord;

impl ExposureSince for NoRecord {
    fn since(&self, _device: &str, _patch: &str, _first_seen: jiff::Timestamp) -> Option<jiff::Timestamp> {
        None
    }

    fn rule(&self, _device: &str) -> DatingRule<'_> {
        DatingRule::FromPlan
    }
}

/// DESIGN's exposure row.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposureRow {
    /// The device id.
    pub device: String,
    pub patch: String,
    pub title: String,
    pub cves: Vec<String>,
    pub severity: String,
    /// The CVSS base score, when the catalog has one.
    pub cvss: Option<f64>,
    pub decision: ExposureDecision,
    /// Why, in words: the rule, approval or exclusion that decided.
    pub reason: String,
    /// RFC 3339, UTC: when the device was first seen exposed.
    pub since: String,
    /// The remediation target for the severity (`48h`), or null.
    pub target: Option<String>,
    /// Exposed for longer than the target.
    pub overdue: bool,
}

/// How rows are rendered: the catalog the plan was made with, the targets,
/// the record of since when, and the instant "overdue" is judged at (the
/// plan's own for `plan`, the request's for the API).
pub struct RowContext<'a> {
    pub catalog: &'a PlanCatalog,
    pub remediation: &'a Remediation,
    pub since: &'a dyn ExposureSince,
    pub now: jiff::Timestamp,
}

/// The exposure rows of one device, by patch.
pub fn rows(plan: &Plan, device: &DevicePlan, context: &RowContext) -> Vec<ExposureRow> {
    plan.exposures(device).map(|exposure| context.row(plan, &device.id, &exposure)).collect()
}

impl RowContext<'_> {
    /// Since when `device` has been exposed to `patch` (by index): the
    /// record's instant, else the plan's; never later than `now`.
    pub fn since(&self, plan: &Plan, device: &str, patch: u32) -> jiff::Timestamp {
        let first_seen = self.catalog.patches[patch as usize].view.record.first_seen;
        self.since.since(device, &plan.patches[patch as usize], first_seen).unwrap_or(plan.now).min(self.now)
    }

    /// Whether no device can be overdue on `patch`: exposed since its
    /// earliest possible instant, it would still be within its target. No
    /// record dates an exposure before the patch's `firstSeen`, and with
    /// none an exposure dates from the plan.
    pub fn never_overdue(&self, plan: &Plan, patch: u32) -> bool {
        let record = &self.catalog.patches[patch as usize].view.record;
        let earliest = record.first_seen.min(plan.now).min(self.now);
        !is_overdue(earliest, self.remediation.target(record.severity), self.now)
    }

    /// The severities (bits by index in `Severity::ALL`) whose target has
    /// passed for an exposure dated `base`.
    pub fn overdue_severities(&self, base: jiff::Timestamp) -> u8 {
        use crate::catalog::feed::Severity;
        let base = base.min(self.now);
        Severity::ALL
            .iter()
            .enumerate()
            .filter(|(_, severity)| is_overdue(base, self.remediation.target(**severity), self.now))
            .fold(0, |mask, (bit, _)| mask | 1 << bit)
    }

    /// Whether `patch` would be overdue dated from its own `firstSeen`: the
    /// second half of "the later of baseline and firstSeen" (an exposure is
    /// overdue exactly when it is both from its baseline and from this).
    pub fn ripe(&self, patch: u32) -> bool {
        let record = &self.catalog.patches[patch as usize].view.record;
        is_overdue(record.first_seen.min(self.now), self.remediation.target(record.severity), self.now)
    }

    /// `patch`'s severity as a bit of [`RowContext::overdue_severities`].
    pub fn severity_bit(&self, patch: u32) -> u8 {
        let severity = self.catalog.patches[patch as usize].view.record.severity;
        let index = crate::catalog::feed::Severity::ALL.iter().position(|s| *s == severity).unwrap_or(0);
        1 << index
    }

    /// Whether that exposure is past the target of the patch's severity.
    pub fn overdue(&self, plan: &Plan, device: &str, patch: u32) -> bool {
        let target = self.remediation.target(self.catalog.patches[patch as usize].view.record.severity);
        is_overdue(self.since(plan, device, patch), target, self.now)
    }

    /// The row of one of `device`'s exposures.
    pub fn row(&self, plan: &Plan, device: &str, exposure: &Exposure) -> ExposureRow {
        let record = &self.catalog.patches[exposure.patch as usize].view.record;
        let since = self.since(plan, device, exposure.patch);
        let target = self.remediation.target(record.severity);
        ExposureRow {
            device: device.to_owned(),
            patch: plan.patches[exposure.patch as usize].clone(),
            title: record.patch.title.clone(),
            cves: record.patch.cves.clone(),
            severity: record.severity.as_str().to_owned(),
            cvss: record.score,
            decision: exposure.decision,
            reason: reason(plan, exposure),
            since: since.to_string(),
            target: target.map(|t| t.to_string()),
            overdue: is_overdue(since, target, self.now),
        }
    }
}

/// Exposed since `since`, at `now`: past its target (a severity without one
/// is never overdue).
pub fn is_overdue(since: jiff::Timestamp, target: Option<patchward_api::Duration>, now: jiff::Timestamp) -> bool {
    let Some(target) = target else { return false };
    let Ok(seconds) = i64::try_from(target.as_secs()) else { return false };
    now.as_second().saturating_sub(since.as_second()) > seconds
}

/// The decision in words.
pub fn reason(plan: &Plan, exposure: &Exposure) -> String {
    let rule = |index: u32| plan.rules.get(index as usize).map_or("?", |r| r.name.as_str());
    match exposure.decision {
        ExposureDecision::Approved => {
            let grant = &plan.grants[exposure.patch as usize][exposure.by as usize];
            let (kind, name) = plan.source_name(grant.source);
            let scope = &plan.scope_names[grant.scope as usize];
            format!("approved by {kind} {name} for scope {scope}")
        }
        ExposureDecision::Excluded => {
            format!("declined by exclusion {}", plan.exclusion_names[exposure.by as usize])
        }
        ExposureDecision::Review => format!("rule {} sends it to review", rule(exposure.by)),
        ExposureDecision::Held => format!("rule {} holds it", rule(exposure.by)),
        ExposureDecision::Superseded => {
            format!("superseded by a newer patch; rule {} deploys only the newest", rule(exposure.by))
        }
        ExposureDecision::Unmatched if exposure.by == Exposure::NOBODY => "no rule matches it".to_owned(),
        ExposureDecision::Unmatched => {
            let outcome = &plan.rules[exposure.by as usize];
            if outcome.errors.iter().any(|(p, _)| *p == exposure.patch) {
                format!("rule {} failed to evaluate on it", outcome.name)
            } else {
                format!("rule {} approves it for scopes this device is not in", outcome.name)
            }
        }
    }
}
