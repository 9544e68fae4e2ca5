//! Linux advisories as the distributions publish them, through the
//! catalog's library API: Debian's and Ubuntu's OSV records name source
//! packages (Debian's unrated), an OSV zip bundle imports with its bad
//! records skipped by name, and a CSAF provider on 127.0.0.1 syncs only
//! what changed, each document checked against its checksum and an OpenPGP
//! signature made here. Every refused sync leaves the store as it was.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use patchward::catalog::feed::{FixKind, Severity};
use patchward::catalog::sync::{SyncError, Synced, sync_source};
use patchward::catalog::{ImportError, ImportRequest, Refusal, import};
use patchward::policy::model::{FeedFormat, PackageManager, Retention};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward::store::{CatalogPatch, Store};
use pgp::composed::{ArmorOptions, DetachedSignature, KeyType, SecretKeyParamsBuilder, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::Password;
use rand::SeedableRng as _;

fn t(text: &str) -> jiff::Timestamp {
    text.parse().unwrap()
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/feeds").join(name)).unwrap()
}

fn patch(store: &Store, id: &str) -> CatalogPatch {
    let patches = patchward::store::Store::wait(store.catalog_patches()).unwrap();
    patches.into_iter().find(|p| p.patch.id == id).unwrap_or_else(|| panic!("{id} is not in the catalog"))
}

/// The store's logical content: every source state and record, encoded.
fn digest(store: &Store) -> String {
    let sources = serde_json::to_string(&patchward::store::Store::wait(store.catalog_sources()).unwrap()).unwrap();
    let patches = serde_json::to_string(&patchward::store::Store::wait(store.catalog_patches()).unwrap()).unwrap();
    patchward::catalog::sha256_hex(format!("{sources}\n{patches}").as_bytes())
}

fn osv(bytes: &[u8]) -> ImportRequest<'_> {
    ImportRequest::snapshot("osv", FeedFormat::Osv, bytes, t("2026-11-21T00:00:00Z"))
}

#[test]
fn debian_records_name_source_packages_and_are_unrated() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    import(&store, &osv(&sample("osv-debian.json"))).unwrap();
    let dsa = patch(&store, "DSA-5950-1");
    // No score and no vendor severity: unrated, never "informational".
    assert_eq!((dsa.severity, dsa.score), (Severity::Unrated, None));
    let fixes: Vec<_> =
        dsa.patch.fixes.iter().map(|f| (f.manager, f.package.as_str(), f.platform.as_deref(), f.kind)).collect();
    assert_eq!(
        fixes,
        [
            (PackageManager::Dpkg, "util-linux", Some("debian-12"), FixKind::Source),
            (PackageManager::Dpkg, "util-linux", Some("debian-13"), FixKind::Source),
        ]
    );
    assert_eq!(dsa.patch.cves, ["CVE-2026-5301"]);
    // A DLA without a purl still names the source.
    let dla = patch(&store, "DLA-4101-1");
    assert_eq!((dla.patch.fixes[0].platform.as_deref(), dla.patch.fixes[0].kind), (Some("debian-11"), FixKind::Source));
    assert_eq!(dla.severity, Severity::Unrated);
    // Unfixed in Debian 13: no fix there, but the platform is named.
    let cve = patch(&store, "DEBIAN-CVE-2026-5302");
    assert_eq!(cve.patch.fixes.len(), 1);
    assert_eq!(cve.patch.applicability.platforms, Some(vec!["debian-12".into(), "debian-13".into()]));
}

#[test]
fn ubuntu_records_carry_the_binaries_of_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    import(&store, &osv(&sample("osv-ubuntu.json"))).unwrap();
    let usn = patch(&store, "USN-8001-1");
    let noble = &usn.patch.fixes[0];
    assert_eq!((noble.package.as_str(), noble.kind), ("openssl", FixKind::Source));
    assert_eq!(noble.platform.as_deref(), Some("ubuntu-24.04"));
    // The -dbgsym packages live in another archive and are never targets.
    assert_eq!(noble.binaries, ["libssl-dev", "libssl-doc", "libssl3t64", "openssl"]);
    assert_eq!(usn.patch.fixes[1].binaries, ["libssl-dev", "libssl3", "openssl"]);
    // Ubuntu's priority rates it when no score is given.
    assert_eq!(usn.severity, Severity::Medium);
    assert_eq!(usn.patch.cves, ["CVE-2026-5410"]);
}

