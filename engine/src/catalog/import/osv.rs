//! OSV records (https://ossf.github.io/osv-schema/), as the distributions
//! publish them: one record, a JSON array of records, or a zip of record
//! files (an ecosystem's `all.zip`, recognised by its magic bytes, whatever
//! the file is called).
//!
//! Each record becomes a patch named by its `id`; its ECOSYSTEM ranges'
//! `fixed` events become package fixes, with dpkg rules for Debian and
//! Ubuntu and rpm rules for Red Hat, AlmaLinux and Rocky, each fix tagged
//! with its platform as devices report it (`Debian:12` → `debian-12`,
//! `Ubuntu:Pro:18.04:LTS` → `ubuntu-18.04`, `AlmaLinux:9` → `almalinux-9`).
//!
//! **Which package a fix names** (its `kind`):
//!
//! - Debian (DSA, DLA and DEBIAN-CVE records) and Ubuntu (USN) name the
//!   *source* package: their security trackers are keyed by source, and
//!   Ubuntu's purls say so (`arch=source`). Ubuntu's records also list the
//!   binaries built from it (`ecosystem_specific.binaries[].binary_name`);
//!   they come along as the fix's `binaries`, less the `-dbgsym` ones.
//! - AlmaLinux and Rocky name *binary* packages. AlmaLinux's ALSA-2025:1330
//!   (openssl on `AlmaLinux:9`) lists `openssl`, `openssl-devel`,
//!   `openssl-libs` and `openssl-perl`, each with the same
//!   `1:3.2.2-6.el9_5.1`, no purl and no `ecosystem_specific`: the
//!   sub-packages of one source RPM, by their binary names. Rocky's records
//!   are read the same way (binary names, no purl arch); no real Rocky
//!   record was at hand to confirm it.
//! - Anywhere, a purl that says `arch=source` (or rpm's `arch=src`) names a
//!   source package.
//! - Debug-symbol packages (`-debuginfo`, `-debugsource`, `-dbgsym`) are
//!   never targets and are dropped.
//!
//! **Severity.** The highest-scoring CVSS vector (the record's, an affected
//! entry's, or Ubuntu's per-CVE `cves_map`) speaks for the advisory; without
//! one, a vendor word (a severity entry, Red Hat-style `Important:` summary,
//! `database_specific.severity`). A record with neither — Debian's DSA
//! records carry none — is left unrated, which the catalog records as
//! `unrated`, never "informational".
//!
//! **Bad records.** A record that does not parse (or whose times are not
//! RFC 3339) is skipped with a warning naming its id, or its file name in a
//! zip; the rest import. A file in which no record parses, a text that is
//! not JSON, and a damaged zip are refused. A zip may unpack to at most
//! [`UNPACK_RATIO`] times the feed's byte limit, and hold at most the patch
//! limit of records; only its `.json` entries are read.

use std::collections::BTreeSet;
use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::{cve_ids, instant, invalid, is_debug_package, revision_of, severity_word, split_records};
use crate::catalog::feed::{Applicability, Cvss, Fix, FixKind, ImportedFeed, Patch, Severity};
use crate::catalog::{FeedLimits, Refusal};
use crate::policy::model::{Category, FeedFormat, PackageManager, Timestamp};

const FORMAT: FeedFormat = FeedFormat::Osv;

/// How many times its own (compressed) byte limit a zip may unpack to: an
/// ecosystem bundle compresses about tenfold; a zip bomb far more.
pub const UNPACK_RATIO: u64 = 16;

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
    /// Free-form by the OSV schema; only a `severity` word is read from it.
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
    ecosystem_specific: Option<EcosystemSpecific>,
    #[serde(default)]
    database_specific: Option<AffectedSpecific>,
}

/// Ubuntu's list of the binaries a source package builds.
#[derive(Deserialize)]
struct EcosystemSpecific {
    #[serde(default)]
    binaries: Vec<Binary>,
}

