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
use crate::plan::exposed::{ExposureSet, merge};
use crate::plan::exposure::{DatingRule, ExposureRow, RowContext};
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

/// Whether a patch's exposures pass a query: judged once per patch (or
/// per kind of device) where that decides it, else per exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PatchTest {
    Never,
    Always,
    PerDevice,
}

fn both(a: PatchTest, b: PatchTest) -> PatchTest {
    match (a, b) {
        (PatchTest::Never, _) | (_, PatchTest::Never) => PatchTest::Never,
        (PatchTest::Always, PatchTest::Always) => PatchTest::Always,
        _ => PatchTest::PerDevice,
    }
}

/// Each active patch's [`PatchTest`] on all but overdue: its own fields
/// (cve, patch, severity), then a decision every device gets alike
/// ([`Plan::uniform_decision`]) or none can get ([`Plan::may_decide`]).
fn patch_tests(
    plan: &Plan,
    filter: &ExposureFilter,
    context: &RowContext,
    decision: Option<ExposureDecision>,
) -> Vec<PatchTest> {
    let passes = filter.patches(context.catalog);
    (0..plan.patches.len() as u32)
        .map(|patch| match (passes[patch as usize], decision) {
            (false, _) => PatchTest::Never,
            (true, None) => PatchTest::Always,
            (true, Some(wanted)) => match plan.uniform_decision(patch) {
                Some(uniform) if uniform == wanted => PatchTest::Always,
                Some(_) => PatchTest::Never,
                None if plan.may_decide(patch, wanted) => PatchTest::PerDevice,
                None => PatchTest::Never,
            },
        })
        .collect()
}

/// How a device's exposures are judged overdue: per pair, or by its dating
/// rule, which only the severities past their target from its base
/// instant (and, from a baseline, whether the patch is ripe) decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dating {
    PerPair,
    Rule { severities: u8, from_baseline: bool },
}

/// What an overdue filter needs per patch, judged once.
struct OverdueTests {
    wanted: Option<bool>,
    never: Vec<bool>,
    ripe: Vec<bool>,
    bits: Vec<u8>,
}

impl OverdueTests {
    fn new(plan: &Plan, context: &RowContext, wanted: Option<bool>) -> OverdueTests {
        let count = if wanted.is_some() { plan.patches.len() as u32 } else { 0 };
        OverdueTests {
            wanted,
            never: (0..count).map(|p| context.never_overdue(plan, p)).collect(),
            ripe: (0..count).map(|p| context.ripe(p)).collect(),
            bits: (0..count).map(|p| context.severity_bit(p)).collect(),
        }
    }

    /// The overdue half of `patch`'s test for a device dated so.
    fn test(&self, patch: u32, dating: Dating) -> PatchTest {
        let Some(wanted) = self.wanted else { return PatchTest::Always };
        let p = patch as usize;
        let late = match dating {
            _ if self.never[p] => false,
            Dating::PerPair => return PatchTest::PerDevice,
            Dating::Rule { severities, from_baseline } => {
                severities & self.bits[p] != 0 && (self.ripe[p] || !from_baseline)
            }
        };
        if late == wanted { PatchTest::Always } else { PatchTest::Never }
    }
}

/// `device`'s dating and the patches its record dates on their own.
fn dating_of<'r>(plan: &Plan, context: &'r RowContext, device: &str, overdue: Option<bool>) -> (Dating, Vec<&'r str>) {
    if overdue.is_none() {
        return (Dating::Rule { severities: 0, from_baseline: false }, Vec::new());
    }
    match context.since.rule(device) {
        DatingRule::PerPair => (Dating::PerPair, Vec::new()),
        DatingRule::FromPlan => {
            (Dating::Rule { severities: context.overdue_severities(plan.now), from_baseline: false }, Vec::new())
        }
        DatingRule::LaterOf { baseline, exceptions } => {
            (Dating::Rule { severities: context.overdue_severities(baseline), from_baseline: true }, exceptions)
        }
    }
}

