//! Issue 15 on dpkg systems (RELIABILITY T39–T42 with apt): the real
//! `patchward-agent` installs a Debian-style advisory (a fix naming the
//! source package `pwlib`, no download URL) through a signed apt
//! repository on 127.0.0.1, and a retraction restores what it upgraded.
//!
//! The device is a sandbox dpkg root with `libpw1 1:1.0-1` (an epoch on
//! the binary only: its source is `pwlib 1.0-1`) and `pw-tools 1.0-1`; apt
//! is isolated from the host by the fixture's `APT_CONFIG`, and the agent
//! adds the root's dpkg options itself (`--root`). The engine is a fake the
//! test signs desired states for.
//!
//! - One `run --once` upgrades both binaries of the source together, from
//!   files the agent fetched and re-hashed itself, and reports each
//!   package's name, version and sha256.
//! - A retraction downgrades to exactly the recorded versions: from the
//!   repository when it still offers them, else from the backup the agent
//!   rebuilt before upgrading. Nothing is removed.
//! - A repository signed by another key is refused with the reason, and
//!   nothing changes; a mirror that lacks the fix makes the item wait, it
//!   does not fail it.

mod agent_support;
#[path = "../../agent/tests/support/apt.rs"]
mod apt;

use std::path::{Path, PathBuf};

use agent_support::{AgentProcess, FakeEngine, T0, desired_state};
use apt::{AptRepo, AptSandbox, Deb};
use patchward_api::ReportStatus;
use patchward_api::events::{AgentEvent, EventKind};

const PATCH: &str = "DSA-9999-1";
const SUITE: &str = "bookworm-security";

/// The two binaries of source `pwlib` at `version`: `libpw1` carries an
/// epoch its source does not.
fn pwlib(version: &str) -> Vec<Deb> {
    vec![
        Deb::new("libpw1", &format!("1:{version}"), "amd64")
            .source(&format!("pwlib ({version})"))
            .file("/usr/lib/libpw.so.1", format!("libpw {version}\n").as_bytes()),
        Deb::new("pw-tools", version, "amd64")
            .source("pwlib")
            .depends(&format!("libpw1 (= 1:{version})"))
            .file("/usr/bin/pw", format!("#!/bin/sh\necho pw {version}\n").as_bytes()),
    ]
}

/// The advisory's item: a source fix, nothing to download.
fn item(action: &str) -> serde_json::Value {
    serde_json::json!({
        "patch": PATCH, "action": action, "status": "due",
        "source": {"kind": "rule", "name": "security", "commit": "c0ffee"}, "stage": 1,
        "policy": {"name": "at-once", "mode": "immediate", "reboot": "never"},
        "windows": [], "notBefore": "2026-11-23T00:00:00Z", "deadline": null, "packages": [],
        "fixes": [{"manager": "dpkg", "package": "pwlib", "fixedVersion": "1.0-2", "kind": "source"}]
    })
}

struct Device {
    agent: AgentProcess,
    apt: AptSandbox,
    engine: FakeEngine,
}

impl Device {
    /// A device with pwlib 1.0-1 installed, whose apt trusts `key` for
    /// `repo`.
    fn new(dir: &Path, repo: &AptRepo, key: &Path) -> Device {
        let packages = dir.join("device-debs");
        std::fs::create_dir_all(&packages).unwrap();
        let old: Vec<PathBuf> = pwlib("1.0-1").iter().map(|d| d.build(&packages)).collect();
        // The agent's root is the sandbox apt's dpkg guard allows.
        let apt = AptSandbox::new(&dir.join("apt"), &repo.url(), key, SUITE);
        apt.dpkg_install(&old);
        let root = apt.root.clone();
        let clock = dir.join("clock");
        std::fs::write(&clock, T0).unwrap();
        let agent = AgentProcess::new(dir, "ws-01", "pilot", root, &clock);
        let engine = FakeEngine::start();
        engine.enroll(&agent);
        Device { agent, apt, engine }
    }

    fn serve(&self, generation: u64, action: &str) {
        self.engine.serve(&desired_state(generation, "2026-12-31T00:00:00Z", vec![item(action)]));
    }

