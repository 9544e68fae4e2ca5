//! Following the policy repository: fetch the branch into a local mirror,
//! then decide what the fetched commit means.
//!
//! [`decide`] is pure: from what is in force, what the fetch observed and
//! `now`, it returns the [`Step`] to take and the next [`FollowState`].
//! [`Mirror`] is the thin effectful part (git2). The reconciler (issue 6)
//! runs them on its poll interval and on webhooks.
//!
//! Architecture invariant: nothing but a valid fast-forward (or an
//! acknowledged rewrite) moves the applied revision. An invalid commit, an
//! unreachable repository or a force-push leaves the last good revision in
//! force (RELIABILITY G2, T1–T3).

mod mirror;
pub mod signature;
pub mod transport;

use std::collections::BTreeSet;

pub use mirror::{CommitInfo, Mirror, MirrorError, set_network_timeouts};

use crate::diagnostics::Diagnostic;

/// What the follower knows between fetches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowState {
    /// The commit in force: valid, and reached by fast-forwards (or an
    /// acknowledged rewrite) from the one before.
    pub applied: Option<String>,
    /// The last commit fetched and judged, good or not.
    pub attempted: Option<String>,
    /// Commits an admin allowed to replace history (`patchward ack-rewrite`).
    pub acknowledged_rewrites: BTreeSet<String>,
    /// Fetch failures in a row, for the backoff.
    pub failures: u32,
    /// No fetch before this instant (after a failure).
    pub retry_at: Option<jiff::Timestamp>,
}

/// What a fetch saw.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The repository could not be reached or read.
    Unreachable { error: String },
    /// The branch's tip, judged.
    Fetched {
        commit: String,
        /// Whether `commit` descends from the applied commit (true when
        /// nothing is applied yet).
        fast_forward: bool,
        /// The policy at `commit`: its errors (empty when valid).
        errors: Vec<Diagnostic>,
    },
}

/// What to do about an observation.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The tip is what is in force already.
    Unchanged,
    /// Apply this commit: plan it and serve the plan.
    Apply { commit: String },
    /// The tip is invalid; the last good revision stays in force.
    KeepLastGood { commit: String, errors: Vec<Diagnostic> },
    /// The tip rewrites history; refused until an admin acknowledges it.
    RefuseRewrite { commit: String, applied: String },
    /// The fetch failed; try again at `retry_at`.
    Backoff { error: String, retry_at: jiff::Timestamp },
}

/// The backoff after `failures` failures in a row: 5 s doubling up to 5 min.
pub fn backoff(failures: u32) -> jiff::SignedDuration {
    let seconds = 5u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16)).min(300);
    jiff::SignedDuration::from_secs(seconds as i64)
}

/// Decides what `observation` means. Pure.
pub fn decide(state: &FollowState, observation: Observation, now: jiff::Timestamp) -> (Step, FollowState) {
    let mut next = state.clone();
    match observation {
        Observation::Unreachable { error } => {
            next.failures = state.failures.saturating_add(1);
            let retry_at = now.checked_add(backoff(next.failures)).unwrap_or(now);
            next.retry_at = Some(retry_at);
            (Step::Backoff { error, retry_at }, next)
        }
        Observation::Fetched { commit, fast_forward, errors } => {
            next.failures = 0;
            next.retry_at = None;
            next.attempted = Some(commit.clone());
            if state.applied.as_deref() == Some(commit.as_str()) {
                return (Step::Unchanged, next);
            }
            if !fast_forward && !state.acknowledged_rewrites.contains(&commit) {
                let applied = state.applied.clone().unwrap_or_default();
                return (Step::RefuseRewrite { commit, applied }, next);
            }
            if !errors.is_empty() {
                return (Step::KeepLastGood { commit, errors }, next);
            }
            next.applied = Some(commit.clone());
            next.acknowledged_rewrites.remove(&commit);
            (Step::Apply { commit }, next)
        }
    }
}

