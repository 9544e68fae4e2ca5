//! The reconciler: follows the policy repository and the catalog sources,
//! and puts what is valid in force.
//!
//! In the manner of kube-runtime's controllers, one pass
//! ([`Reconciler::reconcile`]) is idempotent and returns an [`Action`]: when
//! to run again. What a fetched commit means is decided by the pure
//! `follow::decide`; this module does the IO around it (git2, the feeds,
//! the store) and reports every outcome as a status condition and, for
//! revisions, in the audit log.
//!
//! Architecture invariant: only a valid, verified fast-forward (or an
//! acknowledged rewrite) reaches `Engine::install`; everything else leaves
//! the last good revision in force (G2).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Engine;
use super::status::{ConditionType, RevisionStatus, SourceStatus};
use crate::catalog::fetch::{self, FetchLimits};
use crate::catalog::sync::{Synced, sync_source};
use crate::catalog::{Freshness, ImportRequest};
use crate::diagnostics::{Diagnostic, Severity};
use crate::follow::signature::{AllowedSigners, SignatureMode};
use crate::follow::{FollowState, Mirror, Observation, Step, decide, observe_with};
use crate::plan::CompiledPolicy;
use crate::policy::model::{FeedFormat, Retention};
use crate::policy::{Policy, PolicyLimits, PolicySource};

/// The example feed built into the binary: what a first start plans with
/// while no source has been synced (see `catalog.bundledFeed`).
pub const BUNDLED_FEED: &[u8] = include_bytes!("../../../examples/feeds/vendor-feed.json");

/// The catalog source name the bundled feed is stored under.
pub const BUNDLED_SOURCE: &str = "bundled-example";

/// Where the policy comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// A git repository, followed commit by commit on `branch`.
    Repository { url: String, branch: String },
    /// A plain folder, read as it is on every pass.
    Folder(PathBuf),
}

impl PolicyOrigin {
    /// A URL or the path of a git repository is followed as a repository;
    /// any other folder is read as it is.
    pub fn resolve(spec: &str, branch: &str) -> PolicyOrigin {
        if spec.contains("://") {
            return PolicyOrigin::Repository { url: spec.to_owned(), branch: branch.to_owned() };
        }
        let path = Path::new(spec);
        let is_repository =
            path.join(".git").exists() || (path.join("HEAD").is_file() && path.join("objects").is_dir());
        if is_repository {
            let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
            PolicyOrigin::Repository { url: absolute.display().to_string(), branch: branch.to_owned() }
        } else {
            PolicyOrigin::Folder(path.to_owned())
        }
    }

    pub fn describe(&self) -> String {
        match self {
            PolicyOrigin::Repository { url, branch } => format!("{url} (branch {branch})"),
            PolicyOrigin::Folder(path) => path.display().to_string(),
        }
    }
}

/// What to do after a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Action {
    pub requeue_after: std::time::Duration,
}

/// How the reconciler runs.
pub struct ReconcilerSettings {
    pub origin: PolicyOrigin,
    pub poll_interval: std::time::Duration,
    pub signatures: Option<(SignatureMode, AllowedSigners)>,
    pub limits: PolicyLimits,
    pub credentials: crate::follow::transport::FetchCredentials,
}

/// A policy read and compiled, or why not.
struct Judged {
    compiled: Option<CompiledPolicy>,
    errors: Vec<Diagnostic>,
}

pub struct Reconciler {
    engine: Arc<Engine>,
    settings: ReconcilerSettings,
    mirror: Option<Mirror>,
    follow: FollowState,
    /// The folder's content digest in force (folder origins).
    folder_digest: Option<String>,
    /// The last commit whose refusal was logged (one audit entry each).
    refused_logged: Option<String>,
}

/// Where the follow state is kept in the store.
const FOLLOW: &str = "follow";

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SavedFollow {
    applied: Option<String>,
    attempted: Option<String>,
}

