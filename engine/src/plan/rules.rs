//! Rules and exclusions against the catalog, before any device: which
//! patches each rule's `match` holds for, the one rule that decides each
//! patch, and the exclusions that decline it.
//!
//! A rule is evaluated once per distinct combination of the patch fields it
//! reads ([`FieldKeys`]), not once per patch.

use std::collections::HashMap;

use rayon::prelude::*;

use super::compile::CompiledExprUse;
use super::fields::{self, FieldKeys};
use super::{CompiledPolicy, EXAMPLES, Exposure, ExposureDecision, PlanCatalog, RuleOutcome, Verdict};
use crate::diagnostics::Diagnostic;
use crate::expr::eval::{CelValue, EvalError, Evaluator, Record};
use crate::policy::model::{RuleAction, SupersededHandling};

/// A rule's decision for one patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Decision {
    None,
    By(u32),
    /// The rule outranks every match and failed to evaluate.
    Failed(u32),
}

/// What one rule's `match` says about every active patch.
pub struct RuleMatches {
    pub matched: Vec<u32>,
    /// Per patch: true when the match failed to evaluate.
    pub failed: Vec<bool>,
    pub errors: Vec<(u32, String)>,
}

/// Evaluates every rule's `match` over the catalog, once per distinct
/// combination of the fields it reads. Failures are also reported into
/// `diagnostics`, at the rule's `match`.
pub fn match_rules(
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    evaluator: &Evaluator,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<RuleMatches> {
    let keys = FieldKeys::new(policy.rules.iter().map(|r| &r.matcher.fields), catalog.patches.iter());
    let results: Vec<RuleMatches> = policy
        .rules
        .par_iter()
        .map(|rule| {
            let answers = evaluate_all(&rule.matcher, &keys, catalog.len(), evaluator, "patch", |p| {
                (&catalog.patches[p].cel, &catalog.patches[p] as &dyn Record)
            });
            let mut outcome =
                RuleMatches { matched: Vec::new(), failed: vec![false; catalog.len()], errors: Vec::new() };
            for (patch, answer) in answers.into_iter().enumerate() {
                match answer {
                    Ok(true) => outcome.matched.push(patch as u32),
                    Ok(false) => {}
                    Err(e) => {
                        outcome.failed[patch] = true;
                        outcome.errors.push((patch as u32, e.to_string()));
                    }
                }
            }
            outcome
        })
        .collect();
    for (rule, outcome) in policy.rules.iter().zip(&results) {
        if outcome.errors.is_empty() {
            continue;
        }
        let examples: Vec<String> = outcome
            .errors
            .iter()
            .take(EXAMPLES)
            .map(|(p, e)| format!("{}: {e}", catalog.patches[*p as usize].id()))
            .collect();
        diagnostics.push(rule.matcher.origin.warning(format!(
            "rule `{}` failed to evaluate on {} patch(es), which it approves none of: {}",
            rule.name,
            outcome.errors.len(),
            examples.join("; ")
        )));
    }
    results
}

/// One answer per item, evaluating once per distinct key.
fn evaluate_all<'c>(
    expr: &CompiledExprUse,
    keys: &FieldKeys,
    count: usize,
    evaluator: &Evaluator,
    variable: &str,
    value_of: impl Fn(usize) -> (&'c CelValue, &'c dyn Record),
) -> Vec<Result<bool, EvalError>> {
    let evaluate = |item: usize| {
        let (value, record) = value_of(item);
        evaluator.evaluate_in(&expr.expr, variable, value, record)
    };
    if !keys.worth_sharing(&expr.fields) {
        return (0..count).map(evaluate).collect();
    }
    let mut cache: HashMap<fields::Key, Result<bool, EvalError>> = HashMap::new();
    (0..count)
        .map(|item| {
            let key = keys.key(&expr.fields, item);
            cache.entry(key).or_insert_with(|| evaluate(item)).clone()
        })
        .collect()
}

/// For each patch, the rule that decides it: the first in precedence order
/// that matches. A rule that outranks it and failed to evaluate makes the
/// patch undecided, since it might have said `hold`.
pub(super) fn decide(policy: &CompiledPolicy, catalog: &PlanCatalog, rules: &[RuleMatches]) -> Vec<Decision> {
    let mut matched: Vec<Vec<bool>> = Vec::with_capacity(rules.len());
    for outcome in rules {
        let mut set = vec![false; catalog.len()];
        for &p in &outcome.matched {
            set[p as usize] = true;
        }
        matched.push(set);
    }
    (0..catalog.len())
        .map(|patch| {
            for rule in 0..policy.rules.len() {
                if rules[rule].failed[patch] {
                    return Decision::Failed(rule as u32);
                }
                if matched[rule][patch] {
                    return Decision::By(rule as u32);
                }
            }
            Decision::None
        })
        .collect()
}