/// Fetches the branch and judges its tip: fast-forward from what is in
/// force, and the policy's validity at that commit (read from the mirror).
pub fn observe(
    mirror: &Mirror,
    url: &str,
    branch: &str,
    state: &FollowState,
    limits: &crate::policy::PolicyLimits,
) -> Observation {
    observe_with(mirror, url, branch, state, |commit| {
        let source =
            crate::policy::PolicySource::GitRevision { repo: mirror.path().to_owned(), rev: commit.to_owned() };
        match crate::policy::load_policy(&source, limits) {
            Ok(load) => {
                load.diagnostics.into_iter().filter(|d| d.severity == crate::diagnostics::Severity::Error).collect()
            }
            Err(e) => vec![Diagnostic::error(source.describe(), crate::diagnostics::Pos::UNKNOWN, error_chain(&e))],
        }
    })
}

/// [`observe`] with the policy at the fetched commit judged by `judge`
/// (its errors; empty when valid), for a caller that keeps what it judged.
pub fn observe_with(
    mirror: &Mirror,
    url: &str,
    branch: &str,
    state: &FollowState,
    judge: impl FnOnce(&str) -> Vec<Diagnostic>,
) -> Observation {
    let commit = match mirror.fetch(url, branch) {
        Ok(commit) => commit,
        Err(e) => return Observation::Unreachable { error: error_chain(&e) },
    };
    let fast_forward = match &state.applied {
        None => true,
        Some(applied) => match mirror.descends(&commit, applied) {
            Ok(descends) => descends,
            Err(e) => return Observation::Unreachable { error: error_chain(&e) },
        },
    };
    let errors = judge(&commit);
    Observation::Fetched { commit, fast_forward, errors }
}

/// An error and its causes on one line, `outer: inner: …`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn fetched(commit: &str, fast_forward: bool, valid: bool) -> Observation {
        let errors = if valid {
            vec![]
        } else {
            vec![Diagnostic::error("rules.yaml", crate::diagnostics::Pos::new(3, 7), "unknown field `mach`")]
        };
        Observation::Fetched { commit: commit.into(), fast_forward, errors }
    }

    #[test]
    fn only_valid_fast_forwards_move_the_applied_revision() {
        let now = t("2026-11-24T12:00:00Z");
        let (step, state) = decide(&FollowState::default(), fetched("a", true, true), now);
        assert_eq!(step, Step::Apply { commit: "a".into() });
        let (step, state) = decide(&state, fetched("a", true, true), now);
        assert_eq!(step, Step::Unchanged);
        let (step, state) = decide(&state, fetched("b", true, false), now);
        assert!(matches!(step, Step::KeepLastGood { ref commit, .. } if commit == "b"));
        assert_eq!((state.applied.as_deref(), state.attempted.as_deref()), (Some("a"), Some("b")));
        let (step, state) = decide(&state, fetched("c", false, true), now);
        assert_eq!(step, Step::RefuseRewrite { commit: "c".into(), applied: "a".into() });
        assert_eq!(state.applied.as_deref(), Some("a"));
        let mut acked = state.clone();
        acked.acknowledged_rewrites.insert("c".into());
        let (step, state) = decide(&acked, fetched("c", false, true), now);
        assert_eq!(step, Step::Apply { commit: "c".into() });
        assert!(state.acknowledged_rewrites.is_empty(), "an acknowledgement is used once");
    }

    #[test]
    fn failures_back_off_on_the_clock_and_keep_the_applied_revision() {
        let now = t("2026-11-24T12:00:00Z");
        let start = FollowState { applied: Some("a".into()), ..FollowState::default() };
        let unreachable = || Observation::Unreachable { error: "connection refused".into() };
        let (step, state) = decide(&start, unreachable(), now);
        assert_eq!(step, Step::Backoff { error: "connection refused".into(), retry_at: t("2026-11-24T12:00:05Z") });
        let (_, state) = decide(&state, unreachable(), now);
        let (step, state) = decide(&state, unreachable(), now);
        assert_eq!(step, Step::Backoff { error: "connection refused".into(), retry_at: t("2026-11-24T12:00:20Z") });
        assert_eq!(state.applied.as_deref(), Some("a"));
        let mut many = state.clone();
        many.failures = 40;
        let (step, _) = decide(&many, unreachable(), now);
        assert_eq!(step, Step::Backoff { error: "connection refused".into(), retry_at: t("2026-11-24T12:05:00Z") });
        let (step, state) = decide(&state, fetched("a", true, true), now);
        assert_eq!((step, state.failures, state.retry_at), (Step::Unchanged, 0, None));
    }
}