impl Reconciler {
    pub fn new(engine: Arc<Engine>, settings: ReconcilerSettings, data: &Path) -> anyhow::Result<Reconciler> {
        use anyhow::Context as _;
        let mirror = match &settings.origin {
            PolicyOrigin::Repository { .. } => Some(
                Mirror::open(&data.join("policy-mirror"))
                    .with_context(|| format!("failed to open the policy mirror in {}", data.display()))?
                    .with_credentials(settings.credentials.clone()),
            ),
            PolicyOrigin::Folder(_) => None,
        };
        let saved: SavedFollow = crate::store::Store::wait(engine.store.engine_state(FOLLOW))?.unwrap_or_default();
        let follow = FollowState { applied: saved.applied, attempted: saved.attempted, ..FollowState::default() };
        let source = settings.origin.describe();
        let branch = match &settings.origin {
            PolicyOrigin::Repository { branch, .. } => Some(branch.clone()),
            PolicyOrigin::Folder(_) => None,
        };
        engine.status.update(|s| {
            s.source = source;
            s.branch = branch;
        });
        Ok(Reconciler { engine, settings, mirror, follow, folder_digest: None, refused_logged: None })
    }

    /// One pass: restore what was in force (after a restart), follow the
    /// policy, sync due catalog sources, and plan again if time or reports
    /// call for it. `forced` (a webhook, `sync`) skips the backoff.
    pub fn reconcile(&mut self, forced: bool) -> Action {
        let now = self.engine.clock.now();
        let _pass = tracing::info_span!("reconcile", forced).entered();
        self.engine.metrics.reconciles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let led_elsewhere = self.catch_up_with_store();
        if (self.engine.in_force().is_none() || led_elsewhere)
            && let Some(applied) = self.follow.applied.clone()
        {
            self.restore(&applied, now);
        }
        let backing_off = self.follow.retry_at.is_some_and(|at| now < at);
        tracing::debug!(led_elsewhere, backing_off, "following");
        if forced || !backing_off {
            match self.settings.origin.clone() {
                PolicyOrigin::Repository { url, branch } => self.follow_repository(&url, &branch, now),
                PolicyOrigin::Folder(path) => self.follow_folder(&path, now),
            }
        }
        if let Err(e) = self.engine.replan_if_due() {
            self.failed(format!("plan: {e}"));
        }
        Action { requeue_after: self.requeue_after(now) }
    }

    fn failed(&self, message: String) {
        self.engine.metrics.reconcile_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!("{message}");
    }

    fn requeue_after(&self, now: jiff::Timestamp) -> std::time::Duration {
        let mut wake = self.settings.poll_interval;
        let mut consider = |at: jiff::Timestamp| {
            if let Ok(span) = at.duration_since(now).try_into() {
                wake = wake.min(span);
            }
        };
        if let Some(at) = self.follow.retry_at {
            consider(at);
        }
        if let Some(at) = self.engine.next_replan_at() {
            consider(at);
        }
        wake.max(std::time::Duration::from_millis(200))
    }

    /// On a shared store another replica may have led since this one last
    /// did: what is applied is what the store says, not this replica's
    /// memory. True when the two differed (this replica's is out of date).
    fn catch_up_with_store(&mut self) -> bool {
        if !self.engine.store.is_shared() {
            return false;
        }
        let saved = match crate::store::Store::wait(self.engine.store.engine_state::<SavedFollow>(FOLLOW)) {
            Ok(saved) => saved.unwrap_or_default(),
            Err(e) => {
                self.failed(format!("could not read what is followed: {e}"));
                return false;
            }
        };
        if saved.applied == self.follow.applied && saved.attempted == self.follow.attempted {
            return false;
        }
        self.follow.applied = saved.applied;
        self.follow.attempted = saved.attempted;
        true
    }

    /// Puts the applied commit back in force after a restart (or after
    /// another replica led), from the mirror, which keeps it reachable
    /// whatever the remote did since; a mirror that never saw it (this
    /// replica never led) fetches first.
    fn restore(&mut self, applied: &str, now: jiff::Timestamp) {
        if let (Some(mirror), PolicyOrigin::Repository { url, branch }) = (&self.mirror, &self.settings.origin)
            && mirror.commit_info(applied).is_err()
            && let Err(e) = mirror.fetch(url, branch)
        {
            tracing::warn!(error = %e, "could not fetch the applied revision into this replica's mirror");
        }
        let judged = match &self.settings.origin {
            PolicyOrigin::Repository { .. } => self.judge_commit(applied),
            // A folder has no history: what is there now is judged below.
            PolicyOrigin::Folder(_) => return,
        };
        match judged.compiled {
            Some(compiled) => {
                let info = self.commit_info(applied);
                if let Err(e) = self.put_in_force(compiled, info.clone()) {
                    self.failed(format!("could not restore revision {applied}: {e:#}"));
                    return;
                }
                self.set_revision_status(applied, info.as_ref(), true, None, now);
            }
            None => self.failed(format!(
                "the applied revision {applied} no longer validates here; waiting for the next good commit"
            )),
        }
    }

