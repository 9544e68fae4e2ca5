//! Synthetic scenarios for benchmarks: a policy of N rules over M scopes, a
//! catalog of P patches and a fleet of D devices, shaped like a real
//! estate (Windows cumulative updates that supersede each other, Linux
//! advisories fixing packages, rings, departments and sites), generated
//! deterministically from a seed.
//!
//! Every rule is also given as a Rust closure over the same patch, so the
//! cost of CEL can be measured against native predicates.

use std::collections::BTreeMap;

use patchward_api::{Device, Facts, InstalledPackage, Inventory, Labels, PackageManager};

use crate::store::CatalogPatch;

/// How big a scenario is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub patches: usize,
    pub rules: usize,
    pub scopes: usize,
    pub devices: usize,
}

pub struct Scenario {
    /// Policy files: (name, YAML).
    pub policy_files: Vec<(String, String)>,
    /// A patchward feed.
    pub feed: Vec<u8>,
    pub fleet: Vec<Device>,
    pub now: jiff::Timestamp,
    /// The rules' `match` predicates as Rust closures, in rule-name order.
    pub closures: Vec<(String, RuleClosure)>,
}

pub type RuleClosure = Box<dyn Fn(&CatalogPatch, jiff::Timestamp) -> bool + Send + Sync>;

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const WINDOWS: [&str; 6] = [
    "windows-10-22h2",
    "windows-11-22h2",
    "windows-11-23h2",
    "windows-11-24h2",
    "windows-server-2019",
    "windows-server-2022",
];
const LINUX: [(&str, PackageManager); 6] = [
    ("debian-11", PackageManager::Dpkg),
    ("debian-12", PackageManager::Dpkg),
    ("ubuntu-22.04", PackageManager::Dpkg),
    ("ubuntu-24.04", PackageManager::Dpkg),
    ("rhel-8", PackageManager::Rpm),
    ("rhel-9", PackageManager::Rpm),
];
const LANGUAGES: [&str; 5] = ["en-US", "fi-FI", "sv-SE", "de-DE", "fr-FR"];
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "informational"];
const WINDOWS_PRODUCTS: [(&str, &str); 8] = [
    ("Microsoft", "Windows Cumulative"),
    ("Microsoft", "Windows .NET Framework"),
    ("Microsoft", "Windows Defender"),
    ("Microsoft", "Microsoft Edge"),
    ("Microsoft", "Office 365"),
    ("Oracle", "Java SE 8"),
    ("Adobe", "Acrobat Reader"),
    ("Mozilla", "Firefox"),
];
const DEPARTMENTS: [&str; 10] =
    ["finance", "sales", "engineering", "support", "hr", "legal", "marketing", "it", "research", "operations"];
const SITES: [&str; 8] = ["helsinki", "tampere", "oulu", "turku", "stockholm", "berlin", "paris", "remote"];
const RINGS: [&str; 3] = ["pilot", "early", "broad"];
const PACKAGES: usize = 200;

fn package_name(i: usize) -> String {
    format!("lib{}-{}", ["ssl", "xml", "curl", "z", "png", "ssh", "krb", "sql", "gnutls", "tiff"][i % 10], i / 10)
}

/// A package version `1.N-M`, comparable by dpkg and rpm alike.
fn version(major: usize, minor: usize) -> String {
    format!("1.{major}-{minor}")
}

