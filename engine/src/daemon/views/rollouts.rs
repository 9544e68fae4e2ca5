//! Rollouts: each approving rule's rollout of each patch it decides, stage
//! by stage (pilot, then production), with each gate's counts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::cell::{Cell, Columns};
use super::{mentions, passes};
use crate::daemon::InForce;
use crate::plan::{DevicePlan, ItemStatus, Plan};

/// One stage of a rule's rollout of one patch: where it stands across the
/// devices of its scope, and its gate.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageRollout {
    /// 1-based, as in the plan.
    pub stage: u16,
    pub scope: String,
    pub policy: String,
    pub not_before: jiff::Timestamp,
    pub deadline: Option<jiff::Timestamp>,
    /// Devices whose item comes from this stage, by status.
    pub done: usize,
    pub due: usize,
    pub scheduled: usize,
    pub blocked: usize,
    /// The gate this stage waits on, counted over the stage before.
    pub gate: Option<GateRollout>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateRollout {
    pub succeeded: u32,
    pub failed: u32,
    pub min_succeeded: u32,
    pub max_failure_rate: f64,
    pub passed: bool,
}

/// A rule's rollout of one patch, stage by stage (pilot, then production).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    pub rule: String,
    pub patch: String,
    pub title: String,
    pub severity: String,
    pub stages: Vec<StageRollout>,
}

/// Every approving rule's rollout of every patch it decides.
pub fn rollouts(in_force: &InForce, plan: &Plan, devices: &[&DevicePlan]) -> Vec<Rollout> {
    use crate::plan::Source;
    // (patch, grant index) -> counts by status, over the devices served.
    let mut counts: HashMap<(u32, u32), [usize; 4]> = HashMap::new();
    for device in devices {
        for item in device.items.iter().filter(|i| !i.retracted) {
            let slot = match item.status {
                ItemStatus::Installed | ItemStatus::Removed => 0,
                ItemStatus::Due => 1,
                ItemStatus::Scheduled => 2,
                ItemStatus::Blocked => 3,
            };
            counts.entry((item.patch, item.grant)).or_default()[slot] += 1;
        }
    }
    let mut out = Vec::new();
    for (rule_index, rule) in plan.rules.iter().enumerate() {
        if rule.action != crate::policy::model::RuleAction::Approve {
            continue;
        }
        let compiled = &in_force.policy.rules[rule_index];
        for &patch in &rule.decided {
            let grants = &plan.grants[patch as usize];
            let stages: Vec<StageRollout> = grants
                .iter()
                .enumerate()
                .filter(|(_, g)| g.source == Source::Rule(rule_index as u32))
                .map(|(index, grant)| {
                    let [done, due, scheduled, blocked] =
                        counts.get(&(patch, index as u32)).copied().unwrap_or_default();
                    let stage = grant.stage.unwrap_or(0);
                    let gate = grant.gate.map(|g| {
                        let outcome = &plan.gates[g as usize];
                        let spec = compiled.stages[stage as usize]
                            .gate
                            .unwrap_or(crate::plan::compile::GateSpec { max_failure_rate: 0.0, min_succeeded: 0 });
                        GateRollout {
                            succeeded: outcome.succeeded,
                            failed: outcome.failed,
                            min_succeeded: spec.min_succeeded,
                            max_failure_rate: spec.max_failure_rate,
                            passed: outcome.passed,
                        }
                    });
                    StageRollout {
                        stage: stage + 1,
                        scope: plan.scope_names[grant.scope as usize].clone(),
                        policy: plan.policy_names[grant.policy as usize].clone(),
                        not_before: grant.not_before,
                        deadline: grant.deadline,
                        done,
                        due,
                        scheduled,
                        blocked,
                        gate,
                    }
                })
                .collect();
            let mut stages = stages;
            stages.sort_by_key(|s| s.stage);
            let record = &in_force.catalog.patches[patch as usize].view.record;
            out.push(Rollout {
                rule: rule.name.clone(),
                patch: plan.patches[patch as usize].clone(),
                title: record.patch.title.clone(),
                severity: record.severity.as_str().to_owned(),
                stages,
            });
        }
    }
    out
}

/// Which rollouts a view keeps.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RolloutFilter {
    /// Part of the patch's id or title (any case).
    pub q: Option<String>,
    pub rule: Option<String>,
    pub severity: Option<String>,
}

impl RolloutFilter {
    pub fn keeps(&self, rollout: &Rollout) -> bool {
        mentions(&self.q, [rollout.patch.as_str(), &rollout.title])
            && passes(&self.rule, &rollout.rule)
            && passes(&self.severity, &rollout.severity)
    }

    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        vec![("q", text(&self.q)), ("rule", text(&self.rule)), ("severity", text(&self.severity))]
    }
}

/// The CSV columns of [`rollout_lines`].
pub const ROLLOUT_COLUMNS: &[&str] = &[
    "rule",
    "patch",
    "title",
    "severity",
    "stage",
    "scope",
    "policy",
    "notBefore",
    "deadline",
    "done",
    "due",
    "scheduled",
    "blocked",
    "gatePassed",
    "gateSucceeded",
    "gateFailed",
];

/// One stage of one rollout: a line of the rollouts' CSV.
pub struct StageLine<'a> {
    pub rollout: &'a Rollout,
    pub stage: &'a StageRollout,
}

/// Every stage of every rollout, in order.
pub fn rollout_lines(rollouts: &[Rollout]) -> Vec<StageLine<'_>> {
    rollouts.iter().flat_map(|rollout| rollout.stages.iter().map(move |stage| StageLine { rollout, stage })).collect()
}

impl Columns for StageLine<'_> {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        let (rollout, stage, gate) = (self.rollout, self.stage, self.stage.gate.as_ref());
        Some(match column {
            "rule" | "patch" | "title" | "severity" => return rollout.cell(column),
            "stage" => Cell::Count(stage.stage.into()),
            "scope" => Cell::Text(&stage.scope),
            "policy" => Cell::Text(&stage.policy),
            "notBefore" => Cell::Time(stage.not_before),
            "deadline" => Cell::or_empty(stage.deadline, Cell::Time),
            "done" => Cell::count(stage.done),
            "due" => Cell::count(stage.due),
            "scheduled" => Cell::count(stage.scheduled),
            "blocked" => Cell::count(stage.blocked),
            "gatePassed" => Cell::or_empty(gate, |g| Cell::Flag(g.passed)),
            "gateSucceeded" => Cell::or_empty(gate, |g| Cell::Count(g.succeeded.into())),
            "gateFailed" => Cell::or_empty(gate, |g| Cell::Count(g.failed.into())),
            _ => return None,
        })
    }
}

impl Columns for Rollout {
    fn cell(&self, column: &str) -> Option<Cell<'_>> {
        Some(match column {
            "rule" => Cell::Text(&self.rule),
            "patch" => Cell::Text(&self.patch),
            "title" => Cell::Text(&self.title),
            "severity" => Cell::Severity(&self.severity),
            "stages" => Cell::count(self.stages.len()),
            _ => return None,
        })
    }
}