    fn judge(&self, source: &PolicySource) -> Judged {
        match crate::policy::source::read_source(source, &self.settings.limits.source) {
            Ok(files) => self.judge_files(files),
            Err(e) => Judged {
                compiled: None,
                errors: vec![Diagnostic::error(
                    source.describe(),
                    crate::diagnostics::Pos::UNKNOWN,
                    format!("{:#}", anyhow::Error::from(e)),
                )],
            },
        }
    }

    fn judge_files(&self, files: crate::policy::source::SourceFiles) -> Judged {
        match CompiledPolicy::from_load(crate::policy::load_files(files, &self.settings.limits)) {
            Ok(compiled) => Judged { compiled: Some(compiled), errors: Vec::new() },
            Err(problems) => Judged {
                compiled: None,
                errors: problems.into_iter().filter(|d| d.severity == Severity::Error).collect(),
            },
        }
    }

    fn judge_commit(&self, commit: &str) -> Judged {
        let Some(mirror) = &self.mirror else {
            return Judged { compiled: None, errors: Vec::new() };
        };
        self.judge(&PolicySource::GitRevision { repo: mirror.path().to_owned(), rev: commit.to_owned() })
    }

    fn follow_repository(&mut self, url: &str, branch: &str, now: jiff::Timestamp) {
        let Some(mirror) = &self.mirror else { return };
        let mut judged = None;
        let observation = observe_with(mirror, url, branch, &self.follow, |commit| {
            let verdict = self.judge_commit(commit);
            let errors = if verdict.compiled.is_some() { Vec::new() } else { verdict.errors.clone() };
            judged = Some(verdict);
            errors
        });
        self.follow.acknowledged_rewrites = self.engine.acknowledged_rewrites().unwrap_or_default();
        // Signatures are checked before anything is applied: an unverified
        // commit is refused like an invalid one, and says why.
        if let Observation::Fetched { commit, .. } = &observation
            && self.follow.applied.as_deref() != Some(commit.as_str())
            && let Some(refusal) = self.signature_refusal(commit)
        {
            let commit = commit.clone();
            self.follow.attempted = Some(commit.clone());
            self.follow.failures = 0;
            self.follow.retry_at = None;
            self.set_condition(ConditionType::SourceReachable, true, "Fetched", format!("fetched {commit}"), now);
            self.set_condition(ConditionType::SourceVerified, false, "SignatureRefused", refusal.clone(), now);
            self.refuse(&commit, "signature", &refusal, now);
            self.save_follow();
            return;
        }
        let (step, next) = decide(&self.follow, observation, now);
        tracing::debug!(?step, "decided");
        self.follow = next;
        self.take_step(step, judged, now);
    }

    fn signature_refusal(&self, commit: &str) -> Option<String> {
        let (mode, signers) = self.settings.signatures.as_ref()?;
        let mirror = self.mirror.as_ref()?;
        let repo = mirror.repository();
        let tip = git2::Oid::from_str(commit).ok()?;
        let applied = self.follow.applied.as_deref().and_then(|a| git2::Oid::from_str(a).ok());
        match crate::follow::signature::check_range(repo, applied, tip, signers, *mode, self.engine.clock.now()) {
            Ok(verdict) if verdict.accepted => None,
            Ok(verdict) => Some(verdict.reason()),
            Err(e) => Some(format!("could not check signatures: {e}")),
        }
    }

