//! Issue 7's end-to-end test: a real engine on 127.0.0.1 following a real
//! git policy repository and a real feed, and two real `patchward-agent`
//! processes, each with its own sandbox dpkg root and state directory.
//!
//! A commit approves a patch (a .deb built here with dpkg-deb) in two
//! stages: the pilot agent installs it at once, the production agent only
//! after the stage delay (the engine's fake clock, and the agents' clock
//! file, moved by a day). Both report back and the compliance view says
//! so. Their Location's mirror serves tampered bytes: the agents refuse
//! them, fall back to the engine's copy, and dpkg runs once, on the real
//! bytes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use patchward::clock::{Clock, FakeClock};
use patchward::daemon::config::ServeConfig;
use patchward_agent::install::deb::{DebSpec, DpkgRoot};
use patchward_tests::{HttpServer, Reply, binary, git};

const T0: &str = "2026-11-24T12:00:00Z";

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A sandbox root that looks like a Debian 12 machine with pw-hello 0.9.
fn sandbox(dir: &Path, name: &str, old_deb: &Path) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian 12\"\n").unwrap();
    std::fs::write(root.join("etc/hostname"), format!("{name}\n")).unwrap();
    std::fs::write(root.join("etc/timezone"), "Europe/Helsinki\n").unwrap();
    let dpkg = DpkgRoot::sandbox(&root).unwrap();
    let argv = dpkg.dpkg_argv();
    let status = Command::new(&argv[0]).args(&argv[1..]).arg("--install").arg(old_deb).output().unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    root
}

fn installed_version(root: &Path) -> Option<String> {
    DpkgRoot::sandbox(root).unwrap().status("pw-hello").unwrap().filter(|s| s.is_installed()).map(|s| s.version)
}

fn policy_repository(dir: &Path, feed_url: &str, mirror: &str) -> PathBuf {
    let repo = dir.join("policies");
    std::fs::create_dir_all(&repo).unwrap();
    let write = |name: &str, text: String| std::fs::write(repo.join(name), text).unwrap();
    write(
        "scopes.yaml",
        "apiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: pilot}\nspec: {selector: 'device.labels[\"ring\"] == \"pilot\"'}\n\
         ---\napiVersion: patchward.dev/v1\nkind: Scope\nmetadata: {name: production}\nspec: {selector: 'device.labels[\"ring\"] == \"production\"'}\n"
            .into(),
    );
    write(
        "policies.yaml",
        "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: at-once}\nspec: {mode: immediate, reboot: never}\n".into(),
    );
    write(
        "catalog.yaml",
        format!(
            "apiVersion: patchward.dev/v1\nkind: CatalogSource\nmetadata: {{name: vendor}}\n\
             spec: {{url: '{feed_url}', format: patchward, interval: 24h, retries: 0}}\n"
        ),
    );
    write(
        "locations.yaml",
        format!(
            "apiVersion: patchward.dev/v1\nkind: Location\nmetadata: {{name: everywhere}}\n\
             spec: {{networks: [0.0.0.0/0], mirrors: ['{mirror}']}}\n"
        ),
    );
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "scopes, a policy, the feed and the office's mirror"]);
    repo
}

fn approve(repo: &Path) {
    std::fs::write(
        repo.join("rules.yaml"),
        "apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: critical}\n\
         spec:\n  priority: 100\n  match: 'patch.severity == \"critical\"'\n  action: approve\n  stages:\n\
         \x20   - {scope: pilot, after: 0h, policy: at-once}\n\
         \x20   - {scope: production, after: 24h, policy: at-once}\n",
    )
    .unwrap();
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "approve critical patches: pilot first, production a day later"]);
}

struct AgentProcess {
    name: &'static str,
    state: PathBuf,
    root: PathBuf,
    config: PathBuf,
    clock: PathBuf,
}

