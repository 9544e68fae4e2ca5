//! `prompt` and `scheduled-prompt`: ask the user, within limits.

use jiff::Timestamp;
use patchward_api::WindowSchedule;
use patchward_api::deployment::{DeploymentMode, PromptOptions, ResolvedDeployment, resolve_zone};

use super::windows::WindowGate;
use super::{
    Context, Decision, GiveUpReason, InstallReason, Item, LocalItemState, PromptAnswer, SnoozeGranted, WaitReason,
    cut_short_by, earliest, later_by, wait,
};

/// When the install becomes mandatory: `prompt.deadline` after `notBefore`,
/// or the item's own deadline, the earlier.
pub(super) fn mandatory_from(item: &Item, options: &PromptOptions) -> Option<Timestamp> {
    earliest(options.deadline.map(|d| later_by(item.not_before, d)), item.deadline)
}

/// Snoozes used so far: the agent's count or the engine's, the larger.
pub(super) fn snoozes_used(item: &Item, local: &LocalItemState) -> u32 {
    local.snoozes_used.max(item.user_request.snoozes_used)
}

/// The end of the latest snooze on record, local or relayed, the later.
fn recorded_snooze_end(item: &Item, local: &LocalItemState) -> Option<Timestamp> {
    match (local.snoozed_until, item.user_request.snoozed_until) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// One more snooze from `now`: `snoozeFor`, never past the deadline.
pub(super) fn grant_snooze(
    now: Timestamp,
    options: &PromptOptions,
    used: u32,
    mandatory_at: Option<Timestamp>,
) -> SnoozeGranted {
    let until = later_by(now, options.snooze_for);
    SnoozeGranted {
        until: mandatory_at.map_or(until, |deadline| until.min(deadline)),
        snoozes_used: used.saturating_add(1),
        snoozes_left: options.max_snoozes.saturating_sub(used.saturating_add(1)),
    }
}

pub(super) fn decide(context: &Context<'_>, deployment: &ResolvedDeployment, gate: &WindowGate) -> Decision {
    let (item, local, now) = (context.item, context.local, context.now);
    let policy = &deployment.policy;
    let options = policy.prompt_options();
    let mandatory_at = mandatory_from(item, &options);
    let scheduled = match (policy.mode, &policy.scheduled_prompt, &deployment.fallback) {
        (DeploymentMode::ScheduledPrompt, Some(scheduled), Some(fallback)) => Some((scheduled, fallback.as_ref())),
        (DeploymentMode::ScheduledPrompt, _, _) => {
            return Decision::GiveUp {
                reason: GiveUpReason::PolicyIncomplete {
                    message: format!(
                        "policy `{}` is scheduled-prompt but carries no `scheduledPrompt` block or no fallback",
                        policy.name
                    ),
                },
            };
        }
        _ => None,
    };
    let install_when_open = |reason: InstallReason, mandatory: bool| {
        gate.wait_if_closed(now).unwrap_or_else(|| context.install(deployment, reason, mandatory))
    };

    if mandatory_at.is_some_and(|deadline| now >= deadline) {
        return install_when_open(InstallReason::Deadline, true);
    }
    let prompt = local.prompt.as_ref();
    if prompt.is_some_and(|p| p.answer == PromptAnswer::Accepted) {
        return install_when_open(InstallReason::PromptAccepted, false);
    }
    let recorded_end = recorded_snooze_end(item, local);
    if !policy.admin_only
        // Never longer than one snooze from now: a clock that went back
        // must not stretch a snooze.
        && let Some(until) = recorded_end.map(|end| end.min(later_by(now, options.snooze_for)))
        && now < until
    {
        return wait(earliest(Some(until), mandatory_at), WaitReason::Snoozed { until });
    }
    let answer_within = scheduled.map_or(options.timeout, |(scheduled, _)| scheduled.answer_within);
    // A prompt out and unanswered, unless a snooze ending after it answered it.
    let outstanding = prompt
        .filter(|p| p.answer == PromptAnswer::Unanswered)
        .filter(|p| recorded_end.is_none_or(|end| end <= p.shown_at))
        .map(|p| p.shown_at);
    if let Some(shown_at) = outstanding {
        // Shown "after now" means the clock went back: count from now.
        let answer_by = later_by(shown_at.min(now), answer_within);
        if now < answer_by {
            return wait(earliest(Some(answer_by), mandatory_at), WaitReason::AwaitingAnswer { answer_by });
        }
        if let Some((_, fallback)) = scheduled {
            // Nobody answered: the fallback decides from now on.
            return cut_short_by(
                context.decide_with(fallback, gate.blackouts()),
                mandatory_at,
                WaitReason::DeadlineComes,
            );
        }
        let used = snoozes_used(item, local);
        if !policy.admin_only && used < options.max_snoozes {
            return Decision::CountIgnoredPromptAsSnooze { snooze: grant_snooze(now, &options, used, mandatory_at) };
        }
        return install_when_open(InstallReason::PromptUnanswered, false);
    }
    if let Some((scheduled, fallback)) = scheduled {
        let field = format!("the scheduledPrompt timezone of policy `{}`", policy.name);
        let zone = match resolve_zone(&scheduled.timezone, item.device_zone.as_deref(), &field) {
            Ok(zone) => zone,
            Err(error) => {
                return Decision::GiveUp { reason: GiveUpReason::UnresolvableZone { message: error.to_string() } };
            }
        };
        let hours = WindowSchedule::new(zone, vec![scheduled.prompt_when.daily_interval()], Vec::new());
        let hours_change = hours.transitions(now, 1, 2).first().map(|transition| transition.at);
        if !hours.is_open(now) {
            let fallback_decision = context.decide_with(fallback, gate.blackouts());
            let until_hours = cut_short_by(fallback_decision, hours_change, WaitReason::PromptHoursBegin);
            return cut_short_by(until_hours, mandatory_at, WaitReason::DeadlineComes);
        }
        if let Some(closed) = gate.wait_if_closed(now) {
            // The windows may open before the hours end; if not, the
            // fallback decides when they end.
            return cut_short_by(closed, hours_change, WaitReason::PromptHoursEnd);
        }
    } else if let Some(closed) = gate.wait_if_closed(now) {
        return closed;
    }
    let snoozes_left =
        if policy.admin_only { 0 } else { options.max_snoozes.saturating_sub(snoozes_used(item, local)) };
    Decision::Prompt {
        message: options.message.clone().unwrap_or_else(|| format!("{} is ready to install", item.patch)),
        display_for: options.timeout,
        answer_by: later_by(now, answer_within),
        snoozes_left,
        can_snooze: snoozes_left > 0,
        deadline: mandatory_at,
        reboot: policy.reboot,
        decided_by: policy.name.clone(),
    }
}
