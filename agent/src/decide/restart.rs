//! `restart`: install at a reboot, a cold boot, a listed service's restart
//! or a scheduled restart time, since the item arrived.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::{AmbiguousOffset, TimeZone};
use patchward_api::Weekday;
use patchward_api::deployment::{DEVICE_ZONE, ResolvedDeployment, RestartSchedule, RestartTrigger, resolve_zone};

use super::{Context, Decision, GiveUpReason, InstallReason, WaitReason};

pub(super) fn decide(context: &Context<'_>, deployment: &ResolvedDeployment) -> Decision {
    let policy = &deployment.policy;
    let Some(options) = &policy.restart else {
        return Decision::GiveUp {
            reason: GiveUpReason::PolicyIncomplete {
                message: format!("policy `{}` has mode `restart` but no `restart` block", policy.name),
            },
        };
    };
    let (baseline, observed) = (&context.local.baseline, context.observations);
    let rebooted = matches!((&baseline.boot_id, &observed.boot_id), (Some(before), Some(now)) if before != now);
    let mut next_scheduled = None;
    for trigger in &options.triggers {
        let fired = match trigger {
            RestartTrigger::Reboot => rebooted,
            RestartTrigger::ColdBoot => rebooted && observed.cold_boot == Some(true),
            RestartTrigger::ServiceRestart => options.services.iter().any(|unit| {
                observed.invocation_ids.get(unit).is_some_and(|now| baseline.invocation_ids.get(unit) != Some(now))
            }),
            RestartTrigger::ScheduledRestart => {
                let Some(schedule) = &options.schedule else {
                    return Decision::GiveUp {
                        reason: GiveUpReason::PolicyIncomplete {
                            message: format!(
                                "policy `{}` has trigger `scheduled-restart` but no `schedule`",
                                policy.name
                            ),
                        },
                    };
                };
                let field = format!("the zone of the restart schedule of policy `{}` (the device's)", policy.name);
                let zone = match resolve_zone(DEVICE_ZONE, context.item.device_zone.as_deref(), &field) {
                    Ok(zone) => zone,
                    Err(error) => {
                        return Decision::GiveUp {
                            reason: GiveUpReason::UnresolvableZone { message: error.to_string() },
                        };
                    }
                };
                let (last, next) = scheduled_around(schedule, &zone, context.now);
                next_scheduled = next;
                // Reached since the item arrived, and not in the future.
                last.is_some_and(|last| last > context.local.first_seen)
            }
        };
        if fired {
            return context.install(deployment, InstallReason::Restart { trigger: *trigger }, false);
        }
    }
    Decision::WaitUntil { at: next_scheduled, reason: WaitReason::AwaitingRestart }
}

/// The latest scheduled instant at or before `now` and the first after it.
/// A time in a DST gap resolves to the first instant after the gap, one
/// that occurs twice to the first, as windows do.
fn scheduled_around(
    schedule: &RestartSchedule,
    zone: &TimeZone,
    now: Timestamp,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let today = zone.to_datetime(now).date();
    let (mut last, mut next) = (None, None);
    // A week and a day either side covers every weekday, whatever the offset.
    for offset in -8i64..=8 {
        let Ok(day) = today.checked_add(jiff::Span::new().days(offset)) else { continue };
        if !schedule.days.contains(&weekday_of(day)) {
            continue;
        }
        let Some(instant) = instant_at(zone, day, schedule.at) else { continue };
        if instant <= now {
            last = Some(last.map_or(instant, |l: Timestamp| l.max(instant)));
        } else {
            next = Some(next.map_or(instant, |n: Timestamp| n.min(instant)));
        }
    }
    (last, next)
}

fn weekday_of(date: Date) -> Weekday {
    Weekday::ALL[date.weekday().to_monday_zero_offset() as usize]
}

fn instant_at(zone: &TimeZone, day: Date, at: patchward_api::LocalTime) -> Option<Timestamp> {
    let datetime = if at.minutes() >= 24 * 60 {
        day.tomorrow().ok()?.to_datetime(Time::midnight())
    } else {
        day.to_datetime(Time::new(at.hour() as i8, at.minute() as i8, 0, 0).ok()?)
    };
    let ambiguous = zone.to_ambiguous_timestamp(datetime);
    match ambiguous.offset() {
        // A time the spring gap skips is reached at the first instant after
        // the gap: the zone's transition, which follows the earlier reading.
        AmbiguousOffset::Gap { before, after } => {
            let earlier = before.to_timestamp(datetime).ok()?.min(after.to_timestamp(datetime).ok()?);
            zone.following(earlier).next().map(|transition| transition.timestamp())
        }
        // A time that occurs twice is reached at the first.
        _ => ambiguous.earlier().ok(),
    }
}
