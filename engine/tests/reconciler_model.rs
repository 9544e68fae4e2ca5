//! T35, the reconciler model test: after any sequence of good and bad
//! commits, force-pushes (acknowledged or not), fetch failures, feed
//! updates (and rollbacks), clock moves and restarts, the state the engine
//! serves equals the plan of the last applied revision, and generations
//! never go backwards.
//!
//! The system under test is the real reconciler and catalog sync over a
//! real git repository, a file:// feed and sled on disk, on a fake clock.
//! The model is a few lines of git semantics: which commit should be in
//! force. The oracle plans that commit afresh (read from the repository
//! with the policy loader, planned with the pure planner over the store's
//! catalog, fleet and ledger) and compares every device's desired state;
//! the revision a state names is the one in force when its content last
//! changed (a commit re-signs only the states it changes).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use patchward::catalog::coverage::CoverageSet;
use patchward::clock::{Clock, FakeClock};
use patchward::daemon::reconcile::{CatalogSync, PolicyOrigin, Reconciler, ReconcilerSettings};
use patchward::daemon::{Engine, EngineSettings};
use patchward::plan::desired::{Envelope, desired_state};
use patchward::plan::{CompiledPolicy, PlanCatalog, PlanInput, plan};
use patchward::policy::{PolicyLimits, PolicySource};
use patchward::store::Store;
use patchward_api::desired::DesiredState;
use proptest::prelude::*;
use support::{copy_dir, git};

const PATCHES: [&str; 5] = ["KB5032190", "KB5031455", "DSA-5900-1", "FW-2026-0042", "KB5032300"];
const POLL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Clone, Debug)]
enum Op {
    /// A valid change: approve one patch for everyone, or drop that approval.
    GoodCommit(Option<usize>),
    /// An invalid change of one of three kinds.
    BadCommit(usize),
    /// The branch moves back one commit.
    Rewind,
    /// The branch moves back one commit and gets a new, valid one on top.
    Diverge(usize),
    /// An admin runs `ack-rewrite` for the branch's tip.
    AcknowledgeTip,
    /// The repository is gone for one pass.
    FetchFailure,
    /// A new feed revision (without one of the patches, maybe), a day later.
    FeedUpdate(Option<usize>),
    /// A feed with a lower revision than the one imported.
    FeedRollback,
    /// Time passes without a change.
    Tick(u32),
    /// The engine stops and starts again on the same data.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::option::of(0..PATCHES.len()).prop_map(Op::GoodCommit),
        2 => (0..3usize).prop_map(Op::BadCommit),
        1 => Just(Op::Rewind),
        1 => (0..PATCHES.len()).prop_map(Op::Diverge),
        1 => Just(Op::AcknowledgeTip),
        1 => Just(Op::FetchFailure),
        1 => proptest::option::of(0..PATCHES.len()).prop_map(Op::FeedUpdate),
        1 => Just(Op::FeedRollback),
        1 => (1..120u32).prop_map(Op::Tick),
        1 => Just(Op::Restart),
    ]
}

/// The engine as `serve` assembles it, minus the listeners.
struct Daemon {
    engine: Arc<Engine>,
    /// The catalog sync blocks on async fetches, as on serve's blocking threads.
    runtime: tokio::runtime::Runtime,
    reconciler: Reconciler,
    catalog: CatalogSync,
}

impl Daemon {
    fn start(data: &Path, repo: &Path, clock: Arc<FakeClock>) -> Daemon {
        let store = Arc::new(Store::open(data).unwrap());
        let (key, _) = patchward::keys::load_or_create(&data.join(patchward::keys::KEY_FILE)).unwrap();
        let clock: Arc<dyn Clock> = clock;
        let engine = Arc::new(Engine::new(store, key, clock, EngineSettings::default()));
        let settings = ReconcilerSettings {
            origin: PolicyOrigin::Repository { url: repo.display().to_string(), branch: "main".into() },
            poll_interval: POLL,
            signatures: None,
            limits: PolicyLimits::default(),
            credentials: Default::default(),
        };
        let reconciler = Reconciler::new(engine.clone(), settings, data).unwrap();
        let catalog = CatalogSync::new(engine.clone(), POLL, false).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        Daemon { engine, runtime, reconciler, catalog }
    }