    fn follow_folder(&mut self, path: &Path, now: jiff::Timestamp) {
        let source = PolicySource::Folder(path.to_owned());
        let files = match crate::policy::source::read_source(&source, &self.settings.limits.source) {
            Ok(files) => files,
            Err(e) => {
                let error = format!("{:#}", anyhow::Error::from(e));
                let (step, next) = decide(&self.follow, Observation::Unreachable { error }, now);
                self.follow = next;
                self.take_step(step, None, now);
                return;
            }
        };
        let digest = files_digest(&files);
        if self.folder_digest.as_deref() == Some(digest.as_str()) && self.engine.in_force().is_some() {
            self.set_condition(ConditionType::SourceReachable, true, "Read", format!("read {}", path.display()), now);
            return;
        }
        let judged = self.judge_files(files);
        let commit = format!("folder:{digest}");
        let errors = if judged.compiled.is_some() { Vec::new() } else { judged.errors.clone() };
        // A folder has no history to rewrite.
        let observation = Observation::Fetched { commit, fast_forward: true, errors };
        let mut state = self.follow.clone();
        if state.applied.as_deref().is_some_and(|a| !a.starts_with("folder:")) || self.engine.in_force().is_none() {
            state.applied = None;
        }
        let (step, next) = decide(&state, observation, now);
        self.follow = next;
        if matches!(step, Step::Apply { .. } | Step::Unchanged) {
            self.folder_digest = Some(digest);
        }
        let step = match step {
            // Nothing in force yet (a restart): the same content applies.
            Step::Unchanged if self.engine.in_force().is_none() => {
                Step::Apply { commit: self.follow.applied.clone().unwrap_or_default() }
            }
            other => other,
        };
        self.take_step(step, Some(judged), now);
    }

    fn take_step(&mut self, step: Step, judged: Option<Judged>, now: jiff::Timestamp) {
        match step {
            Step::Unchanged => {
                self.set_condition(ConditionType::SourceReachable, true, "Fetched", "nothing new".into(), now);
                self.set_condition(
                    ConditionType::Reconciled,
                    self.follow.applied == self.follow.attempted,
                    "UpToDate",
                    "the tip is in force".into(),
                    now,
                );
            }
            Step::Apply { commit } => {
                let compiled = judged.and_then(|j| j.compiled);
                let Some(compiled) = compiled else {
                    self.failed(format!("revision {commit} was judged valid but did not compile"));
                    return;
                };
                let info = self.commit_info(&commit);
                let signature = self.signature_status(&commit);
                if let Err(e) = self.put_in_force(compiled, info.clone()) {
                    // Not applied after all: keep the last good one in force.
                    self.follow.applied = self.engine.in_force().and_then(|f| f.policy.revision.clone());
                    self.failed(format!("could not apply revision {commit}: {e:#}"));
                    self.set_condition(ConditionType::Reconciled, false, "ApplyFailed", format!("{e:#}"), now);
                    return;
                }
                if let Some(mirror) = &self.mirror
                    && let Err(e) = mirror.pin_applied(&commit)
                {
                    self.failed(format!("could not pin {commit} in the mirror: {e}"));
                }
                let _ = self.engine.use_acknowledgement(&commit);
                self.save_follow();
                self.engine.metrics.revisions_applied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let detail = serde_json::json!({
                    "revision": commit,
                    "author": info.as_ref().map(|i| i.author.clone()),
                    "committer": info.as_ref().map(|i| i.committer.clone()),
                    "message": info.as_ref().map(|i| i.message.clone()),
                    "signature": signature,
                });
                let actor = info.as_ref().map_or("policy".to_owned(), |i| format!("commit:{}", i.author));
                let _ = crate::store::Store::wait(self.engine.store.append_leader_audit(
                    now,
                    &actor,
                    "revision.applied",
                    detail,
                ));
                self.set_revision_status(&commit, info.as_ref(), true, signature, now);
                self.set_condition(ConditionType::SourceReachable, true, "Fetched", format!("fetched {commit}"), now);
                self.set_condition(
                    ConditionType::SourceVerified,
                    true,
                    "Verified",
                    verified_message(&self.settings),
                    now,
                );
                self.set_condition(ConditionType::PolicyValid, true, "Valid", format!("{commit} validates"), now);
                self.set_condition(ConditionType::Reconciled, true, "Applied", format!("{commit} is in force"), now);
                self.engine.status.update(|s| s.errors.clear());
            }
            Step::KeepLastGood { commit, errors } => {
                let lines: Vec<String> = errors.iter().map(render_diagnostic).collect();
                let message = format!(
                    "{commit} is invalid ({} error{}); {} stays in force: {}",
                    lines.len(),
                    if lines.len() == 1 { "" } else { "s" },
                    self.follow.applied.as_deref().unwrap_or("nothing"),
                    lines.first().cloned().unwrap_or_default()
                );
                self.set_condition(ConditionType::SourceReachable, true, "Fetched", format!("fetched {commit}"), now);
                self.set_condition(ConditionType::PolicyValid, false, "ValidationFailed", message.clone(), now);
                self.set_condition(ConditionType::Reconciled, false, "Invalid", message.clone(), now);
                self.engine.status.update(|s| s.errors = lines.clone());
                self.refuse(&commit, "invalid", &lines.join("\n"), now);
                self.save_follow();
            }
            Step::RefuseRewrite { commit, applied } => {
                let message = format!(
                    "{commit} does not descend from the applied {applied}: history was rewritten. \
                     Check the branch, then run `patchward ack-rewrite {commit}` to follow it"
                );
                self.set_condition(ConditionType::SourceReachable, true, "Fetched", format!("fetched {commit}"), now);
                self.set_condition(ConditionType::SourceVerified, false, "HistoryRewritten", message.clone(), now);
                self.set_condition(ConditionType::Reconciled, false, "HistoryRewritten", message.clone(), now);
                self.refuse(&commit, "rewrite", &message, now);
                self.save_follow();
            }
            Step::Backoff { error, retry_at } => {
                let message = format!("{error}; retrying at {retry_at}, the last good revision stays in force");
                self.set_condition(ConditionType::SourceReachable, false, "FetchFailed", message, now);
            }
        }
    }

