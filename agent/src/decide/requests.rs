//! The user's requests (`patchward-agent snooze ITEM`, `install ITEM`),
//! decided under the administrator's limits.
//!
//! - A **snooze** is granted only for a prompting policy (`prompt`,
//!   `scheduled-prompt`: the others never ask, so there is nothing to put
//!   off), never under `adminOnly`, never once the deadline has passed, and
//!   at most `maxSnoozes` times counting the agent's and the engine's
//!   records (the larger wins). It lasts `snoozeFor` from the request, cut
//!   at the deadline.
//! - An **on-demand install** is granted when the policy has
//!   `selfService`, the item is due (its `notBefore` passed and no rollout
//!   gate holds it) and the agent has not given up on it. It runs at once,
//!   even outside the windows' intervals, but waits out a blackout; the
//!   answer says so.
//!
//! Both refuse an item already installed or being removed. A refusal is a
//! [`Refusal`], whose text is written for the user.

use jiff::Timestamp;
use patchward_api::deployment::DeploymentMode;
use patchward_api::desired::{Action, Status};
use serde::Serialize;

use super::prompt::{grant_snooze, mandatory_from, snoozes_used};
use super::windows::WindowGate;
use super::{Decision, Item, LocalItemState, MAX_FAILURES, NothingReason, SnoozeGranted, WaitReason, settled};

/// Why a user's request was refused, in words for the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "refusal", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum Refusal {
    #[error("{patch} is already installed")]
    AlreadyInstalled { patch: String },
    #[error("{patch} is being removed from this device, not installed")]
    BeingRemoved { patch: String },
    #[error("{patch} waits for its rollout to reach this device; nothing can be done before then")]
    AwaitingRolloutGate { patch: String },
    #[error("{patch} is not due before {not_before}")]
    NotYetDue { patch: String, not_before: Timestamp },
    #[error("{patch} installs without asking (policy `{policy}`, mode {mode}): there is no prompt to snooze")]
    NothingToSnooze { patch: String, policy: String, mode: &'static str },
    #[error("the administrator does not allow putting {patch} off (policy `{policy}` is admin-only)")]
    AdminOnly { patch: String, policy: String },
    #[error("all {max} snoozes of {patch} are used")]
    NoSnoozesLeft { patch: String, max: u32 },
    #[error("the deadline of {patch} passed at {deadline}: the install is mandatory now")]
    DeadlinePassed { patch: String, deadline: Timestamp },
    #[error("{patch} is not offered for installing on demand (policy `{policy}`)")]
    NotSelfService { patch: String, policy: String },
    #[error("installing {patch} failed {failures} times and the agent has given up on it; ask your administrator")]
    GaveUp { patch: String, failures: u32 },
}

/// An on-demand install the agent will run; record it in
/// [`LocalItemState::self_service_requested_at`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfServiceAccepted {
    /// A blackout holds now: the install waits for its end.
    pub held_by_blackout: Option<BlackoutHold>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlackoutHold {
    pub window: String,
    pub reason: Option<String>,
    /// When the install can start; none within a year: `None`.
    pub until: Option<Timestamp>,
}

/// What refuses any request: an item settled, being removed, or not yet due.
fn refuse_unless_pending(item: &Item, local: &LocalItemState, now: Timestamp) -> Result<(), Refusal> {
    let patch = || item.patch.clone();
    match settled(item, local) {
        Some(NothingReason::EngineReportsInstalled | NothingReason::DetectedPresent) => {
            return Err(Refusal::AlreadyInstalled { patch: patch() });
        }
        Some(NothingReason::EngineReportsRemoved | NothingReason::DetectedAbsent) => {
            return Err(Refusal::BeingRemoved { patch: patch() });
        }
        None => {}
    }
    if item.action == Action::Uninstall {
        return Err(Refusal::BeingRemoved { patch: patch() });
    }
    if item.status == Status::Blocked {
        return Err(Refusal::AwaitingRolloutGate { patch: patch() });
    }
    if now < item.not_before {
        return Err(Refusal::NotYetDue { patch: patch(), not_before: item.not_before });
    }
    Ok(())
}

/// The user asks to put the install off (module docs: the limits).
pub fn decide_snooze(item: &Item, local: &LocalItemState, now: Timestamp) -> Result<SnoozeGranted, Refusal> {
    refuse_unless_pending(item, local, now)?;
    let policy = &item.deployment.policy;
    let patch = || item.patch.clone();
    if !matches!(policy.mode, DeploymentMode::Prompt | DeploymentMode::ScheduledPrompt) {
        return Err(Refusal::NothingToSnooze {
            patch: patch(),
            policy: policy.name.clone(),
            mode: policy.mode.as_str(),
        });
    }
    if policy.admin_only {
        return Err(Refusal::AdminOnly { patch: patch(), policy: policy.name.clone() });
    }
    let options = policy.prompt_options();
    let mandatory_at = mandatory_from(item, &options);
    if let Some(deadline) = mandatory_at.filter(|deadline| now >= *deadline) {
        return Err(Refusal::DeadlinePassed { patch: patch(), deadline });
    }
    let used = snoozes_used(item, local);
    if used >= options.max_snoozes {
        return Err(Refusal::NoSnoozesLeft { patch: patch(), max: options.max_snoozes });
    }
    Ok(grant_snooze(now, &options, used, mandatory_at))
}

/// The user asks to install now (module docs: when it is granted).
pub fn decide_self_service_install(
    item: &Item,
    local: &LocalItemState,
    now: Timestamp,
) -> Result<SelfServiceAccepted, Refusal> {
    refuse_unless_pending(item, local, now)?;
    let policy = &item.deployment.policy;
    if !policy.self_service {
        return Err(Refusal::NotSelfService { patch: item.patch.clone(), policy: policy.name.clone() });
    }
    if local.failures >= MAX_FAILURES {
        return Err(Refusal::GaveUp { patch: item.patch.clone(), failures: local.failures });
    }
    let held_by_blackout = match WindowGate::blackouts_only(&item.deployment, &[]).wait_if_closed(now) {
        Some(Decision::WaitUntil { at, reason: WaitReason::Blackout { window, reason } }) => {
            Some(BlackoutHold { window, reason, until: at })
        }
        _ => None,
    };
    Ok(SelfServiceAccepted { held_by_blackout })
}