    /// What the reconcile loop does on a webhook: follow, then sync the
    /// catalog sources that are due.
    fn pass(&mut self) {
        let _runtime = self.runtime.enter();
        self.reconciler.reconcile(true);
        self.catalog.run_once();
    }
}

/// Which commit should be in force, by git's rules: fast-forward only
/// (or an acknowledged rewrite), and only valid commits.
#[derive(Default)]
struct Model {
    applied: Option<String>,
    acknowledged: BTreeSet<String>,
    valid: BTreeMap<String, bool>,
    feed_revision: u64,
}

struct World {
    dir: tempfile::TempDir,
    clock: Arc<FakeClock>,
    daemon: Option<Daemon>,
    model: Model,
    /// The highest generation served to each device so far.
    generations: BTreeMap<String, (u64, String, String)>,
}

fn feed(revision: u64, without: Option<usize>) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join("examples/feeds/vendor-feed.json")).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["revision"] = revision.into();
    if let Some(index) = without {
        value["patches"].as_array_mut().unwrap().retain(|p| p["id"] != PATCHES[index]);
    }
    value.as_object_mut().unwrap().remove("$schema");
    serde_json::to_string_pretty(&value).unwrap()
}

fn approval(index: usize) -> String {
    format!(
        "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {{name: model-approval}}\n\
         spec: {{patches: [{}], scopes: [all], policy: emergency}}\n",
        PATCHES[index]
    )
}