/// The exposures that pass `filter` at the context's instant, by device
/// then patch: how many, and the picks in `offset..offset + limit` (all with
/// no limit).
///
/// What a patch decides for every device (its own fields, a decision no
/// device's grants or exclusions change) is judged once; a decision grants
/// or exclusions make, once per set of scopes and group of patches decided
/// alike ([`DecisionGroups`]); overdue, once per kind of
/// device and dating (the severities past their target from its baseline).
/// Exposures so decided are counted from each kind's fixless list, narrowed
/// once per (kind, dating, answers), and the device's own exceptions, never
/// one by one; only the pairs the record dates on its own (or a record with
/// no rule at all) are read exposure by exposure.
pub fn select<'a>(
    plan: &Plan,
    devices: &[&'a DevicePlan],
    filter: &ExposureFilter,
    context: &RowContext,
    offset: usize,
    limit: Option<usize>,
) -> Result<Selection<'a>, FilterError> {
    let (decision, overdue) = (filter.decision()?, filter.overdue()?);
    let base = patch_tests(plan, filter, context, decision);
    let late = OverdueTests::new(plan, context, overdue);
    let end = limit.map_or(usize::MAX, |l| offset.saturating_add(l));
    let mut groups = DecisionGroups::new(plan, &base, decision);
    // Devices of one kind, dating and answers to the decision groups share
    // their narrowing.
    let mut kinds: HashMap<(*const [u32], Dating, u32), Narrowed> = HashMap::new();
    let mut selection = Selection { total: 0, picks: Vec::new() };
    for &device in devices.iter().filter(|d| chosen(&filter.device).is_none_or(|id| id == d.id)) {
        let (dating, exceptions) = dating_of(plan, context, &device.id, overdue);
        let answers = groups.answers(plan, device);
        let decided = |patch: u32| match base[patch as usize] {
            PatchTest::PerDevice if groups.passes(answers, patch) => PatchTest::Always,
            PatchTest::PerDevice => PatchTest::Never,
            test => test,
        };
        let test = |patch: u32| both(decided(patch), late.test(patch, dating));
        let set = &device.exposure;
        let key = (Arc::as_ptr(&set.fixless), dating, answers);
        let narrowed = kinds.entry(key).or_insert_with(|| Narrowed::of(&set.fixless, &test));
        let own: Vec<u32> = exceptions.iter().filter_map(|id| context.catalog.get(id)).collect();
        let admitted = |patch: u32| base[patch as usize] != PatchTest::Never;
        let (always, candidates) = narrowed.split(set, &own, &test, &admitted);
        let checked: Vec<Exposure> = if candidates.is_empty() {
            Vec::new()
        } else {
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

/// For a decision filter, the patches whose decision a device's scopes
/// make (install grants, exclusions), grouped by everything that decides
/// it: the scopes of their install grants, their exclusions and their
/// verdict. A set of scopes answers each group once; devices whose answers
/// agree share an id.
struct DecisionGroups<'p> {
    wanted: Option<ExposureDecision>,
    /// Per patch, its group (`u32::MAX`: not decided per device).
    group: Vec<u32>,
    /// Per group, one of its patches.
    representative: Vec<u32>,
    by_scopes: HashMap<&'p [u32], u32>,
    ids: HashMap<Vec<bool>, u32>,
    answers: Vec<Vec<bool>>,
}

impl<'p> DecisionGroups<'p> {
    fn new(plan: &Plan, base: &[PatchTest], wanted: Option<ExposureDecision>) -> DecisionGroups<'p> {
        let mut keys: HashMap<(Vec<u32>, Vec<u32>, ExposureDecision), u32> = HashMap::new();
        let mut representative = Vec::new();
        let group = (0..plan.patches.len() as u32)
            .map(|patch| {
                if base[patch as usize] != PatchTest::PerDevice {
                    return u32::MAX;
                }
                let mut scopes: Vec<u32> = plan.grants[patch as usize]
                    .iter()
                    .filter(|g| g.action == crate::policy::model::ItemAction::Install)
                    .map(|g| g.scope)
                    .collect();
                scopes.sort_unstable();
                scopes.dedup();
                let key = (scopes, plan.excluded_by[patch as usize].clone(), plan.verdicts[patch as usize].decision);
                *keys.entry(key).or_insert_with(|| {
                    representative.push(patch);
                    representative.len() as u32 - 1
                })
            })
            .collect();
        DecisionGroups {
            wanted,
            group,
            representative,
            by_scopes: HashMap::new(),
            ids: HashMap::new(),
            answers: Vec::new(),
        }
    }

    /// The id of `device`'s answers (0 without a decision filter).
    fn answers(&mut self, plan: &Plan, device: &'p DevicePlan) -> u32 {
        let Some(wanted) = self.wanted else { return 0 };
        if let Some(id) = self.by_scopes.get(device.scopes.as_slice()) {
            return *id;
        }
        let answers: Vec<bool> =
            self.representative.iter().map(|p| plan.exposure_of(device, *p).decision == wanted).collect();
        let next = self.answers.len() as u32;
        let id = *self.ids.entry(answers.clone()).or_insert(next);
        if id == next {
            self.answers.push(answers);
        }
        self.by_scopes.insert(&device.scopes, id);
        id
    }

    fn passes(&self, answers: u32, patch: u32) -> bool {
        self.answers[answers as usize][self.group[patch as usize] as usize]
    }
}