/// For each patch, the exclusions that name or match it. An exclusion that
/// fails to evaluate on a patch excludes it (fail safe) and is reported.
pub(super) fn match_exclusions(
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    evaluator: &Evaluator,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Vec<u32>> {
    let mut excluded_by: Vec<Vec<u32>> = vec![Vec::new(); catalog.len()];
    let no_fields = crate::expr::eval::FieldUse::Unused;
    let keys = FieldKeys::new(
        policy.exclusions.iter().map(|e| e.matcher.as_ref().map_or(&no_fields, |m| &m.fields)),
        catalog.patches.iter(),
    );
    for (index, exclusion) in policy.exclusions.iter().enumerate() {
        let answers = exclusion.matcher.as_ref().map(|matcher| {
            evaluate_all(matcher, &keys, catalog.len(), evaluator, "patch", |p| {
                (&catalog.patches[p].cel, &catalog.patches[p] as &dyn Record)
            })
        });
        let mut failures = Vec::new();
        for (patch, plan_patch) in catalog.patches.iter().enumerate() {
            let listed = exclusion.patches.contains(plan_patch.id());
            let matched = match answers.as_ref().map(|a| &a[patch]) {
                Some(Ok(answer)) => *answer,
                Some(Err(e)) => {
                    failures.push(format!("{}: {e}", plan_patch.id()));
                    true
                }
                None => false,
            };
            if listed || matched {
                excluded_by[patch].push(index as u32);
            }
        }
        if let (Some(matcher), false) = (&exclusion.matcher, failures.is_empty()) {
            diagnostics.push(matcher.origin.warning(format!(
                "exclusion `{}` failed to evaluate on {} patch(es), which it therefore excludes: {}",
                exclusion.name,
                failures.len(),
                failures.iter().take(EXAMPLES).cloned().collect::<Vec<_>>().join("; ")
            )));
        }
    }
    excluded_by
}

/// Each patch's decision before any device: the deciding rule's action
/// (an approval of a superseded patch a rule skips is `superseded`), or
/// unmatched.
pub(super) fn verdicts(policy: &CompiledPolicy, catalog: &PlanCatalog, decisions: &[Decision]) -> Vec<Verdict> {
    let unmatched = |rule| Verdict { decision: ExposureDecision::Unmatched, rule };
    decisions
        .iter()
        .enumerate()
        .map(|(patch, decision)| match *decision {
            Decision::None => unmatched(Exposure::NOBODY),
            Decision::Failed(rule) => unmatched(rule),
            Decision::By(rule) => {
                let compiled = &policy.rules[rule as usize];
                let decision = match compiled.action {
                    RuleAction::Review => ExposureDecision::Review,
                    RuleAction::Hold => ExposureDecision::Held,
                    RuleAction::Approve
                        if compiled.superseded == SupersededHandling::Skip
                            && !catalog.patches[patch].view.superseded_by.is_empty() =>
                    {
                        ExposureDecision::Superseded
                    }
                    RuleAction::Approve => ExposureDecision::Approved,
                };
                Verdict { decision, rule }
            }
        })
        .collect()
}

/// Each rule's part in the plan: what it matched and what it decides.
pub(super) fn outcomes(policy: &CompiledPolicy, matches: Vec<RuleMatches>, decisions: &[Decision]) -> Vec<RuleOutcome> {
    let mut decided: Vec<Vec<u32>> = vec![Vec::new(); matches.len()];
    for (patch, decision) in decisions.iter().enumerate() {
        if let Decision::By(rule) = decision {
            decided[*rule as usize].push(patch as u32);
        }
    }
    matches
        .into_iter()
        .zip(decided)
        .zip(&policy.rules)
        .map(|((outcome, decided), compiled)| RuleOutcome {
            name: compiled.name.clone(),
            priority: compiled.priority,
            action: compiled.action,
            matched: outcome.matched,
            decided,
            errors: outcome.errors,
        })
        .collect()
}