/// The scopes: the rings, departments, sites and platform families, each a
/// selector over one or two facts, as an admin writes them.
fn scopes(count: usize) -> Vec<(String, String)> {
    let mut scopes: Vec<(String, String)> = Vec::new();
    for ring in RINGS {
        scopes
            .push((format!("ring-{ring}"), format!(r#""ring" in device.labels && device.labels["ring"] == "{ring}""#)));
    }
    scopes.push(("windows".into(), r#"device.os == "windows""#.into()));
    scopes.push(("linux".into(), r#"device.os == "linux""#.into()));
    scopes.push(("servers".into(), r#"device.platform.contains("server") || device.os == "linux""#.into()));
    for dept in DEPARTMENTS {
        scopes.push((format!("dept-{dept}"), format!(r#""{dept}" in device.groups"#)));
    }
    for site in SITES {
        scopes
            .push((format!("site-{site}"), format!(r#""site" in device.labels && device.labels["site"] == "{site}""#)));
    }
    scopes.truncate(count.max(3));
    scopes
}

fn rule(index: usize, rng: &mut Rng) -> (String, RuleClosure) {
    let severity = SEVERITIES[index % 4];
    match index % 7 {
        0 => (
            format!(r#"patch.severity == "{severity}" && patch.category == "security""#),
            Box::new(move |p: &CatalogPatch, _| {
                p.severity.as_str() == severity && p.patch.category == crate::policy::model::Category::Security
            }),
        ),
        1 => {
            let (_, product) = WINDOWS_PRODUCTS[rng.below(WINDOWS_PRODUCTS.len())];
            (
                format!(r#"patch.product == "{product}""#),
                Box::new(move |p: &CatalogPatch, _| p.patch.product == product),
            )
        }
        2 => {
            let (vendor, _) = WINDOWS_PRODUCTS[rng.below(WINDOWS_PRODUCTS.len())];
            (
                format!(r#"patch.vendor == "{vendor}" && patch.severity in ["critical", "high"]"#),
                Box::new(move |p: &CatalogPatch, _| {
                    p.patch.vendor == vendor && matches!(p.severity.as_str(), "critical" | "high")
                }),
            )
        }
        3 => {
            let score = 5.0 + (index % 5) as f64;
            (
                format!("patch.cvss != null && patch.cvss.score >= {score:.1}"),
                Box::new(move |p: &CatalogPatch, _| p.score.is_some_and(|s| s >= score)),
            )
        }
        4 => {
            let prefix = format!("CVE-2026-{}", index % 10);
            (
                format!(r#"patch.cves.exists(c, c.startsWith("{prefix}"))"#),
                Box::new(move |p: &CatalogPatch, _| p.patch.cves.iter().any(|c| c.starts_with(&prefix))),
            )
        }
        5 => {
            let days = 30 + (index % 60) as i64;
            (
                format!(r#"daysSince(patch.released) > {days} && patch.severity != "low""#),
                Box::new(move |p: &CatalogPatch, now: jiff::Timestamp| {
                    (now.as_second() - p.patch.released.0.as_second()).div_euclid(86_400) > days
                        && p.severity.as_str() != "low"
                }),
            )
        }
        _ => {
            let (_, product) = WINDOWS_PRODUCTS[5 + rng.below(3)];
            let prefix: String = product.chars().take(4).collect();
            (
                format!(r#"patch.product.startsWith("{prefix}") && patch.severity != "informational""#),
                Box::new(move |p: &CatalogPatch, _| {
                    p.patch.product.starts_with(&prefix) && p.severity.as_str() != "informational"
                }),
            )
        }
    }
}

pub fn generate(size: Size, seed: u64) -> Scenario {
    let mut rng = Rng(seed);
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().expect("a timestamp");
    let scopes = scopes(size.scopes);
    let mut yaml = String::from(
        "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n\
         ---\napiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: idle}\nspec: {mode: idle, idle: {cpuBelowPercent: 10}}\n",
    );
    for (name, selector) in &scopes {
        yaml += &format!(
            "---\napiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {{name: {name}}}\nspec: {{selector: '{selector}'}}\n"
        );
    }
    let mut closures = Vec::new();
    for index in 0..size.rules {
        let (expression, closure) = rule(index, &mut rng);
        let action = match index % 10 {
            8 => "review",
            9 => "hold",
            _ => "approve",
        };
        let stages = if action == "approve" {
            let later = &scopes[3 + rng.below(scopes.len() - 3)].0;
            format!(
                ", stages: [{{scope: ring-pilot, policy: fast, deadline: 2d}}, {{scope: ring-early, after: 3d, policy: fast, gate: {{minSucceeded: 5, maxFailureRate: 0.1}}}}, {{scope: {later}, after: 7d, policy: idle, deadline: 14d}}]"
            )
        } else {
            String::new()
        };
        let name = format!("rule-{index:03}");
        yaml += &format!(
            "---\napiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {{name: {name}}}\nspec: {{priority: {}, match: '{expression}', action: {action}{stages}}}\n",
            1000 - index as i64
        );
        closures.push((name, closure));
    }
    yaml += "---\napiVersion: patchward.dev/v1\nkind: Exclusion\nmetadata: {name: finance-keeps-java}\nspec: {match: 'patch.product.startsWith(\"Java\")', scopes: [dept-finance]}\n";
    yaml += "---\napiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {name: vendor}\nspec: {url: \"file:///dev/null\", coverage: {categories: [security, third-party]}}\n";

    // Patches: 60% Windows chains (each supersedes the previous of its
    // product and platform), 40% Linux advisories fixing one or two packages.
    let mut patches = Vec::with_capacity(size.patches);
    let mut last_in_chain: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for index in 0..size.patches {
        let released = now.as_second() - (rng.below(365) as i64) * 86_400 - rng.below(86_400) as i64;
        let released = jiff::Timestamp::from_second(released).expect("in range").to_string();
        let severity = SEVERITIES[rng.below(5)];
        let cves: Vec<String> = (0..1 + rng.below(3)).map(|_| format!("CVE-2026-{:05}", rng.below(99_999))).collect();
        let score = format!("{}.{}", 3 + rng.below(7), rng.below(10));
        let patch = if rng.chance(60) {
            let (product, platform) = (rng.below(WINDOWS_PRODUCTS.len()), rng.below(WINDOWS.len()));
            let (vendor, name) = WINDOWS_PRODUCTS[product];
            let id = format!("KB{:07}", 5_000_000 + index);
            let supersedes: Vec<String> = match last_in_chain.insert((product, platform), id.clone()) {
                Some(previous) if rng.chance(80) => vec![previous],
                _ => vec![],
            };
            let languages = if rng.chance(20) { Some(vec![LANGUAGES[rng.below(LANGUAGES.len())]]) } else { None };
            serde_json::json!({
                "id": id, "title": format!("{name} update {index}"), "vendor": vendor, "product": name,
                "category": if vendor == "Microsoft" { "security" } else { "third-party" },
                "severity": severity, "cvss": {"vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "score": score.parse::<f64>().unwrap_or(5.0)},
                "cves": cves, "released": released, "supersedes": supersedes,
                "applicability": {"platforms": [WINDOWS[platform]], "arch": ["x86_64"], "languages": languages},
                "packages": [{"type": "msu", "url": format!("https://download.example.com/{id}.msu"),
                              "sha256": format!("{:064x}", index), "size": 1_000_000, "args": ["/quiet", "/norestart"]}]
            })
        } else {
            let (platform, manager) = LINUX[rng.below(LINUX.len())];
            let fixes: Vec<serde_json::Value> = (0..1 + rng.below(2))
                .map(|_| {
                    let package = rng.below(PACKAGES);
                    serde_json::json!({"manager": if manager == PackageManager::Dpkg { "dpkg" } else { "rpm" },
                        "package": package_name(package), "fixedVersion": version(package % 7, 2 + rng.below(8))})
                })
                .collect();
            serde_json::json!({
                "id": format!("LSA-{index:06}"), "title": format!("security update {index}"), "vendor": "Linux",
                "product": package_name(rng.below(PACKAGES)), "category": "security", "severity": severity,
                "cvss": {"vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:H/A:N", "score": score.parse::<f64>().unwrap_or(5.0)},
                "cves": cves, "released": released, "applicability": {"platforms": [platform]}, "fixes": fixes
            })
        };
        patches.push(patch);
    }
    let feed = serde_json::to_vec(&serde_json::json!({
        "revision": 1, "generatedAt": "2026-11-20T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": patches
    }))
    .expect("serializes");

    let windows_ids: Vec<Vec<String>> = (0..WINDOWS.len())
        .map(|platform| last_in_chain.iter().filter(|((_, p), _)| *p == platform).map(|(_, id)| id.clone()).collect())
        .collect();
    let fleet = (0..size.devices)
        .map(|index| {
            let ring = if rng.chance(5) {
                RINGS[0]
            } else if rng.chance(15) {
                RINGS[1]
            } else {
                RINGS[2]
            };
            let mut labels = Labels::from([("ring".to_owned(), ring.to_owned())]);
            labels.insert("site".into(), SITES[rng.below(SITES.len())].to_owned());
            let groups = vec![DEPARTMENTS[rng.below(DEPARTMENTS.len())].to_owned()];
            let (facts, inventory) = if rng.chance(60) {
                let platform = rng.below(WINDOWS.len());
                // Half of the newest updates of its platform are installed.
                let installed = windows_ids[platform].iter().filter(|_| rng.chance(50)).cloned().collect();
                (
                    Facts {
                        os: Some("windows".into()),
                        platform: Some(WINDOWS[platform].into()),
                        language: Some(LANGUAGES[rng.below(LANGUAGES.len())].into()),
                        ..Facts::default()
                    },
                    Inventory { patches: installed, packages: vec![] },
                )
            } else {
                let (platform, manager) = LINUX[rng.below(LINUX.len())];
                let packages = (0..20)
                    .map(|_| {
                        let package = rng.below(PACKAGES);
                        InstalledPackage {
                            manager,
                            name: package_name(package).into(),
                            version: version(package % 7, rng.below(10)).into(),
                            arch: None,
                            source: None,
                            source_version: None,
                        }
                    })
                    .collect();
                (
                    Facts {
                        os: Some("linux".into()),
                        platform: Some(platform.into()),
                        language: Some("en-US".into()),
                        ..Facts::default()
                    },
                    Inventory { patches: vec![], packages },
                )
            };
            let reports = Vec::new();
            Device {
                id: format!("dev-{index:06}"),
                facts: Facts {
                    arch: Some("x86_64".into()),
                    hostname: Some(format!("host-{index:06}")),
                    labels,
                    groups,
                    timezone: Some("Europe/Helsinki".into()),
                    ip: Some(format!("10.{}.{}.{}", index % 200, (index / 200) % 250, index % 250)),
                    ..facts
                },
                inventory,
                reports,
            }
        })
        .collect();
    Scenario { policy_files: vec![("policy.yaml".into(), yaml)], feed, fleet, now, closures }
}
