//! Issue 15 on rpm systems (RELIABILITY T39–T42 with dnf): the real
//! `patchward-agent` installs a Red Hat-style advisory (binary NEVRAs, no
//! download URL) through a signed dnf repository on 127.0.0.1, and a
//! retraction restores the versions it upgraded.
//!
//! The device is a sandbox rpm root with `libpw1 1:1.0-1` (an epoch) and
//! `pw-tools 1.0-1`, both built from source `pwlib`; the agent runs dnf with
//! the fixture's `dnf.conf` (`dnf.config` in its own config) and adds
//! `--installroot` itself. The engine is a fake the test signs states for.

mod agent_support;
#[path = "../../agent/tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};

use agent_support::{AgentProcess, FakeEngine, T0, desired_state};
use patchward_api::ReportStatus;
use patchward_api::events::{AgentEvent, EventKind};
use support::dnf::{DnfRepo, DnfSandbox, Rpm};

const PATCH: &str = "RHSA-2026:9999";

fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// The two binaries of source `pwlib` at `release`.
fn pwlib(release: &str) -> Vec<Rpm> {
    vec![
        Rpm::new("libpw1", "1.0", release, arch())
            .epoch(1)
            .source_rpm("pwlib")
            .file("/usr/lib64/libpw.so.1", format!("libpw 1.0-{release}\n").as_bytes()),
        Rpm::new("pw-tools", "1.0", release, arch())
            .source_rpm("pwlib")
            .requires(&format!("libpw1 = 1:1.0-{release}"))
            .file("/usr/bin/pw", format!("pw 1.0-{release}\n").as_bytes()),
    ]
}

/// Red Hat's CSAF names binary NEVRAs: one binary fix per package.
fn item(action: &str) -> serde_json::Value {
    serde_json::json!({
        "patch": PATCH, "action": action, "status": "due",
        "source": {"kind": "rule", "name": "security", "commit": "c0ffee"}, "stage": 1,
        "policy": {"name": "at-once", "mode": "immediate", "reboot": "never"},
        "windows": [], "notBefore": "2026-11-23T00:00:00Z", "deadline": null, "packages": [],
        "fixes": [
            {"manager": "rpm", "package": "libpw1", "fixedVersion": "1:1.0-2"},
            {"manager": "rpm", "package": "pw-tools", "fixedVersion": "1.0-2"}
        ]
    })
}

struct Device {
    agent: AgentProcess,
    dnf: DnfSandbox,
    engine: FakeEngine,
}

impl Device {
    fn new(dir: &Path, repo: &DnfRepo, key: &Path) -> Device {
        let rpms = dir.join("device-rpms");
        std::fs::create_dir_all(&rpms).unwrap();
        let old: Vec<PathBuf> = pwlib("1").iter().map(|r| r.build(&rpms)).collect();
        let dnf = DnfSandbox::new(&dir.join("dnf"), &repo.url(), key);
        dnf.rpm_install(&old);
        let clock = dir.join("clock");
        std::fs::write(&clock, T0).unwrap();
        let agent = AgentProcess::new(dir, "ws-01", "pilot", dnf.root.clone(), &clock);
        let mut config = std::fs::read_to_string(&agent.config).unwrap();
        config += &format!("dnf:\n  config: {}\n", dnf.config.display());
        std::fs::write(&agent.config, config).unwrap();
        let engine = FakeEngine::start();
        engine.enroll(&agent);
        Device { agent, dnf, engine }
    }

    fn serve(&self, generation: u64, action: &str) {
        self.engine.serve(&desired_state(generation, "2026-12-31T00:00:00Z", vec![item(action)]));
    }

    fn pass(&self) {
        self.agent.run(&["run", "--once"]);
    }

