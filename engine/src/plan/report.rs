//! The plan as `patchward plan --format json` prints it (`schemas/plan.json`):
//! names instead of indices, instants in RFC 3339, the packages and windows
//! of every item resolved.

use schemars::JsonSchema;
use serde::Serialize;

use super::exposure::{ExposureRow, NoRecord, RowContext};
use super::{CompiledPolicy, ItemStatus, Plan, PlanCatalog, Source};
use crate::diagnostics::Diagnostic;
use crate::policy::model::{ItemAction, RuleAction};

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanReport {
    /// The policy commit, when read from git.
    pub policy_revision: Option<String>,
    /// The instant planned for (RFC 3339, UTC).
    pub at: String,
    pub summary: Summary,
    /// Every rule in precedence order with the active patches its `match`
    /// selects ("show matching patches"), whether or not it decides them.
    pub rules: Vec<RuleReport>,
    /// Patches whose deciding rule says `review`.
    pub review_queue: Vec<ListedReport>,
    /// Patches whose deciding rule says `hold`.
    pub held: Vec<ListedReport>,
    /// Patches a `superseded: skip` rule approved but does not deploy.
    pub superseded: Vec<ListedReport>,
    /// Patches left unapproved because an outranking rule failed on them.
    pub undecided: Vec<ListedReport>,
    /// Active patches no rule matches: deployed only by a manual Approval.
    pub no_rule: Vec<String>,
    pub gates: Vec<GateReport>,
    pub devices: Vec<DeviceReport>,
    /// Runtime problems: rules or selectors that failed to evaluate,
    /// approvals of patches not in the catalog.
    pub diagnostics: Vec<Diagnostic>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub devices: usize,
    pub patches: usize,
    pub items: usize,
    pub installed: usize,
    pub due: usize,
    pub scheduled: usize,
    pub blocked: usize,
    pub removed: usize,
    /// Retractions the G3 guard withholds: the policy holds no
    /// ApprovalRule and no Approval, so nothing is removed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub withheld_retractions: usize,
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuleReport {
    pub name: String,
    pub priority: i64,
    pub action: RuleAction,
    pub matched: Vec<String>,
    pub decided: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RuleError>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RuleError {
    pub patch: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListedReport {
    pub patch: String,
    pub rule: String,
    pub title: String,
    pub severity: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub superseded_by: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateReport {
    pub rule: String,
    pub patch: String,
    /// 1-based: the stage the gate holds back.
    pub stage: u16,
    pub succeeded: u32,
    pub failed: u32,
    pub passed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceReport {
    pub id: String,
    pub scopes: Vec<String>,
    pub location: Option<String>,
    pub mirrors: Vec<String>,
    pub max_bandwidth_kbps: Option<u64>,
    pub items: Vec<ItemReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<ExcludedReport>,
    /// SoftwareAssignments that reach the device.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub software: Vec<SoftwareReport>,
    /// The active patches that apply to the device and are not installed,
    /// whatever the policy decided.
    pub exposure: Vec<ExposureRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareReport {
    pub package: String,
    pub version: String,
    pub action: ItemAction,
    pub status: ItemStatus,
    /// The SoftwareAssignment.
    pub assignment: String,
    pub policy: String,
    pub windows: Vec<String>,
    /// Users may install it on demand.
    pub self_service: bool,
    pub packages: Vec<PackageReport>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemReport {
    pub patch: String,
    pub action: ItemAction,
    pub status: ItemStatus,
    pub source: SourceReport,
    pub scope: String,
    /// 1-based stage of the rule; null for a manual Approval.
    pub stage: Option<u16>,
    pub policy: String,
    /// The deployment policy's windows; empty means any time.
    pub windows: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub deadline: Option<String>,
    pub packages: Vec<PackageReport>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceReport {
    /// `rule` or `approval`.
    pub kind: String,
    pub name: String,
    /// The policy commit the rule or approval was read from.
    pub commit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageReport {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
    pub args: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ExcludedReport {
    pub patch: String,
    pub exclusion: String,
}

impl Plan {
    pub fn source_name(&self, source: Source) -> (&'static str, &str) {
        match source {
            Source::Rule(r) => ("rule", &self.rules[r as usize].name),
            Source::Approval(a) => ("approval", &self.approval_names[a as usize]),
            Source::Retraction(_) => ("retraction", "approval withdrawn"),
        }
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            devices: self.devices.len(),
            patches: self.patches.len(),
            withheld_retractions: self.devices.iter().map(|d| d.withheld as usize).sum(),
            ..Summary::default()
        };
        for item in self.devices.iter().flat_map(|d| d.items.iter()) {
            summary.items += 1;
            match item.status {
                ItemStatus::Installed => summary.installed += 1,
                ItemStatus::Due => summary.due += 1,
                ItemStatus::Scheduled => summary.scheduled += 1,
                ItemStatus::Blocked => summary.blocked += 1,
                ItemStatus::Removed => summary.removed += 1,
            }
        }
        summary
    }

    pub fn report(&self, policy: &CompiledPolicy, catalog: &PlanCatalog) -> PlanReport {
        let id = |p: u32| self.patches[p as usize].clone();
        let listed = |list: &[super::Listed]| -> Vec<ListedReport> {
            list.iter()
                .map(|l| {
                    let patch = &catalog.patches[l.patch as usize].view;
                    ListedReport {
                        patch: id(l.patch),
                        rule: self.rules[l.rule as usize].name.clone(),
                        title: patch.record.patch.title.clone(),
                        severity: patch.record.severity.as_str().to_owned(),
                        superseded_by: patch.superseded_by.clone(),
                    }
                })
                .collect()
        };
        let windows: Vec<Vec<String>> = self
            .policy_names
            .iter()
            .map(|name| policy.policy.deployment_policies[name].spec.windows.iter().map(|w| w.value.clone()).collect())
            .collect();
        let locations: Vec<&crate::policy::model::LocationSpec> =
            self.location_names.iter().map(|n| &policy.policy.locations[n].spec).collect();
        let remediation = policy.remediation();
        let exposure = RowContext { catalog, remediation: &remediation, since: &NoRecord, now: self.now };
        PlanReport {
            policy_revision: self.policy_revision.clone(),
            at: self.now.to_string(),
            summary: self.summary(),
            rules: self
                .rules
                .iter()
                .map(|r| RuleReport {
                    name: r.name.clone(),
                    priority: r.priority,
                    action: r.action,
                    matched: r.matched.iter().map(|p| id(*p)).collect(),
                    decided: r.decided.iter().map(|p| id(*p)).collect(),
                    errors: r.errors.iter().map(|(p, m)| RuleError { patch: id(*p), message: m.clone() }).collect(),
                })
                .collect(),
            review_queue: listed(&self.review_queue),
            held: listed(&self.held),
            superseded: listed(&self.superseded),
            undecided: listed(&self.undecided),
            no_rule: self.no_rule.iter().map(|p| id(*p)).collect(),
            gates: self
                .gates
                .iter()
                .map(|g| GateReport {
                    rule: self.rules[g.rule as usize].name.clone(),
                    patch: id(g.patch),
                    stage: g.stage + 1,
                    succeeded: g.succeeded,
                    failed: g.failed,
                    passed: g.passed,
                })
                .collect(),
            devices: self
                .devices
                .iter()
                .map(|device| {
                    let location = device.location.map(|l| locations[l as usize]);
                    DeviceReport {
                        id: device.id.clone(),
                        scopes: device.scopes.iter().map(|s| self.scope_names[*s as usize].clone()).collect(),
                        location: device.location.map(|l| self.location_names[l as usize].clone()),
                        mirrors: location
                            .map(|l| l.mirrors.iter().map(|m| m.value.clone()).collect())
                            .unwrap_or_default(),
                        max_bandwidth_kbps: location.and_then(|l| l.max_bandwidth_kbps.as_ref().map(|b| b.value)),
                        items: device
                            .items
                            .iter()
                            .map(|item| {
                                let grant = self.grant(item);
                                let (kind, name) = self.source_name(grant.source);
                                let patch = &catalog.patches[item.patch as usize].view.record.patch;
                                ItemReport {
                                    patch: id(item.patch),
                                    action: grant.action,
                                    status: item.status,
                                    source: SourceReport {
                                        kind: kind.to_owned(),
                                        name: name.to_owned(),
                                        commit: self.policy_revision.clone(),
                                    },
                                    scope: self.scope_names[grant.scope as usize].clone(),
                                    stage: grant.stage.map(|s| s + 1),
                                    policy: self.policy_names[grant.policy as usize].clone(),
                                    windows: windows[grant.policy as usize].clone(),
                                    not_before: grant.not_before.to_string(),
                                    deadline: grant.deadline.map(|d| d.to_string()),
                                    packages: patch
                                        .packages
                                        .iter()
                                        .map(|p| PackageReport {
                                            kind: p.kind.clone(),
                                            url: p.url.clone(),
                                            sha256: p.sha256.clone(),
                                            size: p.size,
                                            args: p.args.clone(),
                                        })
                                        .collect(),
                                }
                            })
                            .collect(),
                        software: device
                            .software
                            .iter()
                            .map(|item| {
                                let assignment = &policy.assignments[item.assignment as usize];
                                let version = policy.policy.packages[&assignment.package]
                                    .spec
                                    .versions
                                    .iter()
                                    .find(|v| v.value.version.value == assignment.version);
                                SoftwareReport {
                                    package: assignment.package.clone(),
                                    version: assignment.version.clone(),
                                    action: item.action,
                                    status: item.status,
                                    assignment: assignment.name.clone(),
                                    policy: self.policy_names[assignment.policy].clone(),
                                    windows: windows[assignment.policy].clone(),
                                    self_service: assignment.self_service,
                                    packages: version
                                        .map(|v| {
                                            vec![PackageReport {
                                                kind: v.value.kind.as_str().to_owned(),
                                                url: v.value.url.value.clone(),
                                                sha256: v.value.sha256.value.clone(),
                                                size: v.value.size.unwrap_or(0),
                                                args: v.value.args(item.action).to_vec(),
                                            }]
                                        })
                                        .unwrap_or_default(),
                                }
                            })
                            .collect(),
                        excluded: device
                            .excluded
                            .iter()
                            .map(|(p, e)| ExcludedReport {
                                patch: id(*p),
                                exclusion: self.exclusion_names[*e as usize].clone(),
                            })
                            .collect(),
                        exposure: super::exposure::rows(self, device, &exposure),
                    }
                })
                .collect(),
            diagnostics: self.diagnostics.clone(),
        }
    }
}