#[derive(Deserialize)]
struct Binary {
    binary_name: String,
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
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<Event>,
}

/// A range event; only `fixed` matters here (`introduced`, `last_affected`
/// and `limit` are ignored).
#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    fixed: Option<String>,
}

#[derive(Deserialize)]
struct Reference {
    url: String,
}

/// What an OSV ecosystem says about the packages it names.
#[derive(Debug, PartialEq)]
struct Ecosystem {
    manager: PackageManager,
    /// As devices report it, from os-release: `ubuntu-22.04`, `debian-12`.
    platform: String,
    vendor: &'static str,
    /// Whether its advisories name source packages (Debian, Ubuntu).
    names_sources: bool,
}

/// The ecosystem of an OSV `package.ecosystem` such as
/// `Ubuntu:Pro:18.04:LTS`, `Debian:12`, `AlmaLinux:9`; None for ecosystems
/// that are not a Linux distribution's.
fn ecosystem(ecosystem: &str) -> Option<Ecosystem> {
    let mut parts = ecosystem.split(':');
    let distro = parts.next()?;
    let rest: Vec<&str> = parts.filter(|p| !matches!(*p, "Pro" | "LTS" | "")).collect();
    let (manager, id, vendor, names_sources) = match distro {
        "Debian" => (PackageManager::Dpkg, "debian", "Debian", true),
        "Ubuntu" => (PackageManager::Dpkg, "ubuntu", "Canonical", true),
        "AlmaLinux" => (PackageManager::Rpm, "almalinux", "AlmaLinux", false),
        "Rocky Linux" => (PackageManager::Rpm, "rocky", "Rocky Enterprise Software Foundation", false),
        "Red Hat" => (PackageManager::Rpm, "rhel", "Red Hat", false),
        _ => return None,
    };
    // Red Hat writes `Red Hat:enterprise_linux:9::appstream`.
    let release = match distro {
        "Red Hat" => rest.iter().find(|p| p.chars().all(|c| c.is_ascii_digit() || c == '.')).copied(),
        _ => rest.first().copied(),
    };
    let platform = match release {
        Some(release) => format!("{id}-{release}"),
        None => id.to_owned(),
    };
    Some(Ecosystem { manager, platform, vendor, names_sources })
}

/// Whether a purl's qualifiers say it names a source package.
fn purl_names_source(purl: &str) -> bool {
    let qualifiers = purl.split_once('?').map_or("", |(_, q)| q);
    qualifiers.split('&').any(|pair| matches!(pair, "arch=source" | "arch=src"))
}

/// Reads one record, an array of records, or a zip of record files.
pub fn parse_osv(bytes: &[u8], limits: &FeedLimits) -> Result<ImportedFeed, Refusal> {
    let mut batch = Batch::default();
    if is_zip(bytes) {
        read_zip(bytes, limits, &mut batch)?;
    } else {
        for read in read_text(bytes, None).map_err(|e| invalid(FORMAT, e.to_string()))? {
            batch.push(read);
        }
    }
    batch.finish()
}

fn id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(text).ok().map(|r| r.id)
}

/// A zip's local-file or empty-archive signature.
fn is_zip(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06")
}

/// What one record came to.
// Records far outnumber skips: boxing the patch would cost every record an
// allocation to save a skip a few hundred bytes.
#[allow(clippy::large_enum_variant)]
enum Read {
    /// Its modification time, and its patch unless it is withdrawn.
    Record(jiff::Timestamp, Option<Patch>),
    /// Why it is skipped, naming it.
    Skipped(String),
}

