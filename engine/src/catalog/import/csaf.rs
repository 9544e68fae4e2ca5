//! CSAF 2.0 advisories (OASIS): one document, or a JSON array of them (a
//! document of an array that does not parse is skipped with a warning
//! naming its `tracking.id` or place; the rest import). Each document
//! becomes a patch named by its `tracking.id`. A CSAF provider's
//! `provider-metadata.json` is no advisory: it is synced as a source
//! (`catalog::provider`), and refused here with that said.
//!
//! **Fixed products.** Those that are packages become package fixes; other
//! fixed product versions are kept as `fixedProducts`. A package is known by
//! its purl, or by Red Hat's `name-epoch:version-release.arch` product
//! version. Red Hat's products are *binary* NEVRAs, so rpm fixes are
//! binary fixes; the source RPM (`.src`, purl `arch=src`) and the debug
//! packages (`-debuginfo`, `-debugsource`) of the same advisory are never
//! targets and are dropped. A deb purl with `arch=source` names a Debian
//! source package and becomes a source fix. Scores, CVEs and `vendor_fix`
//! URLs come along; a document with neither a score nor a vendor severity
//! is left unrated.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{cve_ids, instant, invalid, is_debug_package, parse_records, revision_of, severity_word};
use crate::catalog::Refusal;
use crate::catalog::feed::{Applicability, Cvss, Fix, FixKind, FixedProduct, ImportedFeed, Patch};
use crate::policy::model::{Category, FeedFormat, PackageManager, Timestamp};

const FORMAT: FeedFormat = FeedFormat::Csaf;

#[derive(Deserialize)]
struct Document {
    document: Meta,
    #[serde(default)]
    product_tree: Option<ProductTree>,
    #[serde(default)]
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Deserialize)]
struct Meta {
    title: String,
    publisher: Publisher,
    tracking: Tracking,
    #[serde(default)]
    aggregate_severity: Option<AggregateSeverity>,
    #[serde(default)]
    notes: Vec<Note>,
}

#[derive(Deserialize)]
struct Publisher {
    name: String,
}

#[derive(Deserialize)]
struct Tracking {
    id: String,
    initial_release_date: String,
    current_release_date: String,
}

#[derive(Deserialize)]
struct AggregateSeverity {
    text: String,
}

#[derive(Deserialize)]
struct Note {
    category: String,
    text: String,
}