    /// One `run --once` with apt's configuration in the environment, as an
    /// admin's service unit would set it.
    fn pass(&self) {
        let output = self.agent.command(&["run", "--once"]).env("APT_CONFIG", &self.apt.apt_config).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    fn versions(&self) -> Vec<String> {
        let dpkg = patchward_agent::install::deb::DpkgRoot::sandbox(&self.agent.root).unwrap();
        ["libpw1", "pw-tools"]
            .iter()
            .map(|name| dpkg.status(name).unwrap().map(|s| s.version).unwrap_or_else(|| "absent".into()))
            .collect()
    }

    fn reports(&self, status: ReportStatus) -> Vec<AgentEvent> {
        self.engine
            .recorded()
            .into_iter()
            .filter(|e| e.kind == EventKind::Report && e.patch.as_deref() == Some(PATCH) && e.status == Some(status))
            .collect()
    }
}

#[test]
fn a_source_fix_installs_through_the_signed_repository_and_a_retraction_restores_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut debs = pwlib("1.0-1");
    debs.extend(pwlib("1.0-2"));
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &debs);
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    repo.clear_requests();
    device.pass();
    assert_eq!(
        device.versions(),
        ["1:1.0-2", "1.0-2"],
        "both binaries of the source, the epoch kept: {:?}",
        device.engine.recorded()
    );
    let reports = device.reports(ReportStatus::Succeeded);
    assert_eq!(reports.len(), 1, "{:?}", device.engine.recorded());
    let detail = reports[0].detail.clone().unwrap_or_default();
    for deb in &debs[2..] {
        let served = std::fs::read(repo.file(&repo.pool_path(deb))).unwrap();
        let reported = detail["packages"].as_array().unwrap().iter().find(|p| p["name"] == deb.name.as_str());
        let reported = reported.unwrap_or_else(|| panic!("{} in {detail}", deb.name));
        assert_eq!(reported["sha256"], apt::sha256_hex(&served));
        assert_eq!(reported["version"], deb.version.as_str());
        // The agent fetched each file itself, once; apt downloaded nothing.
        let fetched = repo.requests().iter().filter(|r| r.ends_with(&repo.pool_path(deb))).count();
        assert_eq!(fetched, 1, "{}: {:?}", deb.name, repo.requests());
    }

    device.serve(2, "uninstall");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "the recorded versions, restored");
    let restored = device.reports(ReportStatus::Succeeded);
    assert_eq!(restored.len(), 2, "{restored:?}");
    assert!(restored[1].message.as_deref().unwrap_or_default().contains("restored"), "{restored:?}");
    assert!(device.reports(ReportStatus::Failed).is_empty());
}

#[test]
fn without_the_old_version_in_the_repository_the_backup_made_before_the_upgrade_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &pwlib("1.0-2"));
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"]);
    let backups: Vec<PathBuf> =
        std::fs::read_dir(device.agent.state.join("backups")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(backups.len(), 2, "one backup per upgraded package: {backups:?}");

    device.serve(2, "uninstall");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "restored from the backups: {:?}", device.engine.recorded());
    let root = &device.agent.root;
    assert_eq!(std::fs::read_to_string(root.join("usr/lib/libpw.so.1")).unwrap(), "libpw 1.0-1\n");
    assert!(device.reports(ReportStatus::Failed).is_empty(), "{:?}", device.engine.recorded());
}

#[test]
fn a_repository_signed_by_another_key_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut debs = pwlib("1.0-1");
    debs.extend(pwlib("1.0-2"));
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &debs);
    let stranger = apt::other_key(&dir.path().join("stranger"));
    let device = Device::new(dir.path(), &repo, &stranger);
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"]);
    let failed = device.reports(ReportStatus::Failed);
    assert_eq!(failed.len(), 1, "{:?}", device.engine.recorded());
    let message = failed[0].message.clone().unwrap_or_default();
    assert!(message.contains("did not refresh"), "{message}");
    assert!(message.contains("NO_PUBKEY") || message.contains("signature"), "{message}");
}

#[test]
fn a_mirror_that_lacks_the_fix_leaves_the_item_for_later_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &pwlib("1.0-1"));
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"]);
    assert!(device.reports(ReportStatus::Failed).is_empty(), "{:?}", device.engine.recorded());
    assert_eq!(device.agent.steps(PATCH).last().map(String::as_str), Some("retry-later"));
    let steps: Vec<String> = device
        .engine
        .recorded()
        .iter()
        .filter(|e| e.kind == EventKind::Step)
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(steps.iter().any(|m| m.contains("below the fix (pwlib 1.0-2)")), "{steps:?}");

    // T41: once the mirror has the fix, the next try installs it.
    let mut repo = repo;
    let mut debs = pwlib("1.0-1");
    debs.extend(pwlib("1.0-2"));
    repo.publish(&debs);
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "not before the wait is over");
    device.agent.advance(jiff::SignedDuration::from_hours(1));
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"]);
    assert_eq!(device.reports(ReportStatus::Succeeded).len(), 1);
    assert!(device.reports(ReportStatus::Failed).is_empty());
}

/// T39: every way a repository can fail its signature or hashes installs
/// nothing and says why.
#[test]
fn unsigned_tampered_metadata_or_a_tampered_package_install_nothing_and_say_why() {
    type Breaks<'a> = &'a dyn Fn(&AptRepo);
    let cases: [(&str, Breaks, &str); 4] = [
        (
            "unsigned",
            &|repo| {
                for file in ["InRelease", "Release.gpg"] {
                    std::fs::remove_file(repo.file(&format!("dists/{SUITE}/{file}"))).unwrap();
                }
            },
            "did not refresh",
        ),
        ("a tampered InRelease", &|repo| repo.tamper(&format!("dists/{SUITE}/InRelease")), "did not refresh"),
        (
            "a tampered Packages",
            &|repo| repo.tamper(&format!("dists/{SUITE}/main/binary-amd64/Packages")),
            "did not refresh",
        ),
        ("a tampered package", &|repo| repo.tamper(&repo.pool_path(&pwlib("1.0-2")[0])), "sha256"),
    ];
    for (what, break_it, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut debs = pwlib("1.0-1");
        debs.extend(pwlib("1.0-2"));
        let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &debs);
        let device = Device::new(dir.path(), &repo, &repo.key());
        break_it(&repo);
        device.serve(1, "install");
        device.pass();
        assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "{what}: nothing installed");
        let failed = device.reports(ReportStatus::Failed);
        assert_eq!(failed.len(), 1, "{what}: {:?}", device.engine.recorded());
        let message = failed[0].message.clone().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message}");
    }
}

