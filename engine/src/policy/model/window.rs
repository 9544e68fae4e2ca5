use patchward_api::{LocalTime, Weekday};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Timestamp;
use crate::policy::yaml::Spanned;

/// When installs may happen. Open exactly when the wall-clock time in its
/// zone is inside one of its intervals and no blackout covers the instant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MaintenanceWindowSpec {
    /// An IANA time zone name (`Europe/Helsinki`, `UTC`), or `device` for
    /// each device's own zone.
    pub timezone: Spanned<String>,
    #[serde(default)]
    pub intervals: Vec<Spanned<Interval>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blackouts: Vec<Spanned<Blackout>>,
}

/// Start inclusive, end exclusive. An interval whose end is not after its
/// start runs into the next day; `days` name the day it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Interval {
    /// The days the interval starts on; every day when left out.
    #[serde(default = "every_day")]
    pub days: Spanned<Vec<Weekday>>,
    pub start: Spanned<LocalTime>,
    pub end: Spanned<LocalTime>,
}

fn every_day() -> Spanned<Vec<Weekday>> {
    Spanned::new(Weekday::ALL.to_vec(), crate::diagnostics::Pos::UNKNOWN)
}

/// A period in which everything is closed, from `from` (inclusive) until
/// `until` (exclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Blackout {
    pub from: Spanned<Timestamp>,
    pub until: Spanned<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The zone `device` was used without a device zone to resolve it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the window's zone is `device`; give the device's zone")]
    NeedsDeviceZone,
    #[error("unknown time zone `{0}`")]
    UnknownZone(String),
}

impl MaintenanceWindowSpec {
    /// The window as a schedule to evaluate; `device_zone` resolves the
    /// zone `device`.
    pub fn schedule(&self, device_zone: Option<&str>) -> Result<patchward_api::WindowSchedule, ScheduleError> {
        let name = if self.timezone.value == "device" {
            device_zone.ok_or(ScheduleError::NeedsDeviceZone)?
        } else {
            self.timezone.value.as_str()
        };
        let zone = jiff::tz::TimeZone::get(name).map_err(|_| ScheduleError::UnknownZone(name.to_owned()))?;
        let intervals = self
            .intervals
            .iter()
            .map(|i| patchward_api::IntervalRule { days: i.days.value.clone(), start: i.start.value, end: i.end.value })
            .collect();
        let blackouts = self.blackouts.iter().map(|b| (b.from.value.0, b.until.value.0)).collect();
        Ok(patchward_api::WindowSchedule::new(zone, intervals, blackouts))
    }
}
