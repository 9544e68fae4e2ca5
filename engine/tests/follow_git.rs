//! Following a real git repository (made with git, fetched over file://):
//! invalid commits keep the last good revision with every error reported
//! (T1), an unreachable repository backs off on the fake clock (T2), a
//! force-push is refused until acknowledged and a `git revert` applies
//! normally (T3).

use std::path::Path;

use patchward::follow::{FollowState, Mirror, Step, decide, observe};
use patchward::policy::PolicyLimits;

mod support;
use support::git;

const GOOD: &str = "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n---\n\
apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: critical}\n\
spec: {match: 'patch.severity == \"critical\"', action: approve, stages: [{scope: all, policy: fast}]}\n";

fn commit(repo: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (name, text) in files {
        std::fs::write(repo.join(name), text).unwrap();
    }
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", message]);
    git(repo, &["rev-parse", "HEAD"])
}

struct Follower {
    mirror: Mirror,
    url: String,
    state: FollowState,
    now: jiff::Timestamp,
}

impl Follower {
    fn step(&mut self) -> Step {
        let observation = observe(&self.mirror, &self.url, "main", &self.state, &PolicyLimits::default());
        let (step, next) = decide(&self.state, observation, self.now);
        if let Step::Apply { commit } = &step {
            self.mirror.pin_applied(commit).unwrap();
        }
        self.state = next;
        step
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Follower) {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    std::fs::create_dir_all(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    let mirror = Mirror::open(&dir.path().join("data/policy-mirror")).unwrap();
    let url = format!("file://{}", origin.display());
    let follower =
        Follower { mirror, url, state: FollowState::default(), now: "2026-11-24T12:00:00Z".parse().unwrap() };
    (dir, origin, follower)
}

#[test]
fn an_invalid_commit_keeps_the_last_good_one_and_reports_every_error() {
    let (_dir, origin, mut follower) = setup();
    let good = commit(&origin, &[("policy.yaml", GOOD)], "a good start");
    assert_eq!(follower.step(), Step::Apply { commit: good.clone() });
    assert_eq!(follower.step(), Step::Unchanged);

    // Four kinds of mistake in three files, in one commit.
    let bad = commit(
        &origin,
        &[
            ("broken.yaml", "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: x\n"),
            (
                "rules.yaml",
                "apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: typo}\n\
                 spec: {mach: 'true', action: hold}\n---\n\
                 apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: bad-cel}\n\
                 spec: {match: 'patch.severity ==', action: hold}\n---\n\
                 apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: dangling}\n\
                 spec: {match: 'true', action: approve, stages: [{scope: nowhere, policy: fast}]}\n",
            ),
        ],
        "several mistakes",
    );
    let Step::KeepLastGood { commit: judged, errors } = follower.step() else {
        panic!("an invalid commit is not applied")
    };
    assert_eq!(judged, bad);
    let files: std::collections::BTreeSet<&str> = errors.iter().map(|d| d.path.rsplit('/').next().unwrap()).collect();
    assert!(files.contains("broken.yaml") && files.contains("rules.yaml"), "{errors:#?}");
    assert!(errors.len() >= 4, "every error at once: {errors:#?}");
    assert!(errors.iter().all(|d| d.line > 0), "each with its line: {errors:#?}");
    assert_eq!(follower.state.applied.as_deref(), Some(good.as_str()));
    assert_eq!(follower.state.attempted.as_deref(), Some(bad.as_str()));

    std::fs::remove_file(origin.join("broken.yaml")).unwrap();
    let fixed = commit(&origin, &[("rules.yaml", "# nothing yet\n")], "fix");
    assert_eq!(follower.step(), Step::Apply { commit: fixed.clone() });
    let info = follower.mirror.commit_info(&fixed).unwrap();
    assert_eq!((info.author.as_str(), info.message.as_str()), ("Ada Admin <ada@example.com>", "fix"));
}

#[test]
fn a_force_push_is_refused_until_acknowledged_and_a_revert_applies() {
    let (_dir, origin, mut follower) = setup();
    let first = commit(&origin, &[("policy.yaml", GOOD)], "first");
    let second = commit(&origin, &[("more.yaml", "# more\n")], "second");
    assert_eq!(follower.step(), Step::Apply { commit: second.clone() });

    // A rewind to the first commit: not a fast-forward.
    git(&origin, &["reset", "-q", "--hard", &first]);
    assert_eq!(follower.step(), Step::RefuseRewrite { commit: first.clone(), applied: second.clone() });
    // A divergent rewrite.
    let divergent = commit(&origin, &[("other.yaml", "# other\n")], "divergent");
    assert_eq!(follower.step(), Step::RefuseRewrite { commit: divergent.clone(), applied: second.clone() });
    assert_eq!(follower.state.applied.as_deref(), Some(second.as_str()));
    // The commit in force stays readable in the mirror.
    assert!(follower.mirror.commit_info(&second).is_ok());

    follower.state.acknowledged_rewrites.insert(divergent.clone());
    assert_eq!(follower.step(), Step::Apply { commit: divergent.clone() });

    // A revert is an ordinary new commit.
    git(&origin, &["revert", "--no-edit", "HEAD"]);
    let reverted = git(&origin, &["rev-parse", "HEAD"]);
    assert_eq!(follower.step(), Step::Apply { commit: reverted });
}

#[test]
fn an_unreachable_repository_backs_off_and_keeps_the_last_good_state() {
    let (dir, origin, mut follower) = setup();
    let good = commit(&origin, &[("policy.yaml", GOOD)], "good");
    assert_eq!(follower.step(), Step::Apply { commit: good.clone() });
    std::fs::rename(&origin, dir.path().join("moved")).unwrap();
    let mut delays = Vec::new();
    for _ in 0..4 {
        let Step::Backoff { error, retry_at } = follower.step() else { panic!("a missing repository is a failure") };
        assert!(error.contains("failed to fetch branch `main`"), "{error}");
        delays.push(retry_at.as_second() - follower.now.as_second());
        follower.now = retry_at;
    }
    assert_eq!(delays, [5, 10, 20, 40]);
    assert_eq!(follower.state.applied.as_deref(), Some(good.as_str()));
    std::fs::rename(dir.path().join("moved"), &origin).unwrap();
    assert_eq!(follower.step(), Step::Unchanged);
    assert_eq!(follower.state.failures, 0);
}