/// A kind's fixless patches split by their test for one dating (those
/// that never pass are dropped).
struct Narrowed {
    always: Arc<[u32]>,
    per_device: Arc<[u32]>,
}

impl Narrowed {
    fn of(fixless: &[u32], test: &dyn Fn(u32) -> PatchTest) -> Narrowed {
        let with = |wanted| fixless.iter().copied().filter(|p| test(*p) == wanted).collect();
        Narrowed { always: with(PatchTest::Always), per_device: with(PatchTest::PerDevice) }
    }

    /// `set` as the exposures decided by the sets (`always`) and those to
    /// read one by one (`candidates`): the per-device ones, and the
    /// record's own exceptions (`own`, by patch) that the rest of the query
    /// admits (`admitted`), wherever they are, since their dating is their
    /// own.
    fn split(
        &self,
        set: &ExposureSet,
        own: &[u32],
        test: &dyn Fn(u32) -> PatchTest,
        admitted: &dyn Fn(u32) -> bool,
    ) -> (ExposureSet, ExposureSet) {
        let in_always = |p: &u32| self.always.binary_search(p).is_ok();
        let in_per_device = |p: &u32| self.per_device.binary_search(p).is_ok();
        // The exceptions the device is exposed to, not already read one by one.
        let exposed = |p: &u32| {
            set.fixless.binary_search(p).is_ok() && set.present.binary_search(p).is_err() || set.needed.contains(p)
        };
        let lifted: Vec<u32> =
            own.iter().copied().filter(|p| admitted(*p) && exposed(p) && !in_per_device(p)).collect();
        let mut present: Vec<u32> = set.present.iter().copied().filter(in_always).collect();
        present.extend(lifted.iter().copied().filter(in_always));
        present.sort_unstable();
        present.dedup();
        let needed_always = set.needed.iter().copied().filter(|p| test(*p) == PatchTest::Always && !lifted.contains(p));
        let always = ExposureSet { fixless: Arc::clone(&self.always), present, needed: needed_always.collect() };
        let mut extra: Vec<u32> = set.needed.iter().copied().filter(|p| test(*p) == PatchTest::PerDevice).collect();
        extra.extend(lifted.iter().copied().filter(|p| !in_per_device(p)));
        extra.sort_unstable();
        extra.dedup();
        let candidates = ExposureSet {
            fixless: Arc::clone(&self.per_device),
            present: set.present.iter().copied().filter(in_per_device).collect(),
            needed: extra,
        };
        (always, candidates)
    }
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