impl AgentProcess {
    fn new(dir: &Path, name: &'static str, ring: &str, root: PathBuf, clock: &Path) -> AgentProcess {
        let config = dir.join(format!("{name}.yaml"));
        let state = dir.join(format!("{name}-state"));
        std::fs::write(
            &config,
            format!(
                "state: {}\nruntime: {}\nroot: {}\nlabels: {{ring: {ring}}}\n",
                state.display(),
                dir.join(format!("{name}-run")).display(),
                root.display()
            ),
        )
        .unwrap();
        AgentProcess { name, state, root, config, clock: clock.to_owned() }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let output = Command::new(binary("patchward-agent", "patchward-agent"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("PATCHWARD_AGENT_CLOCK_FILE", &self.clock)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} {args:?}: {}\n{}",
            self.name,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        output
    }
}

async fn admin_get(base: &str, admin: &str, path: &str) -> serde_json::Value {
    let client = reqwest::Client::new();
    let response = client.get(format!("{base}{path}")).bearer_auth(admin).send().await.unwrap();
    assert!(response.status().is_success(), "{path}: {}", response.status());
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

/// Waits for the engine's own work (a reconcile, a catalog sync, the media
/// master): a condition on real tasks, bounded, never time passing.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_rolls_out_to_pilot_then_production_and_tampered_mirror_bytes_never_install() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    let old_deb = DebSpec::new("pw-hello", "0.9").build(&packages).unwrap();
    let new_deb = DebSpec::new("pw-hello", "1.0").build(&packages).unwrap();
    let new_bytes = std::fs::read(&new_deb).unwrap();
    let digest = sha256_hex(&new_bytes);

    // The vendor serves the feed and the package; the office mirror serves
    // the right length of the wrong bytes.
    let feed = serde_json::json!({
        "revision": 1, "generatedAt": "2026-11-20T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z",
        "patches": [{
            "id": "PW-2026-0001", "title": "pw-hello 1.0 fixes a critical hole", "vendor": "patchward",
            "product": "pw-hello", "category": "security", "severity": "critical", "released": "2026-11-23T00:00:00Z",
            "fixes": [{"manager": "dpkg", "package": "pw-hello", "fixedVersion": "1.0"}],
            "detect": {"anyOf": [{"package": {"manager": "dpkg", "name": "pw-hello", "atLeast": "1.0"}}]},
            "packages": [{"type": "deb", "url": "PACKAGE_URL", "sha256": digest, "size": new_bytes.len()}]
        }]
    });
    let vendor_bytes = new_bytes.clone();
    let feed_text = Arc::new(std::sync::Mutex::new(String::new()));
    let served_feed = feed_text.clone();
    let vendor = HttpServer::start(move |request| match request.path.as_str() {
        "/feed.json" => Reply::ok(served_feed.lock().unwrap().clone()),
        "/pw-hello_1.0.deb" => Reply::ok(vendor_bytes.clone()),
        _ => Reply::status(404),
    });
    *feed_text.lock().unwrap() = feed.to_string().replace("PACKAGE_URL", &vendor.url("/pw-hello_1.0.deb"));
    let mut tampered = new_bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    let mirror = HttpServer::start(move |_| Reply::ok(tampered.clone()));

    let repo = policy_repository(dir.path(), &vendor.url("/feed.json"), &mirror.url("/blobs"));
    let clock = Arc::new(FakeClock::new(T0.parse().unwrap()));
    let config = ServeConfig {
        data: dir.path().join("engine"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        policies: repo.display().to_string(),
        bundled_feed: false,
        ..ServeConfig::default()
    };
    let engine_clock: Arc<dyn Clock> = clock.clone();
    let running = patchward::daemon::serve::start(config, engine_clock).await.unwrap();
    let base = format!("http://{}", running.api);
    let admin = std::fs::read_to_string(&running.admin_token_file).unwrap().trim().to_owned();
    until("the feed imported", || async {
        admin_get(&base, &admin, "/api/v1/status").await["catalogRevision"].as_u64() == Some(1)
    })
    .await;

    let clock_file = dir.path().join("agent-clock");
    std::fs::write(&clock_file, T0).unwrap();
    let pilot =
        AgentProcess::new(dir.path(), "pilot-01", "pilot", sandbox(dir.path(), "pilot-01", &old_deb), &clock_file);
    let production =
        AgentProcess::new(dir.path(), "prod-01", "production", sandbox(dir.path(), "prod-01", &old_deb), &clock_file);
    let token = {
        let response = reqwest::Client::new()
            .post(format!("{base}/api/v1/tokens"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(serde_json::json!({"kind": "enrollment", "uses": 2}).to_string())
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        body["token"].as_str().unwrap().to_owned()
    };
    for agent in [&pilot, &production] {
        agent.run(&["enroll", "--server", &base, "--token", &token]);
        let identity = std::fs::metadata(agent.state.join("identity.json")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&identity.permissions()) & 0o777, 0o600);
    }

    // Nothing approved yet: a pass changes nothing.
    for agent in [&pilot, &production] {
        agent.run(&["run", "--once"]);
        assert_eq!(installed_version(&agent.root).as_deref(), Some("0.9"), "{}", agent.name);
    }

    // The approval lands, through the webhook-equivalent sync.
    approve(&repo);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let sync = reqwest::Client::new().post(format!("{base}/api/v1/sync")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(sync.status().as_u16(), 202);
    until("the approval in force", || async {
        admin_get(&base, &admin, "/api/v1/status").await["applied"]["revision"].as_str() == Some(commit.as_str())
    })
    .await;
    until("the media master has the package", || async {
        let response = reqwest::Client::new()
            .get(format!("{base}/api/v1/blobs/{digest}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        response.status().is_success()
    })
    .await;

    pilot.run(&["run", "--once"]);
    assert_eq!(installed_version(&pilot.root).as_deref(), Some("1.0"), "the pilot installs at once");
    production.run(&["run", "--once"]);
    assert_eq!(installed_version(&production.root).as_deref(), Some("0.9"), "production waits for its stage");

    // A day later (both clocks), production's stage is due.
    clock.advance(jiff::SignedDuration::from_hours(25));
    std::fs::write(&clock_file, clock.now().to_string()).unwrap();
    let sync = reqwest::Client::new().post(format!("{base}/api/v1/sync")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(sync.status().as_u16(), 202);
    until("production's stage due", || async {
        let device = admin_get(&base, &admin, "/api/v1/devices/prod-01").await;
        device["items"].as_array().is_some_and(|items| items.iter().any(|i| i["status"] == "due"))
    })
    .await;
    production.run(&["run", "--once"]);
    assert_eq!(installed_version(&production.root).as_deref(), Some("1.0"), "production after the delay");

    // The mirror was asked and its bytes refused; dpkg ran once per device,
    // on the real bytes (its own log says what it installed).
    assert!(mirror.requests().iter().any(|r| r.path == format!("/blobs/{digest}")));
    for agent in [&pilot, &production] {
        let log = std::fs::read_to_string(agent.root.join("var/log/dpkg.log")).unwrap();
        let installs =
            log.lines().filter(|l| l.contains(" install pw-hello") || l.contains(" upgrade pw-hello")).count();
        assert_eq!(installs, 2, "{}: 0.9 at set-up, 1.0 once: {log}", agent.name);
        // A pass reports the outcome; another changes nothing.
        agent.run(&["run", "--once"]);
    }

    // Both reported back: the engine has their reports, and the
    // compliance view counts them patched.
    until("both reports recorded", || async {
        let compliance = admin_get(&base, &admin, "/api/v1/compliance").await;
        compliance["compliant"].as_u64() == Some(2) && compliance["devices"].as_u64() == Some(2)
    })
    .await;
    let audit = admin_get(&base, &admin, "/api/v1/audit").await;
    let reports = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.report" && e["detail"]["status"] == "succeeded")
        .count();
    assert_eq!(reports, 2, "one success report per device");
    running.shutdown().await;
}
