//! Counters for Prometheus, served in its text format on the metrics
//! listener (never on the API listener: scrapers need no credential, and
//! agents have no business there).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub desired_served: AtomicU64,
    pub desired_not_modified: AtomicU64,
    pub long_polls: AtomicU64,
    pub enrollments: AtomicU64,
    pub inventories: AtomicU64,
    pub events: AtomicU64,
    pub rate_limited: AtomicU64,
    pub blobs_served: AtomicU64,
    pub reconciles: AtomicU64,
    pub reconcile_failures: AtomicU64,
    pub full_plans: AtomicU64,
    pub device_plans: AtomicU64,
    pub revisions_applied: AtomicU64,
    pub revisions_refused: AtomicU64,
    /// Duration of the last full plan (microseconds) and its fleet size.
    last_full_plan: Mutex<(u64, usize)>,
    /// Responses by status code class (2xx, 3xx, 4xx, 5xx).
    pub responses: [AtomicU64; 4],
}

impl Metrics {
    pub fn record_full_plan(&self, took: std::time::Duration, devices: usize) {
        self.full_plans.fetch_add(1, Ordering::Relaxed);
        *self.last_full_plan.lock().unwrap_or_else(|p| p.into_inner()) = (took.as_micros() as u64, devices);
    }

    /// `count` devices planned between full plans.
    pub fn record_device_plans(&self, count: usize) {
        self.device_plans.fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn record_response(&self, status: u16) {
        let class = match status {
            200..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self, applied: bool, catalog_revision: u64) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64); 14] = [
            ("patchward_desired_state_served_total", "Desired states sent in full", &self.desired_served),
            (
                "patchward_desired_state_not_modified_total",
                "Desired-state polls answered 304",
                &self.desired_not_modified,
            ),
            ("patchward_long_polls_total", "Desired-state polls that waited", &self.long_polls),
            ("patchward_enrollments_total", "Devices enrolled", &self.enrollments),
            ("patchward_inventories_total", "Inventories received", &self.inventories),
            ("patchward_events_total", "Agent events recorded", &self.events),
            ("patchward_rate_limited_total", "Requests refused with 429", &self.rate_limited),
            ("patchward_blobs_served_total", "Package downloads served", &self.blobs_served),
            ("patchward_reconciles_total", "Reconcile passes", &self.reconciles),
            ("patchward_reconcile_failures_total", "Reconcile passes that failed", &self.reconcile_failures),
            ("patchward_full_plans_total", "Plans of the whole fleet", &self.full_plans),
            ("patchward_device_plans_total", "Plans of one device", &self.device_plans),
            ("patchward_revisions_applied_total", "Policy revisions applied", &self.revisions_applied),
            ("patchward_revisions_refused_total", "Policy revisions refused", &self.revisions_refused),
        ];
        for (name, help, value) in counters {
            let _ =
                writeln!(out, "# HELP {name} {help}.\n# TYPE {name} counter\n{name} {}", value.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP patchward_http_responses_total API responses by status class.");
        let _ = writeln!(out, "# TYPE patchward_http_responses_total counter");
        for (class, value) in ["2xx", "3xx", "4xx", "5xx"].iter().zip(&self.responses) {
            let _ =
                writeln!(out, "patchward_http_responses_total{{class=\"{class}\"}} {}", value.load(Ordering::Relaxed));
        }
        let (micros, devices) = *self.last_full_plan.lock().unwrap_or_else(|p| p.into_inner());
        let gauges = [
            ("patchward_last_full_plan_seconds", "Duration of the last full plan", micros as f64 / 1e6),
            ("patchward_devices", "Devices in the last full plan", devices as f64),
            ("patchward_policy_applied", "1 when a valid policy revision is in force", if applied { 1.0 } else { 0.0 }),
            ("patchward_catalog_revision", "The catalog revision in force", catalog_revision as f64),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}
