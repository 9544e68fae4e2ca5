//! Whether a deployment's windows let an install happen at an instant, and
//! when they next do.

use jiff::{SignedDuration, Timestamp};
use patchward_api::WindowSchedule;
use patchward_api::deployment::{Blackout, ResolvedDeployment, ZoneError};

use super::{Decision, WaitReason, wait};

/// How far ahead the next opening is looked for: a yearly window plus its
/// freezes. Nothing open within it waits with `at: None`.
const HORIZON_DAYS: i64 = 400;
/// Most openings are near; look a fortnight ahead before a whole horizon.
const NEAR_HORIZON_DAYS: i64 = 14;

/// A blackout and the window that declared it, for the wait's reason.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NamedBlackout {
    pub window: String,
    pub blackout: Blackout,
}

/// The windows of one deployment, resolved for evaluation.
pub(crate) struct WindowGate {
    /// Each window's schedule with its interval count; empty when any time
    /// will do.
    schedules: Vec<(usize, WindowSchedule)>,
    /// No windows, or `ignoreWindows`: the intervals do not matter.
    any_time: bool,
    /// Every blackout that holds: the windows' own and those inherited from
    /// the deployments above a fallback. Empty under `ignoreBlackouts`.
    blackouts: Vec<NamedBlackout>,
}

enum GateState<'a> {
    Open,
    Blackout(&'a NamedBlackout),
    OutsideWindows,
}

impl WindowGate {
    /// The gate of `deployment`'s policy and windows, with `inherited`
    /// blackouts; `device_zone` resolves the zone `device`.
    pub fn new(
        deployment: &ResolvedDeployment,
        inherited: &[NamedBlackout],
        device_zone: Option<&str>,
    ) -> Result<Self, ZoneError> {
        let policy = &deployment.policy;
        let named: Vec<_> = deployment.windows.iter().filter(|w| policy.windows.contains(&w.name)).collect();
        let any_time = named.is_empty() || policy.ignores_window_intervals();
        let schedules = if any_time {
            Vec::new()
        } else {
            named
                .iter()
                .map(|window| Ok((window.intervals.len(), window.schedule(device_zone)?)))
                .collect::<Result<_, ZoneError>>()?
        };
        let blackouts = blackouts_of(deployment, inherited);
        Ok(WindowGate { schedules, any_time, blackouts })
    }

    /// Only the blackouts of `deployment`'s windows (and `inherited`), for
    /// an on-demand install, which skips the intervals.
    pub fn blackouts_only(deployment: &ResolvedDeployment, inherited: &[NamedBlackout]) -> Self {
        WindowGate { schedules: Vec::new(), any_time: true, blackouts: blackouts_of(deployment, inherited) }
    }

    /// The blackouts in force, to hand down to a fallback.
    pub fn blackouts(&self) -> &[NamedBlackout] {
        &self.blackouts
    }

    fn state_at(&self, t: Timestamp) -> GateState<'_> {
        if let Some(blackout) = self.blackouts.iter().find(|b| b.blackout.covers(t)) {
            return GateState::Blackout(blackout);
        }
        if self.any_time || self.schedules.iter().any(|(_, schedule)| schedule.is_open(t)) {
            GateState::Open
        } else {
            GateState::OutsideWindows
        }
    }

    pub fn is_open(&self, t: Timestamp) -> bool {
        matches!(self.state_at(t), GateState::Open)
    }

    /// The first instant after `after` at which the gate is open, within
    /// [`HORIZON_DAYS`].
    pub fn next_open(&self, after: Timestamp) -> Option<Timestamp> {
        for horizon in [NEAR_HORIZON_DAYS, HORIZON_DAYS] {
            let end = after.checked_add(SignedDuration::from_hours(24 * horizon)).unwrap_or(Timestamp::MAX);
            // The gate can only open where a window opens or a blackout ends.
            let mut candidates: Vec<Timestamp> = Vec::new();
            if !self.any_time {
                for (intervals, schedule) in &self.schedules {
                    // Enough transitions for every bound and blackout edge of every day.
                    let count = (2 * intervals + 2 * self.blackouts.len() + 4) * (horizon as usize + 2);
                    candidates.extend(
                        schedule.transitions(after, count, horizon).into_iter().filter(|t| t.open).map(|t| t.at),
                    );
                }
            }
            candidates.extend(
                self.blackouts.iter().map(|b| b.blackout.until).filter(|until| after < *until && *until <= end),
            );
            candidates.sort();
            candidates.dedup();
            if let Some(opening) = candidates.into_iter().find(|t| self.is_open(*t)) {
                return Some(opening);
            }
        }
        None
    }

    /// `None` when open at `now`; otherwise the wait until the next opening.
    pub fn wait_if_closed(&self, now: Timestamp) -> Option<Decision> {
        let reason = match self.state_at(now) {
            GateState::Open => return None,
            GateState::Blackout(named) => {
                WaitReason::Blackout { window: named.window.clone(), reason: named.blackout.reason.clone() }
            }
            GateState::OutsideWindows => WaitReason::OutsideWindows,
        };
        Some(wait(self.next_open(now), reason))
    }
}

/// The blackouts that hold for `deployment`: those of the windows its policy
/// names and the inherited ones, none under `ignoreBlackouts`.
fn blackouts_of(deployment: &ResolvedDeployment, inherited: &[NamedBlackout]) -> Vec<NamedBlackout> {
    let policy = &deployment.policy;
    if policy.ignores_blackouts() {
        return Vec::new();
    }
    deployment
        .windows
        .iter()
        .filter(|window| policy.windows.contains(&window.name))
        .flat_map(|window| {
            window
                .blackouts
                .iter()
                .map(|blackout| NamedBlackout { window: window.name.clone(), blackout: blackout.clone() })
        })
        .chain(inherited.iter().cloned())
        .collect()
}
