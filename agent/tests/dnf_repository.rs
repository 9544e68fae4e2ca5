//! The agent's dnf driver (`repo::dnf`) against a real signed repository
//! on 127.0.0.1 (`support::dnf`) and a sandboxed rpm root: it refreshes only
//! metadata that verifies, reads every offered version with its source,
//! names the exact files of a transaction with their sha256 from the signed
//! index, installs (and restores) exactly those staged files without letting
//! dnf download anything, and refuses a transaction that removes a package.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchward_agent::install::rpm::RpmRoot;
use patchward_agent::repo::RepoError;
use patchward_agent::repo::apt::{Direction, Fetch, PackageVersion};
use patchward_agent::repo::dnf::{Dnf, archives_dir};
use support::apt::sha256_hex;
use support::dnf::{DnfRepo, DnfSandbox, Rpm, other_key};

/// The binaries of source `pwlib` at `1.0-{release}`: `libpw1` carries an
/// epoch of its own, `pw-tools` needs the libpw1 of its build.
fn pwlib(release: &str) -> Vec<Rpm> {
    vec![
        Rpm::new("libpw1", "1.0", release, "x86_64")
            .epoch(1)
            .source_rpm("pwlib")
            .file("/usr/share/pwlib/libpw1.VERSION", format!("1.0-{release}\n")),
        Rpm::new("pw-tools", "1.0", release, "x86_64")
            .source_rpm("pwlib")
            .requires(&format!("libpw1 = 1:1.0-{release}"))
            .file("/usr/share/pwlib/tools.VERSION", format!("1.0-{release}\n")),
    ]
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(p, v)| (p.to_string(), v.to_string())).collect()
}

fn target(name: &str, version: &str) -> PackageVersion {
    PackageVersion { name: name.into(), arch: "x86_64".into(), version: version.into() }
}

fn dnf(sandbox: &DnfSandbox) -> Dnf {
    let root = RpmRoot::sandbox(&sandbox.root).unwrap();
    Dnf::new(root, Some(sandbox.config.clone()), Duration::from_secs(300))
}

/// A device at pwlib 1.0-1 (installed from the repository's own signed
/// files) whose repository now also offers 1.0-2.
fn device_at_1_0_1(tmp: &Path) -> (DnfRepo, DnfSandbox) {
    let mut repo = DnfRepo::new(&tmp.join("repo"), &pwlib("1"));
    let sandbox = DnfSandbox::new(&tmp.join("device"), &repo.url(), &repo.key());
    let served: Vec<PathBuf> = pwlib("1").iter().map(|rpm| repo.file(&repo.location(rpm))).collect();
    sandbox.rpm_install(&served);
    repo.publish(&[pwlib("1"), pwlib("2")].concat());
    (repo, sandbox)
}

/// What the agent's verified download does, without the download: the
/// served bytes, checked against the index's size and sha256, staged under
/// the fetch's name.
fn stage(repo: &DnfRepo, fetches: &[Fetch], archives: &Path) {
    std::fs::create_dir_all(archives).unwrap();
    for fetch in fetches {
        let path = fetch.url.strip_prefix(&repo.url()).expect("a URL of the repository");
        let bytes = std::fs::read(repo.file(path)).unwrap();
        assert_eq!(bytes.len() as u64, fetch.size, "{}", fetch.url);
        assert_eq!(sha256_hex(&bytes), fetch.sha256.to_hex(), "{}", fetch.url);
        std::fs::write(archives.join(&fetch.file), bytes).unwrap();
    }
}

fn package_requests(repo: &DnfRepo) -> Vec<String> {
    repo.requests().into_iter().filter(|path| path.starts_with("/Packages/")).collect()
}

