//! A commit that changes only what decides patches is put in force in
//! proportion to what it changed (`daemon::policy_change`): the devices it
//! reaches get new states, every other device keeps serving the very state
//! it had (same ETag, same bytes), and a full plan afterwards agrees with
//! every state served (it keeps them all).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use patchward::clock::FakeClock;
use patchward::daemon::{Engine, EngineSettings};
use patchward::plan::CompiledPolicy;
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward::store::Store;

fn compiled(policies: &Path, revision: &str) -> CompiledPolicy {
    let load = load_policy(&PolicySource::Folder(policies.to_owned()), &PolicyLimits::default()).unwrap();
    let policy = load.policy.unwrap_or_else(|| panic!("{:?}", load.diagnostics));
    CompiledPolicy::compile(policy, Some(revision.repeat(40 / revision.len()))).unwrap()
}

/// Every device's served ETag and generation.
fn served(engine: &Engine, ids: &[String]) -> BTreeMap<String, (String, u64)> {
    ids.iter()
        .map(|id| {
            let state = engine.desired(id).unwrap().unwrap();
            (id.clone(), (state.etag.clone(), state.generation))
        })
        .collect()
}

#[test]
fn a_commit_re_signs_the_states_it_changes_and_no_other() {
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    support::copy_dir(&support::workspace_root().join("policies"), &policies);
    let store = Arc::new(Store::open(&dir.path().join("data")).unwrap());
    let ids = support::enroll_example_fleet(&store, now);
    let clock = Arc::new(FakeClock::new(now));
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let feed = std::fs::read(support::workspace_root().join("examples/plan/feed.json")).unwrap();
    let request = patchward::catalog::ImportRequest::snapshot(
        patchward::daemon::reconcile::BUNDLED_SOURCE,
        patchward::policy::model::FeedFormat::Patchward,
        &feed,
        now,
    );
    patchward::catalog::import(&store, &request).unwrap();
    let engine = Engine::new(store, key, clock.clone(), EngineSettings::default());
    engine.install_policy(Arc::new(compiled(&policies, "c0ffee")), None).unwrap();
    let before = served(&engine, &ids);

    // Ten minutes on, a new Approval brings the Finnish language pack (a
    // severity the rules do not approve) to every device it applies to:
    // Windows in Finnish.
    clock.advance(jiff::SignedDuration::from_mins(10));
    std::fs::write(
        policies.join("approvals/low-update.yaml"),
        "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {name: low-update}\n\
         spec: {patches: [KB5032300], scopes: [all], policy: emergency}\n",
    )
    .unwrap();
    let counts = |engine: &Engine| {
        let m = &engine.metrics;
        (m.full_plans.load(Ordering::Relaxed), m.device_plans.load(Ordering::Relaxed))
    };
    let (full_plans, device_plans) = counts(&engine);
    engine.install_policy(Arc::new(compiled(&policies, "beef")), None).unwrap();
    let after = served(&engine, &ids);
    let finnish = |id: &String| {
        let record = Store::wait(engine.store.device(id)).unwrap().unwrap();
        record.facts.language.as_deref() == Some("fi-FI")
    };
    for id in &ids {
        let ((etag_before, generation_before), (etag_after, generation_after)) = (&before[id], &after[id]);
        if finnish(id) {
            assert!(generation_after > generation_before, "{id} gets the update");
        } else {
            assert_eq!(etag_after, etag_before, "{id} keeps its state");
        }
    }
    let reached = ids.iter().filter(|id| finnish(id)).count();
    assert!(reached > 0 && reached < ids.len(), "some devices are reached, not all: {reached}");
    let planned = (full_plans, device_plans + reached as u64);
    assert_eq!(counts(&engine), planned, "no full plan: only the devices reached are planned");
    assert_eq!(engine.in_force().unwrap().policy.revision.as_deref(), Some("beef".repeat(10).as_str()));

    // A full plan of the same revision serves exactly that.
    engine.replan_all().unwrap();
    assert_eq!(served(&engine, &ids), after, "a full plan keeps every state the change served");
}
