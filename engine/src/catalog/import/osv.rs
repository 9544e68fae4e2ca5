//! OSV records (https://ossf.github.io/osv-schema/): one record, or a JSON
//! array of them. Each record becomes a patch named by its `id`; its
//! ECOSYSTEM ranges' `fixed` events become package fixes, with dpkg rules
//! for Debian and Ubuntu and rpm rules for Red Hat, AlmaLinux and Rocky.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{cve_ids, invalid, json_one_or_many, revision_of, severity_word, timestamp};
use crate::catalog::Refusal;
use crate::catalog::feed::{Applicability, Cvss, Fix, ImportedFeed, Patch};
use crate::policy::model::{Category, FeedFormat, PackageManager, Timestamp};

const FORMAT: FeedFormat = FeedFormat::Osv;

#[derive(Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    related: Vec<String>,
    #[serde(default)]
    upstream: Vec<String>,
    #[serde(default)]
    published: Option<String>,
    modified: String,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    affected: Vec<Affected>,
    #[serde(default)]
    references: Vec<Reference>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct SeverityEntry {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Deserialize)]
struct Affected {
    package: Option<Package>,
    #[serde(default)]
    ranges: Vec<Range>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    database_specific: Option<AffectedSpecific>,
}

/// Ubuntu's OSV 1.7 records keep per-CVE severities here.
#[derive(Deserialize)]
struct AffectedSpecific {
    #[serde(default)]
    cves_map: Option<CvesMap>,
}

#[derive(Deserialize)]
struct CvesMap {
    #[serde(default)]
    cves: Vec<MappedCve>,
}

#[derive(Deserialize)]
struct MappedCve {
    id: String,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
}

#[derive(Deserialize)]
struct Package {
    ecosystem: String,
    name: String,
}

#[derive(Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Reference {
    url: String,
}

/// The package manager and platform (as devices report it, from
/// os-release: `ubuntu-22.04`, `debian-12`, `almalinux-9`) of an OSV
/// ecosystem such as `Ubuntu:Pro:18.04:LTS`, `Debian:12`, `AlmaLinux:9`.
fn ecosystem(ecosystem: &str) -> Option<(PackageManager, String, &'static str)> {
    let mut parts = ecosystem.split(':');
    let distro = parts.next()?;
    let rest: Vec<&str> = parts.filter(|p| !matches!(*p, "Pro" | "LTS" | "")).collect();
    let release = rest.first().copied();
    let (manager, id, vendor) = match distro {
        "Debian" => (PackageManager::Dpkg, "debian", "Debian"),
        "Ubuntu" => (PackageManager::Dpkg, "ubuntu", "Canonical"),
        "AlmaLinux" => (PackageManager::Rpm, "almalinux", "AlmaLinux"),
        "Rocky Linux" => (PackageManager::Rpm, "rocky", "Rocky Enterprise Software Foundation"),
        "Red Hat" => (PackageManager::Rpm, "rhel", "Red Hat"),
        _ => return None,
    };
    // Red Hat writes `Red Hat:enterprise_linux:9::appstream`.
    let release = match (distro, release) {
        ("Red Hat", _) => rest.iter().find(|p| p.chars().all(|c| c.is_ascii_digit() || c == '.')).copied(),
        (_, release) => release,
    };
    let platform = match release {
        Some(release) => format!("{id}-{release}"),
        None => id.to_owned(),
    };
    Some((manager, platform, vendor))
}

pub fn parse_osv(bytes: &[u8]) -> Result<ImportedFeed, Refusal> {
    let records: Vec<Record> = json_one_or_many(FORMAT, bytes)?;
    let mut newest: Option<jiff::Timestamp> = None;
    let mut patches = Vec::new();
    for record in records {
        let modified = timestamp(FORMAT, "modified", &record.modified)?;
        newest = Some(newest.map_or(modified, |n| n.max(modified)));
        if record.withdrawn.is_some() {
            continue;
        }
        patches.push(record_to_patch(record, modified)?);
    }
    let newest = newest.ok_or_else(|| invalid(FORMAT, "the file holds no OSV record".into()))?;
    Ok(ImportedFeed { revision: revision_of(newest), generated_at: Some(newest), expires_at: None, patches })
}