    fn versions(&self) -> Vec<String> {
        let installed = self.dnf.installed();
        ["libpw1", "pw-tools"].iter().map(|n| installed.get(*n).cloned().unwrap_or_else(|| "absent".into())).collect()
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
fn binary_fixes_install_through_the_signed_dnf_repository_and_a_retraction_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut rpms = pwlib("1");
    rpms.extend(pwlib("2"));
    let repo = DnfRepo::new(&dir.path().join("repo"), &rpms);
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"], "{:?}", device.engine.recorded());
    let reports = device.reports(ReportStatus::Succeeded);
    assert_eq!(reports.len(), 1, "{:?}", device.engine.recorded());
    let detail = reports[0].detail.clone().unwrap_or_default();
    for rpm in &rpms[2..] {
        let served = std::fs::read(repo.file(&repo.location(rpm))).unwrap();
        let reported = detail["packages"].as_array().unwrap().iter().find(|p| p["name"] == rpm.name.as_str());
        let reported = reported.unwrap_or_else(|| panic!("{} in {detail}", rpm.name));
        assert_eq!(reported["sha256"], support::apt::sha256_hex(&served));
        assert_eq!(reported["version"], rpm.evr().as_str(), "the epoch included");
    }

    device.serve(2, "uninstall");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "{:?}", device.engine.recorded());
    assert_eq!(device.reports(ReportStatus::Succeeded).len(), 2);
    assert!(device.reports(ReportStatus::Failed).is_empty());
}

#[test]
fn a_dnf_repository_signed_by_another_key_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let mut rpms = pwlib("1");
    rpms.extend(pwlib("2"));
    let repo = DnfRepo::new(&dir.path().join("repo"), &rpms);
    let stranger = support::dnf::other_key(&dir.path().join("stranger"));
    let device = Device::new(dir.path(), &repo, &stranger);
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"]);
    let failed = device.reports(ReportStatus::Failed);
    assert_eq!(failed.len(), 1, "{:?}", device.engine.recorded());
    assert!(failed[0].message.as_deref().unwrap_or_default().contains("did not refresh"), "{failed:?}");
}

#[test]
fn a_dnf_mirror_that_lacks_the_fix_leaves_the_item_for_later_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let repo = DnfRepo::new(&dir.path().join("repo"), &pwlib("1"));
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"]);
    assert!(device.reports(ReportStatus::Failed).is_empty(), "{:?}", device.engine.recorded());
    assert_eq!(device.agent.steps(PATCH).last().map(String::as_str), Some("retry-later"));
}

/// T39 with dnf: unsigned or tampered metadata never installs anything,
/// and the reason is reported.
#[test]
fn unsigned_or_tampered_dnf_metadata_installs_nothing_and_says_why() {
    let primary = |repo: &DnfRepo| {
        let dir = repo.file("repodata");
        let mut found = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap());
        let name = found.find(|n| n.ends_with("primary.xml.gz") || n.ends_with("primary.xml.zst"));
        format!("repodata/{}", name.expect("a primary metadata file"))
    };
    type Breaks<'a> = &'a dyn Fn(&DnfRepo);
    let cases: [(&str, Breaks); 3] = [
        ("unsigned", &|repo| std::fs::remove_file(repo.file("repodata/repomd.xml.asc")).unwrap()),
        ("a tampered repomd.xml", &|repo| repo.tamper("repodata/repomd.xml")),
        ("a tampered primary", &|repo| repo.tamper(&primary(repo))),
    ];
    for (what, break_it) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut rpms = pwlib("1");
        rpms.extend(pwlib("2"));
        let repo = DnfRepo::new(&dir.path().join("repo"), &rpms);
        let device = Device::new(dir.path(), &repo, &repo.key());
        break_it(&repo);
        device.serve(1, "install");
        device.pass();
        assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "{what}: nothing installed");
        let failed = device.reports(ReportStatus::Failed);
        assert_eq!(failed.len(), 1, "{what}: {:?}", device.engine.recorded());
        let message = failed[0].message.clone().unwrap_or_default();
        assert!(message.contains("did not refresh"), "{what}: {message}");
    }
}

/// T39 with dnf: a tampered package in the repository never installs: the
/// agent's own download refuses bytes that are not the signed index's.
#[test]
fn a_tampered_rpm_installs_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut rpms = pwlib("1");
    rpms.extend(pwlib("2"));
    let repo = DnfRepo::new(&dir.path().join("repo"), &rpms);
    let device = Device::new(dir.path(), &repo, &repo.key());
    repo.tamper(&repo.location(&rpms[2]));
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"]);
    let failed = device.reports(ReportStatus::Failed);
    assert_eq!(failed.len(), 1, "{:?}", device.engine.recorded());
    assert!(failed[0].message.as_deref().unwrap_or_default().contains("sha256"), "{failed:?}");
}

