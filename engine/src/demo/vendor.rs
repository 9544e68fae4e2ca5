//! The demo's vendor and office mirror, on one loopback HTTP server: a feed
//! in patchward's format with its detached ed25519 signature (`URL.sig`),
//! the package it points at, and the same package by sha256 as a mirror
//! holds it (`MIRROR/{sha256}`).
//!
//! The bundled example feed cannot serve here: its packages live at vendor
//! URLs that do not exist, and the demo touches nothing beyond loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use base64::Engine as _;
use ed25519_dalek::Signer as _;

/// One package the vendor publishes.
#[derive(Clone, Debug)]
pub struct Package {
    /// The file name under `/packages/`.
    pub file: String,
    pub bytes: Vec<u8>,
    pub sha256: String,
}

impl Package {
    pub fn new(file: impl Into<String>, bytes: Vec<u8>) -> Package {
        let sha256 = crate::catalog::sha256_hex(&bytes);
        Package { file: file.into(), bytes, sha256 }
    }
}

/// The demo's one advisory: `package` at `fixed_version` fixes a hole in
/// the versions before it.
#[derive(Clone, Debug)]
pub struct Advisory {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub product: String,
    pub fixed_version: String,
    pub package: Package,
}

struct Served {
    feed: Vec<u8>,
    signature: String,
    packages: Vec<Package>,
    /// Package bytes sent, from `/packages/` (the engine's media master)
    /// and from `/mirror/` (agents).
    vendor_downloads: AtomicUsize,
    mirror_downloads: AtomicUsize,
}