/// T40: a resolution that would remove a package is refused before
/// anything changes.
#[test]
fn a_fix_whose_resolution_would_remove_a_package_is_refused_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut debs = pwlib("1.0-1");
    let mut fixed = pwlib("1.0-2");
    fixed[1] = fixed[1].clone().conflicts("pw-legacy");
    debs.extend(fixed);
    let legacy = Deb::new("pw-legacy", "2.0", "amd64").file("/usr/share/pw-legacy", b"legacy\n".to_vec());
    debs.push(legacy.clone());
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &debs);
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.apt.dpkg_install(&[legacy.build(&dir.path().join("device-debs"))]);
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"]);
    assert_eq!(device.apt.installed().get("pw-legacy").map(String::as_str), Some("2.0"), "still installed");
    let failed = device.reports(ReportStatus::Failed);
    assert_eq!(failed.len(), 1, "{:?}", device.engine.recorded());
    let message = failed[0].message.clone().unwrap_or_default();
    assert!(message.contains("remove"), "{message}");
}

/// T42's last case: a retraction with no way back is reported unavailable
/// and the fix stays; nothing is removed.
#[test]
fn a_retraction_without_a_way_back_is_reported_unavailable_and_the_fix_stays() {
    let dir = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &pwlib("1.0-2"));
    let device = Device::new(dir.path(), &repo, &repo.key());
    // The fix arrived by other means: patchward recorded no way back.
    let fixed: Vec<PathBuf> = pwlib("1.0-2").iter().map(|d| d.build(&dir.path().join("device-debs"))).collect();
    device.apt.dpkg_install(&fixed);
    device.serve(1, "uninstall");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"], "the fix stays, nothing removed");
    let errors: Vec<String> = device
        .engine
        .recorded()
        .iter()
        .filter(|e| e.kind == EventKind::Error)
        .filter_map(|e| e.message.clone())
        .collect();
    assert!(errors.iter().any(|m| m.contains("retraction unavailable")), "{errors:?}");
}

/// T43: the agent, apt and dpkg killed while a maintainer script of the
/// upgrade runs. The restart repairs the package database (`dpkg
/// --configure -a`), detection decides, and nothing was reported installed
/// before it was.
#[test]
fn t43_kill_9_mid_apt_the_restart_repairs_the_database_and_detection_decides() {
    use agent_support::{kill9, kill9_pid, pids_mentioning, poll_until};
    let dir = tempfile::tempdir().unwrap();
    let mut debs = pwlib("1.0-1");
    let mut fixed = pwlib("1.0-2");
    fixed[1] = fixed[1].clone().script("postinst", "#!/bin/sh\nsleep 5\n");
    debs.extend(fixed);
    let repo = AptRepo::new(&dir.path().join("repo"), SUITE, &debs);
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    let mut child = device
        .agent
        .command(&["run", "--once"])
        .env("APT_CONFIG", &device.apt.apt_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dpkg = patchward_agent::install::deb::DpkgRoot::sandbox(&device.agent.root).unwrap();
    // Both unpacked, libpw1 configured, pw-tools' slow postinst running.
    poll_until("pw-tools 1.0-2 configuring", std::time::Duration::from_secs(60), || {
        let library = dpkg.status("libpw1").unwrap().is_some_and(|s| s.version == "1:1.0-2" && s.is_installed());
        library && dpkg.status("pw-tools").unwrap().is_some_and(|s| s.version == "1.0-2" && !s.is_installed())
    });
    kill9(&mut child);
    let root = device.agent.root.display().to_string();
    for pid in pids_mentioning(&root) {
        kill9_pid(pid);
    }
    poll_until("apt and dpkg gone", std::time::Duration::from_secs(30), || pids_mentioning(&root).is_empty());
    let left = dpkg.status("pw-tools").unwrap().unwrap();
    assert!(!left.is_installed(), "dpkg was cut short: {left:?}");
    assert!(device.reports(ReportStatus::Succeeded).is_empty(), "nothing reported before detection");

    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"], "{:?}", device.engine.recorded());
    assert!(dpkg.status("pw-tools").unwrap().unwrap().is_installed(), "configured by the repair");
    let succeeded = device.reports(ReportStatus::Succeeded);
    assert_eq!(succeeded.len(), 1, "{:?}", device.engine.recorded());
    assert!(succeeded[0].message.as_deref().unwrap_or_default().contains("detection"), "{succeeded:?}");
    let repaired = device.engine.recorded().iter().any(|e| {
        e.kind == EventKind::Step && e.message.as_deref().unwrap_or_default().contains("package database was repaired")
    });
    assert!(repaired, "{:?}", device.engine.recorded());
}