/// T41 with dnf: once the mirror has the fix, the next try installs it.
#[test]
fn the_fix_installs_once_the_dnf_mirror_has_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut repo = DnfRepo::new(&dir.path().join("repo"), &pwlib("1"));
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.agent.steps(PATCH).last().map(String::as_str), Some("retry-later"));
    let mut rpms = pwlib("1");
    rpms.extend(pwlib("2"));
    repo.publish(&rpms);
    device.agent.advance(jiff::SignedDuration::from_hours(1));
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"], "{:?}", device.engine.recorded());
    assert!(device.reports(ReportStatus::Failed).is_empty());
}

/// T42 with dnf: an rpm the repositories no longer offer is rebuilt from
/// the rpm database before the upgrade, and the retraction restores it.
#[test]
fn without_the_old_rpm_in_the_repository_the_backup_made_before_the_upgrade_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = DnfRepo::new(&dir.path().join("repo"), &pwlib("2"));
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"], "{:?}", device.engine.recorded());
    let backups: Vec<PathBuf> =
        std::fs::read_dir(device.agent.state.join("backups")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(backups.len(), 2, "one backup per upgraded package: {backups:?}");

    device.serve(2, "uninstall");
    device.pass();
    assert_eq!(device.versions(), ["1:1.0-1", "1.0-1"], "restored from the backups: {:?}", device.engine.recorded());
    let root = &device.agent.root;
    assert_eq!(std::fs::read_to_string(root.join("usr/lib64/libpw.so.1")).unwrap(), "libpw 1.0-1\n");
    assert!(device.reports(ReportStatus::Failed).is_empty(), "{:?}", device.engine.recorded());
    let left = std::fs::read_dir(device.agent.state.join("backups")).unwrap().count();
    assert_eq!(left, 0, "the backups go once restored");
}

/// T43 with dnf: the agent and dnf killed while rpm installs the upgrade,
/// after it installed the new libpw1 and before it erased the old one
/// (pw-tools, installed in between, carries thousands of files to make that
/// moment last). The restart finishes the replacement rpm left half done,
/// detection decides, and nothing was reported installed before it was.
#[test]
fn t43_kill_9_mid_dnf_the_restart_repairs_the_database_and_detection_decides() {
    use agent_support::{kill9, kill9_pid, pids_mentioning, poll_until};
    let dir = tempfile::tempdir().unwrap();
    let mut rpms = pwlib("1");
    let mut fixed = pwlib("2");
    for n in 0..6000 {
        fixed[1] = fixed[1].clone().file(&format!("/usr/share/pw-tools/data/{n:05}"), format!("{n}\n"));
    }
    rpms.extend(fixed);
    let repo = DnfRepo::new(&dir.path().join("repo"), &rpms);
    let device = Device::new(dir.path(), &repo, &repo.key());
    device.serve(1, "install");
    let mut child = device
        .agent
        .command(&["run", "--once"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    poll_until("libpw1 installed beside its old version", std::time::Duration::from_secs(120), || {
        device.dnf.instances("libpw1").len() == 2
    });
    kill9(&mut child);
    let root = device.agent.root.display().to_string();
    for pid in pids_mentioning(&root) {
        kill9_pid(pid);
    }
    poll_until("dnf and rpm gone", std::time::Duration::from_secs(30), || pids_mentioning(&root).is_empty());
    assert_eq!(device.dnf.instances("libpw1").len(), 2, "rpm was cut short");
    assert!(device.reports(ReportStatus::Succeeded).is_empty(), "nothing reported before detection");

    device.pass();
    assert_eq!(device.versions(), ["1:1.0-2", "1.0-2"], "{:?}", device.engine.recorded());
    assert_eq!(device.dnf.instances("libpw1"), ["1:1.0-2"], "the replacement was finished");
    assert_eq!(device.dnf.instances("pw-tools"), ["1.0-2"]);
    let succeeded = device.reports(ReportStatus::Succeeded);
    assert_eq!(succeeded.len(), 1, "{:?}", device.engine.recorded());
    let repaired = device.engine.recorded().iter().any(|e| {
        let message = e.message.as_deref().unwrap_or_default();
        e.kind == EventKind::Step && message.contains("package database was repaired") && message.contains("libpw1")
    });
    assert!(repaired, "{:?}", device.engine.recorded());
}
