//! Grants: how each patch reaches which scope. A rule that approves a
//! patch grants it to each of its stages' scopes, from the later of the
//! patch's release and the rule's first match (the ledger) plus the stage's
//! delay; a manual Approval grants it to its scopes. Review, hold and
//! superseded-skip decisions become the reviewer's lists instead.

use super::compile::GateSpec;
use super::rules::Decision;
use super::{GateOutcome, Grant, Listed, PlanInput, Source};
use crate::diagnostics::Diagnostic;
use crate::policy::model::{ItemAction, RuleAction, SupersededHandling};

/// The grants of every patch, and the lists of patches no grant brings.
pub(super) struct Granted {
    /// Per patch, in precedence order.
    pub grants: Vec<Vec<Grant>>,
    pub gates: Vec<GateOutcome>,
    /// Per gate, its spec and the scope of the stage before it
    /// (`u32::MAX` for a first stage, which nothing precedes).
    pub gate_specs: Vec<(GateSpec, u32)>,
    pub review_queue: Vec<Listed>,
    pub held: Vec<Listed>,
    pub superseded: Vec<Listed>,
    pub undecided: Vec<Listed>,
    pub no_rule: Vec<u32>,
}

/// Grants every patch as its deciding rule and the manual Approvals say.
/// Approvals of patches that are not active are reported.
pub(super) fn grant(input: &PlanInput, decisions: &[Decision], diagnostics: &mut Vec<Diagnostic>) -> Granted {
    let mut granted = Granted {
        grants: vec![Vec::new(); input.catalog.len()],
        gates: Vec::new(),
        gate_specs: Vec::new(),
        review_queue: Vec::new(),
        held: Vec::new(),
        superseded: Vec::new(),
        undecided: Vec::new(),
        no_rule: Vec::new(),
    };
    for (patch, decision) in decisions.iter().enumerate() {
        granted.decided(input, patch as u32, *decision);
    }
    granted.approvals(input, diagnostics);
    for list in &mut granted.grants {
        list.sort_by_key(Grant::precedence);
    }
    granted
}

impl Granted {
    fn decided(&mut self, input: &PlanInput, patch: u32, decision: Decision) {
        let rule = match decision {
            Decision::None => return self.no_rule.push(patch),
            Decision::Failed(rule) => return self.undecided.push(Listed { patch, rule }),
            Decision::By(rule) => rule,
        };
        let compiled = &input.policy.rules[rule as usize];
        let listed = Listed { patch, rule };
        match compiled.action {
            RuleAction::Review => self.review_queue.push(listed),
            RuleAction::Hold => self.held.push(listed),
            RuleAction::Approve
                if compiled.superseded == SupersededHandling::Skip
                    && !input.catalog.patches[patch as usize].view.superseded_by.is_empty() =>
            {
                self.superseded.push(listed)
            }
            RuleAction::Approve => self.stages(input, listed),
        }
    }

    /// One grant per stage of the approving rule, each with its gate.
    fn stages(&mut self, input: &PlanInput, Listed { patch, rule }: Listed) {
        let compiled = &input.policy.rules[rule as usize];
        let plan_patch = &input.catalog.patches[patch as usize];
        let released = plan_patch.released();
        let start = match input.ledger {
            None => released,
            Some(ledger) => released.max(ledger.first_matched(&compiled.name, plan_patch.id()).unwrap_or(input.now)),
        };
        for (k, stage) in compiled.stages.iter().enumerate() {
            let not_before = start.checked_add(stage.after).unwrap_or(jiff::Timestamp::MAX);
            let gate = stage.gate.map(|spec| {
                let previous = if k == 0 { u32::MAX } else { compiled.stages[k - 1].scope as u32 };
                self.gates.push(GateOutcome { patch, rule, stage: k as u16, succeeded: 0, failed: 0, passed: false });
                self.gate_specs.push((spec, previous));
                (self.gates.len() - 1) as u32
            });
            self.grants[patch as usize].push(Grant {
                source: Source::Rule(rule),
                scope: stage.scope as u32,
                stage: Some(k as u16),
                policy: stage.policy as u32,
                action: ItemAction::Install,
                not_before,
                deadline: stage.deadline.and_then(|d| not_before.checked_add(d).ok()),
                gate,
            });
        }
    }

    /// The manual Approvals' grants; one naming a patch that is not active
    /// approves nothing, and says so.
    fn approvals(&mut self, input: &PlanInput, diagnostics: &mut Vec<Diagnostic>) {
        let catalog = input.catalog;
        for (index, approval) in input.policy.approvals.iter().enumerate() {
            for id in &approval.patches {
                let Some(patch) = catalog.get(id) else {
                    let why = if catalog.is_inactive(id) {
                        "is in the catalog but not active (out of coverage or obsolete)"
                    } else {
                        "is not in the catalog"
                    };
                    diagnostics.push(approval.origin.warning(format!(
                        "Approval `{}` names patch {id}, which {why}; it approves nothing",
                        approval.name
                    )));
                    continue;
                };
                let not_before = approval.not_before.unwrap_or_else(|| catalog.patches[patch as usize].released());
                for &scope in &approval.scopes {
                    self.grants[patch as usize].push(Grant {
                        source: Source::Approval(index as u32),
                        scope: scope as u32,
                        stage: None,
                        policy: approval.policy as u32,
                        action: approval.action,
                        not_before,
                        deadline: approval.deadline,
                        gate: None,
                    });
                }
            }
        }
    }
}

/// One removal grant per deployment policy: due at once, everywhere the
/// device reported the patch installed under that policy.
pub(super) fn retraction_grants(policy: &super::CompiledPolicy) -> Vec<Grant> {
    (0..policy.policies.len() as u32)
        .map(|index| Grant {
            source: Source::Retraction(index),
            scope: 0,
            stage: None,
            policy: index,
            action: ItemAction::Uninstall,
            not_before: jiff::Timestamp::UNIX_EPOCH,
            deadline: None,
            gate: None,
        })
        .collect()
}