/// The records of one JSON text (`file`: the zip entry it is, to name it
/// in warnings). The error is a text that is not JSON at all.
fn read_text(text: &[u8], file: Option<&str>) -> Result<Vec<Read>, serde_json::Error> {
    let place = file.map(|f| format!("{f}: ")).unwrap_or_default();
    let split = split_records::<Record>(text, id_of)?;
    Ok(split
        .into_iter()
        .map(|result| match result {
            Err(error) => Read::Skipped(format!("{place}{error}")),
            Ok(record) => {
                let id = record.id.clone();
                match record_to_patch(record) {
                    Ok((modified, patch)) => Read::Record(modified, patch),
                    Err(reason) => Read::Skipped(format!("{place}record {id} is skipped: {reason}")),
                }
            }
        })
        .collect())
}

/// The records read so far, and what was skipped.
#[derive(Default)]
struct Batch {
    patches: Vec<Patch>,
    newest: Option<jiff::Timestamp>,
    warnings: Vec<String>,
}

impl Batch {
    fn push(&mut self, read: Read) {
        match read {
            Read::Record(modified, patch) => {
                self.newest = Some(self.newest.map_or(modified, |n| n.max(modified)));
                self.patches.extend(patch);
            }
            Read::Skipped(warning) => self.warnings.push(warning),
        }
    }

    fn finish(self) -> Result<ImportedFeed, Refusal> {
        let Some(newest) = self.newest else {
            let reason = match self.warnings.first() {
                Some(first) => format!("no record in it parses; {first}"),
                None => "the file holds no OSV record".into(),
            };
            return Err(invalid(FORMAT, reason));
        };
        Ok(ImportedFeed {
            revision: revision_of(newest),
            generated_at: Some(newest),
            expires_at: None,
            patches: self.patches,
            warnings: self.warnings,
        })
    }
}

type Archive<'a> = zip::ZipArchive<std::io::Cursor<&'a [u8]>>;

/// Every `.json` entry of the zip, each a record file (or an array), read
/// in parallel and kept in the archive's order. A damaged archive or
/// entry, or one past the unpack bound, refuses the whole bundle: it is
/// not what the publisher made.
fn read_zip(bytes: &[u8], limits: &FeedLimits, batch: &mut Batch) -> Result<(), Refusal> {
    use rayon::prelude::*;
    let archive = Archive::new(std::io::Cursor::new(bytes)).map_err(|e| damaged(e.to_string()))?;
    if archive.len() > limits.max_patches {
        let reason = format!("the zip holds {} files; the limit is {} records", archive.len(), limits.max_patches);
        return Err(invalid(FORMAT, reason));
    }
    let budget = Budget { limit: limits.max_bytes.saturating_mul(UNPACK_RATIO), left: AtomicU64::new(0) };
    budget.left.store(budget.limit, Ordering::Relaxed);
    let entries: Vec<Result<Vec<Read>, Refusal>> = (0..archive.len())
        .into_par_iter()
        .with_min_len(64)
        .map_init(|| archive.clone(), |archive, index| read_entry(archive, index, &budget))
        .collect();
    batch.patches.reserve(entries.len());
    for entry in entries {
        for read in entry? {
            batch.push(read);
        }
    }
    Ok(())
}

fn damaged(what: String) -> Refusal {
    invalid(FORMAT, format!("the zip is damaged: {what}"))
}

/// How many more bytes the zip's entries may unpack to, shared by the
/// threads that read them.
struct Budget {
    limit: u64,
    left: AtomicU64,
}

fn read_entry(archive: &mut Archive<'_>, index: usize, budget: &Budget) -> Result<Vec<Read>, Refusal> {
    let entry = archive.by_index(index).map_err(|e| damaged(format!("entry {index}: {e}")))?;
    if entry.is_dir() || !entry.name().ends_with(".json") {
        return Ok(Vec::new());
    }
    let name = entry.name().to_owned();
    let left = budget.left.load(Ordering::Relaxed);
    let mut text = Vec::with_capacity(entry.size().min(left) as usize);
    // One byte past what is left tells an entry that would exceed it,
    // whatever its header declares.
    entry.take(left + 1).read_to_end(&mut text).map_err(|e| damaged(format!("{name}: {e}")))?;
    let taken = text.len() as u64;
    budget
        .left
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(taken))
        .map_err(|_| invalid(FORMAT, format!("the zip unpacks to more than {} bytes; refused", budget.limit)))?;
    Ok(read_text(&text, Some(&name)).unwrap_or_else(|e| vec![Read::Skipped(format!("{name}: not JSON, skipped: {e}"))]))
}

