//! Stage gates: each gate counted over the devices of the stage before it.

use std::collections::{BTreeMap, HashMap, HashSet};

use patchward_api::{Device, ReportStatus};
use rayon::prelude::*;

use super::compile::GateSpec;
use super::{GateOutcome, PlanCatalog};

/// Counts each gate over the devices of the stage before it: a device
/// counts as succeeded when its inventory has the patch or its latest report
/// says so, as failed when its latest report says failed.
pub(super) fn count_gates(
    gates: &mut [GateOutcome],
    specs: &[(GateSpec, u32)],
    catalog: &PlanCatalog,
    devices: &[&Device],
    in_scope: &(dyn Fn(usize, u32) -> bool + Sync),
) {
    if gates.is_empty() {
        return;
    }
    let gated: HashSet<u32> = gates.iter().map(|g| g.patch).collect();
    // (patch, device, succeeded), from every device's inventory and reports.
    let outcomes: Vec<Vec<(u32, bool)>> = devices
        .par_iter()
        .map(|device| {
            let mut latest: BTreeMap<u32, (jiff::Timestamp, bool)> = BTreeMap::new();
            for report in &device.reports {
                if let Some(patch) = catalog.get(&report.patch).filter(|p| gated.contains(p)) {
                    let succeeded = report.status == ReportStatus::Succeeded;
                    let entry = latest.entry(patch).or_insert((report.at, succeeded));
                    // The latest report wins; at the same instant a failure.
                    if report.at > entry.0 || (report.at == entry.0 && !succeeded) {
                        *entry = (report.at, succeeded);
                    }
                }
            }
            for id in &device.inventory.patches {
                if let Some(patch) = catalog.get(id).filter(|p| gated.contains(p)) {
                    latest.insert(patch, (jiff::Timestamp::MAX, true));
                }
            }
            latest.into_iter().map(|(p, (_, ok))| (p, ok)).collect()
        })
        .collect();
    let mut by_patch: HashMap<u32, Vec<(usize, bool)>> = HashMap::new();
    for (device, list) in outcomes.iter().enumerate() {
        for &(patch, ok) in list {
            by_patch.entry(patch).or_default().push((device, ok));
        }
    }
    for (gate, (spec, previous)) in gates.iter_mut().zip(specs) {
        let (mut succeeded, mut failed) = (0u32, 0u32);
        if *previous != u32::MAX {
            for &(device, ok) in by_patch.get(&gate.patch).map(Vec::as_slice).unwrap_or(&[]) {
                if in_scope(device, *previous) {
                    if ok {
                        succeeded += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
        }
        judge(gate, succeeded, failed, spec);
    }
}

/// Sets a gate's counts and whether they pass `spec`.
pub(super) fn judge(gate: &mut GateOutcome, succeeded: u32, failed: u32, spec: &GateSpec) {
    let total = succeeded + failed;
    let rate = if total == 0 { 0.0 } else { f64::from(failed) / f64::from(total) };
    gate.succeeded = succeeded;
    gate.failed = failed;
    gate.passed = succeeded >= spec.min_succeeded && rate <= spec.max_failure_rate;
}
