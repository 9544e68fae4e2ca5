//! A policy revision compiled for planning: every CEL program compiled
//! once, references resolved to indices, rules in precedence order. The
//! engine keeps one per revision; every plan of that revision reuses it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cel::Env;

use crate::diagnostics::{Diagnostic, Pos};
use crate::expr::eval::{CompiledExpr, FieldUse, environment};
use crate::policy::model::{AssignmentState, ItemAction, RuleAction, SupersededHandling};
use crate::policy::{Policy, SCOPE_ALL};

/// Where a document (or a value in it) was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub path: Arc<str>,
    pub pos: Pos,
}

impl Origin {
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.path.to_string(), self.pos, message)
    }

    pub fn warning(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::warning(self.path.to_string(), self.pos, message)
    }
}

pub struct CompiledExprUse {
    pub expr: CompiledExpr,
    pub fields: FieldUse,
    pub origin: Origin,
}

pub struct CompiledScope {
    pub name: String,
    pub selector: Option<CompiledExprUse>,
    pub devices: HashSet<String>,
}

pub struct CompiledStage {
    pub scope: usize,
    pub after: jiff::SignedDuration,
    pub policy: usize,
    pub deadline: Option<jiff::SignedDuration>,
    pub gate: Option<GateSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateSpec {
    pub max_failure_rate: f64,
    pub min_succeeded: u32,
}

pub struct CompiledRule {
    pub name: String,
    pub priority: i64,
    pub action: RuleAction,
    pub superseded: SupersededHandling,
    pub matcher: CompiledExprUse,
    pub stages: Vec<CompiledStage>,
}

pub struct CompiledApproval {
    pub name: String,
    pub origin: Origin,
    pub patches: Vec<String>,
    pub scopes: Vec<usize>,
    pub policy: usize,
    pub action: ItemAction,
    pub not_before: Option<jiff::Timestamp>,
    pub deadline: Option<jiff::Timestamp>,
}

/// A SoftwareAssignment: one version of a package, present or absent, on
/// the devices of its scopes.
pub struct CompiledAssignment {
    pub name: String,
    pub package: String,
    pub version: String,
    pub scopes: Vec<usize>,
    pub policy: usize,
    pub state: AssignmentState,
    pub self_service: bool,
}

pub struct CompiledExclusion {
    pub name: String,
    pub matcher: Option<CompiledExprUse>,
    pub patches: HashSet<String>,
    /// Empty: every device.
    pub scopes: Vec<usize>,
}

pub struct CompiledPolicy {
    pub policy: Policy,
    /// The commit, when the policy was read from git.
    pub revision: Option<String>,
    pub env: Arc<Env>,
    /// `all` first, then the policy's scopes by name.
    pub scopes: Vec<CompiledScope>,
    pub rules: Vec<CompiledRule>,
    pub approvals: Vec<CompiledApproval>,
    pub exclusions: Vec<CompiledExclusion>,
    pub assignments: Vec<CompiledAssignment>,
    /// Deployment policy names, by index.
    pub policies: Vec<String>,
}

fn duration(d: patchward_api::Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d.as_std()).unwrap_or(jiff::SignedDuration::MAX)
}

impl CompiledPolicy {
    /// The remediation targets of the policy's Settings, or the defaults.
    pub fn remediation(&self) -> crate::policy::model::Remediation {
        self.policy.settings.as_ref().map(|s| s.spec.remediation.clone()).unwrap_or_default()
    }

    /// Compiles a loaded policy; `Err` holds why not: the load's
    /// diagnostics when it did not validate, else the compiler's.
    pub fn from_load(load: crate::policy::PolicyLoad) -> Result<CompiledPolicy, Vec<Diagnostic>> {
        match load.policy {
            Some(policy) => CompiledPolicy::compile(policy, load.commit),
            None => Err(load.diagnostics),
        }
    }

