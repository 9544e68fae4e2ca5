//! Issue 18's goal 3: a one-rule commit re-planned in proportion to what it
//! changed. A real engine (sled on disk, no HTTP) over the planner's
//! synthetic estate: its catalog imported, its fleet enrolled with
//! inventories through the store; the first revision planned in full, then
//! a revision where one rule's last stage comes sooner (rule-002, as the
//! plan bench's part 5) is put in force. Printed: the full plan, and the
//! change from `install_policy` called to its return, and to every affected
//! state re-signed and served (long polls told), with how many devices it
//! planned.
//!
//! `cargo bench -p patchward-engine --bench policy_commit`
//! (`PATCHWARD_BENCH_DEVICES`, 100,000 by default).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use patchward::clock::FakeClock;
use patchward::daemon::{Engine, EngineSettings};
use patchward::plan::CompiledPolicy;
use patchward::plan::synthetic::{Scenario, Size, generate};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward::store::Store;
use patchward::store::fleet::EnrollmentToken;
use rayon::prelude::*;

/// As in the `patchward` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn compiled(dir: &std::path::Path, text: &str, revision: &str) -> CompiledPolicy {
    std::fs::write(dir.join("policy.yaml"), text).expect("write the policy");
    let load = load_policy(&PolicySource::Folder(dir.to_owned()), &PolicyLimits::default()).expect("reads");
    CompiledPolicy::compile(load.policy.expect("valid"), Some(revision.repeat(40 / revision.len()))).expect("compiles")
}

/// The fleet enrolled with its inventories, in parallel through the store.
fn enroll(store: &Store, scenario: &Scenario) {
    let now = scenario.now;
    let token = EnrollmentToken { uses_left: scenario.fleet.len() as u32, expires_at: None, created_at: now };
    Store::wait(store.create_enrollment_token("pwe_bench", &token)).expect("token");
    scenario.fleet.par_iter().for_each(|device| {
        let credential = format!("pwd_{}", device.id);
        Store::wait(store.enroll("pwe_bench", &device.id, &credential, device.facts.clone(), now)).expect("enroll");
        let (facts, inventory) = (device.facts.clone(), device.inventory.clone());
        Store::wait(store.update_inventory(&device.id, facts, inventory, now)).expect("inventory");
    });
}

fn main() {
    let devices = std::env::var("PATCHWARD_BENCH_DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let scenario = generate(Size { patches: 20_000, rules: 50, scopes: 20, devices }, 7);
    let dir = tempfile::tempdir().expect("a temp dir");
    let (policies, data) = (dir.path().join("policies"), dir.path().join("data"));
    std::fs::create_dir_all(&policies).expect("a policy folder");
    let text = &scenario.policy_files[0].1;
    let store = Arc::new(Store::open(&data).expect("a store"));
    let started = Instant::now();
    let request = patchward::catalog::ImportRequest::snapshot(
        "vendor",
        patchward::policy::model::FeedFormat::Patchward,
        &scenario.feed,
        scenario.now,
    );
    patchward::catalog::import(&store, &request).expect("the synthetic feed imports");
    enroll(&store, &scenario);
    println!("{devices} devices enrolled, 20,000 patches imported in {:.1} s", started.elapsed().as_secs_f64());

    let clock = Arc::new(FakeClock::new(scenario.now));
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let engine = Engine::new(store, key, clock.clone(), EngineSettings::default());
    let first = Arc::new(compiled(&policies, text, "c0ffee"));
    let started = Instant::now();
    engine.install_policy(first, None).expect("the first revision");
    println!("full plan of the first revision: {:.2} s", started.elapsed().as_secs_f64());
    // What the engine holds for as long as it serves them (gzipped), and
    // what an agent that does not accept gzip is sent (inflated, sampled).
    let held: Vec<_> = scenario.fleet.iter().filter_map(|d| engine.desired(&d.id).ok().flatten()).collect();
    let gzipped: usize = held.iter().map(|s| s.body.gzip().len()).sum();
    let sample: Vec<usize> = held.iter().step_by(64).map(|s| s.body.json().expect("inflates").len()).collect();
    println!(
        "   {} signed states held gzipped: {:.2} KiB each on average, {:.0} MiB in all ({:.1} KiB each as JSON)",
        held.len(),
        gzipped as f64 / held.len().max(1) as f64 / 1024.0,
        gzipped as f64 / (1024.0 * 1024.0),
        sample.iter().sum::<usize>() as f64 / sample.len().max(1) as f64 / 1024.0,
    );
    drop(held);
    // The directory loads at its first read: the console's, in a running engine.
    Store::wait(engine.store.device_entries()).expect("the directory");

    clock.advance(jiff::SignedDuration::from_mins(10));
    let marker = "metadata: {name: rule-002}\nspec: ";
    let start = text.find(marker).expect("rule-002") + marker.len();
    let end = start + text[start..].find('\n').expect("one line");
    let edited =
        format!("{}{}{}", &text[..start], text[start..end].replacen("after: 7d", "after: 1d", 1), &text[end..]);
    let next = Arc::new(compiled(&policies, &edited, "beef"));
    let (full_plans, device_plans) = (&engine.metrics.full_plans, &engine.metrics.device_plans);
    let (fulls, planned) = (full_plans.load(Ordering::Relaxed), device_plans.load(Ordering::Relaxed));
    // When the new states are served (long polls are told), before the
    // approval audit and the compliance trend's sample that follow.
    let mut changes = engine.subscribe();
    let served = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        runtime.block_on(changes.changed()).map(|()| Instant::now()).ok()
    });
    let started = Instant::now();
    engine.install_policy(next, None).expect("the one-rule change");
    let seconds = started.elapsed().as_secs_f64();
    let served = served.join().expect("the watcher").map(|at| at.duration_since(started).as_secs_f64());
    let planned = device_plans.load(Ordering::Relaxed) - planned;
    let path = if full_plans.load(Ordering::Relaxed) == fulls { "planned as a change" } else { "PLANNED IN FULL" };
    println!(
        "one-rule change (rule-002's last stage sooner): {seconds:.2} s, {planned} of {devices} devices planned and signed, {path}"
    );
    match served {
        Some(served) => println!("   its states served after {served:.2} s (then the audit and the compliance sample)"),
        None => println!("   NO STATE CHANGED"),
    }
}
