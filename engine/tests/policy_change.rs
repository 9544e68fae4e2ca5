//! A policy change planned in proportion to what it changed
//! (`plan::plan_policy_change`) equals the full plan of the new revision,
//! case by case on a synthetic estate (Windows chains, Linux fixes, staged
//! rules with gates, an Exclusion): a rule's match, action, gate and delay
//! edited, an Approval added, an Exclusion edited, a rule removed. A change
//! outside rules, Approvals and Exclusions gets no shortcut.

use patchward::catalog::coverage::CoverageSet;
use patchward::plan::synthetic::{Scenario, Size, generate};
use patchward::plan::{CompiledPolicy, Plan, PlanCatalog, PlanInput, plan, plan_policy_change};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};

const SIZE: Size = Size { patches: 600, rules: 30, scopes: 20, devices: 400 };

/// The policy `text` as a revision in `dir`, one folder for every revision
/// as in a repository: what decides patches in `decisions.yaml`, the rest
/// in `frame.yaml` (documents name their file and line, so a rule removed
/// from a file moves the documents after it).
fn compile(dir: &std::path::Path, text: &str) -> CompiledPolicy {
    let deciding =
        |doc: &&str| ["kind: ApprovalRule", "kind: Approval\n", "kind: Exclusion"].iter().any(|k| doc.contains(k));
    let docs: Vec<&str> = text.split("---\n").filter(|d| !d.trim().is_empty()).collect();
    let (decisions, frame): (Vec<&str>, Vec<&str>) = docs.into_iter().partition(deciding);
    std::fs::write(dir.join("decisions.yaml"), decisions.join("---\n")).unwrap();
    std::fs::write(dir.join("frame.yaml"), frame.join("---\n")).unwrap();
    let load = load_policy(&PolicySource::Folder(dir.to_owned()), &PolicyLimits::default()).unwrap();
    let policy = load.policy.unwrap_or_else(|| panic!("{:#?}", load.diagnostics));
    CompiledPolicy::compile(policy, Some("c0ffee".into())).unwrap()
}

/// The spec line of rule `name` edited by `edit`.
fn edit_rule(text: &str, name: &str, edit: impl Fn(&str) -> String) -> String {
    let marker = format!("metadata: {{name: {name}}}\n");
    let start = text.find(&marker).unwrap_or_else(|| panic!("no {name}")) + marker.len();
    let end = start + text[start..].find('\n').unwrap();
    format!("{}{}{}", &text[..start], edit(&text[start..end]), &text[end..])
}

/// The document of rule `name` left out.
fn remove_rule(text: &str, name: &str) -> String {
    text.split("---\n").filter(|doc| !doc.contains(&format!("{{name: {name}}}"))).collect::<Vec<_>>().join("---\n")
}

fn replaced(line: &str, from: &str, to: &str) -> String {
    assert!(line.contains(from), "{from} not in {line}");
    line.replacen(from, to, 1)
}

struct Case {
    name: &'static str,
    edit: Box<dyn Fn(&str) -> String>,
    /// Whether the change gets the shortcut.
    shortcut: bool,
}

