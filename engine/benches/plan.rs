//! Planner benchmarks on a synthetic estate (`patchward::plan::synthetic`):
//!
//! 1. rule evaluation, 20,000 patches × 50 rules: the planner's shared
//!    evaluation, CEL on every pair, and the same predicates as Rust closures;
//! 2. scope membership, 100,000 devices × 20 scopes: shared and per device;
//! 3. the full plan of 100,000 devices × 20,000 patches, with its peak memory;
//! 4. the Exposure view over that plan: one page per filter, and the
//!    compliance summary;
//! 5. a one-rule change re-planned against that plan
//!    (`plan::plan_policy_change`): one rule's last stage comes sooner.
//!
//! `cargo bench -p patchward-engine --bench plan`. Sizes from
//! `PATCHWARD_BENCH_DEVICES`, `PATCHWARD_BENCH_PATCHES`, `PATCHWARD_BENCH_RULES`,
//! `PATCHWARD_BENCH_SCOPES`; `PATCHWARD_BENCH_PARTS` picks the parts to run
//! (`12345` by default, `3` for the full plan alone, `35` with the change).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// mimalloc, as in the `patchward` binary, counting live heap bytes and
/// their peak, so the plan's own memory is measured exactly.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let pointer = unsafe { mimalloc::MiMalloc.alloc(layout) };
        if !pointer.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(pointer, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { mimalloc::MiMalloc.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let live = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

use patchward::catalog::coverage::CoverageSet;
use patchward::expr::eval::{CelValue, Evaluator};
use patchward::plan::synthetic::{Size, generate};
use patchward::plan::{CompiledPolicy, PlanCatalog, PlanInput, device_json, match_rules, plan, scope_membership};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use rayon::prelude::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Runs `f` `runs` times; the best and median seconds.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        last = Some(std::hint::black_box(f()));
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (times[0], times[times.len() / 2], last.expect("at least one run"))
}

fn main() {
    let size = Size {
        patches: env("PATCHWARD_BENCH_PATCHES", 20_000),
        rules: env("PATCHWARD_BENCH_RULES", 50),
        scopes: env("PATCHWARD_BENCH_SCOPES", 20),
        devices: env("PATCHWARD_BENCH_DEVICES", 100_000),
    };
    println!("scenario: {size:?}, {} threads", rayon::current_num_threads());
    let started = Instant::now();
    let scenario = generate(size, 7);
    let dir = tempfile::tempdir().expect("a temp dir");
    for (name, text) in &scenario.policy_files {
        std::fs::write(dir.path().join(name), text).expect("write the policy");
    }
    let load = load_policy(&PolicySource::Folder(dir.path().to_owned()), &PolicyLimits::default()).expect("reads");
    let policy = load.policy.unwrap_or_else(|| panic!("the synthetic policy is valid: {:#?}", load.diagnostics));
    let policy = CompiledPolicy::compile(policy, None).expect("compiles");
    let (records, _) = patchward::catalog::offline_catalog(
        patchward::policy::model::FeedFormat::Patchward,
        &scenario.feed,
        scenario.now,
    )
    .expect("the synthetic feed imports");
    let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&policy.policy));
    println!(
        "generated and loaded in {:.2} s: {} active patches, {} devices",
        started.elapsed().as_secs_f64(),
        catalog.len(),
        scenario.fleet.len()
    );
    let now = scenario.now;
    let parts = std::env::var("PATCHWARD_BENCH_PARTS").unwrap_or_else(|_| "12345".into());
    if parts.contains('1') {
        rule_evaluation(&policy, &catalog, &scenario, now);
    }
    if parts.contains('2') {
        membership(&policy, &scenario, now);
    }
    if parts.contains('3') {
        let base = full_plan(&policy, &catalog, &scenario, now, parts.contains('4'));
        if parts.contains('5') {
            one_rule_change(dir.path(), &policy, &base, &catalog, &scenario, now);
        }
    }
}

/// Part 5: rule-002's last stage after 1 day instead of 7, planned against
/// the full plan of the revision before, as the engine does at a commit
/// that changes one rule.
fn one_rule_change(
    dir: &std::path::Path,
    previous: &CompiledPolicy,
    base: &patchward::plan::Plan,
    catalog: &PlanCatalog,
    scenario: &patchward::plan::synthetic::Scenario,
    now: jiff::Timestamp,
) {
    let marker = "metadata: {name: rule-002}\nspec: ";
    for (name, text) in &scenario.policy_files {
        let start = text.find(marker).expect("rule-002") + marker.len();
        let end = start + text[start..].find('\n').expect("one line");
        let edited = text[start..end].replacen("after: 7d", "after: 1d", 1);
        std::fs::write(dir.join(name), format!("{}{edited}{}", &text[..start], &text[end..])).expect("write");
    }
    let load = load_policy(&PolicySource::Folder(dir.to_owned()), &PolicyLimits::default()).expect("reads");
    let next = CompiledPolicy::compile(load.policy.expect("valid"), None).expect("compiles");
    let input = PlanInput { policy: &next, catalog, fleet: &scenario.fleet, ledger: None, now };
    println!("\n5. one-rule change: rule-002's last stage sooner, {} devices", base.devices.len());
    let (best, median, change) =
        time(3, || patchward::plan::plan_policy_change(&input, previous, base).expect("a rule-only change"));
    println!(
        "   {best:.2} s (median {median:.2} s): {} patches changed, {} of {} devices planned again",
        change.changed.len(),
        change.plan.devices.len(),
        base.devices.len()
    );
}

