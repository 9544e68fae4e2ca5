//! Plan properties (RELIABILITY T34), over generated policies, catalogs and
//! fleets: the plan is deterministic and independent of input order;
//! exclusions beat every approval; no item reaches a device outside its
//! scope; no stage starts before its delay; statuses agree with the clock.

use patchward::catalog::coverage::CoverageSet;
use patchward::plan::{CompiledPolicy, ItemStatus, Plan, PlanCatalog, PlanInput, Source, plan};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward_api::{Device, Facts, Inventory};
use proptest::prelude::*;

const NOW: &str = "2026-11-24T12:00:00Z";
const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
const PRODUCTS: [&str; 3] = ["Windows", "Java", "Office"];
const RINGS: [&str; 3] = ["pilot", "prod", "lab"];

#[derive(Clone, Debug)]
struct GenRule {
    priority: i64,
    severity: usize,
    action: usize,
    /// (scope index into RINGS or 3 = all, delay in hours)
    stages: Vec<(usize, u32)>,
}

#[derive(Clone, Debug)]
struct GenPatch {
    severity: usize,
    product: usize,
    released_days_ago: u32,
    supersedes_previous: bool,
}

#[derive(Clone, Debug)]
struct GenDevice {
    ring: usize,
    installed: Vec<usize>,
}

#[derive(Clone, Debug)]
struct Scenario {
    rules: Vec<GenRule>,
    /// Exclusions: (product excluded, scope ring).
    exclusions: Vec<(usize, usize)>,
    /// Manual approvals: (patch index, ring, not-before hours from now, may be negative).
    approvals: Vec<(usize, usize, i64)>,
    patches: Vec<GenPatch>,
    devices: Vec<GenDevice>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let rule = (-5i64..5, 0..SEVERITIES.len(), 0usize..3, prop::collection::vec((0usize..4, 0u32..400), 1..4))
        .prop_map(|(priority, severity, action, stages)| GenRule { priority, severity, action, stages });
    let patch = (0..SEVERITIES.len(), 0..PRODUCTS.len(), 0u32..40, any::<bool>()).prop_map(
        |(severity, product, released_days_ago, supersedes_previous)| GenPatch {
            severity,
            product,
            released_days_ago,
            supersedes_previous,
        },
    );
    (
        prop::collection::vec(rule, 0..5),
        prop::collection::vec((0..PRODUCTS.len(), 0..RINGS.len()), 0..3),
        prop::collection::vec((0usize..12, 0..RINGS.len(), -100i64..100), 0..3),
        prop::collection::vec(patch, 1..12),
        prop::collection::vec((0..RINGS.len(), prop::collection::vec(0usize..12, 0..3)), 0..12),
    )
        .prop_map(|(rules, exclusions, approvals, patches, devices)| Scenario {
            rules,
            exclusions,
            approvals,
            devices: devices.into_iter().map(|(ring, installed)| GenDevice { ring, installed }).collect(),
            patches,
        })
}