fn cases(some_patch: String) -> Vec<Case> {
    vec![
        Case {
            name: "a rule's match narrowed",
            edit: Box::new(|t| edit_rule(t, "rule-003", |l| replaced(l, ">= 8.0", ">= 9.5"))),
            shortcut: true,
        },
        Case {
            name: "a rule reviews instead of approving",
            edit: Box::new(|t| {
                edit_rule(t, "rule-001", |l| format!("{}, action: review}}", &l[..l.find(", action:").unwrap()]))
            }),
            shortcut: true,
        },
        Case {
            name: "a rule's gate loosened",
            edit: Box::new(|t| edit_rule(t, "rule-000", |l| replaced(l, "minSucceeded: 5", "minSucceeded: 1"))),
            shortcut: true,
        },
        Case {
            name: "a rule's last stage sooner",
            edit: Box::new(|t| edit_rule(t, "rule-002", |l| replaced(l, "after: 7d", "after: 1d"))),
            shortcut: true,
        },
        Case {
            name: "an Approval added",
            edit: Box::new(move |t| {
                format!(
                    "{t}---\napiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {{name: urgent}}\nspec: {{patches: [{some_patch}], scopes: [ring-pilot], policy: fast}}\n"
                )
            }),
            shortcut: true,
        },
        Case {
            name: "an Exclusion edited",
            edit: Box::new(|t| replaced(t, "startsWith(\"Java\")", "startsWith(\"Chrome\")")),
            shortcut: true,
        },
        Case { name: "a rule removed", edit: Box::new(|t| remove_rule(t, "rule-004")), shortcut: true },
        Case { name: "nothing changed", edit: Box::new(str::to_owned), shortcut: true },
        Case {
            name: "a scope's selector edited",
            edit: Box::new(|t| {
                replaced(t, r#"device.os == "linux"'"#, r#"device.os == "linux" || device.os == "bsd"'"#)
            }),
            shortcut: false,
        },
        Case {
            name: "a deployment policy edited",
            edit: Box::new(|t| replaced(t, "cpuBelowPercent: 10", "cpuBelowPercent: 20")),
            shortcut: false,
        },
    ]
}

/// Where two plans first differ, for a readable failure.
fn first_difference(full: &Plan, changed: &Plan) -> String {
    for (a, b) in full.devices.iter().zip(changed.devices.iter()) {
        if a != b {
            return format!("device {}:\n full {a:?}\n change {b:?}", a.id);
        }
    }
    let parts = [
        ("grants", full.grants == changed.grants),
        ("gates", full.gates == changed.gates),
        ("rules", full.rules == changed.rules),
        ("diagnostics", full.diagnostics == changed.diagnostics),
        ("review queue", full.review_queue == changed.review_queue),
        ("excluded_by", full.excluded_by == changed.excluded_by),
        ("verdicts", full.verdicts == changed.verdicts),
    ];
    format!("{:?}", parts.iter().filter(|(_, same)| !same).map(|(name, _)| name).collect::<Vec<_>>())
}

/// Every other device reports that patchward installed the patches its
/// inventory lists (under `fast`), and every fifth that one failed: gates
/// count reports, and an approval withdrawn becomes a removal.
fn reports_of_installs(scenario: &mut Scenario) {
    for (index, device) in scenario.fleet.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        let at = scenario.now.checked_sub(jiff::SignedDuration::from_hours(1)).unwrap();
        device.reports = device
            .inventory
            .patches
            .iter()
            .enumerate()
            .map(|(n, patch)| patchward_api::Report {
                patch: patch.clone(),
                status: match (index + n) % 5 {
                    0 => patchward_api::ReportStatus::Failed,
                    _ => patchward_api::ReportStatus::Succeeded,
                },
                at,
                action: Some(patchward_api::desired::Action::Install),
                policy: Some("fast".into()),
            })
            .collect();
    }
}

#[test]
fn a_policy_change_plans_what_it_changed_and_equals_the_full_plan() {
    let mut scenario = generate(SIZE, 5);
    reports_of_installs(&mut scenario);
    let text = &scenario.policy_files[0].1;
    let dir = tempfile::tempdir().unwrap();
    let previous = compile(dir.path(), text);
    let (records, _) = patchward::catalog::offline_catalog(
        patchward::policy::model::FeedFormat::Patchward,
        &scenario.feed,
        scenario.now,
    )
    .unwrap();
    let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&previous.policy));
    fn input<'a>(policy: &'a CompiledPolicy, catalog: &'a PlanCatalog, scenario: &'a Scenario) -> PlanInput<'a> {
        PlanInput { policy, catalog, fleet: &scenario.fleet, ledger: None, now: scenario.now }
    }
    let base = plan(&input(&previous, &catalog, &scenario));
    let (mut narrowest, mut removals_moved) = (usize::MAX, false);
    let removals = |plan: &Plan| plan.devices.iter().flat_map(|d| d.items.iter()).filter(|i| i.retracted).count();
    for case in cases(catalog.patches[7].id().to_owned()) {
        let next = compile(dir.path(), &(case.edit)(text));
        let change = plan_policy_change(&input(&next, &catalog, &scenario), &previous, &base);
        assert_eq!(change.is_some(), case.shortcut, "{}", case.name);
        let Some(change) = change else { continue };
        let replanned = change.plan.devices.len();
        if case.name == "nothing changed" {
            assert_eq!((change.changed.len(), replanned), (0, 0), "nothing to plan again");
        } else {
            assert!(!change.changed.is_empty(), "{}: some patch changed", case.name);
            narrowest = narrowest.min(replanned);
        }
        let full = plan(&input(&next, &catalog, &scenario));
        removals_moved |= removals(&full) != removals(&base);
        let merged = change.into_full(&base);
        assert!(merged == full, "{}: {}", case.name, first_difference(&full, &merged));
        println!("{}: {replanned} of {} devices planned again", case.name, base.devices.len());
    }
    assert!(narrowest < base.devices.len() / 10, "a narrow change plans few devices: {narrowest}");
    assert!(removals_moved, "some case changes which installs are removed");
}