/// The record's modification time, and its patch unless it is withdrawn;
/// the error is why the record is skipped.
fn record_to_patch(record: Record) -> Result<(jiff::Timestamp, Option<Patch>), String> {
    let modified = instant("modified", &record.modified)?;
    if record.withdrawn.is_some() {
        return Ok((modified, None));
    }
    let released = match &record.published {
        Some(text) => instant("published", text)?,
        None => modified,
    };
    let targets = targets(&record.affected);
    let (cvss, severity) = rating(&record);
    let mapped = mapped_cves(&record.affected);
    let cves = cve_ids(
        record
            .aliases
            .iter()
            .chain(&record.related)
            .chain(&record.upstream)
            .chain(mapped.iter().map(|m| &m.id))
            .map(String::as_str),
    );
    let patch = Patch {
        title: record.summary.clone().unwrap_or_else(|| record.id.clone()),
        id: record.id,
        description: record.details,
        vendor: targets.vendor.unwrap_or("unknown").to_owned(),
        product: targets.products.join(", "),
        category: Category::Security,
        severity,
        cvss,
        cves,
        released: Timestamp(released),
        supersedes: Vec::new(),
        applicability: Applicability {
            platforms: (!targets.platforms.is_empty()).then(|| targets.platforms.into_iter().collect()),
            arch: None,
            languages: None,
        },
        fixes: targets.fixes,
        fixed_products: Vec::new(),
        detect: None,
        packages: Vec::new(),
        reboot: None,
        references: record.references.into_iter().map(|r| r.url).collect(),
    };
    Ok((modified, Some(patch)))
}

/// What a record's affected packages come to.
#[derive(Default)]
struct Targets {
    fixes: Vec<Fix>,
    platforms: BTreeSet<String>,
    vendor: Option<&'static str>,
    products: Vec<String>,
}

fn targets(affected: &[Affected]) -> Targets {
    let mut targets = Targets::default();
    for affected in affected {
        let Some(package) = &affected.package else { continue };
        let Some(ecosystem) = ecosystem(&package.ecosystem) else { continue };
        targets.vendor.get_or_insert(ecosystem.vendor);
        if !targets.products.contains(&package.name) {
            targets.products.push(package.name.clone());
        }
        targets.platforms.insert(ecosystem.platform.clone());
        if is_debug_package(&package.name) {
            continue;
        }
        let source = ecosystem.names_sources || package.purl.as_deref().is_some_and(purl_names_source);
        let (kind, binaries) =
            if source { (FixKind::Source, binaries(affected)) } else { (FixKind::Binary, Vec::new()) };
        let fixed = affected.ranges.iter().filter(|r| r.kind == "ECOSYSTEM").flat_map(|r| &r.events);
        for fixed in fixed.filter_map(|e| e.fixed.as_deref()) {
            let fix = Fix {
                manager: ecosystem.manager,
                package: package.name.clone(),
                fixed_version: fixed.to_owned(),
                platform: Some(ecosystem.platform.clone()),
                kind,
                binaries: binaries.clone(),
            };
            if !targets.fixes.contains(&fix) {
                targets.fixes.push(fix);
            }
        }
    }
    targets
}