fn policy_text(s: &Scenario) -> String {
    let mut out = String::from(
        "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n",
    );
    for ring in RINGS {
        out += &format!(
            "---\napiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {{name: {ring}}}\nspec: {{selector: '\"ring\" in device.labels && device.labels[\"ring\"] == \"{ring}\"'}}\n"
        );
    }
    for (i, rule) in s.rules.iter().enumerate() {
        let action = ["approve", "review", "hold"][rule.action];
        let mut stages = String::new();
        if action == "approve" {
            // Delays never decrease (validation warns otherwise).
            let mut delays: Vec<u32> = rule.stages.iter().map(|(_, d)| *d).collect();
            delays.sort();
            let list: Vec<String> = rule
                .stages
                .iter()
                .zip(delays)
                .map(|((scope, _), delay)| {
                    let scope = if *scope == 3 { "all" } else { RINGS[*scope] };
                    format!("{{scope: {scope}, after: {delay}h, policy: fast}}")
                })
                .collect();
            stages = format!(", stages: [{}]", list.join(", "));
        }
        out += &format!(
            "---\napiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {{name: rule-{i}}}\nspec: {{priority: {}, match: 'patch.severity == \"{}\"', action: {action}{stages}}}\n",
            rule.priority, SEVERITIES[rule.severity]
        );
    }
    for (i, (product, ring)) in s.exclusions.iter().enumerate() {
        out += &format!(
            "---\napiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {{name: exclusion-{i}}}\nspec: {{match: 'patch.product == \"{}\"', scopes: [{}]}}\n",
            PRODUCTS[*product], RINGS[*ring]
        );
    }
    let now: jiff::Timestamp = NOW.parse().unwrap();
    for (i, (patch, ring, hours)) in s.approvals.iter().enumerate() {
        let at = now.checked_add(jiff::SignedDuration::from_hours(*hours)).unwrap();
        out += &format!(
            "---\napiVersion: patchward.dev/v1\nkind: Approval\nmetadata: {{name: approval-{i}}}\nspec: {{patches: [P{:02}], scopes: [{}], policy: fast, notBefore: \"{at}\"}}\n",
            patch % s.patches.len(),
            RINGS[*ring]
        );
    }
    out
}

fn released(p: &GenPatch) -> jiff::Timestamp {
    let now: jiff::Timestamp = NOW.parse().unwrap();
    now.checked_sub(jiff::SignedDuration::from_hours(24 * i64::from(p.released_days_ago))).unwrap()
}

fn feed(s: &Scenario, order: &[usize]) -> Vec<u8> {
    let patches: Vec<serde_json::Value> = order
        .iter()
        .map(|&i| {
            let p = &s.patches[i];
            let supersedes: Vec<String> =
                if p.supersedes_previous && i > 0 { vec![format!("P{:02}", i - 1)] } else { vec![] };
            serde_json::json!({
                "id": format!("P{i:02}"), "title": "t", "vendor": "v", "product": PRODUCTS[p.product],
                "category": "security", "severity": SEVERITIES[p.severity],
                "released": released(p).to_string(), "supersedes": supersedes
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "revision": 1, "generatedAt": "2026-01-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": patches
    }))
    .unwrap()
}

fn fleet(s: &Scenario, order: &[usize]) -> Vec<Device> {
    order
        .iter()
        .map(|&i| {
            let d = &s.devices[i];
            Device {
                id: format!("d{i:02}"),
                facts: Facts {
                    labels: patchward_api::Labels::from([("ring".to_owned(), RINGS[d.ring].to_owned())]),
                    ..Facts::default()
                },
                inventory: Inventory {
                    patches: d.installed.iter().map(|p| format!("P{:02}", p % s.patches.len())).collect(),
                    packages: vec![],
                },
                reports: vec![],
            }
        })
        .collect()
}

struct Planned {
    plan: Plan,
    policy: CompiledPolicy,
}

fn run(s: &Scenario, patch_order: &[usize], device_order: &[usize]) -> Planned {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), policy_text(s)).unwrap();
    let load = load_policy(&PolicySource::Folder(dir.path().to_owned()), &PolicyLimits::default()).unwrap();
    let policy = load.policy.unwrap_or_else(|| panic!("generated policy is valid: {:#?}", load.diagnostics));
    let policy = CompiledPolicy::compile(policy, None).unwrap();
    let now: jiff::Timestamp = NOW.parse().unwrap();
    let (records, _) = patchward::catalog::offline_catalog(
        patchward::policy::model::FeedFormat::Patchward,
        &feed(s, patch_order),
        now,
    )
    .unwrap();
    let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&policy.policy));
    let devices = fleet(s, device_order);
    let plan = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &devices, ledger: None, now });
    Planned { plan, policy }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn plans_are_deterministic_and_order_independent(s in scenario(), seed in any::<u64>()) {
        let patches: Vec<usize> = (0..s.patches.len()).collect();
        let devices: Vec<usize> = (0..s.devices.len()).collect();
        let first = run(&s, &patches, &devices);
        let again = run(&s, &patches, &devices);
        prop_assert_eq!(&first.plan, &again.plan);
        // A permutation of both inputs, from the seed.
        let rotate = |v: &[usize]| { let mut v = v.to_vec(); if !v.is_empty() { let k = (seed as usize) % v.len(); v.rotate_left(k); v.reverse(); } v };
        let shuffled = run(&s, &rotate(&patches), &rotate(&devices));
        prop_assert_eq!(&first.plan, &shuffled.plan);
    }

    #[test]
    fn exclusions_scopes_and_stage_delays_hold(s in scenario()) {
        let patches: Vec<usize> = (0..s.patches.len()).collect();
        let devices: Vec<usize> = (0..s.devices.len()).collect();
        let Planned { plan, policy } = run(&s, &patches, &devices);
        let now: jiff::Timestamp = NOW.parse().unwrap();
        for device in plan.devices.iter() {
            let index: usize = device.id[1..].parse().unwrap();
            let ring = s.devices[index].ring;
            for item in device.items.iter() {
                let grant = plan.grant(item);
                let patch_index: usize = plan.patches[item.patch as usize][1..].parse().unwrap();
                let patch = &s.patches[patch_index];
                // Exclusions beat everything.
                prop_assert!(
                    !s.exclusions.iter().any(|(product, r)| *product == patch.product && *r == ring),
                    "{} got excluded patch {}", device.id, plan.patches[item.patch as usize]
                );
                // Nothing outside its scope.
                prop_assert!(device.scopes.contains(&grant.scope), "{} is not in scope {}", device.id, grant.scope);
                let scope = &plan.scope_names[grant.scope as usize];
                prop_assert!(scope == "all" || scope == RINGS[ring]);
                // No stage before its delay, counted from the release (offline).
                if let (Source::Rule(rule), Some(stage)) = (grant.source, grant.stage) {
                    let after = policy.rules[rule as usize].stages[stage as usize].after;
                    prop_assert_eq!(grant.not_before, released(patch).checked_add(after).unwrap());
                }
                // Statuses agree with the clock.
                match item.status {
                    ItemStatus::Due | ItemStatus::Blocked => prop_assert!(grant.not_before <= now),
                    ItemStatus::Scheduled => prop_assert!(grant.not_before > now),
                    ItemStatus::Installed | ItemStatus::Removed => {}
                }
            }
        }
    }
}

