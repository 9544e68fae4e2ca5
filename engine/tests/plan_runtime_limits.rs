//! Runtime bounds of the plan (RELIABILITY T7, T8): a rule that passed
//! validation but would cost too much on one patch (its CVE list is huge)
//! is refused for that patch before it runs, reported at the rule's match,
//! approves nothing there, and every other patch and rule plans as usual.
//! The same inputs give the same plan and the same diagnostics.

use patchward::catalog::coverage::CoverageSet;
use patchward::plan::{CompiledPolicy, PlanCatalog, PlanInput, plan};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward_api::Device;

const POLICY: &str = r#"apiVersion: patchward.dev/v1
kind: DeploymentPolicy
metadata: {name: fast}
spec: {mode: immediate}
---
apiVersion: patchward.dev/v1
kind: ApprovalRule
metadata: {name: cve-scan}
spec:
  priority: 10
  match: 'patch.cves.exists(c, c.matches("^CVE-2026-9[0-9]+7$"))'
  action: approve
  stages: [{scope: all, policy: fast}]
---
apiVersion: patchward.dev/v1
kind: ApprovalRule
metadata: {name: critical}
spec: {priority: 1, match: 'patch.severity == "critical"', action: approve, stages: [{scope: all, policy: fast}]}
"#;

fn feed() -> Vec<u8> {
    let huge: Vec<String> = (0..30_000).map(|i| format!("CVE-2025-{i:05}")).collect();
    serde_json::to_vec(&serde_json::json!({
        "revision": 1, "generatedAt": "2026-11-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z",
        "patches": [
            {"id": "HUGE", "title": "t", "vendor": "v", "product": "p", "category": "security", "severity": "critical",
             "released": "2026-11-01T00:00:00Z", "cves": huge},
            {"id": "SMALL", "title": "t", "vendor": "v", "product": "p", "category": "security", "severity": "low",
             "released": "2026-11-01T00:00:00Z", "cves": ["CVE-2026-9997"]},
            {"id": "PLAIN", "title": "t", "vendor": "v", "product": "p", "category": "security", "severity": "critical",
             "released": "2026-11-01T00:00:00Z"}
        ]
    }))
    .unwrap()
}

#[test]
fn an_evaluation_too_costly_for_one_patch_is_refused_there_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), POLICY).unwrap();
    let load = load_policy(&PolicySource::Folder(dir.path().to_owned()), &PolicyLimits::default()).unwrap();
    let policy = CompiledPolicy::compile(load.policy.expect("the rule passes validation's estimate"), None).unwrap();
    let now = "2026-11-24T12:00:00Z".parse().unwrap();
    let (records, _) =
        patchward::catalog::offline_catalog(patchward::policy::model::FeedFormat::Patchward, &feed(), now).unwrap();
    let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&policy.policy));
    let fleet = vec![Device { id: "d1".into(), ..Device::default() }];
    let first = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &fleet, ledger: None, now });

    let report = first.report(&policy, &catalog);
    let scan = report.rules.iter().find(|r| r.name == "cve-scan").unwrap();
    assert_eq!(scan.matched, ["SMALL"]);
    assert_eq!(scan.errors.len(), 1);
    assert_eq!(scan.errors[0].patch, "HUGE");
    assert!(scan.errors[0].message.contains("exceeds 1000000"), "{}", scan.errors[0].message);
    // HUGE is undecided (the outranking rule failed on it), not approved by `critical`.
    assert_eq!(report.undecided.iter().map(|l| l.patch.as_str()).collect::<Vec<_>>(), ["HUGE"]);
    let items: Vec<&str> = report.devices[0].items.iter().map(|i| i.patch.as_str()).collect();
    assert_eq!(items, ["PLAIN", "SMALL"]);
    let diagnostic = &report.diagnostics[0];
    assert_eq!((diagnostic.line, diagnostic.col), (11, 10), "at the rule's match: {diagnostic:?}");
    assert!(diagnostic.message.contains("rule `cve-scan` failed to evaluate on 1 patch(es)"), "{}", diagnostic.message);

    let again = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &fleet, ledger: None, now });
    assert_eq!(first, again, "deterministic");
}