    /// Compiles a valid policy. Validation already parsed every expression,
    /// so an error here means the evaluator and the checker disagree; it
    /// is reported where the expression was written, never ignored.
    pub fn compile(policy: Policy, revision: Option<String>) -> Result<CompiledPolicy, Vec<Diagnostic>> {
        let env = environment();
        let mut problems = Vec::new();
        let mut compile = |source: &crate::policy::model::CelExpr, path: &Arc<str>, variable: &str| {
            let origin = Origin { path: Arc::clone(path), pos: source.pos };
            match CompiledExpr::compile(&env, &source.value) {
                Ok(expr) => Some(CompiledExprUse { fields: expr.field_use(variable), expr, origin }),
                Err(e) => {
                    problems.push(origin.error(format!("the expression does not compile: {e}")));
                    None
                }
            }
        };

        let mut scopes = vec![CompiledScope { name: SCOPE_ALL.to_owned(), selector: None, devices: HashSet::new() }];
        for (name, scope) in &policy.scopes {
            let selector = scope.spec.selector.as_ref().and_then(|s| compile(s, &scope.path, "device"));
            let devices = scope.spec.devices.iter().map(|d| d.value.clone()).collect();
            scopes.push(CompiledScope { name: name.clone(), selector, devices });
        }
        let scope_index: HashMap<&str, usize> = scopes.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
        let policies: Vec<String> = policy.deployment_policies.keys().cloned().collect();
        let policy_index: HashMap<&str, usize> = policies.iter().enumerate().map(|(i, p)| (p.as_str(), i)).collect();
        // Validation resolved every reference; these lookups cannot miss.
        let scope_of = |name: &str| scope_index.get(name).copied().unwrap_or(0);
        let policy_of = |name: &str| policy_index.get(name).copied().unwrap_or(0);

        let mut rules = Vec::new();
        for (name, rule) in &policy.rules {
            let Some(matcher) = compile(&rule.spec.match_, &rule.path, "patch") else { continue };
            let stages = rule
                .spec
                .stages
                .iter()
                .map(|stage| CompiledStage {
                    scope: scope_of(&stage.value.scope.value),
                    after: duration(stage.value.after.value),
                    policy: policy_of(&stage.value.policy.value),
                    deadline: stage.value.deadline.as_ref().map(|d| duration(d.value)),
                    gate: stage.value.gate.as_ref().map(|g| GateSpec {
                        max_failure_rate: g.value.max_failure_rate.value,
                        min_succeeded: g.value.min_succeeded,
                    }),
                })
                .collect();
            rules.push(CompiledRule {
                name: name.clone(),
                priority: rule.spec.priority.value,
                action: rule.spec.action.value,
                superseded: rule.spec.superseded,
                matcher,
                stages,
            });
        }
        // DESIGN: the highest priority decides; on equal priorities the name
        // that sorts first.
        rules.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));

        let approvals = policy
            .approvals
            .iter()
            .map(|(name, approval)| CompiledApproval {
                name: name.clone(),
                origin: Origin { path: Arc::clone(&approval.path), pos: approval.spec.patches.pos.or(approval.pos) },
                patches: approval.spec.patches.value.clone(),
                scopes: approval.spec.scopes.value.iter().map(|s| scope_of(&s.value)).collect(),
                policy: policy_of(&approval.spec.policy.value),
                action: approval.spec.action,
                not_before: approval.spec.not_before.as_ref().map(|t| t.value.0),
                deadline: approval.spec.deadline.as_ref().map(|t| t.value.0),
            })
            .collect();

        let mut exclusions = Vec::new();
        for (name, exclusion) in &policy.exclusions {
            let matcher = exclusion.spec.match_.as_ref().and_then(|m| compile(m, &exclusion.path, "patch"));
            exclusions.push(CompiledExclusion {
                name: name.clone(),
                matcher,
                patches: exclusion.spec.patches.iter().cloned().collect(),
                scopes: exclusion.spec.scopes.iter().map(|s| scope_of(&s.value)).collect(),
            });
        }
        let assignments = policy
            .assignments
            .iter()
            .map(|(name, assignment)| {
                let spec = &assignment.spec;
                // Validation checked the version; absent means the last listed.
                let version = spec.version.as_ref().map(|v| v.value.clone()).unwrap_or_else(|| {
                    policy.packages[&spec.package.value]
                        .spec
                        .versions
                        .last()
                        .map(|v| v.value.version.value.clone())
                        .unwrap_or_default()
                });
                CompiledAssignment {
                    name: name.clone(),
                    package: spec.package.value.clone(),
                    version,
                    scopes: spec.scopes.value.iter().map(|s| scope_of(&s.value)).collect(),
                    policy: policy_of(&spec.policy.value),
                    state: spec.state,
                    self_service: spec.self_service,
                }
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CompiledPolicy { policy, revision, env, scopes, rules, approvals, exclusions, assignments, policies })
    }
}