/// Part 1: every rule's `match` over the catalog, three ways.
fn rule_evaluation(
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    scenario: &patchward::plan::synthetic::Scenario,
    now: jiff::Timestamp,
) {
    let pairs = (catalog.len() * policy.rules.len()) as f64;

    println!("\n1. rule evaluation: {} patches × {} rules = {pairs:.0} pairs", catalog.len(), policy.rules.len());
    let (best, median, matches) =
        time(5, || match_rules(policy, catalog, &Evaluator::new(&policy.env, now), &mut Vec::new()));
    let matched_cel: usize = matches.iter().map(|m| m.matched.len()).sum();
    println!(
        "   planner (shared by field values, 2 threads) {:>8.1} ms  {:>12.0} pairs/s   (median {:.1} ms)",
        best * 1e3,
        pairs / best,
        median * 1e3
    );
    let evaluator = Evaluator::new(&policy.env, now);
    let every_pair = |interpreter: bool| {
        let mut matched = 0usize;
        for rule in &policy.rules {
            for patch in &catalog.patches {
                let answer = if interpreter {
                    evaluator.interpret(&rule.matcher.expr, "patch", &patch.cel)
                } else {
                    evaluator.evaluate_in(&rule.matcher.expr, "patch", &patch.cel, patch)
                };
                if answer == Ok(true) {
                    matched += 1;
                }
            }
        }
        matched
    };
    let (best_cel, median_cel, matched_every) = time(3, || every_pair(false));
    println!(
        "   CEL on every pair, fast path (1 thread)     {:>8.1} ms  {:>12.0} pairs/s   (median {:.1} ms)",
        best_cel * 1e3,
        pairs / best_cel,
        median_cel * 1e3
    );
    let (best_interpreter, _, matched_interpreter) = time(1, || every_pair(true));
    println!(
        "   CEL interpreter on every pair (1 thread)    {:>8.1} ms  {:>12.0} pairs/s",
        best_interpreter * 1e3,
        pairs / best_interpreter
    );
    assert_eq!(matched_every, matched_interpreter, "the fast path and the interpreter agree");
    let (best_native, median_native, matched_native) = time(5, || {
        let mut matched = 0usize;
        for (_, closure) in &scenario.closures {
            for patch in &catalog.patches {
                if closure(&patch.view.record, now) {
                    matched += 1;
                }
            }
        }
        matched
    });
    println!(
        "   Rust closures on every pair (1 thread)      {:>8.1} ms  {:>12.0} pairs/s   (median {:.1} ms)",
        best_native * 1e3,
        pairs / best_native,
        median_native * 1e3
    );
    assert_eq!(matched_cel, matched_every, "shared and per-pair CEL agree");
    assert_eq!(matched_every, matched_native, "CEL and the closures agree");
    println!(
        "   ratios to the closures: planner {:.2}×, CEL fast path {:.1}×, interpreter {:.1}×  ({matched_native} matches)",
        best / best_native,
        best_cel / best_native,
        best_interpreter / best_native
    );
}

/// Part 2: scope membership, shared by fact values and per device.
fn membership(policy: &CompiledPolicy, scenario: &patchward::plan::synthetic::Scenario, now: jiff::Timestamp) {
    println!("\n2. scope membership: {} devices × {} scopes", scenario.fleet.len(), policy.scopes.len() - 1);
    let devices: Vec<&patchward_api::Device> = scenario.fleet.iter().collect();
    let (best, median, members) =
        time(3, || scope_membership(policy, &devices, &Evaluator::new(&policy.env, now), &mut Vec::new()));
    let evaluations = (scenario.fleet.len() * (policy.scopes.len() - 1)) as f64;
    println!(
        "   planner (shared by fact values)             {:>8.1} ms  {:>12.0} device-scopes/s (median {:.1} ms)",
        best * 1e3,
        evaluations / best,
        median * 1e3
    );
    let (best_each, _, members_each) = time(1, || {
        let values: Vec<CelValue> = devices.par_iter().map(|d| CelValue::from_json(&device_json(d), &[])).collect();
        policy
            .scopes
            .par_iter()
            .skip(1)
            .map(|scope| {
                let evaluator = Evaluator::new(&policy.env, now);
                let selector = scope.selector.as_ref().expect("synthetic scopes have selectors");
                values
                    .iter()
                    .map(|v| evaluator.evaluate(&selector.expr, "device", v) == Ok(true))
                    .collect::<Vec<bool>>()
            })
            .collect::<Vec<_>>()
    });
    println!(
        "   CEL for every device (2 threads)            {:>8.1} ms  {:>12.0} device-scopes/s",
        best_each * 1e3,
        evaluations / best_each
    );
    assert_eq!(&members[1..], &members_each[..], "shared and per-device selectors agree");
}

