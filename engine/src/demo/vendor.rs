//! The demo's vendor and office mirror, on one loopback HTTP server, as a
//! Linux distribution publishes its fixes:
//!
//! - `/osv/ID.json`: the advisory, one Debian-style OSV record (ecosystem
//!   `Debian:12`, the *source* package and the version that fixes it, no
//!   severity, no download URL), with a detached ed25519 signature at
//!   `/osv/ID.json.sig`. Debian signs no OSV file; the demo's CatalogSource
//!   keeps `publicKey` anyway, which the engine checks for any format.
//! - `/debian/…`: the signed apt repository holding every version of the
//!   package ([`super::archive`]), where the devices' apt finds the fix and,
//!   on a retraction, the version to go back to.
//! - `/mirror/{sha256}`: the same `.deb` files by sha256, as an office
//!   mirror (a Location's `mirrors`) holds them. The agents try it first.
//!
//! Each package download is counted by where it came from.
//!
//! The bundled example feed cannot serve here: its packages live at vendor
//! URLs that do not exist, and the demo touches nothing beyond loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde::Serialize;

use super::archive::{Archive, ArchiveKey, PoolPackage, Suite};

/// The demo's one advisory: the source package `package`, fixed in
/// `fixed_version`, for the distribution release `ecosystem`.
#[derive(Clone, Debug)]
pub struct Advisory {
    pub id: String,
    /// Debian's: `SOURCE - security update`.
    pub summary: String,
    pub details: String,
    /// OSV's ecosystem: `Debian:12`.
    pub ecosystem: String,
    pub package: String,
    pub fixed_version: String,
}

/// An OSV record (https://ossf.github.io/osv-schema/), the fields a
/// Debian Security Advisory's record carries.
#[derive(Debug, Serialize)]
pub struct OsvRecord {
    pub schema_version: &'static str,
    pub id: String,
    pub summary: String,
    pub details: String,
    pub published: jiff::Timestamp,
    pub modified: jiff::Timestamp,
    pub affected: Vec<OsvAffected>,
}

#[derive(Debug, Serialize)]
pub struct OsvAffected {
    pub package: OsvPackage,
    pub ranges: Vec<OsvRange>,
}

#[derive(Debug, Serialize)]
pub struct OsvPackage {
    pub ecosystem: String,
    pub name: String,
    /// `arch=source`: the name is the source package's.
    pub purl: String,
}

#[derive(Debug, Serialize)]
pub struct OsvRange {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub events: Vec<OsvEvent>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OsvEvent {
    Introduced(String),
    Fixed(String),
}

/// The advisory as Debian's OSV export writes a DSA: every version before
/// the fix affected, published and modified an hour before `now`.
pub fn osv_record(advisory: &Advisory, now: jiff::Timestamp) -> OsvRecord {
    let released = now.checked_sub(jiff::SignedDuration::from_hours(1)).unwrap_or(now);
    OsvRecord {
        schema_version: "1.6.0",
        id: advisory.id.clone(),
        summary: advisory.summary.clone(),
        details: advisory.details.clone(),
        published: released,
        modified: released,
        affected: vec![OsvAffected {
            package: OsvPackage {
                ecosystem: advisory.ecosystem.clone(),
                name: advisory.package.clone(),
                purl: format!("pkg:deb/debian/{}?arch=source", advisory.package),
            },
            ranges: vec![OsvRange {
                kind: "ECOSYSTEM",
                events: vec![OsvEvent::Introduced("0".into()), OsvEvent::Fixed(advisory.fixed_version.clone())],
            }],
        }],
    }
}

/// Where a package was downloaded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    Repository,
    Mirror,
}

struct Served {
    /// `ID.json`, under `/osv/`.
    feed_file: String,
    feed: Vec<u8>,
    signature: String,
    archive: Archive,
    packages: Vec<PoolPackage>,
    downloads: Mutex<BTreeMap<(Route, String), usize>>,
}

impl Served {
    fn count(&self, route: Route, sha256: &str) {
        let mut downloads = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        *downloads.entry((route, sha256.to_owned())).or_default() += 1;
    }
}