fn record_to_patch(record: Record, modified: jiff::Timestamp) -> Result<Patch, Refusal> {
    let released = match &record.published {
        Some(text) => timestamp(FORMAT, "published", text)?,
        None => modified,
    };
    let mut fixes = Vec::new();
    let mut platforms = BTreeSet::new();
    let mut vendor = None;
    let mut products = Vec::new();
    for affected in &record.affected {
        let Some(package) = &affected.package else { continue };
        let Some((manager, platform, distro_vendor)) = ecosystem(&package.ecosystem) else { continue };
        vendor.get_or_insert(distro_vendor);
        if !products.contains(&package.name) {
            products.push(package.name.clone());
        }
        platforms.insert(platform.clone());
        for range in affected.ranges.iter().filter(|r| r.kind == "ECOSYSTEM") {
            for event in &range.events {
                if let Some(fixed) = event.get("fixed").and_then(|v| v.as_str()) {
                    let fix = Fix {
                        manager,
                        package: package.name.clone(),
                        fixed_version: fixed.to_owned(),
                        platform: Some(platform.clone()),
                    };
                    if !fixes.contains(&fix) {
                        fixes.push(fix);
                    }
                }
            }
        }
    }
    let mapped: Vec<&MappedCve> = record
        .affected
        .iter()
        .filter_map(|a| a.database_specific.as_ref()?.cves_map.as_ref())
        .flat_map(|m| &m.cves)
        .collect();
    let all_severity: Vec<&SeverityEntry> = record
        .severity
        .iter()
        .chain(record.affected.iter().flat_map(|a| &a.severity))
        .chain(mapped.iter().flat_map(|m| &m.severity))
        .collect();
    // The highest-scoring CVSS vector speaks for the advisory.
    let cvss = all_severity
        .iter()
        .filter(|e| e.kind == "CVSS_V3" || e.kind == "CVSS_V4")
        .filter_map(|e| crate::catalog::cvss::base_score(&e.score).ok().map(|score| (score, e)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e)| Cvss { vector: e.score.clone(), score: None });
    let mut severity = None;
    if cvss.is_none() {
        let worded = all_severity.iter().filter_map(|e| severity_word(&e.score)).min();
        // Red Hat-derived summaries start with the rating: "Important: openssl security update".
        let rated = record.summary.as_deref().and_then(|s| s.split_once(':')).and_then(|(word, _)| severity_word(word));
        let specific = record
            .database_specific
            .as_ref()
            .and_then(|d| d.get("severity"))
            .and_then(|s| s.as_str())
            .and_then(severity_word);
        severity = worded.or(rated).or(specific);
    }
    let cves = cve_ids(
        record
            .aliases
            .iter()
            .chain(&record.related)
            .chain(&record.upstream)
            .chain(mapped.iter().map(|m| &m.id))
            .map(String::as_str),
    );
    Ok(Patch {
        title: record.summary.clone().unwrap_or_else(|| record.id.clone()),
        id: record.id,
        description: record.details,
        vendor: vendor.unwrap_or("unknown").to_owned(),
        product: products.join(", "),
        category: Category::Security,
        severity,
        cvss,
        cves,
        released: Timestamp(released),
        supersedes: Vec::new(),
        applicability: Applicability {
            platforms: (!platforms.is_empty()).then(|| platforms.into_iter().collect()),
            arch: None,
            languages: None,
        },
        fixes,
        fixed_products: Vec::new(),
        detect: None,
        packages: Vec::new(),
        reboot: None,
        references: record.references.into_iter().map(|r| r.url).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_ecosystems_to_managers_and_platforms() {
        assert_eq!(
            ecosystem("Ubuntu:Pro:16.04:LTS").map(|e| (e.0, e.1)),
            Some((PackageManager::Dpkg, "ubuntu-16.04".into()))
        );
        assert_eq!(ecosystem("Ubuntu:24.10").map(|e| e.1), Some("ubuntu-24.10".into()));
        assert_eq!(ecosystem("Debian:12").map(|e| (e.0, e.1)), Some((PackageManager::Dpkg, "debian-12".into())));
        assert_eq!(ecosystem("AlmaLinux:9").map(|e| (e.0, e.1)), Some((PackageManager::Rpm, "almalinux-9".into())));
        assert_eq!(ecosystem("Rocky Linux:8").map(|e| e.1), Some("rocky-8".into()));
        assert_eq!(
            ecosystem("Red Hat:enterprise_linux:9::appstream").map(|e| (e.0, e.1)),
            Some((PackageManager::Rpm, "rhel-9".into()))
        );
        assert_eq!(ecosystem("PyPI"), None);
    }
}