/// Part 3: the full plan, its memory, and (part 4) the exposure views over it.
fn full_plan(
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    scenario: &patchward::plan::synthetic::Scenario,
    now: jiff::Timestamp,
    views: bool,
) -> patchward::plan::Plan {
    println!("\n3. full plan: {} devices × {} patches", scenario.fleet.len(), catalog.len());
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let computed = plan(&PlanInput { policy, catalog, fleet: &scenario.fleet, ledger: None, now });
    let seconds = started.elapsed().as_secs_f64();
    let (peak, after) = (PEAK.load(Ordering::Relaxed), LIVE.load(Ordering::Relaxed));
    let summary = computed.summary();
    println!(
        "   {seconds:.2} s; {} items ({} installed, {} due, {} scheduled, {} blocked); {} grants",
        summary.items,
        summary.installed,
        summary.due,
        summary.scheduled,
        summary.blocked,
        computed.grants.iter().map(Vec::len).sum::<usize>()
    );
    println!("   {} exposure rows", computed.devices.iter().map(|d| d.exposure.len()).sum::<usize>());
    println!(
        "   heap: {:.0} MiB live before (policy, catalog, fleet), {:.0} MiB at the peak of the plan (+{:.0} MiB), the plan itself {:.0} MiB; process peak RSS {:.0} MiB",
        mib(before),
        mib(peak),
        mib(peak - before),
        mib(after.saturating_sub(before)),
        peak_rss()
    );
    if views {
        exposure_views(&computed, policy, catalog, now);
    }
    drop(computed);
    let (best, median, computed) =
        time(3, || plan(&PlanInput { policy, catalog, fleet: &scenario.fleet, ledger: None, now }));
    println!("   repeated: best {best:.2} s, median {median:.2} s");
    computed
}

/// Part 4: the Exposure view's work (`daemon::exposure_view`, the function
/// the API and the console share) over the full plan: count and render one
/// page for the filters an officer uses, and compliance's summary.
fn exposure_views(
    computed: &patchward::plan::Plan,
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    now: jiff::Timestamp,
) {
    use patchward::daemon::exposure_view::{ExposureFilter, exposure_summary, render, select};
    use patchward::plan::exposure::{NoRecord, RowContext};
    let remediation = policy.remediation();
    let context = RowContext { catalog, remediation: &remediation, since: &NoRecord, now };
    let devices: Vec<&patchward::plan::DevicePlan> = computed.devices.iter().collect();
    let cve = catalog.patches.iter().find_map(|p| p.view.record.patch.cves.first().cloned()).unwrap_or_default();
    let text = |v: &str| Some(v.to_owned());
    let filters = [
        ("first page, no filter", ExposureFilter::default()),
        ("one CVE", ExposureFilter { cve: text(&cve), ..ExposureFilter::default() }),
        ("severity critical", ExposureFilter { severity: text("critical"), ..ExposureFilter::default() }),
        ("one device", ExposureFilter { device: text("dev-004242"), ..ExposureFilter::default() }),
        ("decision review", ExposureFilter { decision: text("review"), ..ExposureFilter::default() }),
        ("decision approved", ExposureFilter { decision: text("approved"), ..ExposureFilter::default() }),
    ];
    println!("\n4. exposure view: {} devices, first page of 50 rows", devices.len());
    for (what, filter) in filters {
        let (best, median, total) = time(3, || {
            let selection = select(computed, &devices, &filter, &context, 0, Some(50)).expect("a valid filter");
            std::hint::black_box(render(computed, &selection.picks, &context));
            selection.total
        });
        println!("   {what:<28} {:>8.1} ms (median {:.1} ms), {total} rows", best * 1e3, median * 1e3);
    }
    let tally = patchward::store::exposure::RemediationTally::default();
    // Judged at the plan's instant nothing is overdue yet; a month later
    // most is, and overdue must be read per exposure.
    for (when, at) in
        [("now", now), ("a month later", now.checked_add(jiff::SignedDuration::from_hours(24 * 30)).unwrap())]
    {
        let context = RowContext { catalog, remediation: &remediation, since: &NoRecord, now: at };
        let overdue = ExposureFilter { overdue: text("true"), ..ExposureFilter::default() };
        let (best, median, total) = time(3, || {
            let selection = select(computed, &devices, &overdue, &context, 0, Some(50)).expect("a valid filter");
            std::hint::black_box(render(computed, &selection.picks, &context));
            selection.total
        });
        println!("   overdue, judged {when:<13} {:>8.1} ms (median {:.1} ms), {total} rows", best * 1e3, median * 1e3);
        let (best, median, summary) = time(3, || exposure_summary(computed, &devices, &context, tally));
        println!(
            "   compliance summary, {when:<13}{:>7.1} ms (median {:.1} ms), {} exposures, {}% overdue",
            best * 1e3,
            median * 1e3,
            summary.exposures,
            summary.overdue_percent
        );
    }
}