#[test]
fn a_source_is_upgraded_and_restored_from_staged_files_of_the_signed_index() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sandbox) = device_at_1_0_1(tmp.path());
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));
    let dnf = dnf(&sandbox);
    dnf.refresh().unwrap();

    let libpw1 = dnf.records("libpw1", "x86_64").unwrap();
    let seen: Vec<(&str, &str, &str, bool)> = libpw1
        .iter()
        .map(|r| (r.version.as_str(), r.source.as_str(), r.source_version.as_str(), r.downloadable))
        .collect();
    // SOURCERPM has no epoch: the binary's is taken as the source's, as
    // the agent's inventory reads the installed package.
    assert_eq!(seen, [("1:1.0-1", "pwlib", "1:1.0-1", true), ("1:1.0-2", "pwlib", "1:1.0-2", true)]);
    let tools = dnf.records("pw-tools", "x86_64").unwrap();
    let seen: Vec<(&str, &str, &str)> =
        tools.iter().map(|r| (r.version.as_str(), r.source.as_str(), r.source_version.as_str())).collect();
    assert_eq!(seen, [("1.0-1", "pwlib", "1.0-1"), ("1.0-2", "pwlib", "1.0-2")]);
    assert!(dnf.records("libpw1", "aarch64").unwrap().is_empty());
    assert!(dnf.records("no-such-package", "x86_64").unwrap().is_empty());

    let archives = archives_dir(&tmp.path().join("staging"));
    let upgrade = [target("libpw1", "1:1.0-2"), target("pw-tools", "1.0-2")];
    dnf.simulate(&upgrade, &[], Direction::Upgrade, &archives).unwrap();
    let fetches = dnf.uris(&upgrade, &[], Direction::Upgrade, &archives).unwrap();
    let files: Vec<&str> = fetches.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(files, ["libpw1-1.0-2.x86_64.rpm", "pw-tools-1.0-2.x86_64.rpm"]);
    for fetch in &fetches {
        assert_eq!(fetch.url, format!("{}/Packages/{}", repo.url(), fetch.file));
    }
    stage(&repo, &fetches, &archives);
    dnf.install(&upgrade, &[], Direction::Upgrade, &archives).unwrap();
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-2"), ("pw-tools", "1.0-2")]));
    assert!(package_requests(&repo).is_empty(), "dnf downloaded {:?}", package_requests(&repo));
    assert!(sandbox.cached_packages().is_empty(), "left in dnf's cache: {:?}", sandbox.cached_packages());

    let restore = [target("libpw1", "1:1.0-1"), target("pw-tools", "1.0-1")];
    let fetches = dnf.uris(&restore, &[], Direction::Downgrade, &archives).unwrap();
    assert_eq!(fetches.len(), 2);
    stage(&repo, &fetches, &archives);
    dnf.install(&restore, &[], Direction::Downgrade, &archives).unwrap();
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));
    assert!(package_requests(&repo).is_empty(), "dnf downloaded {:?}", package_requests(&repo));
}

#[test]
fn dependencies_of_the_transaction_are_fetched_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sandbox) = device_at_1_0_1(tmp.path());
    let dnf = dnf(&sandbox);
    dnf.refresh().unwrap();
    let archives = archives_dir(&tmp.path().join("staging"));
    // pw-tools 1.0-2 requires libpw1 1:1.0-2: dnf upgrades both.
    let fetches = dnf.uris(&[target("pw-tools", "1.0-2")], &[], Direction::Upgrade, &archives).unwrap();
    let files: Vec<&str> = fetches.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(files, ["libpw1-1.0-2.x86_64.rpm", "pw-tools-1.0-2.x86_64.rpm"]);
    stage(&repo, &fetches, &archives);
    dnf.install(&[target("pw-tools", "1.0-2")], &[], Direction::Upgrade, &archives).unwrap();
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-2"), ("pw-tools", "1.0-2")]));
}

#[test]
fn a_staged_file_that_differs_from_the_index_is_not_installed() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sandbox) = device_at_1_0_1(tmp.path());
    let dnf = dnf(&sandbox);
    dnf.refresh().unwrap();
    let archives = archives_dir(&tmp.path().join("staging"));
    let upgrade = [target("libpw1", "1:1.0-2"), target("pw-tools", "1.0-2")];
    let fetches = dnf.uris(&upgrade, &[], Direction::Upgrade, &archives).unwrap();
    stage(&repo, &fetches, &archives);
    let staged = archives.join(&fetches[1].file);
    let mut bytes = std::fs::read(&staged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&staged, bytes).unwrap();
    let error = dnf.install(&upgrade, &[], Direction::Upgrade, &archives).unwrap_err();
    assert!(matches!(error, RepoError::Failed { .. }), "{error}");
    assert!(error.to_string().contains("incorrect checksum"), "{error}");
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));
    assert!(package_requests(&repo).is_empty(), "dnf downloaded {:?}", package_requests(&repo));
    std::fs::remove_file(&staged).unwrap();
    let error = dnf.install(&upgrade, &[], Direction::Upgrade, &archives).unwrap_err();
    assert!(matches!(error, RepoError::NotStaged { .. }), "{error}");
}