/// Three ways to break a commit: YAML syntax, an unknown field, a dangling
/// reference.
fn broken(kind: usize) -> &'static str {
    match kind {
        0 => "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {name: model-approval\n",
        1 => {
            "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {name: model-approval}\n\
              spec: {patches: [KB5031455], scopes: [all], policy: emergency, urgency: high}\n"
        }
        _ => {
            "apiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {name: model-approval}\n\
              spec: {patches: [KB5031455], scopes: [no-such-scope], policy: emergency}\n"
        }
    }
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        copy_dir(&root.join("policies"), &repo);
        std::fs::write(dir.path().join("feed.json"), feed(7, None)).unwrap();
        // The feed is a file next to the repository, unsigned.
        let catalog = std::fs::read_to_string(repo.join("catalog.yaml")).unwrap();
        let url = format!("file://{}", dir.path().join("feed.json").display());
        let catalog = catalog.replace("https://patches.example.com/feed.json", &url);
        let catalog: String = catalog.lines().filter(|l| !l.contains("publicKey")).map(|l| format!("{l}\n")).collect();
        std::fs::write(repo.join("catalog.yaml"), catalog).unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "the example policies"]);
        let clock = Arc::new(FakeClock::new("2026-11-24T12:00:00Z".parse().unwrap()));
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        support::enroll_example_fleet(&Store::open(&data).unwrap(), clock.now());
        let mut world = World {
            daemon: Some(Daemon::start(&data, &repo, clock.clone())),
            dir,
            clock,
            model: Model { feed_revision: 7, ..Model::default() },
            generations: BTreeMap::new(),
        };
        let first = world.tip();
        world.model.valid.insert(first, true);
        world
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    fn tip(&self) -> String {
        git(&self.repo(), &["rev-parse", "HEAD"])
    }

    fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().unwrap()
    }

    fn commit(&mut self, content: Option<&str>, valid: bool, message: &str) {
        let repo = self.repo();
        let file = repo.join("approvals/model.yaml");
        match content {
            Some(text) => std::fs::write(&file, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&file);
            }
        }
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "--allow-empty", "-m", message]);
        let tip = self.tip();
        self.model.valid.insert(tip, valid);
    }

    fn is_ancestor(&self, ancestor: &str, of: &str) -> bool {
        std::process::Command::new("git")
            .args(["merge-base", "--is-ancestor", ancestor, of])
            .current_dir(self.repo())
            .status()
            .unwrap()
            .success()
    }

    /// What the model expects after a pass that could fetch `tip`.
    fn model_pass(&mut self, tip: &str) {
        if self.model.applied.as_deref() == Some(tip) {
            return;
        }
        let fast_forward = self.model.applied.as_deref().is_none_or(|applied| self.is_ancestor(applied, tip));
        if !fast_forward && !self.model.acknowledged.contains(tip) {
            return;
        }
        if self.model.valid.get(tip) != Some(&true) {
            return;
        }
        self.model.applied = Some(tip.to_owned());
        self.model.acknowledged.remove(tip);
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::GoodCommit(index) => {
                let content = index.map(approval);
                self.commit(content.as_deref(), true, "a good change");
            }
            Op::BadCommit(kind) => self.commit(Some(broken(*kind)), false, "a bad change"),
            Op::Rewind | Op::Diverge(_) => {
                let repo = self.repo();
                if git(&repo, &["rev-list", "--count", "HEAD"]) == "1" {
                    return;
                }
                git(&repo, &["reset", "-q", "--hard", "HEAD~1"]);
                if let Op::Diverge(index) = op {
                    self.commit(Some(&approval(*index)), true, "a rewritten change");
                }
            }
            Op::AcknowledgeTip => {
                let tip = self.tip();
                self.daemon().engine.acknowledge_rewrite(&tip).unwrap();
                self.model.acknowledged.insert(tip);
            }
            Op::FetchFailure => {
                let away = self.dir.path().join("repo.away");
                std::fs::rename(self.repo(), &away).unwrap();
                self.daemon().pass();
                std::fs::rename(&away, self.repo()).unwrap();
                self.check("a pass without the repository");
                return;
            }
            Op::FeedUpdate(without) => {
                self.model.feed_revision += 1;
                std::fs::write(self.dir.path().join("feed.json"), feed(self.model.feed_revision, *without)).unwrap();
                self.clock.advance(jiff::SignedDuration::from_hours(25));
            }
            Op::FeedRollback => {
                std::fs::write(self.dir.path().join("feed.json"), feed(self.model.feed_revision - 1, None)).unwrap();
                self.clock.advance(jiff::SignedDuration::from_hours(25));
            }
            Op::Tick(minutes) => self.clock.advance(jiff::SignedDuration::from_mins(i64::from(*minutes))),
            Op::Restart => {
                drop(self.daemon.take());
                let data = self.dir.path().join("data");
                self.daemon = Some(Daemon::start(&data, &self.repo(), self.clock.clone()));
            }
        }
        let tip = self.tip();
        self.daemon().pass();
        self.model_pass(&tip);
        self.check(&format!("after {op:?}"));
    }

    /// The engine serves exactly the plan of the model's applied commit.
    fn check(&mut self, when: &str) {
        let repo = self.repo();
        let daemon = self.daemon.as_ref().unwrap();
        let engine = &daemon.engine;
        let in_force = engine.in_force().unwrap_or_else(|| panic!("{when}: nothing in force"));
        let applied = self.model.applied.clone().unwrap();
        assert_eq!(in_force.policy.revision.as_deref(), Some(applied.as_str()), "{when}: revision in force");
        assert_eq!(in_force.commit.as_ref().map(|c| c.commit.as_str()), Some(applied.as_str()), "{when}: commit");
        let store = &engine.store;
        let source = patchward::store::Store::wait(store.catalog_source("vendor"))
            .unwrap()
            .unwrap_or_else(|| panic!("{when}: feed not imported"));
        assert_eq!(source.revision, self.model.feed_revision, "{when}: feed revision in the store");
        let (_, served_plan, _) = engine.plan_view().unwrap();
        let expected = oracle(store, &repo, &applied, served_plan.now);
        let devices: Vec<String> =
            patchward::store::Store::wait(store.devices()).unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(devices.len(), expected.len(), "{when}: every device planned");
        for id in devices {
            let served = engine.desired(&id).unwrap().unwrap_or_else(|| panic!("{when}: no desired state for {id}"));
            let envelope: patchward_api::dsse::Envelope = serde_json::from_slice(&served.body.json().unwrap()).unwrap();
            let payload = patchward_api::dsse::verify(
                &envelope,
                patchward_api::dsse::DESIRED_STATE_TYPE,
                &engine.key.verifying_key(),
            )
            .unwrap();
            let state: DesiredState = serde_json::from_slice(&payload).unwrap();
            assert_eq!(state.generation, served.generation);
            let content = content_of(state.clone());
            assert_eq!(&content, &expected[&id], "{when}: {id} is served the plan of {applied}");
            let text = serde_json::to_string(&content).unwrap();
            // The revision a state names is the one in force when what the
            // device must do last changed (or when it was last signed).
            let revision = state.policy_revision.clone();
            assert!(state.items.iter().all(|i| i.source.commit == revision), "{when}: {id}'s items name its revision");
            match self.generations.get(&id) {
                Some((generation, before, named)) => {
                    assert!(state.generation >= *generation, "{when}: {id}'s generation went back");
                    if *before != text {
                        assert!(state.generation > *generation, "{when}: {id}'s content changed in place");
                        assert_eq!(revision, applied, "{when}: {id} changed under {applied}");
                    } else {
                        assert!(revision == *named || revision == applied, "{when}: {id} names {revision}");
                    }
                }
                None => assert_eq!(revision, applied, "{when}: {id}'s first state"),
            }
            self.generations.insert(id, (state.generation, text, revision));
        }
    }
}