/// How often one package was downloaded, by where from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Downloads {
    /// From the apt repository's pool (`/debian/pool/…`).
    pub repository: usize,
    /// From the office mirror (`/mirror/{sha256}`).
    pub mirror: usize,
}

/// The running vendor.
pub struct Vendor {
    pub addr: SocketAddr,
    /// The advisory's id.
    pub advisory: String,
    /// `ed25519:BASE64`, for the CatalogSource's `publicKey`.
    pub feed_key: String,
    /// The apt repository's public key, armored: what devices trust.
    pub archive_key: String,
    pub archive_fingerprint: String,
    /// The repository's suite, for the sources line.
    pub suite: String,
    served: Arc<Served>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Vendor {
    /// Listens on 127.0.0.1 (a free port) and publishes `advisory` (signed
    /// with an ed25519 key made for this run, released an hour before
    /// `suite.date`) and `packages` in the apt repository `suite` (signed
    /// with an OpenPGP key made for this run).
    pub async fn start(advisory: &Advisory, packages: &[PoolPackage], suite: &Suite) -> anyhow::Result<Vendor> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to listen on 127.0.0.1 for the vendor")?;
        let addr = listener.local_addr().context("failed to read the vendor's address")?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("failed to make the feed's signing key: {e}"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let feed =
            serde_json::to_vec_pretty(&osv_record(advisory, suite.date)).context("failed to write the OSV record")?;
        let archive_key = ArchiveKey::generate("patchward demo archive <demo@patchward.invalid>")?;
        let served = Arc::new(Served {
            feed_file: format!("{}.json", advisory.id),
            signature: base64::engine::general_purpose::STANDARD.encode(key.sign(&feed).to_bytes()),
            feed,
            archive: Archive::build(suite, packages, &archive_key)?,
            packages: packages.to_vec(),
            downloads: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/osv/{file}", axum::routing::get(osv_file))
            .route("/debian/{*path}", axum::routing::get(archive_file))
            .route("/mirror/{sha256}", axum::routing::get(mirror_blob))
            .with_state(served.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // axum retries failed accepts itself; should the server still
            // end, the engine reports the feed unreachable and the agents
            // the repository, which the tour waits on and reports.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Vendor {
            addr,
            advisory: advisory.id.clone(),
            feed_key: patchward_api::dsse::public_key_text(&key.verifying_key()),
            archive_key: archive_key.public_armored,
            archive_fingerprint: archive_key.fingerprint,
            suite: suite.suite.clone(),
            served,
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The OSV record's URL (its signature is this + `.sig`).
    pub fn feed_url(&self) -> String {
        self.url(&format!("/osv/{}", self.served.feed_file))
    }

    /// The apt repository's base URL, for the sources line.
    pub fn repository_url(&self) -> String {
        self.url("/debian")
    }

    pub fn mirror_url(&self) -> String {
        self.url("/mirror")
    }

    /// How often the package `sha256` was downloaded, by where from.
    pub fn downloads(&self, sha256: &str) -> Downloads {
        let downloads = self.served.downloads.lock().unwrap_or_else(|p| p.into_inner());
        let of = |route| downloads.get(&(route, sha256.to_owned())).copied().unwrap_or(0);
        Downloads { repository: of(Route::Repository), mirror: of(Route::Mirror) }
    }

    /// Stops listening; requests in flight finish.
    pub async fn shutdown(&self) {
        let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

async fn osv_file(State(served): State<Arc<Served>>, Path(file): Path<String>) -> axum::response::Response {
    if file == served.feed_file {
        ([(axum::http::header::CONTENT_TYPE, "application/json")], served.feed.clone()).into_response()
    } else if file.strip_suffix(".sig") == Some(served.feed_file.as_str()) {
        served.signature.clone().into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

async fn archive_file(State(served): State<Arc<Served>>, Path(path): Path<String>) -> axum::response::Response {
    let Some(bytes) = served.archive.file(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some(package) = served.packages.iter().find(|p| p.pool_path() == path) {
        served.count(Route::Repository, &package.sha256);
    }
    bytes.to_vec().into_response()
}

async fn mirror_blob(State(served): State<Arc<Served>>, Path(sha256): Path<String>) -> axum::response::Response {
    match served.packages.iter().find(|p| p.sha256 == sha256) {
        Some(package) => {
            served.count(Route::Mirror, &package.sha256);
            package.bytes.clone().into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::debian::Control;

    fn advisory() -> Advisory {
        Advisory {
            id: "DSA-DEMO-0001".into(),
            summary: "pw-hello - security update".into(),
            details: "pw-hello 1.0 fixes a remote crash.".into(),
            ecosystem: "Debian:12".into(),
            package: "pw-hello".into(),
            fixed_version: "1.0".into(),
        }
    }

    fn suite(now: jiff::Timestamp) -> Suite {
        Suite {
            origin: "patchward demo".into(),
            label: "patchward demo".into(),
            suite: "bookworm-security".into(),
            architecture: "amd64".into(),
            description: "test".into(),
            date: now,
        }
    }

    /// The engine's OSV importer reads the record as Debian's: a source
    /// fix for `debian-12`, unrated, nothing to download.
    #[test]
    fn the_record_imports_as_an_unrated_debian_source_fix() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let bytes = serde_json::to_vec(&osv_record(&advisory(), now)).unwrap();
        let feed = crate::catalog::import::parse(
            crate::policy::model::FeedFormat::Osv,
            &bytes,
            &crate::catalog::FeedLimits::default(),
        )
        .unwrap();
        assert_eq!(feed.warnings, Vec::<String>::new());
        let [patch] = &feed.patches[..] else { panic!("{:?}", feed.patches) };
        assert_eq!(patch.id, "DSA-DEMO-0001");
        assert_eq!(patch.title, "pw-hello - security update");
        assert_eq!((patch.severity, &patch.cvss), (None, &None));
        assert_eq!(patch.applicability.platforms.as_deref(), Some(&["debian-12".to_owned()][..]));
        assert!(patch.packages.is_empty() && patch.detect.is_none());
        let [fix] = &patch.fixes[..] else { panic!("{:?}", patch.fixes) };
        assert_eq!((fix.package.as_str(), fix.fixed_version.as_str()), ("pw-hello", "1.0"));
        assert_eq!((fix.platform.as_deref(), fix.kind), (Some("debian-12"), crate::catalog::feed::FixKind::Source));
    }

    #[tokio::test]
    async fn serves_the_signed_record_the_repository_and_the_mirror_and_counts_downloads() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let package = PoolPackage::new(Control::demo("pw-hello", "1.0"), b"not really a deb".to_vec());
        let vendor = Vendor::start(&advisory(), std::slice::from_ref(&package), &suite(now)).await.unwrap();
        let client = crate::catalog::fetch::client(&crate::catalog::fetch::FetchLimits::default()).unwrap();
        let get = |url: String| {
            let client = client.clone();
            async move {
                let response = client.get(url).send().await.unwrap();
                (response.status().as_u16(), response.bytes().await.unwrap().to_vec())
            }
        };
        assert!(vendor.feed_url().ends_with("/osv/DSA-DEMO-0001.json"), "{}", vendor.feed_url());
        let (_, feed) = get(vendor.feed_url()).await;
        let (_, signature) = get(format!("{}.sig", vendor.feed_url())).await;
        crate::catalog::verify_signature(&feed, Some(&signature), &vendor.feed_key).unwrap();
        let base = vendor.repository_url();
        let (status, in_release) = get(format!("{base}/dists/bookworm-security/InRelease")).await;
        assert_eq!(status, 200);
        assert!(in_release.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"));
        let (status, deb) = get(format!("{base}/{}", package.pool_path())).await;
        assert_eq!((status, deb.as_slice()), (200, package.bytes.as_slice()));
        let (_, blob) = get(format!("{}/{}", vendor.mirror_url(), package.sha256)).await;
        assert_eq!(blob, package.bytes);
        assert_eq!(get(format!("{base}/dists/other/InRelease")).await.0, 404);
        assert_eq!(vendor.downloads(&package.sha256), Downloads { repository: 1, mirror: 1 });
        vendor.shutdown().await;
    }
}