/// Package fixes and inventories drawn from a few names and versions, so
/// that sources, binaries, epochs, binNMUs and platforms collide often.
mod package_fixes {
    use super::*;
    use patchward_api::fixes::{FixKind, FixState, PackageFix, PackageIndex, fix_state};
    use patchward_api::{InstalledPackage, PackageManager};

    const NAMES: [&str; 4] = ["foo", "libfoo1", "bar", "libbar2"];
    const VERSIONS: [&str; 5] = ["1.0-1", "1.0-2", "1:1.0-1", "1.0-1+b1", "0.9-9"];
    const PLATFORMS: [&str; 2] = ["debian-12", "ubuntu-24.04"];

    pub fn fix() -> impl Strategy<Value = PackageFix> {
        (0..4usize, 0..5usize, prop::option::of(0..2usize), any::<bool>(), prop::collection::vec(0..4usize, 0..3))
            .prop_map(|(name, version, platform, source, binaries)| PackageFix {
                manager: PackageManager::Dpkg,
                package: NAMES[name].into(),
                fixed_version: VERSIONS[version].into(),
                platform: platform.map(|p| PLATFORMS[p].into()),
                kind: if source { FixKind::Source } else { FixKind::Binary },
                binaries: if source { binaries.into_iter().map(|b| NAMES[b].into()).collect() } else { vec![] },
            })
    }

