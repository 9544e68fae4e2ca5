//! A device's desired state, from a plan: its items with their deployment
//! policy and windows inlined, its packages by sha256, and the mirrors of
//! its Location. What the engine signs and serves; pure.

use patchward_api::deployment::{DeploymentPolicy, MaintenanceWindow, ResolvedDeployment};
use patchward_api::desired::{Action, DesiredItem, DesiredPackage, DesiredState, ItemSource, SourceKind, Status};

use super::{CompiledPolicy, DevicePlan, ItemStatus, Plan, PlanCatalog};
use crate::policy::model::ItemAction;

/// What a desired state carries besides the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub generation: u64,
    pub catalog_revision: u64,
    pub issued_at: jiff::Timestamp,
    pub expires_at: jiff::Timestamp,
}

fn action(action: ItemAction) -> Action {
    match action {
        ItemAction::Install => Action::Install,
        ItemAction::Uninstall => Action::Uninstall,
    }
}

fn status(status: ItemStatus) -> Status {
    match status {
        ItemStatus::Installed => Status::Installed,
        ItemStatus::Due => Status::Due,
        ItemStatus::Scheduled => Status::Scheduled,
        ItemStatus::Blocked => Status::Blocked,
        ItemStatus::Removed => Status::Removed,
    }
}

/// A document's spec in its wire type, with its `name` beside the fields:
/// the engine's spec serialized and read back as the agent reads it, so
/// the two cannot drift apart (a test round-trips the example policies).
fn named_spec<T: serde::Serialize, W: serde::de::DeserializeOwned>(name: &str, spec: &T) -> Option<W> {
    let mut value = serde_json::to_value(spec).ok()?;
    value.as_object_mut()?.insert("name".into(), serde_json::Value::String(name.to_owned()));
    serde_json::from_value(value).ok()
}

/// Fallbacks chain through `scheduledPrompt.fallback`; validation refuses
/// cycles, and this bound keeps a broken chain from recursing anyway.
const MAX_FALLBACKS: usize = 8;

/// A deployment policy as the agent gets it: its spec (named), its windows
/// (named), and its fallback resolved the same way. None only for a policy
/// validation would have refused.
fn resolve_deployment(policy: &CompiledPolicy, name: &str) -> Option<ResolvedDeployment> {
    let resolve_one = |name: &str| {
        let spec = &policy.policy.deployment_policies.get(name)?.spec;
        let windows = spec
            .windows
            .iter()
            .filter_map(|w| policy.policy.windows.get(&w.value).and_then(|doc| named_spec(&w.value, &doc.spec)))
            .collect::<Vec<MaintenanceWindow>>();
        let next = spec.scheduled_prompt.as_ref().map(|o| o.value.fallback.value.clone());
        Some((named_spec::<_, DeploymentPolicy>(name, spec)?, windows, next))
    };
    let (policy_spec, windows, mut next) = resolve_one(name)?;
    let mut chain = Vec::new();
    while let Some(fallback) = next.take() {
        if chain.len() == MAX_FALLBACKS {
            break;
        }
        let Some((policy, windows, after)) = resolve_one(&fallback) else { break };
        chain.push(ResolvedDeployment { policy, windows, fallback: None });
        next = after;
    }
    let fallback = chain.into_iter().rev().fold(None, |inner, mut link| {
        link.fallback = inner;
        Some(Box::new(link))
    });
    Some(ResolvedDeployment { policy: policy_spec, windows, fallback })
}

/// The engine's detection rules in the wire form (the same JSON shape;
/// the engine's carry source positions for its diagnostics).
fn wire_detection(detection: &crate::policy::model::Detection) -> Option<patchward_api::detection::Detection> {
    serde_json::to_value(detection).ok().and_then(|value| serde_json::from_value(value).ok())
}

/// What every device's desired state of one plan reads, each part
/// resolved once, at its first use, and shared: deployment policies with
/// their windows and fallbacks, and patches' detection rules, each turned
/// into its wire form (a round trip through JSON) once, not once per item
/// of every device.
pub struct DesiredContext<'a> {
    plan: &'a Plan,
    policy: &'a CompiledPolicy,
    catalog: &'a PlanCatalog,
    deployments: Vec<std::sync::OnceLock<Option<ResolvedDeployment>>>,
    detections: Vec<std::sync::OnceLock<Option<patchward_api::detection::Detection>>>,
}