/// Ubuntu's binaries of a source package, less debug symbols, deduplicated.
fn binaries(affected: &Affected) -> Vec<String> {
    let listed = affected.ecosystem_specific.iter().flat_map(|e| &e.binaries).map(|b| b.binary_name.as_str());
    let mut names: Vec<String> = Vec::new();
    for name in listed.filter(|n| !is_debug_package(n)) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

fn mapped_cves(affected: &[Affected]) -> Vec<&MappedCve> {
    affected.iter().filter_map(|a| a.database_specific.as_ref()?.cves_map.as_ref()).flat_map(|m| &m.cves).collect()
}

/// The advisory's CVSS vector (the highest-scoring one), or else a vendor's
/// word for its severity; neither leaves it unrated.
fn rating(record: &Record) -> (Option<Cvss>, Option<Severity>) {
    let mapped = mapped_cves(&record.affected);
    let all: Vec<&SeverityEntry> = record
        .severity
        .iter()
        .chain(record.affected.iter().flat_map(|a| &a.severity))
        .chain(mapped.iter().flat_map(|m| &m.severity))
        .collect();
    // The score computed here to choose is kept, so the catalog need not
    // compute it again.
    let cvss = all
        .iter()
        .filter(|e| e.kind == "CVSS_V3" || e.kind == "CVSS_V4")
        .filter_map(|e| crate::catalog::cvss::base_score(&e.score).ok().map(|score| (score, e)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(score, e)| Cvss { vector: e.score.clone(), score: Some(score) });
    if cvss.is_some() {
        return (cvss, None);
    }
    let worded = all.iter().filter_map(|e| severity_word(&e.score)).min();
    // Red Hat-derived summaries start with the rating: "Important: openssl security update".
    let rated = record.summary.as_deref().and_then(|s| s.split_once(':')).and_then(|(word, _)| severity_word(word));
    let specific = record
        .database_specific
        .as_ref()
        .and_then(|d| d.get("severity"))
        .and_then(|s| s.as_str())
        .and_then(severity_word);
    (None, worded.or(rated).or(specific))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(name: &str) -> Option<(PackageManager, String, bool)> {
        ecosystem(name).map(|e| (e.manager, e.platform, e.names_sources))
    }

    #[test]
    fn maps_ecosystems_to_managers_platforms_and_kinds() {
        assert_eq!(platform("Ubuntu:Pro:16.04:LTS"), Some((PackageManager::Dpkg, "ubuntu-16.04".into(), true)));
        assert_eq!(platform("Ubuntu:24.10").map(|e| e.1), Some("ubuntu-24.10".into()));
        for (name, expected) in [("Debian:11", "debian-11"), ("Debian:12", "debian-12"), ("Debian:13", "debian-13")] {
            assert_eq!(platform(name), Some((PackageManager::Dpkg, expected.into(), true)));
        }
        assert_eq!(platform("AlmaLinux:9"), Some((PackageManager::Rpm, "almalinux-9".into(), false)));
        assert_eq!(platform("Rocky Linux:8").map(|e| e.1), Some("rocky-8".into()));
        assert_eq!(
            platform("Red Hat:enterprise_linux:9::appstream"),
            Some((PackageManager::Rpm, "rhel-9".into(), false))
        );
        assert_eq!(platform("PyPI"), None);
    }

    #[test]
    fn a_purl_for_a_source_package_says_so() {
        assert!(purl_names_source("pkg:deb/ubuntu/vim@2:9.1?arch=source&distro=noble"));
        assert!(purl_names_source("pkg:rpm/rocky/openssl@3.2.2?arch=src&distro=rocky-9"));
        assert!(!purl_names_source("pkg:rpm/rocky/openssl-libs@3.2.2?arch=x86_64"));
        assert!(!purl_names_source("pkg:deb/debian/curl?distro=bookworm"));
    }

    #[test]
    fn recognises_a_zip_by_its_magic_bytes() {
        assert!(is_zip(b"PK\x03\x04rest"));
        assert!(is_zip(b"PK\x05\x06"));
        assert!(!is_zip(b"[{\"id\": \"PK\"}]"));
    }
}
