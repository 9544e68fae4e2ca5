//! The Exposure view's `select` judges what it can once per patch and
//! counts from shared sets; this holds it equal to the plain reading of
//! every exposure, filter by filter and page by page, on a synthetic estate
//! (Windows chains, Linux fixes, rules, exclusions) with a record that
//! dates exposures at different instants, so that overdue varies.

use patchward::catalog::coverage::CoverageSet;
use patchward::daemon::exposure_view::{ExposureFilter, select};
use patchward::plan::exposure::{DatingRule, ExposureSince, RowContext};
use patchward::plan::synthetic::{Size, generate};
use patchward::plan::{CompiledPolicy, DevicePlan, PlanCatalog, PlanInput, plan};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};

/// Dates a third of the exposures a day after the patch was first seen, a
/// third twenty days after, the rest not at all (the plan's instant).
struct Varied;

impl ExposureSince for Varied {
    fn since(&self, device: &str, patch: &str, first_seen: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let spread = device.bytes().chain(patch.bytes()).fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        let after = |hours| first_seen.checked_add(jiff::SignedDuration::from_hours(hours)).unwrap();
        match spread % 3 {
            0 => Some(after(24)),
            1 => Some(after(24 * 20)),
            _ => None,
        }
    }
}

/// A record like the engine's: per device a baseline (a third of the
/// devices have none: their exposures date from the plan), and a few pairs
/// opened on their own; it says so as a rule.
struct Book {
    plan_now: jiff::Timestamp,
}

impl Book {
    fn hash(text: &str) -> u32 {
        text.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
    }

    fn baseline(&self, device: &str) -> Option<jiff::Timestamp> {
        let days = match Book::hash(device) % 3 {
            0 => return None,
            1 => -10,
            _ => 25,
        };
        Some(self.plan_now.checked_add(jiff::SignedDuration::from_hours(24 * days)).unwrap())
    }

    fn opened(&self, device: &str, patch: &str) -> Option<jiff::Timestamp> {
        let days = i64::from(Book::hash(&format!("{device}/{patch}")) % 40);
        (Book::hash(&format!("{patch}{device}")) % 11 == 0)
            .then(|| self.plan_now.checked_add(jiff::SignedDuration::from_hours(24 * days - 24 * 5)).unwrap())
    }
}

impl ExposureSince for Book {
    fn since(&self, device: &str, patch: &str, first_seen: jiff::Timestamp) -> Option<jiff::Timestamp> {
        let baseline = self.baseline(device)?;
        Some(self.opened(device, patch).unwrap_or(baseline.max(first_seen)))
    }

    fn rule(&self, device: &str) -> DatingRule<'_> {
        match self.baseline(device) {
            None => DatingRule::FromPlan,
            // The exceptions are named by patch id; the test's patches are
            // few enough to list them all for the device.
            Some(baseline) => DatingRule::LaterOf { baseline, exceptions: self.exceptions(device) },
        }
    }
}

impl Book {
    fn exceptions(&self, device: &str) -> Vec<&'static str> {
        PATCH_IDS.get().unwrap().iter().filter(|id| self.opened(device, id).is_some()).map(String::as_str).collect()
    }
}

static PATCH_IDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

#[test]
fn select_counts_and_pages_exactly_as_reading_every_exposure() {
    compare(&Varied);
}

#[test]
fn select_with_a_dating_rule_counts_and_pages_exactly_as_reading_every_exposure() {
    compare(&Book { plan_now: generate(SIZE, 11).now });
}

const SIZE: Size = Size { patches: 400, rules: 50, scopes: 20, devices: 300 };