impl<'a> DesiredContext<'a> {
    pub fn new(plan: &'a Plan, policy: &'a CompiledPolicy, catalog: &'a PlanCatalog) -> DesiredContext<'a> {
        DesiredContext {
            plan,
            policy,
            catalog,
            deployments: (0..plan.policy_names.len()).map(|_| Default::default()).collect(),
            detections: (0..catalog.len()).map(|_| Default::default()).collect(),
        }
    }

    fn deployment(&self, index: usize) -> Option<ResolvedDeployment> {
        self.deployments[index].get_or_init(|| resolve_deployment(self.policy, &self.plan.policy_names[index])).clone()
    }

    fn detection(&self, patch: usize) -> Option<patchward_api::detection::Detection> {
        let record = &self.catalog.patches[patch].view.record.patch;
        self.detections[patch].get_or_init(|| record.detect.as_ref().and_then(wire_detection)).clone()
    }

    /// The desired state of `planned`, one of the plan's devices (or one
    /// planned against it with [`super::replan_devices`]).
    pub fn state(&self, planned: &DevicePlan, envelope: &Envelope) -> DesiredState {
        desired_state_in(self, planned, envelope)
    }
}

/// The desired state of `planned`, one of `plan`'s devices (or one planned
/// against it with [`super::replan_devices`]). For many devices of one
/// plan, [`DesiredContext`] resolves what they share once.
pub fn desired_state(
    plan: &Plan,
    policy: &CompiledPolicy,
    catalog: &PlanCatalog,
    planned: &DevicePlan,
    envelope: &Envelope,
) -> DesiredState {
    DesiredContext::new(plan, policy, catalog).state(planned, envelope)
}

fn desired_state_in(context: &DesiredContext, planned: &DevicePlan, envelope: &Envelope) -> DesiredState {
    let (plan, policy, catalog) = (context.plan, context.policy, context.catalog);
    let commit = plan.policy_revision.clone().unwrap_or_default();
    let deployment = |index: usize| context.deployment(index);
    let mut items: Vec<DesiredItem> = planned
        .items
        .iter()
        .filter_map(|item| {
            let grant = plan.grant(item);
            let (_, name) = plan.source_name(grant.source);
            let kind = match grant.source {
                super::Source::Rule(_) => SourceKind::Rule,
                super::Source::Approval(_) => SourceKind::Approval,
                super::Source::Retraction(_) => SourceKind::Retraction,
            };
            let ResolvedDeployment { policy: deployment_policy, windows, fallback } =
                deployment(grant.policy as usize)?;
            let patch = &catalog.patches[item.patch as usize].view.record.patch;
            Some(DesiredItem {
                patch: plan.patches[item.patch as usize].clone(),
                action: action(grant.action),
                status: status(item.status),
                source: ItemSource { kind, name: name.to_owned(), commit: commit.clone() },
                stage: grant.stage.map(|s| s + 1),
                policy: deployment_policy,
                windows,
                not_before: grant.not_before,
                deadline: grant.deadline,
                packages: patch
                    .packages
                    .iter()
                    .map(|p| DesiredPackage {
                        kind: p.kind.clone(),
                        sha256: p.sha256.clone(),
                        size: p.size,
                        args: p.args.clone(),
                    })
                    .collect(),
                detect: context.detection(item.patch as usize),
                fixes: if patch.packages.is_empty() && planned.reads_fixes { patch.fixes.clone() } else { Vec::new() },
                fallback,
                user_request: None,
            })
        })
        .collect();
    for software in &planned.software {
        let assignment = &policy.assignments[software.assignment as usize];
        let Some(ResolvedDeployment { policy: mut deployment_policy, windows, fallback }) =
            deployment(assignment.policy)
        else {
            continue;
        };
        // An assignment's selfService offers its software on demand even
        // where the deployment policy does not; the agent reads it there.
        deployment_policy.self_service |= assignment.self_service;
        let version = policy.policy.packages[&assignment.package]
            .spec
            .versions
            .iter()
            .find(|v| v.value.version.value == assignment.version);
        items.push(DesiredItem {
            patch: super::software_id(&assignment.package, &assignment.version),
            action: action(software.action),
            status: status(software.status),
            source: ItemSource { kind: SourceKind::Assignment, name: assignment.name.clone(), commit: commit.clone() },
            stage: None,
            policy: deployment_policy,
            windows,
            // Software is due as soon as it is assigned.
            not_before: envelope.issued_at,
            deadline: None,
            packages: version
                .map(|v| {
                    vec![DesiredPackage {
                        kind: v.value.kind.as_str().to_owned(),
                        sha256: v.value.sha256.value.clone(),
                        size: v.value.size.unwrap_or(0),
                        args: v.value.args(software.action).to_vec(),
                    }]
                })
                .unwrap_or_default(),
            detect: version.and_then(|v| v.value.detection.as_ref()).and_then(wire_detection),
            fixes: Vec::new(),
            fallback,
            user_request: None,
        });
    }
    let location = planned.location.map(|l| &policy.policy.locations[&plan.location_names[l as usize]].spec);
    DesiredState {
        device: planned.id.clone(),
        generation: envelope.generation,
        policy_revision: commit,
        catalog_revision: envelope.catalog_revision,
        issued_at: envelope.issued_at,
        expires_at: envelope.expires_at,
        mirrors: location.map(|l| l.mirrors.iter().map(|m| m.value.clone()).collect()).unwrap_or_default(),
        max_bandwidth_kbps: location.and_then(|l| l.max_bandwidth_kbps.as_ref().map(|b| b.value)),
        items,
    }
}