#[derive(Deserialize, Default)]
struct ProductTree {
    #[serde(default)]
    branches: Vec<Branch>,
    #[serde(default)]
    full_product_names: Vec<FullProductName>,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

#[derive(Deserialize)]
struct Branch {
    category: String,
    name: String,
    #[serde(default)]
    product: Option<FullProductName>,
    #[serde(default)]
    branches: Vec<Branch>,
}

#[derive(Deserialize)]
struct FullProductName {
    name: String,
    product_id: String,
    #[serde(default)]
    product_identification_helper: Option<Helper>,
}

#[derive(Deserialize)]
struct Helper {
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct Relationship {
    full_product_name: FullProductName,
    product_reference: String,
    relates_to_product_reference: String,
}

#[derive(Deserialize)]
struct Vulnerability {
    #[serde(default)]
    cve: Option<String>,
    #[serde(default)]
    product_status: Option<ProductStatus>,
    #[serde(default)]
    scores: Vec<Score>,
    #[serde(default)]
    remediations: Vec<Remediation>,
    #[serde(default)]
    threats: Vec<Threat>,
}

#[derive(Deserialize, Default)]
struct ProductStatus {
    #[serde(default)]
    fixed: Vec<String>,
    #[serde(default)]
    first_fixed: Vec<String>,
    #[serde(default)]
    known_affected: Vec<String>,
}

#[derive(Deserialize)]
struct Score {
    #[serde(default)]
    cvss_v3: Option<CvssV3>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CvssV3 {
    vector_string: String,
    base_score: f64,
}

#[derive(Deserialize)]
struct Remediation {
    category: String,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct Threat {
    category: String,
    details: String,
}

/// What the product tree says of one product id.
#[derive(Clone, Debug, Default)]
struct Product {
    vendor: Option<String>,
    /// The `product_name` branch (or the platform of a relationship).
    product_name: Option<String>,
    /// The `product_version` branch, or the full name.
    version: String,
    architecture: Option<String>,
    purl: Option<String>,
}

fn collect_products(tree: &ProductTree) -> BTreeMap<String, Product> {
    let mut products = BTreeMap::new();
    fn walk(branches: &[Branch], context: &Product, out: &mut BTreeMap<String, Product>) {
        for branch in branches {
            let mut here = context.clone();
            match branch.category.as_str() {
                "vendor" => here.vendor = Some(branch.name.clone()),
                "product_name" | "product_family" => here.product_name = Some(branch.name.clone()),
                "architecture" => here.architecture = Some(branch.name.clone()),
                "product_version" | "product_version_range" => here.version = branch.name.clone(),
                _ => {}
            }
            if let Some(product) = &branch.product {
                let mut entry = here.clone();
                if entry.version.is_empty() {
                    entry.version = product.name.clone();
                }
                entry.purl = purl_of(product);
                out.insert(product.product_id.clone(), entry);
            }
            walk(&branch.branches, &here, out);
        }
    }
    walk(&tree.branches, &Product::default(), &mut products);
    for full in &tree.full_product_names {
        products.entry(full.product_id.clone()).or_insert_with(|| Product {
            version: full.name.clone(),
            purl: purl_of(full),
            ..Product::default()
        });
    }
    for relationship in &tree.relationships {
        let component = products.get(&relationship.product_reference).cloned().unwrap_or_default();
        let platform = products.get(&relationship.relates_to_product_reference).cloned().unwrap_or_default();
        let combined = Product {
            vendor: component.vendor.or(platform.vendor),
            product_name: platform.product_name.or(component.product_name),
            version: if component.version.is_empty() {
                relationship.full_product_name.name.clone()
            } else {
                component.version
            },
            architecture: component.architecture,
            purl: component.purl.or_else(|| purl_of(&relationship.full_product_name)),
        };
        products.insert(relationship.full_product_name.product_id.clone(), combined);
    }
    products
}

fn purl_of(product: &FullProductName) -> Option<String> {
    product.product_identification_helper.as_ref()?.purl.clone()
}

/// What a fixed product id names.
#[derive(Debug, PartialEq)]
enum Named {
    /// A package a package manager installs.
    Package(Fix),
    /// A source RPM or a debug package: never installed as a fix.
    NotATarget,
    /// No package: a product version (`fixedProducts`).
    Product,
}

fn classify(product: &Product) -> Named {
    let named = product
        .purl
        .as_deref()
        .and_then(from_purl)
        .or_else(|| from_nevra(&product.version, product.architecture.as_deref()));
    match named {
        Some(Named::Package(fix)) if is_debug_package(&fix.package) => Named::NotATarget,
        Some(named) => named,
        None if product.architecture.as_deref() == Some("src") => Named::NotATarget,
        None => Named::Product,
    }
}

/// `pkg:deb/debian/openssl@3.0.15-1~deb12u1?distro=debian-12` → a dpkg fix;
/// None for a purl that is no deb or rpm package.
fn from_purl(purl: &str) -> Option<Named> {
    let rest = purl.strip_prefix("pkg:")?;
    let (kind, rest) = rest.split_once('/')?;
    let manager = match kind {
        "deb" => PackageManager::Dpkg,
        "rpm" => PackageManager::Rpm,
        _ => return None,
    };
    let (path, qualifiers) = rest.split_once('?').unwrap_or((rest, ""));
    let (path, version) = path.split_once('@')?;
    let name = path.rsplit('/').next()?;
    let qualifier =
        |key: &str| qualifiers.split('&').find_map(|pair| pair.strip_prefix(key).and_then(|v| v.strip_prefix('=')));
    // rpm advisories list the binaries built from a source RPM beside it;
    // Debian's name the source alone.
    let kind = match qualifier("arch") {
        Some("src") => return Some(Named::NotATarget),
        Some("source") => FixKind::Source,
        _ => FixKind::Binary,
    };
    // purl keeps an rpm epoch in a qualifier; versions compare with it in front.
    let version = match (manager, qualifier("epoch")) {
        (PackageManager::Rpm, Some(epoch)) if epoch != "0" => format!("{epoch}:{version}"),
        _ => version.to_owned(),
    };
    Some(Named::Package(Fix {
        manager,
        package: percent_decode(name),
        fixed_version: percent_decode(&version),
        platform: qualifier("distro").map(percent_decode),
        kind,
        binaries: Vec::new(),
    }))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(value) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Red Hat names fixed RPMs `name-epoch:version-release.arch`
/// (`telnet-server-1:0.17-65.el7_6.x86_64`); None for what is no NEVRA.
fn from_nevra(nevra: &str, architecture: Option<&str>) -> Option<Named> {
    let arch = architecture.or_else(|| nevra.rsplit_once('.').map(|(_, a)| a))?;
    let without_arch = nevra.strip_suffix(arch)?.strip_suffix('.')?;
    let (rest, release) = without_arch.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    if name.is_empty() || !version.chars().next()?.is_ascii_digit() {
        return None;
    }
    if arch == "src" {
        return Some(Named::NotATarget);
    }
    Some(Named::Package(Fix {
        manager: PackageManager::Rpm,
        package: name.to_owned(),
        fixed_version: format!("{version}-{release}"),
        platform: None,
        kind: FixKind::Binary,
        binaries: Vec::new(),
    }))
}

pub fn parse_csaf(bytes: &[u8]) -> Result<ImportedFeed, Refusal> {
    let mut warnings = Vec::new();
    let documents: Vec<Document> = parse_records(FORMAT, bytes, tracking_id_of, &mut warnings).map_err(|refusal| {
        if crate::catalog::provider::looks_like_metadata(bytes) {
            let reason = "this is a CSAF provider's metadata (provider-metadata.json), not an advisory: \
                          make it the url of a CatalogSource of format csaf and sync it";
            return invalid(FORMAT, reason.into());
        }
        refusal
    })?;
    let mut newest: Option<jiff::Timestamp> = None;
    let mut patches = Vec::new();
    for document in documents {
        let id = document.document.tracking.id.clone();
        match document_to_patch(document) {
            Ok((current, patch)) => {
                newest = Some(newest.map_or(current, |n| n.max(current)));
                patches.push(patch);
            }
            Err(reason) => warnings.push(format!("document {id} is skipped: {reason}")),
        }
    }
    let newest = newest.ok_or_else(|| match warnings.first() {
        Some(first) => invalid(FORMAT, format!("no document in it is usable; {first}")),
        None => invalid(FORMAT, "the file holds no CSAF document".into()),
    })?;
    Ok(ImportedFeed { revision: revision_of(newest), generated_at: Some(newest), expires_at: None, patches, warnings })
}

fn tracking_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Doc {
        document: DocMeta,
    }
    #[derive(Deserialize)]
    struct DocMeta {
        tracking: TrackingId,
    }
    #[derive(Deserialize)]
    struct TrackingId {
        id: String,
    }
    serde_json::from_str::<Doc>(text).ok().map(|d| d.document.tracking.id)
}

/// The document's current release date and its patch; the error is why it
/// is skipped.
fn document_to_patch(document: Document) -> Result<(jiff::Timestamp, Patch), String> {
    let meta = document.document;
    let current = instant("document.tracking.current_release_date", &meta.tracking.current_release_date)?;
    let released = instant("document.tracking.initial_release_date", &meta.tracking.initial_release_date)?;
    let products = document.product_tree.as_ref().map(collect_products).unwrap_or_default();
    let mut fixes: Vec<Fix> = Vec::new();
    let mut fixed_products: Vec<FixedProduct> = Vec::new();
    let mut cvss: Option<Cvss> = None;
    let mut threat_severity = None;
    let mut references = Vec::new();
    let mut vendor = None;
    let mut product_names: Vec<String> = Vec::new();
    for vulnerability in &document.vulnerabilities {
        let status = vulnerability.product_status.as_ref();
        let fixed_ids = status.map(|s| s.fixed.iter().chain(&s.first_fixed)).into_iter().flatten();
        let affected_ids = status.map(|s| s.known_affected.iter()).into_iter().flatten();
        for id in fixed_ids.clone().chain(affected_ids) {
            if let Some(product) = products.get(id) {
                vendor = vendor.or_else(|| product.vendor.clone());
                if let Some(name) = &product.product_name
                    && !product_names.contains(name)
                {
                    product_names.push(name.clone());
                }
            }
        }
        for id in fixed_ids {
            let product =
                products.get(id).cloned().unwrap_or_else(|| Product { version: id.clone(), ..Product::default() });
            match classify(&product) {
                Named::Package(fix) if !fixes.contains(&fix) => fixes.push(fix),
                Named::Package(_) | Named::NotATarget => {}
                Named::Product => {
                    let fixed = FixedProduct {
                        product: product.product_name.clone().unwrap_or_else(|| id.clone()),
                        version: product.version.clone(),
                    };
                    if !fixed_products.contains(&fixed) {
                        fixed_products.push(fixed);
                    }
                }
            }
        }
        for score in vulnerability.scores.iter().filter_map(|s| s.cvss_v3.as_ref()) {
            if cvss.as_ref().and_then(|c| c.score).is_none_or(|best| score.base_score > best) {
                cvss = Some(Cvss { vector: score.vector_string.clone(), score: Some(score.base_score) });
            }
        }
        for threat in vulnerability.threats.iter().filter(|t| t.category == "impact") {
            threat_severity = threat_severity.max(severity_word(&threat.details).map(std::cmp::Reverse));
        }
        for remediation in vulnerability.remediations.iter().filter(|r| r.category == "vendor_fix") {
            if let Some(url) = &remediation.url
                && !references.contains(url)
            {
                references.push(url.clone());
            }
        }
    }
    let severity = if cvss.is_some() {
        None // derived from the score by the catalog
    } else {
        meta.aggregate_severity.as_ref().and_then(|a| severity_word(&a.text)).or(threat_severity.map(|r| r.0))
    };
    let description = meta
        .notes
        .iter()
        .find(|n| n.category == "summary")
        .or_else(|| meta.notes.iter().find(|n| n.category == "description"))
        .map(|n| n.text.clone());
    let cves = cve_ids(document.vulnerabilities.iter().filter_map(|v| v.cve.as_deref()));
    let patch = Patch {
        id: meta.tracking.id,
        title: meta.title,
        description,
        vendor: vendor.unwrap_or(meta.publisher.name),
        product: product_names.join(", "),
        category: Category::Security,
        severity,
        cvss,
        cves,
        released: Timestamp(released),
        supersedes: Vec::new(),
        applicability: Applicability::default(),
        fixes,
        fixed_products,
        detect: None,
        packages: Vec::new(),
        reboot: None,
        references,
    };
    Ok((current, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_red_hat_nevra() {
        let Some(Named::Package(fix)) = from_nevra("telnet-server-1:0.17-65.el7_6.x86_64", Some("x86_64")) else {
            panic!("a binary NEVRA is a package")
        };
        assert_eq!((fix.package.as_str(), fix.fixed_version.as_str()), ("telnet-server", "1:0.17-65.el7_6"));
        assert_eq!(fix.kind, FixKind::Binary);
        assert_eq!(from_nevra("telnet-1:0.17-65.el7_6.src", Some("src")), Some(Named::NotATarget));
        assert_eq!(from_nevra("1.0.0-rc2", None), None);
    }

    #[test]
    fn debug_packages_and_source_rpms_are_never_targets() {
        let product = |version: &str, arch: &str| Product {
            version: version.into(),
            architecture: Some(arch.into()),
            ..Product::default()
        };
        assert_eq!(classify(&product("openssl-debuginfo-1:3.0.7-27.el9.x86_64", "x86_64")), Named::NotATarget);
        assert_eq!(classify(&product("openssl-debugsource-1:3.0.7-27.el9.x86_64", "x86_64")), Named::NotATarget);
        assert_eq!(
            classify(&product("kernel-debuginfo-common-x86_64-5.14.0-427.el9.x86_64", "x86_64")),
            Named::NotATarget
        );
        assert_eq!(classify(&product("openssl-1:3.0.7-27.el9.src", "src")), Named::NotATarget);
        assert!(matches!(classify(&product("openssl-libs-1:3.0.7-27.el9.x86_64", "x86_64")), Named::Package(_)));
        assert_eq!(classify(&product("4.2.1", "x86_64")), Named::Product);
    }

    #[test]
    fn reads_package_urls() {
        let Some(Named::Package(fix)) =
            from_purl("pkg:deb/debian/openssl@3.0.15-1~deb12u1?arch=amd64&distro=debian-12")
        else {
            panic!("a deb purl is a package")
        };
        assert_eq!(fix.manager, PackageManager::Dpkg);
        assert_eq!((fix.package.as_str(), fix.fixed_version.as_str()), ("openssl", "3.0.15-1~deb12u1"));
        assert_eq!((fix.platform.as_deref(), fix.kind), (Some("debian-12"), FixKind::Binary));
        let Some(Named::Package(fix)) = from_purl("pkg:rpm/redhat/telnet@0.17-76.el8_5.1?arch=x86_64&epoch=1") else {
            panic!("an rpm purl is a package")
        };
        assert_eq!(fix.fixed_version, "1:0.17-76.el8_5.1");
        assert_eq!(from_purl("pkg:npm/left-pad@1.3.0"), None);
        assert_eq!(from_purl("pkg:rpm/redhat/telnet@0.17-76.el8_5.1?arch=src&epoch=1"), Some(Named::NotATarget));
        let Some(Named::Package(fix)) = from_purl("pkg:deb/ubuntu/vim@2:9.1?arch=source") else {
            panic!("a source purl is a source package")
        };
        assert_eq!((fix.package.as_str(), fix.kind), ("vim", FixKind::Source));
    }
}