    /// Records `commit` as attempted and refused: in the status always, in
    /// the audit log and the engine's log once per commit.
    fn refuse(&mut self, commit: &str, why: &str, detail: &str, now: jiff::Timestamp) {
        let info = self.commit_info(commit);
        self.set_revision_status(commit, info.as_ref(), false, None, now);
        if self.refused_logged.as_deref() == Some(commit) {
            return;
        }
        self.refused_logged = Some(commit.to_owned());
        self.engine.metrics.revisions_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(revision = commit, why, detail, "refused a revision: the last good one stays in force");
        let actor = info.as_ref().map_or("policy".to_owned(), |i| format!("commit:{}", i.author));
        let _ = crate::store::Store::wait(self.engine.store.append_leader_audit(
            now,
            &actor,
            "revision.refused",
            serde_json::json!({"revision": commit, "why": why, "detail": detail,
                "message": info.map(|i| i.message)}),
        ));
    }

    fn signature_status(&self, commit: &str) -> Option<String> {
        let (_, signers) = self.settings.signatures.as_ref()?;
        let repo = self.mirror.as_ref()?.repository();
        let oid = git2::Oid::from_str(commit).ok()?;
        crate::follow::signature::verify_commit(repo, oid, signers, self.engine.clock.now()).ok().map(|s| s.to_string())
    }

    fn save_follow(&self) {
        let saved = SavedFollow { applied: self.follow.applied.clone(), attempted: self.follow.attempted.clone() };
        if let Err(e) = crate::store::Store::wait(self.engine.store.set_engine_state(FOLLOW, &saved)) {
            self.failed(format!("could not save what is followed: {e}"));
        }
    }

    fn set_condition(&self, kind: ConditionType, status: bool, reason: &str, message: String, now: jiff::Timestamp) {
        self.engine.status.set(kind, status, reason, message, now);
    }

    /// Who made `commit` and why (repositories only).
    fn commit_info(&self, commit: &str) -> Option<crate::follow::CommitInfo> {
        self.mirror.as_ref().and_then(|m| m.commit_info(commit).ok())
    }

    fn set_revision_status(
        &self,
        commit: &str,
        info: Option<&crate::follow::CommitInfo>,
        applied: bool,
        signature: Option<String>,
        now: jiff::Timestamp,
    ) {
        let revision = RevisionStatus {
            revision: commit.to_owned(),
            author: info.as_ref().map(|i| i.author.clone()),
            committer: info.as_ref().map(|i| i.committer.clone()),
            message: info.as_ref().map(|i| i.message.clone()),
            signature,
            at: now,
        };
        self.engine.status.update(|s| {
            if applied {
                s.applied = Some(revision.clone());
            }
            s.attempted = Some(revision);
        });
    }

    /// Puts `compiled` in force with the store's catalog and plans the
    /// fleet with it.
    fn put_in_force(&self, compiled: CompiledPolicy, commit: Option<crate::follow::CommitInfo>) -> anyhow::Result<()> {
        self.engine.install_policy(Arc::new(compiled), commit)?;
        Ok(())
    }
}