#[test]
fn a_repository_signed_by_another_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = DnfRepo::new(&tmp.path().join("repo"), &pwlib("1"));
    let stranger = other_key(tmp.path());
    let sandbox = DnfSandbox::new(&tmp.path().join("device"), &repo.url(), &stranger);
    let error = dnf(&sandbox).refresh().unwrap_err();
    assert!(matches!(error, RepoError::Refresh { .. }), "{error}");
    assert!(error.to_string().contains("GPG signature verification error"), "{error}");
}

#[test]
fn tampered_metadata_is_refused_once_good_metadata_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = DnfRepo::new(&tmp.path().join("repo"), &pwlib("1"));
    let sandbox = DnfSandbox::new(&tmp.path().join("device"), &repo.url(), &repo.key());
    let dnf = dnf(&sandbox);
    dnf.refresh().unwrap();
    repo.tamper("repodata/repomd.xml");
    let error = dnf.refresh().unwrap_err();
    assert!(matches!(error, RepoError::Refresh { .. }), "{error}");
    assert!(error.to_string().contains("repomd.xml GPG signature verification error"), "{error}");
}

#[test]
fn a_transaction_that_would_remove_a_package_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let legacy = Rpm::new("pw-legacy", "1.0", "1", "noarch");
    let newtools = Rpm::new("pw-newtools", "2.0", "1", "noarch").obsoletes("pw-legacy < 2");
    let repo = DnfRepo::new(&tmp.path().join("repo"), &[legacy.clone(), newtools]);
    let sandbox = DnfSandbox::new(&tmp.path().join("device"), &repo.url(), &repo.key());
    sandbox.rpm_install(&[repo.file(&repo.location(&legacy))]);
    let dnf = dnf(&sandbox);
    dnf.refresh().unwrap();
    let archives = archives_dir(&tmp.path().join("staging"));
    let replace = [PackageVersion { name: "pw-newtools".into(), arch: "noarch".into(), version: "2.0-1".into() }];
    for attempt in [
        dnf.simulate(&replace, &[], Direction::Upgrade, &archives),
        dnf.uris(&replace, &[], Direction::Upgrade, &archives).map(drop),
        dnf.install(&replace, &[], Direction::Upgrade, &archives),
    ] {
        match attempt {
            Err(RepoError::WouldRemove { packages }) => assert_eq!(packages, ["pw-legacy"]),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sandbox.installed(), map(&[("pw-legacy", "1.0-1")]));
}

#[test]
fn a_held_lock_is_retry_later() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, sandbox) = device_at_1_0_1(tmp.path());
    let dnf = dnf(&sandbox);
    dnf.refresh().unwrap();
    let archives = archives_dir(&tmp.path().join("staging"));
    let upgrade = [target("libpw1", "1:1.0-2"), target("pw-tools", "1.0-2")];
    let fetches = dnf.uris(&upgrade, &[], Direction::Upgrade, &archives).unwrap();
    stage(&repo, &fetches, &archives);

    // dnf's own lock: a pid file naming a live process (this test).
    let metadata_lock = sandbox.root.join("var/cache/dnf/metadata_lock.pid");
    std::fs::write(&metadata_lock, std::process::id().to_string()).unwrap();
    let error = dnf.records("libpw1", "x86_64").unwrap_err();
    assert!(matches!(error, RepoError::Locked { .. }), "{error}");
    std::fs::remove_file(&metadata_lock).unwrap();

    // rpm's transaction lock, as rpm takes it (fcntl).
    let lock = hold_fcntl_lock(&sandbox.root.join("var/lib/rpm/.rpm.lock"));
    let error = dnf.install(&upgrade, &[], Direction::Upgrade, &archives).unwrap_err();
    assert!(matches!(error, RepoError::Locked { .. }), "{error}");
    drop(lock);
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-1"), ("pw-tools", "1.0-1")]));
    dnf.install(&upgrade, &[], Direction::Upgrade, &archives).unwrap();
    assert_eq!(sandbox.installed(), map(&[("libpw1", "1:1.0-2"), ("pw-tools", "1.0-2")]));
}

/// An open-file-description write lock on the whole file, held until the
/// file is dropped: it conflicts with rpm's fcntl lock.
fn hold_fcntl_lock(path: &Path) -> std::fs::File {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).unwrap();
    // SAFETY: a zeroed flock is valid; the fields fcntl reads are set.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // SAFETY: fcntl on an fd we own with a pointer to a live flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    assert_eq!(rc, 0, "lock {}: {}", path.display(), std::io::Error::last_os_error());
    file
}
