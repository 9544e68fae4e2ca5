//! Catalog import throughput: a 100,000-patch feed imported into an empty
//! sled store, re-imported unchanged (a sync that finds nothing new), and
//! re-synced as the next revision with 1% of the patches changed. Compared
//! with parsing alone, to show where the time goes.
//!
//! `cargo bench -p patchward-engine --bench catalog_import` (set
//! `PATCHWARD_BENCH_PATCHES` for another size). Prints patches per second
//! and the store's size on disk.

use std::time::Instant;

// As in the `patchward` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use patchward::catalog::{FeedLimits, ImportRequest, import, import as importers};
use patchward::policy::model::FeedFormat;
use patchward::store::Store;

fn feed(revision: u64, patches: usize, changed_every: usize) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..patches)
        .map(|i| {
            let changed = changed_every > 0 && i % changed_every == 0;
            serde_json::json!({
                "id": format!("KB{:07}", 5_000_000 + i),
                "title": format!("{} Cumulative Update {i}", if changed { "Revised" } else { "2026-11" }),
                "vendor": "Microsoft", "product": "Windows 11", "category": "security",
                "cvss": {"vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "score": 9.8},
                "cves": [format!("CVE-2026-{:05}", i % 99_999), format!("CVE-2025-{:05}", (i * 7) % 99_999)],
                "released": "2026-11-10T17:00:00Z",
                "supersedes": if i % 12 == 0 { vec![] } else { vec![format!("KB{:07}", 5_000_000 + i - 1)] },
                "applicability": {"platforms": ["windows-11-23h2"], "arch": ["x86_64"], "languages": ["en-US", "fi-FI"]},
                "packages": [{"type": "msu", "url": format!("https://download.example.com/kb{i}.msu"),
                              "sha256": format!("{:064x}", i), "size": 734_003_200u64, "args": ["/quiet", "/norestart"]}],
                "reboot": "always"
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"revision": revision, "generatedAt": "2026-11-20T00:00:00Z",
        "expiresAt": "2099-12-20T00:00:00Z", "patches": items}))
    .expect("serializes")
}

fn request(bytes: &[u8], now: jiff::Timestamp) -> ImportRequest<'_> {
    ImportRequest::snapshot("vendor", FeedFormat::Patchward, bytes, now)
}

fn report(label: &str, patches: usize, bytes: usize, seconds: f64) {
    println!(
        "{label:<34} {seconds:>8.3} s  {:>10.0} patches/s  {:>7.1} MB/s",
        patches as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
}

fn main() {
    let patches: usize = std::env::var("PATCHWARD_BENCH_PATCHES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let first = feed(1, patches, 0);
    let second = feed(2, patches, 100);
    println!("feed: {patches} patches, {:.1} MB", first.len() as f64 / 1e6);
    let now: jiff::Timestamp = "2026-11-21T00:00:00Z".parse().expect("a timestamp");

    let started = Instant::now();
    let parsed = importers::parse(FeedFormat::Patchward, &first, &FeedLimits::default()).expect("parses");
    report("parse only (serde_json)", parsed.patches.len(), first.len(), started.elapsed().as_secs_f64());
    drop(parsed);

    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(dir.path()).expect("a store");
    let started = Instant::now();
    let outcome = import(&store, &request(&first, now)).expect("imports");
    report("import into an empty store", outcome.patches, first.len(), started.elapsed().as_secs_f64());

    let started = Instant::now();
    let outcome = import(&store, &request(&first, now)).expect("re-imports");
    assert!(outcome.unchanged);
    report("re-sync, unchanged feed", outcome.patches, first.len(), started.elapsed().as_secs_f64());

    let started = Instant::now();
    let outcome = import(&store, &request(&second, now)).expect("re-syncs");
    assert_eq!(outcome.updated, patches.div_ceil(100));
    report("re-sync, next revision, 1% changed", outcome.patches, second.len(), started.elapsed().as_secs_f64());

    // Where the time of a re-sync goes.
    let third = feed(3, patches, 50);
    let started = Instant::now();
    let snapshot = patchward::catalog::CatalogSnapshot::read(&store).expect("reads");
    report("  phase: read the catalog", patches, 0, started.elapsed().as_secs_f64());
    let started = Instant::now();
    let (change, _) = patchward::catalog::plan_import(&snapshot, &request(&third, now)).expect("plans");
    report("  phase: plan (parse, diff, digest)", patches, third.len(), started.elapsed().as_secs_f64());
    let started = Instant::now();
    store.commit_catalog(change).expect("commits");
    report("  phase: commit (batch + flush)", patches, 0, started.elapsed().as_secs_f64());

    let started = Instant::now();
    store.verify_catalog().expect("verifies");
    report("verify (count and digest)", patches, 0, started.elapsed().as_secs_f64());

    println!("store size on disk: {:.1} MB", store.size_on_disk() as f64 / 1e6);
}