/// Syncs the catalog sources of the policy in force, each on its own
/// interval, on a task of its own: a slow or failing feed never delays a
/// policy commit.
pub struct CatalogSync {
    engine: Arc<Engine>,
    client: reqwest::Client,
    /// Per catalog source: failures in a row and no retry before.
    catalog_backoff: HashMap<String, (u32, jiff::Timestamp)>,
    /// Sources synced since this engine started: every other one is due
    /// (a restart, or a catalog seeded with the bundled feed, checks its
    /// source at once).
    synced: std::collections::HashSet<String>,
    poll_interval: std::time::Duration,
    bundled_feed: bool,
}

impl CatalogSync {
    pub fn new(
        engine: Arc<Engine>,
        poll_interval: std::time::Duration,
        bundled_feed: bool,
    ) -> anyhow::Result<CatalogSync> {
        use anyhow::Context as _;
        let client = fetch::client(&FetchLimits::default()).context("failed to set up the feed client")?;
        Ok(CatalogSync {
            engine,
            client,
            catalog_backoff: HashMap::new(),
            synced: std::collections::HashSet::new(),
            poll_interval,
            bundled_feed,
        })
    }

    fn set_condition(&self, kind: ConditionType, status: bool, reason: &str, message: String, now: jiff::Timestamp) {
        self.engine.status.set(kind, status, reason, message, now);
    }

    /// While no CatalogSource of the policy has ever been imported (their
    /// first syncs failed, as on embedded defaults), the bundled example
    /// feed stands in as its own source, so that a first start plans
    /// something. It stops counting once a real source imports (see
    /// `Engine::catalog_for`).
    fn seed_catalog(&self, policy: &Policy) -> anyhow::Result<bool> {
        let store = &self.engine.store;
        let sources = crate::store::Store::wait(store.catalog_sources())?;
        if !self.bundled_feed
            || sources.iter().any(|s| s.name == BUNDLED_SOURCE || policy.catalog_sources.contains_key(&s.name))
        {
            return Ok(false);
        }
        let request = ImportRequest {
            retention: retention_of(policy),
            ..ImportRequest::snapshot(BUNDLED_SOURCE, FeedFormat::Patchward, BUNDLED_FEED, self.engine.clock.now())
        };
        let report = crate::catalog::import(store, &request)?;
        tracing::warn!(
            patches = report.patches,
            "no catalog source could be synced yet: planning with the bundled example feed until one is"
        );
        Ok(true)
    }

    /// One pass; returns when to look again.
    pub fn run_once(&mut self) -> Action {
        let now = self.engine.clock.now();
        if let Err(e) = self.sync_catalog(now) {
            self.engine.metrics.reconcile_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!("catalog sync: {e:#}");
        }
        let mut wake = self.poll_interval;
        for (_, at) in self.catalog_backoff.values() {
            if let Ok(span) = at.duration_since(now).try_into() {
                wake = wake.min(span);
            }
        }
        Action { requeue_after: wake.max(std::time::Duration::from_millis(200)) }
    }