    pub fn package() -> impl Strategy<Value = InstalledPackage> {
        (0..4usize, 0..5usize, prop::option::of((0..4usize, prop::option::of(0..5usize)))).prop_map(
            |(name, version, source)| InstalledPackage {
                manager: PackageManager::Dpkg,
                name: NAMES[name].into(),
                version: VERSIONS[version].into(),
                arch: Some("amd64".into()),
                source: source.map(|(s, _)| NAMES[s].into()),
                source_version: source.and_then(|(_, v)| v.map(|v| VERSIONS[v].into())),
            },
        )
    }

    pub fn plan_of(patches: &[Vec<PackageFix>], devices: &[(usize, Vec<InstalledPackage>)]) -> Plan {
        let policy = "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n---\napiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: everything}\nspec: {match: 'true', action: approve, stages: [{scope: all, policy: fast}]}\n";
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let load = load_policy(&PolicySource::Folder(dir.path().to_owned()), &PolicyLimits::default()).unwrap();
        let policy = CompiledPolicy::compile(load.policy.expect("valid"), None).unwrap();
        let feed: Vec<serde_json::Value> = patches
            .iter()
            .enumerate()
            .map(|(i, fixes)| {
                serde_json::json!({
                    "id": format!("P{i:02}"), "title": "t", "vendor": "v", "product": "p", "category": "security",
                    "severity": "high", "released": "2026-01-01T00:00:00Z", "fixes": fixes
                })
            })
            .collect();
        let feed = serde_json::to_vec(&serde_json::json!({
            "revision": 1, "generatedAt": "2026-01-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": feed
        }))
        .unwrap();
        let now: jiff::Timestamp = NOW.parse().unwrap();
        let (records, _) =
            patchward::catalog::offline_catalog(patchward::policy::model::FeedFormat::Patchward, &feed, now).unwrap();
        let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&policy.policy));
        let fleet: Vec<Device> = devices
            .iter()
            .enumerate()
            .map(|(i, (platform, packages))| Device {
                id: format!("d{i:02}"),
                facts: Facts { platform: Some(PLATFORMS[*platform].into()), ..Facts::default() },
                inventory: Inventory { patches: vec![], packages: packages.clone() },
                reports: vec![],
            })
            .collect();
        plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &fleet, ledger: None, now })
    }

    /// The state `patchward_api::fixes` gives, which the agent uses too.
    pub fn expected(fixes: &[PackageFix], platform: usize, packages: &[InstalledPackage]) -> FixState {
        fix_state(fixes, Some(PLATFORMS[platform]), &PackageIndex::new(packages))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The planner finds fixes from a device's packages (an index, not a
    /// scan); its items and exposure must say exactly what the shared rule
    /// says of every (device, patch).
    #[test]
    fn items_and_exposure_follow_the_shared_fix_rule(
        patches in prop::collection::vec(prop::collection::vec(package_fixes::fix(), 1..3), 1..8),
        devices in prop::collection::vec((0..2usize, prop::collection::vec(package_fixes::package(), 0..5)), 1..6),
    ) {
        use patchward_api::fixes::FixState;
        let plan = package_fixes::plan_of(&patches, &devices);
        for (device, (platform, packages)) in plan.devices.iter().zip(&devices) {
            for (index, fixes) in patches.iter().enumerate() {
                let id = format!("P{index:02}");
                let patch = plan.patches.iter().position(|p| *p == id).unwrap() as u32;
                let item = device.items.iter().find(|i| i.patch == patch);
                let exposed = device.exposure.patches().any(|p| p == patch);
                match package_fixes::expected(fixes, *platform, packages) {
                    FixState::NotApplicable | FixState::NoFixes => prop_assert!(item.is_none() && !exposed, "{} {id}", device.id),
                    FixState::Needed => prop_assert!(item.is_some_and(|i| i.status != ItemStatus::Installed) && exposed, "{} {id}", device.id),
                    FixState::Fixed => prop_assert!(item.is_some_and(|i| i.status == ItemStatus::Installed) && !exposed, "{} {id}", device.id),
                }
            }
        }
    }
}