/// The running vendor.
pub struct Vendor {
    pub addr: SocketAddr,
    /// `ed25519:BASE64`, for the CatalogSource's `publicKey`.
    pub public_key: String,
    served: Arc<Served>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Vendor {
    /// Listens on 127.0.0.1 (a free port) and publishes `advisories` in a
    /// feed of revision 1 issued at `now`, signed with a key made for this
    /// run.
    pub async fn start(advisories: &[Advisory], now: jiff::Timestamp) -> anyhow::Result<Vendor> {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.context("failed to listen on 127.0.0.1 for the feed")?;
        let addr = listener.local_addr().context("failed to read the feed server's address")?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("failed to make the feed's signing key: {e}"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let feed = serde_json::to_vec_pretty(&feed_document(advisories, &format!("http://{addr}"), now))
            .context("failed to write the feed")?;
        let signature = base64::engine::general_purpose::STANDARD.encode(key.sign(&feed).to_bytes());
        let served = Arc::new(Served {
            feed,
            signature,
            packages: advisories.iter().map(|a| a.package.clone()).collect(),
            vendor_downloads: AtomicUsize::new(0),
            mirror_downloads: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/feed.json", axum::routing::get(feed_file))
            .route("/feed.json.sig", axum::routing::get(signature_file))
            .route("/packages/{file}", axum::routing::get(package_file))
            .route("/mirror/{sha256}", axum::routing::get(mirror_blob))
            .with_state(served.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // axum retries failed accepts itself; should the server still
            // end, the engine reports the feed unreachable, which the tour
            // waits on and reports.
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Vendor {
            addr,
            public_key: patchward_api::dsse::public_key_text(&key.verifying_key()),
            served,
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn feed_url(&self) -> String {
        self.url("/feed.json")
    }

    pub fn mirror_url(&self) -> String {
        self.url("/mirror")
    }

    /// Package downloads served from the vendor's URLs and from the mirror.
    pub fn downloads(&self) -> (usize, usize) {
        (self.served.vendor_downloads.load(Ordering::Relaxed), self.served.mirror_downloads.load(Ordering::Relaxed))
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

/// The feed in patchward's format (`schemas/feed.json`): released an hour
/// before `now`, good for 30 days.
pub fn feed_document(advisories: &[Advisory], base: &str, now: jiff::Timestamp) -> serde_json::Value {
    let hours = |h: i64| now.checked_add(jiff::SignedDuration::from_hours(h)).unwrap_or(now);
    let patches: Vec<serde_json::Value> = advisories
        .iter()
        .map(|a| {
            serde_json::json!({
                "id": a.id,
                "title": a.title,
                "description": format!("{} {} fixes a hole in every earlier version. It is a demo package: \
                    it installs usr/share/{}/version and nothing else.", a.product, a.fixed_version, a.product),
                "vendor": "patchward demo",
                "product": a.product,
                "category": "security",
                "severity": a.severity,
                "released": hours(-1),
                "applicability": {"platforms": ["debian-12"]},
                "fixes": [{"manager": "dpkg", "package": a.product, "fixedVersion": a.fixed_version}],
                "detect": {"anyOf": [{"package": {"manager": "dpkg", "name": a.product, "atLeast": a.fixed_version}}]},
                "packages": [{
                    "type": "deb",
                    "url": format!("{base}/packages/{}", a.package.file),
                    "sha256": a.package.sha256,
                    "size": a.package.bytes.len(),
                }],
                "reboot": "never",
            })
        })
        .collect();
    serde_json::json!({
        "revision": 1,
        "generatedAt": now,
        "expiresAt": hours(24 * 30),
        "patches": patches,
    })
}

async fn feed_file(State(served): State<Arc<Served>>) -> axum::response::Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], served.feed.clone()).into_response()
}

async fn signature_file(State(served): State<Arc<Served>>) -> String {
    served.signature.clone()
}

async fn package_file(State(served): State<Arc<Served>>, Path(file): Path<String>) -> axum::response::Response {
    match served.packages.iter().find(|p| p.file == file) {
        Some(package) => {
            served.vendor_downloads.fetch_add(1, Ordering::Relaxed);
            package.bytes.clone().into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn mirror_blob(State(served): State<Arc<Served>>, Path(sha256): Path<String>) -> axum::response::Response {
    match served.packages.iter().find(|p| p.sha256 == sha256) {
        Some(package) => {
            served.mirror_downloads.fetch_add(1, Ordering::Relaxed);
            package.bytes.clone().into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advisory() -> Advisory {
        Advisory {
            id: "PW-DEMO-0001".into(),
            title: "pw-hello 1.0".into(),
            severity: "medium".into(),
            product: "pw-hello".into(),
            fixed_version: "1.0".into(),
            package: Package::new("pw-hello_1.0_all.deb", b"not really a deb".to_vec()),
        }
    }

    #[test]
    fn the_feed_is_a_valid_patchward_feed() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let document = feed_document(&[advisory()], "http://127.0.0.1:1", now);
        let feed: crate::catalog::feed::Feed = serde_json::from_value(document).unwrap();
        assert_eq!(feed.patches.len(), 1);
        assert_eq!(feed.patches[0].packages[0].url, "http://127.0.0.1:1/packages/pw-hello_1.0_all.deb");
    }

    #[tokio::test]
    async fn the_served_feed_verifies_against_the_published_key_and_the_mirror_serves_by_sha256() {
        let now: jiff::Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
        let advisory = advisory();
        let vendor = Vendor::start(std::slice::from_ref(&advisory), now).await.unwrap();
        let client = crate::catalog::fetch::client(&crate::catalog::fetch::FetchLimits::default()).unwrap();
        let get = |url: String| {
            let client = client.clone();
            async move { client.get(url).send().await.unwrap().bytes().await.unwrap().to_vec() }
        };
        let feed = get(vendor.feed_url()).await;
        let signature = get(format!("{}.sig", vendor.feed_url())).await;
        crate::catalog::verify_signature(&feed, Some(&signature), &vendor.public_key).unwrap();
        let blob = get(format!("{}/{}", vendor.mirror_url(), advisory.package.sha256)).await;
        assert_eq!(blob, advisory.package.bytes);
        assert_eq!(vendor.downloads(), (0, 1));
        vendor.shutdown().await;
    }
}
