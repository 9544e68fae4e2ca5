//! The compliance trend: one point per hour from the latest plan's
//! figures, kept in the store for 90 days, drawn by the console.

use super::{Engine, views};
use crate::store::StoreError;

/// The compliance figures of one moment, for the console's trend.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendPoint {
    pub at: jiff::Timestamp,
    pub devices: usize,
    pub compliant: usize,
    pub pending: usize,
    pub non_compliant: usize,
    pub compliant_percent: f64,
}

/// 90 days of hourly points.
const TREND_POINTS: usize = 90 * 24;
const TREND_STATE: &str = "compliance-trend";

impl Engine {
    /// Keeps the compliance trend: one point per hour (the latest plan's
    /// figures in that hour), at most every ten minutes, for the last
    /// [`TREND_POINTS`] hours.
    pub(super) fn sample_compliance(&self, now: jiff::Timestamp) -> Result<(), StoreError> {
        let mut trend = self.compliance_trend()?;
        let hour = |at: jiff::Timestamp| at.as_second().div_euclid(3600);
        if let Some(last) = trend.last()
            && hour(last.at) == hour(now)
            && now.duration_since(last.at) < jiff::SignedDuration::from_mins(10)
            && now >= last.at
        {
            return Ok(());
        }
        let Some((in_force, plan, replanned)) = self.plan_view() else { return Ok(()) };
        let report = views::compliance(&in_force, &plan, &views::device_plans(&plan, &replanned), now);
        let point = TrendPoint {
            at: now,
            devices: report.devices,
            compliant: report.compliant,
            pending: report.pending,
            non_compliant: report.non_compliant,
            compliant_percent: report.compliant_percent,
        };
        // A clock that went back starts the trend again from there.
        trend.retain(|p| p.at < now && hour(p.at) != hour(now));
        trend.push(point);
        let excess = trend.len().saturating_sub(TREND_POINTS);
        trend.drain(..excess);
        crate::store::Store::wait(self.store.set_leader_state(TREND_STATE, &trend))
    }

    /// The compliance trend, oldest first.
    pub fn compliance_trend(&self) -> Result<Vec<TrendPoint>, StoreError> {
        Ok(crate::store::Store::wait(self.store.engine_state(TREND_STATE))?.unwrap_or_default())
    }
}