/// The records of a sample file, each as its own JSON text.
fn records(name: &str) -> Vec<(String, Vec<u8>)> {
    let value: serde_json::Value = serde_json::from_slice(&sample(name)).unwrap();
    let list = match value {
        serde_json::Value::Array(list) => list,
        one => vec![one],
    };
    list.into_iter().map(|r| (r["id"].as_str().unwrap().to_owned(), serde_json::to_vec(&r).unwrap())).collect()
}

fn zip_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        writer.start_file(name.as_str(), options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

#[test]
fn an_osv_zip_imports_its_records_and_names_those_it_skips() {
    let mut files: Vec<(String, Vec<u8>)> = records("osv-debian.json")
        .into_iter()
        .chain(records("osv-ubuntu.json"))
        .map(|(id, r)| (format!("{id}.json"), r))
        .collect();
    files.push(("BROKEN-1.json".into(), br#"{"id": "BROKEN-1", "modified": 5}"#.to_vec()));
    files.push(("garbage.json".into(), b"\x00 not json".to_vec()));
    files.push(("README".into(), b"not a record, not read".to_vec()));
    let bundle = zip_of(&files);
    assert!(bundle.starts_with(b"PK"));

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A pin the bundle does not match: refused, nothing written.
    let before = digest(&store);
    let mut pinned = osv(&bundle);
    pinned.pinned_sha256 = Some("0000000000000000000000000000000000000000000000000000000000000000");
    assert!(matches!(import(&store, &pinned), Err(ImportError::Refused(Refusal::Hash { .. }))));
    // A damaged bundle: refused, nothing written.
    let damaged = &bundle[..bundle.len() - 40];
    assert!(matches!(import(&store, &osv(damaged)), Err(ImportError::Refused(Refusal::Invalid { .. }))));
    assert_eq!(digest(&store), before);

    let report = import(&store, &osv(&bundle)).unwrap();
    assert_eq!(report.patches, 4, "{report:?}");
    assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    assert!(report.warnings.iter().any(|w| w.starts_with("BROKEN-1.json: record BROKEN-1 does not parse")));
    assert!(report.warnings.iter().any(|w| w.starts_with("garbage.json: not JSON")));
    assert_eq!(patch(&store, "USN-8001-1").patch.fixes[0].kind, FixKind::Source);
    patchward::store::Store::wait(store.verify_catalog()).unwrap();
}

#[test]
fn a_zip_that_unpacks_past_its_bound_is_refused() {
    // A record padded with a megabyte of blanks deflates to about a kilobyte.
    let padded = format!("{{\"id\": \"PAD-1\", \"modified\": \"2026-11-01T00:00:00Z\"{}}}", " ".repeat(1 << 20));
    let bundle = zip_of(&[("PAD-1.json".into(), padded.into_bytes())]);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut request = osv(&bundle);
    request.limits.max_bytes = 16 << 10;
    assert!(bundle.len() < 16 << 10, "{} bytes zipped", bundle.len());
    let Err(ImportError::Refused(refusal)) = import(&store, &request) else { panic!("a zip bomb imported") };
    assert!(refusal.to_string().contains("unpacks to more than 262144 bytes"), "{refusal}");
    assert!(patchward::store::Store::wait(store.catalog_sources()).unwrap().is_empty());
    // Within its bound, the same bundle imports.
    request.limits.max_bytes = 1 << 20;
    assert_eq!(import(&store, &request).unwrap().patches, 1);
}

#[test]
fn a_bad_record_in_an_array_is_skipped_by_its_id() {
    let text = br#"[{"id": "GOOD-1", "modified": "2026-11-01T00:00:00Z"},
                    {"id": "BAD-1", "modified": "last tuesday"},
                    {"id": "BAD-2", "affected": "not a list", "modified": "2026-11-01T00:00:00Z"}]"#;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let report = import(&store, &osv(text)).unwrap();
    assert_eq!(report.patches, 1);
    assert!(report.warnings[0].starts_with("record BAD-1 is skipped: `modified`"), "{:?}", report.warnings);
    assert!(report.warnings[1].starts_with("record BAD-2 does not parse"), "{:?}", report.warnings);
    // When no record parses, nothing imports: the file is refused.
    let none = br#"[{"id": "BAD-3", "modified": 1}]"#;
    let Err(ImportError::Refused(refusal)) = import(&store, &osv(none)) else { panic!("no record parses") };
    assert!(refusal.to_string().contains("record BAD-3"), "{refusal}");
}

/// An OpenPGP key made for the test (Ed25519, fixed seed) and its armored
/// public half.
fn openpgp_key(seed: u64) -> (SignedSecretKey, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Example Security <security@example.com>".into())
        .build()
        .unwrap();
    let secret = params.generate(&mut rng).unwrap().sign(&mut rng, &Password::empty()).unwrap();
    let public = secret.signed_public_key().to_armored_string(ArmorOptions::default()).unwrap();
    (secret, public)
}

fn sign(key: &SignedSecretKey, bytes: &[u8]) -> Vec<u8> {
    let rng = rand::rngs::StdRng::seed_from_u64(7);
    let signature =
        DetachedSignature::sign_binary_data(rng, &key.primary_key, &Password::empty(), HashAlgorithm::Sha256, bytes)
            .unwrap();
    signature.to_armored_bytes(ArmorOptions::default()).unwrap()
}

/// A CSAF advisory fixing `products` (Red Hat NEVRAs).
fn advisory(id: &str, current: &str, severity: Option<&str>, products: &[&str]) -> Vec<u8> {
    let names: Vec<_> = products.iter().map(|p| serde_json::json!({"name": p, "product_id": p})).collect();
    let mut document = serde_json::json!({
        "document": {
            "category": "csaf_security_advisory", "csaf_version": "2.0", "title": format!("{id}: openssl update"),
            "publisher": {"category": "vendor", "name": "Example Linux", "namespace": "https://example.com"},
            "tracking": {"id": id, "initial_release_date": "2026-11-01T00:00:00Z", "current_release_date": current,
                         "status": "final", "version": "1", "revision_history": []}
        },
        "product_tree": {"full_product_names": names},
        "vulnerabilities": [{"cve": "CVE-2026-4410", "product_status": {"fixed": products}}]
    });
    if let Some(severity) = severity {
        document["document"]["aggregate_severity"] = serde_json::json!({"text": severity});
    }
    serde_json::to_vec_pretty(&document).unwrap()
}

/// A CSAF provider's files, served on 127.0.0.1, and the paths asked for.
#[derive(Default)]
struct Site {
    files: Mutex<BTreeMap<String, Vec<u8>>>,
    requests: Mutex<Vec<String>>,
}

impl Site {
    fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_owned(), bytes);
    }

    fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

/// Serves the site's files; `changes.csv` with an ETag, answering a
/// matching If-None-Match with 304.
async fn serve(
    axum::extract::State(site): axum::extract::State<Arc<Site>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let path = uri.path().to_owned();
    site.requests.lock().unwrap().push(path.clone());
    let Some(bytes) = site.files.lock().unwrap().get(&path).cloned() else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", &patchward::catalog::sha256_hex(&bytes)[..16]);
    if path.ends_with("changes.csv") && headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(&etag) {
        return axum::http::StatusCode::NOT_MODIFIED.into_response();
    }
    ([("etag", etag)], bytes).into_response()
}

const DIRECTORY: &str = "/.well-known/csaf/white";

/// The provider: its key, its documents' change times, and the site.
struct Provider {
    key: SignedSecretKey,
    changes: BTreeMap<String, String>,
    site: Arc<Site>,
    base: String,
}

impl Provider {
    async fn start() -> (Provider, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let site = Arc::new(Site::default());
        let app = axum::Router::new().fallback(serve).with_state(site.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let metadata = serde_json::json!({
            "canonical_url": format!("{base}/.well-known/csaf/provider-metadata.json"),
            "distributions": [{"directory_url": format!("{base}{DIRECTORY}/")}],
            "last_updated": "2026-11-20T00:00:00Z", "list_on_CSAF_aggregators": true, "metadata_version": "2.0",
            "mirror_on_CSAF_aggregators": true, "role": "csaf_trusted_provider",
            "publisher": {"category": "vendor", "name": "Example Linux", "namespace": "https://example.com"}
        });
        site.put("/.well-known/csaf/provider-metadata.json", serde_json::to_vec(&metadata).unwrap());
        let (key, public) = openpgp_key(1);
        (Provider { key, changes: BTreeMap::new(), site, base }, public)
    }

    /// Publishes a document with its `.sha256` and `.asc`, and lists it in
    /// `changes.csv` as changed at `at`.
    fn publish(&mut self, path: &str, document: Vec<u8>, at: &str) {
        let name = path.rsplit('/').next().unwrap();
        let full = format!("{DIRECTORY}/{path}");
        let checksum = format!("{}  {name}\n", patchward::catalog::sha256_hex(&document));
        self.site.put(&format!("{full}.sha256"), checksum.into_bytes());
        self.site.put(&format!("{full}.asc"), sign(&self.key, &document));
        self.site.put(&full, document);
        self.changed(path, at);
    }

    fn changed(&mut self, path: &str, at: &str) {
        self.changes.insert(path.to_owned(), at.to_owned());
        let mut rows: Vec<_> = self.changes.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1));
        let csv: String = rows.iter().map(|(path, at)| format!("\"{path}\",\"{at}\"\n")).collect();
        self.site.put(&format!("{DIRECTORY}/changes.csv"), csv.into_bytes());
    }
}