    /// Syncs every catalog source of the policy in force whose interval has
    /// passed; when the catalog changed, plans with it.
    fn sync_catalog(&mut self, now: jiff::Timestamp) -> anyhow::Result<()> {
        let Some(in_force) = self.engine.in_force() else { return Ok(()) };
        let policy = &in_force.policy.policy;
        let mut changed = false;
        let mut statuses = Vec::new();
        for source in policy.catalog_sources.values() {
            let state = crate::store::Store::wait(self.engine.store.catalog_source(&source.name))?;
            let interval = jiff::SignedDuration::from_secs(source.spec.interval.value.as_secs() as i64);
            let due = !self.synced.contains(&source.name)
                || state.as_ref().is_none_or(|s| s.checked_at.checked_add(interval).is_ok_and(|at| now >= at));
            let backing_off = self.catalog_backoff.get(&source.name).is_some_and(|(_, at)| now < *at);
            let mut refused = None;
            if due && !backing_off {
                self.synced.insert(source.name.clone());
                match self.sync_source(source, policy, now) {
                    Ok(imported) => {
                        changed |= imported;
                        self.catalog_backoff.remove(&source.name);
                    }
                    Err(reason) => {
                        let failures = self.catalog_backoff.get(&source.name).map_or(1, |(n, _)| n + 1);
                        let retry_at = now.checked_add(crate::follow::backoff(failures)).unwrap_or(now);
                        self.catalog_backoff.insert(source.name.clone(), (failures, retry_at));
                        refused = Some(reason);
                    }
                }
            } else if let Some(status) = self.engine.status.snapshot().catalog.iter().find(|s| s.name == source.name) {
                refused = status.refused.clone();
            }
            let state = crate::store::Store::wait(self.engine.store.catalog_source(&source.name))?;
            let fresh = matches!(crate::catalog::freshness(state.as_ref(), now), Freshness::Fresh);
            statuses.push(SourceStatus {
                name: source.name.clone(),
                url: source.spec.url.value.clone(),
                revision: state.as_ref().map(|s| s.revision),
                last_checked: state.as_ref().map(|s| s.checked_at),
                fresh,
                refused,
            });
        }
        let all_fresh = statuses.iter().all(|s| s.fresh && s.refused.is_none());
        let message = statuses
            .iter()
            .map(|s| match (&s.refused, s.fresh) {
                (Some(why), _) => format!("{}: {why}", s.name),
                (None, true) => format!("{}: fresh at revision {}", s.name, s.revision.unwrap_or(0)),
                (None, false) => format!("{}: stale or never imported", s.name),
            })
            .collect::<Vec<_>>()
            .join("; ");
        let reason = match () {
            _ if all_fresh => "Fresh",
            _ if statuses.iter().any(|s| s.refused.is_some()) => "SyncFailed",
            _ => "Stale",
        };
        self.set_condition(ConditionType::CatalogFresh, all_fresh, reason, message, now);
        if self.seed_catalog(policy)? {
            changed = true;
        }
        if changed {
            self.engine.reload_catalog()?;
        }
        let stored = crate::store::Store::wait(self.engine.store.catalog_sources())?;
        let bundled = stored.iter().any(|s| s.name == BUNDLED_SOURCE)
            && !stored.iter().any(|s| policy.catalog_sources.contains_key(&s.name));
        let catalog_revision = self.engine.in_force().map_or(0, |f| f.catalog_revision);
        self.engine.status.update(|s| {
            s.catalog = statuses;
            s.catalog_revision = catalog_revision;
            s.bundled_feed = bundled;
        });
        Ok(())
    }

    /// Fetches one source and imports it; `Ok(true)` when the catalog
    /// changed. The error is the reason, for the status.
    fn sync_source(
        &self,
        source: &crate::policy::Named<crate::policy::model::CatalogSourceSpec>,
        policy: &Policy,
        now: jiff::Timestamp,
    ) -> Result<bool, String> {
        let store = &self.engine.store;
        let previous = crate::store::Store::wait(store.catalog_source(&source.name)).ok().flatten().map(|s| s.revision);
        let synced = tokio::runtime::Handle::current().block_on(sync_source(
            store,
            &self.client,
            source,
            retention_of(policy),
            true,
            now,
            &|_, _| {},
        ));
        match synced.map_err(|e| e.to_string())? {
            Synced::NotModified(_) => Ok(false),
            // A new revision with the same patches still changes what the
            // desired states say they were planned against.
            Synced::Imported(report) if report.unchanged && previous == Some(report.revision) => Ok(false),
            Synced::Imported(report) => {
                let _ = crate::store::Store::wait(store.append_leader_audit(
                    now,
                    &format!("feed:{}", source.name),
                    "catalog.imported",
                    serde_json::json!({"revision": report.revision, "patches": report.patches,
                        "added": report.added, "updated": report.updated, "obsoleted": report.obsoleted}),
                ));
                Ok(true)
            }
        }
    }
}

fn retention_of(policy: &Policy) -> Retention {
    policy.settings.as_ref().map(|s| s.spec.retention.clone()).unwrap_or_default()
}

fn verified_message(settings: &ReconcilerSettings) -> String {
    match &settings.signatures {
        Some((mode, _)) => format!("fast-forward; signatures checked ({mode:?})"),
        None => "fast-forward; signatures not required".into(),
    }
}

fn render_diagnostic(d: &Diagnostic) -> String {
    format!("{}:{}:{}: {}", d.path, d.line, d.col, d.message)
}

/// A digest of what a folder's policy is read from (each file's path and
/// bytes, and what was refused before parsing), to notice that it changed.
fn files_digest(files: &crate::policy::source::SourceFiles) -> String {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    for file in &files.files {
        hasher.update((file.relative_path.len() as u64).to_le_bytes());
        hasher.update(file.relative_path.as_bytes());
        hasher.update((file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    for refused in &files.diagnostics {
        hasher.update(refused.path.as_bytes());
        hasher.update(refused.message.as_bytes());
    }
    hex::encode(hasher.finalize())
}