/// A desired state without what is not content: its generation, its times,
/// and the issue time software items are due from.
/// What a state says a device must do: without its envelope, and without
/// the revision it names (a commit that changes nothing for a device leaves
/// its state as it was).
fn content_of(mut state: DesiredState) -> DesiredState {
    state.generation = 0;
    state.policy_revision = String::new();
    state.issued_at = jiff::Timestamp::UNIX_EPOCH;
    state.expires_at = jiff::Timestamp::UNIX_EPOCH;
    for item in &mut state.items {
        item.source.commit = String::new();
        if item.source.kind == patchward_api::desired::SourceKind::Assignment {
            item.not_before = jiff::Timestamp::UNIX_EPOCH;
        }
    }
    state
}

/// The plan of `commit`, made from scratch: the policy read from the
/// repository, planned over the store's catalog, fleet and ledger at `now`.
fn oracle(store: &Store, repo: &Path, commit: &str, now: jiff::Timestamp) -> BTreeMap<String, DesiredState> {
    let source = PolicySource::GitRevision { repo: repo.to_owned(), rev: commit.to_owned() };
    let load = patchward::policy::load_policy(&source, &PolicyLimits::default()).unwrap();
    let compiled = CompiledPolicy::from_load(load).unwrap_or_else(|e| panic!("{commit} should be valid: {e:?}"));
    let sources = patchward::store::Store::wait(store.catalog_sources()).unwrap();
    let revision = sources.iter().filter(|s| compiled.policy.catalog_sources.contains_key(&s.name)).map(|s| s.revision);
    let catalog = PlanCatalog::new(
        patchward::store::Store::wait(store.catalog_patches()).unwrap(),
        &CoverageSet::of_policy(&compiled.policy),
    );
    let fleet: Vec<patchward_api::Device> =
        patchward::store::Store::wait(store.devices()).unwrap().iter().map(|r| r.to_device()).collect();
    let ledger = patchward::store::Store::wait(store.ledger()).unwrap();
    let planned = plan(&PlanInput { policy: &compiled, catalog: &catalog, fleet: &fleet, ledger: Some(&ledger), now });
    let envelope = Envelope { generation: 0, catalog_revision: revision.sum(), issued_at: now, expires_at: now };
    planned
        .devices
        .iter()
        .map(|device| {
            let state = desired_state(&planned, &compiled, &catalog, device, &envelope);
            (device.id.clone(), content_of(state))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_served_state_is_the_plan_of_the_last_applied_revision(ops in proptest::collection::vec(op(), 1..14)) {
        let mut world = World::new();
        world.daemon().pass();
        let first = world.tip();
        world.model_pass(&first);
        world.check("the first pass");
        for op in &ops {
            world.apply(op);
        }
    }
}

/// The named scenario the random ones generalize, so a regression in the
/// common path fails with a readable sequence.
#[test]
fn a_bad_commit_then_a_force_push_then_its_acknowledgement() {
    let mut world = World::new();
    world.daemon().pass();
    let first = world.tip();
    world.model_pass(&first);
    world.check("the first pass");
    for op in [
        Op::GoodCommit(Some(1)),
        Op::GoodCommit(Some(2)),
        Op::Restart,
        Op::Diverge(3),
        Op::FetchFailure,
        Op::AcknowledgeTip,
        Op::BadCommit(2),
        Op::FeedUpdate(Some(3)),
        Op::FeedRollback,
        Op::Restart,
        Op::GoodCommit(None),
    ] {
        world.apply(&op);
        if matches!(op, Op::Diverge(_)) {
            assert_ne!(world.model.applied, Some(world.tip()), "the rewrite waits for its acknowledgement");
        }
    }
    assert!(world.model.acknowledged.is_empty(), "the acknowledgement was used");
}