/// A policy folder with one CatalogSource of format csaf at `url`.
fn policy(dir: &Path, url: &str, extra: &str) -> patchward::policy::Policy {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let yaml = format!(
        "apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: example}}\nspec:\n  url: \"{url}\"\n  \
         format: csaf\n  retries: 0\n  timeout: 5s\n{extra}"
    );
    std::fs::write(policies.join("catalog.yaml"), yaml).unwrap();
    let load = load_policy(&PolicySource::Folder(policies), &PolicyLimits::default()).unwrap();
    load.policy.unwrap_or_else(|| panic!("{:#?}", load.diagnostics))
}

fn key_yaml(public: &str) -> String {
    let indented: String = public.lines().map(|l| format!("    {l}\n")).collect();
    format!("  openpgpKey: |\n{indented}")
}

async fn sync(store: &Store, policy: &patchward::policy::Policy, now: &str) -> Result<Synced, SyncError> {
    let client = patchward::catalog::fetch::client(&Default::default()).unwrap();
    let source = policy.catalog_sources.get("example").unwrap();
    sync_source(store, &client, source, Retention::default(), true, t(now), &|_, _| {}).await
}

fn refusal(result: Result<Synced, SyncError>) -> Refusal {
    match result {
        Err(SyncError::Import(ImportError::Refused(refusal))) => refusal,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const OPENSSL: &[&str] = &[
    "openssl-1:3.2.2-6.el9_5.1.src",
    "openssl-1:3.2.2-6.el9_5.1.x86_64",
    "openssl-libs-1:3.2.2-6.el9_5.1.x86_64",
    "openssl-debuginfo-1:3.2.2-6.el9_5.1.x86_64",
    "openssl-debugsource-1:3.2.2-6.el9_5.1.x86_64",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csaf_provider_syncs_only_what_changed_and_refuses_what_does_not_verify() {
    let (mut provider, public) = Provider::start().await;
    provider.publish(
        "2026/exsa-2026_0001.json",
        advisory("EXSA-2026:0001", "2026-11-01T00:00:00Z", Some("Important"), OPENSSL),
        "2026-11-01T00:00:00+00:00",
    );
    provider.publish(
        "2026/exsa-2026_0002.json",
        advisory("EXSA-2026:0002", "2026-11-02T00:00:00Z", None, &["curl-7.76.1-29.el9.x86_64"]),
        "2026-11-02T00:00:00+00:00",
    );
    let dir = tempfile::tempdir().unwrap();
    let policy =
        policy(dir.path(), &format!("{}/.well-known/csaf/provider-metadata.json", provider.base), &key_yaml(&public));
    let store = Store::open(&dir.path().join("data")).unwrap();

    // First sync: every document, each with its checksum and signature.
    let Synced::Imported(report) = sync(&store, &policy, "2026-11-20T00:00:00Z").await.unwrap() else { panic!() };
    assert_eq!((report.patches, report.added), (2, 2), "{report:?}");
    assert_eq!(provider.site.take_requests().len(), 2 + 2 * 3);
    let first = patch(&store, "EXSA-2026:0001");
    assert_eq!(first.severity, Severity::High);
    // Binary NEVRAs only: the source RPM and the debug packages are dropped.
    let packages: Vec<_> = first.patch.fixes.iter().map(|f| (f.package.as_str(), f.kind)).collect();
    assert_eq!(packages, [("openssl", FixKind::Binary), ("openssl-libs", FixKind::Binary)]);
    assert_eq!(patch(&store, "EXSA-2026:0002").severity, Severity::Unrated);
    let state = patchward::store::Store::wait(store.catalog_source("example")).unwrap().unwrap();
    assert_eq!(state.csaf_provider.unwrap().changes_through, Some(t("2026-11-02T00:00:00Z")));

    // Nothing changed: changes.csv answers 304, no document is fetched.
    assert!(matches!(sync(&store, &policy, "2026-11-21T00:00:00Z").await.unwrap(), Synced::NotModified(_)));
    assert_eq!(provider.site.take_requests().len(), 2);

    // One document revised: only it is fetched; the other keeps its patch.
    provider.publish(
        "2026/exsa-2026_0002.json",
        advisory("EXSA-2026:0002", "2026-11-22T00:00:00Z", Some("Moderate"), &["curl-7.76.1-30.el9.x86_64"]),
        "2026-11-22T00:00:00+00:00",
    );
    let Synced::Imported(report) = sync(&store, &policy, "2026-11-22T01:00:00Z").await.unwrap() else { panic!() };
    assert_eq!((report.patches, report.updated), (1, 1), "{report:?}");
    let asked = provider.site.take_requests();
    assert_eq!(asked.iter().filter(|p| p.contains("exsa-2026_0002.json")).count(), 3, "{asked:?}");
    assert_eq!(asked.len(), 5, "{asked:?}");
    assert_eq!(patch(&store, "EXSA-2026:0002").severity, Severity::Medium);
    assert_eq!(patch(&store, "EXSA-2026:0001"), first);
    patchward::store::Store::wait(store.verify_catalog()).unwrap();
    let good = digest(&store);

    // Tampered: the document changes but its checksum file does not.
    let path = format!("{DIRECTORY}/2026/exsa-2026_0001.json");
    let tampered = advisory("EXSA-2026:0001", "2026-11-23T00:00:00Z", Some("Low"), OPENSSL);
    provider.site.put(&path, tampered.clone());
    provider.changed("2026/exsa-2026_0001.json", "2026-11-23T00:00:00+00:00");
    let refused = refusal(sync(&store, &policy, "2026-11-23T01:00:00Z").await);
    assert!(
        matches!(&refused, Refusal::Checksum { document, .. } if document.ends_with("exsa-2026_0001.json")),
        "{refused}"
    );
    assert_eq!(digest(&store), good);

    // Checksum right, signature by another key: refused too.
    provider.site.put(
        &format!("{path}.sha256"),
        format!("{}  exsa-2026_0001.json", patchward::catalog::sha256_hex(&tampered)).into_bytes(),
    );
    provider.site.put(&format!("{path}.asc"), sign(&openpgp_key(2).0, &tampered));
    let refused = refusal(sync(&store, &policy, "2026-11-23T02:00:00Z").await);
    assert!(matches!(&refused, Refusal::Signature(why) if why.contains("exsa-2026_0001.json.asc")), "{refused}");
    // No signature at all: refused.
    provider.site.files.lock().unwrap().remove(&format!("{path}.asc"));
    let refused = refusal(sync(&store, &policy, "2026-11-23T03:00:00Z").await);
    assert!(refused.to_string().contains("missing"), "{refused}");
    assert_eq!(digest(&store), good);

    // Signed properly at last: the revision goes in.
    provider.site.put(&format!("{path}.asc"), sign(&provider.key, &tampered));
    let Synced::Imported(report) = sync(&store, &policy, "2026-11-23T04:00:00Z").await.unwrap() else { panic!() };
    assert_eq!(report.updated, 1);
    assert_eq!(patch(&store, "EXSA-2026:0001").severity, Severity::Low);
}

#[test]
fn the_openpgp_key_is_checked_when_the_policy_is() {
    let diagnostics = |extra: &str, format: &str| {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        let yaml = format!(
            "apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: example}}\nspec:\n  url: \
             \"https://example.com/.well-known/csaf/provider-metadata.json\"\n  format: {format}\n{extra}"
        );
        std::fs::write(policies.join("catalog.yaml"), yaml).unwrap();
        let load = load_policy(&PolicySource::Folder(policies), &PolicyLimits::default()).unwrap();
        load.diagnostics.into_iter().map(|d| d.message).collect::<Vec<_>>().join("\n")
    };
    let (_, public) = openpgp_key(3);
    assert_eq!(diagnostics(&key_yaml(&public), "csaf"), "");
    assert_eq!(diagnostics("  openpgpKey: /etc/patchward/example.asc\n", "csaf"), "");
    let relative = diagnostics("  openpgpKey: keys/example.asc\n", "csaf");
    assert!(relative.contains("`openpgpKey` must be an armored public key"), "{relative}");
    let broken = diagnostics(
        &key_yaml("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----"),
        "csaf",
    );
    assert!(broken.contains("`openpgpKey` is not an OpenPGP public key"), "{broken}");
    let osv = diagnostics(&key_yaml(&public), "osv");
    assert!(osv.contains("`openpgpKey` applies to `format: csaf` only"), "{osv}");
    let pinned = diagnostics(&format!("{}  sha256: \"{}\"\n", key_yaml(&public), "0".repeat(64)), "csaf");
    assert!(pinned.contains("`sha256` does not apply to a CSAF provider"), "{pinned}");
}