fn compare(record: &dyn ExposureSince) {
    let scenario = generate(SIZE, 11);
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in &scenario.policy_files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let load = load_policy(&PolicySource::Folder(dir.path().to_owned()), &PolicyLimits::default()).unwrap();
    let policy = load.policy.unwrap_or_else(|| panic!("{:#?}", load.diagnostics));
    let policy = CompiledPolicy::compile(policy, None).unwrap();
    let (records, _) = patchward::catalog::offline_catalog(
        patchward::policy::model::FeedFormat::Patchward,
        &scenario.feed,
        scenario.now,
    )
    .unwrap();
    let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&policy.policy));
    let now = scenario.now;
    let computed = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &scenario.fleet, ledger: None, now });
    let remediation = policy.remediation();
    // Judged a month after the plan: some exposures are past their target.
    let later = now.checked_add(jiff::SignedDuration::from_hours(24 * 30)).unwrap();
    let _ = PATCH_IDS.set(computed.patches.clone());
    let context = RowContext { catalog: &catalog, remediation: &remediation, since: record, now: later };
    let devices: Vec<&DevicePlan> = computed.devices.iter().collect();
    let cve = catalog.patches[7].view.record.patch.cves[0].clone();
    let text = |v: &str| Some(v.to_owned());
    let filters = [
        ExposureFilter::default(),
        ExposureFilter { cve: text(&cve), ..ExposureFilter::default() },
        ExposureFilter { severity: text("high"), ..ExposureFilter::default() },
        ExposureFilter { device: text(&devices[5].id), ..ExposureFilter::default() },
        ExposureFilter { decision: text("approved"), ..ExposureFilter::default() },
        ExposureFilter { decision: text("review"), ..ExposureFilter::default() },
        ExposureFilter { decision: text("excluded"), ..ExposureFilter::default() },
        ExposureFilter { decision: text("review"), overdue: text("true"), ..ExposureFilter::default() },
        ExposureFilter { overdue: text("true"), ..ExposureFilter::default() },
        ExposureFilter { overdue: text("false"), severity: text("critical"), ..ExposureFilter::default() },
        ExposureFilter { overdue: text("true"), decision: text("approved"), ..ExposureFilter::default() },
    ];
    let (mut checked, mut exercised) = (0, 0);
    for filter in &filters {
        // The plain reading: every exposure of every device, judged alone.
        let every: Vec<(String, u32, patchward::plan::ExposureDecision)> = devices
            .iter()
            .filter(|d| filter.device.as_deref().is_none_or(|id| id == d.id))
            .flat_map(|d| computed.exposures(d).map(move |e| (d, e)))
            .filter(|(d, e)| {
                let record = &catalog.patches[e.patch as usize].view.record;
                filter.cve.as_deref().is_none_or(|c| record.patch.cves.iter().any(|x| x.eq_ignore_ascii_case(c)))
                    && filter.severity.as_deref().is_none_or(|s| s == record.severity.as_str())
                    && filter.decision.as_deref().is_none_or(|w| w == e.decision.as_str())
                    && filter
                        .overdue
                        .as_deref()
                        .is_none_or(|o| (o == "true") == context.overdue(&computed, &d.id, e.patch))
            })
            .map(|(d, e)| (d.id.clone(), e.patch, e.decision))
            .collect();
        exercised += usize::from(!every.is_empty());
        for (offset, limit) in
            [(0, Some(50)), (every.len() / 3, Some(97)), (every.len().saturating_sub(5), Some(50)), (0, None)]
        {
            let selection = select(&computed, &devices, filter, &context, offset, limit).unwrap();
            assert_eq!(selection.total, every.len(), "{filter:?}");
            let picked: Vec<(String, u32, patchward::plan::ExposureDecision)> =
                selection.picks.iter().map(|(d, e)| (d.id.clone(), e.patch, e.decision)).collect();
            let end = limit.map_or(every.len(), |l| (offset + l).min(every.len()));
            assert_eq!(picked, every[offset.min(every.len())..end], "{filter:?} at {offset}");
            checked += picked.len();
        }
    }
    assert!(checked > 1000, "the comparison read {checked} rows");
    assert!(exercised >= filters.len() - 2, "only {exercised} filters found rows");
}
