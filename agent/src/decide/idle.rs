//! `idle`: every configured condition must have held for its time.

use jiff::{SignedDuration, Timestamp};
use patchward_api::deployment::ResolvedDeployment;
use serde::Serialize;

use super::{Context, DEFAULT_ACTIVITY_HOLD, Decision, GiveUpReason, InstallReason, SAMPLE_FRESHNESS, WaitReason};

/// One of the idle conditions a policy may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleCondition {
    CpuBelow,
    NoInput,
    NoForegroundApps,
    NetworkBelow,
}

/// Whether a condition holds now.
enum Holding {
    Held,
    /// Holding, long enough at this instant if it keeps holding.
    From(Timestamp),
    NotHeld,
}

fn to_signed(d: patchward_api::Duration) -> SignedDuration {
    SignedDuration::from_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn held_since(since: Timestamp, hold: SignedDuration, now: Timestamp) -> Holding {
    match since.checked_add(hold) {
        Ok(enough) if enough <= now => Holding::Held,
        Ok(enough) => Holding::From(enough),
        Err(_) => Holding::NotHeld,
    }
}

/// A rate series held below `threshold` for `hold` up to `now` (module
/// docs of `decide`: the run, its breaks, freshness).
fn series(samples: &[(Timestamp, f64)], threshold: f64, hold: SignedDuration, now: Timestamp) -> Holding {
    let mut known: Vec<(Timestamp, f64)> = samples.iter().copied().filter(|(at, _)| *at <= now).collect();
    known.sort_by_key(|(at, _)| *at);
    let Some(&(latest, value)) = known.last() else { return Holding::NotHeld };
    if now.duration_since(latest) > SAMPLE_FRESHNESS || value.is_nan() || value >= threshold {
        return Holding::NotHeld;
    }
    let mut run_start = latest;
    for &(at, value) in known.iter().rev().skip(1) {
        if value.is_nan() || value >= threshold || run_start.duration_since(at) > SAMPLE_FRESHNESS {
            break;
        }
        run_start = at;
    }
    held_since(run_start, hold, now)
}

pub(super) fn decide(context: &Context<'_>, deployment: &ResolvedDeployment) -> Decision {
    let Some(options) = &deployment.policy.idle else {
        return Decision::GiveUp {
            reason: GiveUpReason::PolicyIncomplete {
                message: format!("policy `{}` has mode `idle` but no `idle` block", deployment.policy.name),
            },
        };
    };
    let (now, observed) = (context.now, context.observations);
    let activity_hold = options.cpu_for.map(to_signed).unwrap_or(DEFAULT_ACTIVITY_HOLD);
    let mut conditions: Vec<(IdleCondition, Holding)> = Vec::new();
    if let Some(percent) = options.cpu_below_percent {
        conditions.push((IdleCondition::CpuBelow, series(&observed.cpu_busy_percent, percent, activity_hold, now)));
    }
    if let Some(no_input_for) = options.no_input_for {
        let holding = match observed.input_idle_since {
            Some(since) if since <= now => held_since(since, to_signed(no_input_for), now),
            _ => Holding::NotHeld,
        };
        conditions.push((IdleCondition::NoInput, holding));
    }
    if options.no_foreground_apps {
        let holding = if observed.foreground_apps_present == Some(false) { Holding::Held } else { Holding::NotHeld };
        conditions.push((IdleCondition::NoForegroundApps, holding));
    }
    if let Some(kbps) = options.network_below_kbps {
        // u64 → f64 loses nothing below 2^53 kbit/s.
        conditions.push((IdleCondition::NetworkBelow, series(&observed.network_kbps, kbps as f64, activity_hold, now)));
    }
    if conditions.is_empty() {
        return Decision::GiveUp {
            reason: GiveUpReason::PolicyIncomplete {
                message: format!("policy `{}` has an `idle` block without any condition", deployment.policy.name),
            },
        };
    }
    let unmet: Vec<IdleCondition> = conditions
        .iter()
        .filter(|(_, holding)| !matches!(holding, Holding::Held))
        .map(|(condition, _)| *condition)
        .collect();
    if unmet.is_empty() {
        return context.install(deployment, InstallReason::Idle, false);
    }
    // Long enough for all, if each keeps holding; never, while one does not.
    let at = conditions.iter().try_fold(None, |latest: Option<Timestamp>, (_, holding)| match holding {
        Holding::Held => Some(latest),
        Holding::From(at) => Some(Some(latest.map_or(*at, |l| l.max(*at)))),
        Holding::NotHeld => None,
    });
    Decision::WaitUntil { at: at.flatten(), reason: WaitReason::NotIdle { unmet } }
}
