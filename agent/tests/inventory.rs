//! Inventory: dpkg's status file (samples and this machine's, checked
//! against dpkg-query), each package's source (dpkg's `Source:` and rpm's
//! SOURCERPM: samples, a real dpkg on a sandbox root, a real rpm database),
//! rpm (samples, and a real rpm database built in a sandbox root), and the
//! Windows edge's command lines and parsers.

use std::path::Path;
use std::process::Command;

use patchward_agent::cache::Cache;
use patchward_agent::install::deb::{DebInstaller, DebSpec, DpkgRoot};
use patchward_agent::install::{Installer as _, Outcome, PackageType, VerifiedPackage};
use patchward_agent::inventory::{
    InventorySources, PackageRecord, SourceRpm, collect_inventory, parse_dpkg_source, parse_dpkg_status,
    parse_rpm_query, parse_source_rpm, read_dpkg_packages, read_rpm_packages, rpm_query_command,
};
use patchward_agent::observe::{CommandLine, ScriptedCommands, SystemCommands};
use patchward_agent::windows::{
    CommandWindowsProbe, InstalledProgram, WindowsProbe, file_hash_query, file_version_query, hotfix_query,
    parse_file_hash, parse_file_version, parse_hotfix_ids, parse_reg_query_value, parse_uninstall_entries,
    powershell_literal, registry_query, uninstall_query,
};
use patchward_api::{InstalledPackage, PackageManager, VersionScheme, version_at_least};

const DPKG_STATUS: &str = "\
Package: openssl
Status: install ok installed
Priority: optional
Section: utils
Installed-Size: 2305
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Version: 3.0.11-1~deb12u2
Depends: libc6 (>= 2.34), libssl3 (>= 3.0.9)
Conffiles:
 /etc/ssl/openssl.cnf 5a5d2e2b8ad1e1a7b2c4a2d7b4f0c1c2
Description: Secure Sockets Layer toolkit - cryptographic utility
 This package is part of the OpenSSL project's implementation.
 .
 Package: not-a-package
 Status: install ok installed

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u7

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u7

Package: nginx
Status: hold ok installed
Architecture: amd64
Version: 1.22.1-9

Package: vim
Status: install ok installed
Architecture: amd64
Version: 2:9.0.1378-2

Package: removed-but-configured
Status: deinstall ok config-files
Architecture: all
Version: 1.0-1

Package: going-away
Status: deinstall ok installed
Architecture: all
Version: 2.0-1

Package: half
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.0-1

Package: unpacked-only
Status: install ok unpacked
Architecture: amd64
Version: 1.0-1

Package: man-db
Status: install ok triggers-pending
Architecture: amd64
Version: 2.11.2-2
Triggers-Pending: /usr/share/man

package: lowercase-fields
status: install ok installed
version: 0.1-1
architecture: all";

fn name_version(records: &[PackageRecord]) -> Vec<(String, String)> {
    records.iter().map(|r| (r.name.clone(), r.version.clone())).collect()
}

#[test]
fn dpkg_status_lists_what_is_on_disk() {
    let records = parse_dpkg_status(DPKG_STATUS);
    let pairs =
        |list: &[(&str, &str)]| list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect::<Vec<_>>();
    assert_eq!(
        name_version(&records),
        pairs(&[
            ("openssl", "3.0.11-1~deb12u2"),
            ("libc6", "2.36-9+deb12u7"),
            ("libc6", "2.36-9+deb12u7"),
            // Held and selected-for-removal packages are still installed.
            ("nginx", "1.22.1-9"),
            ("vim", "2:9.0.1378-2"),
            ("going-away", "2.0-1"),
            ("man-db", "2.11.2-2"),
            ("lowercase-fields", "0.1-1"),
        ])
    );
    assert_eq!(records[1].arch, "amd64");
    assert_eq!(records[2].arch, "i386");
    assert!(records.iter().all(|r| r.manager == PackageManager::Dpkg));
}

#[test]
fn dpkg_admindir_is_read_with_crlf_and_stray_bytes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut bytes = DPKG_STATUS.replace('\n', "\r\n").into_bytes();
    bytes.extend_from_slice(
        b"\r\n\r\nPackage: latin1\r\nStatus: install ok installed\r\nMaintainer: J\xf6rg\r\nVersion: 1-1\r\n",
    );
    std::fs::write(dir.path().join("status"), bytes).expect("write status");
    let records = read_dpkg_packages(dir.path()).expect("reads");
    assert_eq!(records.len(), 9);
    assert_eq!(records.last().map(|r| r.name.as_str()), Some("latin1"));

    // A missing status file is an error naming the path.
    let missing = read_dpkg_packages(&dir.path().join("nope")).expect_err("no status file");
    assert!(missing.to_string().contains("nope/status"), "{missing}");
}

/// This machine's dpkg database, against dpkg-query's own reading of it.
#[test]
fn reads_this_machines_dpkg_database_as_dpkg_query_does() {
    let admindir = Path::new("/var/lib/dpkg");
    assert!(
        admindir.join("status").exists(),
        "this test needs a Debian host with a dpkg database at /var/lib/dpkg: run it where the agent runs"
    );
    let ours = read_dpkg_packages(admindir).expect("reads the status file");
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Want} ${db:Status-Eflag} ${db:Status-Status}\t${Package}\t${Version}\n"])
        .output()
        .expect("dpkg-query runs where dpkg's database is");
    let theirs: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let status = columns.next()?;
            let installed =
                ["ok installed", "ok triggers-pending", "ok triggers-awaited"].iter().any(|s| status.ends_with(s));
            let (name, version) = (columns.next()?, columns.next()?);
            installed.then(|| (name.to_owned(), version.to_owned()))
        })
        .collect();
    let mut ours = name_version(&ours);
    let mut theirs = theirs;
    ours.sort();
    theirs.sort();
    assert!(ours.iter().any(|(name, _)| name == "dpkg"), "dpkg itself is installed");
    assert_eq!(ours, theirs);
}

const RPM_QA: &str = "openssl\t1:3.0.7-27.el9\tx86_64\n\
bash\t0:5.1.8-9.el9\tx86_64\n\
gpg-pubkey\t0:fd431d51-4ae0493b\t(none)\n\
tzdata\t0:2024a-1.el9\tnoarch\n\
kernel\t0:5.14.0-427.13.1.el9_4\tx86_64\n\
kernel\t0:5.14.0-362.24.1.el9_3\tx86_64\n\
broken line without tabs\n\
weird\t(none):1-1\tx86_64\n";

#[test]
fn rpm_lines_keep_the_epoch_only_when_there_is_one() {
    let records = parse_rpm_query(RPM_QA);
    assert_eq!(
        records.iter().map(|r| (r.name.as_str(), r.version.as_str(), r.arch.as_str())).collect::<Vec<_>>(),
        vec![
            ("openssl", "1:3.0.7-27.el9", "x86_64"),
            ("bash", "5.1.8-9.el9", "x86_64"),
            ("tzdata", "2024a-1.el9", "noarch"),
            ("kernel", "5.14.0-427.13.1.el9_4", "x86_64"),
            ("kernel", "5.14.0-362.24.1.el9_3", "x86_64"),
        ]
    );
    // Written without "0:", a version still compares as the engine reads
    // fixed versions written either way.
    assert!(version_at_least("5.1.8-9.el9", "0:5.1.8-9.el9", VersionScheme::Rpm));
    assert!(version_at_least("0:5.1.8-9.el9", "5.1.8-9.el9", VersionScheme::Rpm));
    assert!(!version_at_least("1:3.0.7-27.el9", "1:3.0.7-28.el9", VersionScheme::Rpm));
    // And the epoch still outranks everything after it.
    assert!(version_at_least("1:3.0.7-27.el9", "3.2.2-6.el9", VersionScheme::Rpm));
}

#[test]
fn the_rpm_query_is_written_out() {
    assert_eq!(
        rpm_query_command(Path::new("/sandbox")),
        CommandLine::new(
            "rpm",
            [
                "--root",
                "/sandbox",
                "--dbpath=/var/lib/rpm",
                "-qa",
                "--qf",
                "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\n"
            ]
        )
    );
}

/// A real rpm database in a sandbox root, holding a package built here.
#[test]
fn reads_a_real_rpm_database() {
    let has = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    // .ci/run installs rpm; a machine without it fails here rather than
    // passing without having read anything.
    assert!(has("rpm") && has("rpmbuild"), "this test needs rpm and rpmbuild (apt-get install rpm)");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let spec = dir.path().join("pwtest.spec");
    std::fs::write(
        &spec,
        "Name: pwtest\nVersion: 3.0.7\nRelease: 27.el9\nEpoch: 1\nSummary: t\nLicense: MIT\nBuildArch: noarch\n\
         %description\nt\n\
         %package libs\nSummary: t\n%description libs\nt\n\
         %package -n pwtest-extra\nVersion: 9.9\nSummary: t\n%description -n pwtest-extra\nt\n\
         %files\n%files libs\n%files -n pwtest-extra\n",
    )
    .expect("write the spec");
    let topdir = dir.path().join("top");
    let built = Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--define"])
        .arg(format!("_topdir {}", topdir.display()))
        .arg(&spec)
        .status()
        .expect("rpmbuild runs");
    assert!(built.success());
    let rpm_files = ["pwtest-3.0.7-27.el9", "pwtest-libs-3.0.7-27.el9", "pwtest-extra-9.9-27.el9"]
        .map(|nvr| topdir.join(format!("RPMS/noarch/{nvr}.noarch.rpm")));
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("the sandbox root");

    // Before any database exists, rpm lists nothing.
    assert_eq!(read_rpm_packages(&root, &SystemCommands).expect("rpm runs").map(|r| r.len()), Some(0));

    // The database where the agent's rpm and dnf keep it under a root.
    let installed = Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .arg(format!("--dbpath={}", patchward_agent::install::rpm::DB_PATH))
        .args(["-i", "--justdb", "--nodeps"])
        .args(&rpm_files)
        .output()
        .expect("rpm -i runs");
    assert!(installed.status.success(), "{}", String::from_utf8_lossy(&installed.stderr));
    let mut records = read_rpm_packages(&root, &SystemCommands).expect("rpm runs").expect("rpm is installed");
    records.sort_by(|a, b| a.name.cmp(&b.name));
    let rpm = |name: &str, version: &str| PackageRecord::new(PackageManager::Rpm, name, version, "noarch");
    // SOURCERPM is pwtest-3.0.7-27.el9.src.rpm for all three: the epoch
    // comes from the binary, so a subpackage at the spec's version needs
    // no source version, and one at its own version names the source's.
    assert_eq!(
        records,
        vec![
            rpm("pwtest", "1:3.0.7-27.el9"),
            rpm("pwtest-extra", "1:9.9-27.el9").built_from("pwtest", "1:3.0.7-27.el9"),
            rpm("pwtest-libs", "1:3.0.7-27.el9").built_from("pwtest", "1:3.0.7-27.el9"),
        ]
    );
    assert_eq!(records[2].source.as_deref(), Some("pwtest"));
    assert_eq!(records[2].source_version, None);
    assert_eq!(records[1].source_version.as_deref(), Some("1:3.0.7-27.el9"));
}

#[test]
fn inventory_combines_dpkg_and_rpm_and_survives_either_missing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let admindir = dir.path().join("admin");
    std::fs::create_dir_all(&admindir).expect("admindir");
    std::fs::write(admindir.join("status"), DPKG_STATUS).expect("write status");
    let sources = InventorySources { root: dir.path().to_owned(), dpkg_admindir: Some(admindir), rpm: true };
    let rpm = rpm_query_command(dir.path());

    let report =
        collect_inventory(&sources, &ScriptedCommands::new().answer(rpm.clone(), "bash\t0:5.1.8-9.el9\tx86_64\n"));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let inventory = report.inventory(vec!["KB5032190".into()]);
    assert_eq!(inventory.patches, vec!["KB5032190".to_owned()]);
    // libc6's two architectures are two entries; dpkg before rpm, by name.
    let libc: Vec<Option<&str>> =
        inventory.packages.iter().filter(|p| &*p.name == "libc6").map(|p| p.arch.as_deref()).collect();
    assert_eq!(libc, [Some("amd64"), Some("i386")]);
    assert_eq!(inventory.packages.len(), 9);
    assert_eq!(inventory.packages.last().map(|p| (p.manager, &*p.name)), Some((PackageManager::Rpm, "bash")));

    // No rpm on the host: dpkg alone, no problem.
    let report = collect_inventory(&sources, &ScriptedCommands::new().missing(rpm.clone()));
    assert!(report.problems.is_empty());
    assert_eq!(report.records.len(), 8);

    // A failing rpm is a problem, and dpkg's packages still count.
    let report =
        collect_inventory(&sources, &ScriptedCommands::new().fail(rpm, 1, "error: cannot open Packages database"));
    assert_eq!(report.records.len(), 8);
    assert_eq!(report.problems.len(), 1);
    assert!(report.problems[0].to_string().contains("cannot open Packages database"), "{}", report.problems[0]);

    // Neither database: an empty inventory, not an error.
    let empty = InventorySources { root: dir.path().join("nothing"), dpkg_admindir: None, rpm: false };
    let report = collect_inventory(&empty, &ScriptedCommands::new());
    assert!(report.records.is_empty() && report.problems.is_empty());
}

// --- sources ----------------------------------------------------------------

#[test]
fn dpkg_source_fields_name_the_source_and_maybe_its_version() {
    assert_eq!(parse_dpkg_source("util-linux (2.38.1-5+deb12u3)"), Some(("util-linux", Some("2.38.1-5+deb12u3"))));
    assert_eq!(parse_dpkg_source("openssl"), Some(("openssl", None)));
    assert_eq!(parse_dpkg_source("  foo   ( 1.2-3 ) "), Some(("foo", Some("1.2-3"))));
    // A version dpkg would not have written is left out; the name holds.
    assert_eq!(parse_dpkg_source("foo (1.2-3"), Some(("foo", None)));
    assert_eq!(parse_dpkg_source("foo ()"), Some(("foo", None)));
    assert_eq!(parse_dpkg_source(""), None);
}

const DPKG_SOURCES: &str = "\
Package: bsdutils
Status: install ok installed
Architecture: amd64
Source: util-linux (2.38.1-5+deb12u3)
Version: 1:2.38.1-5+deb12u3

Package: util-linux
Status: install ok installed
Architecture: amd64
Version: 2.38.1-5+deb12u3

Package: libfoo1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: foo (1.2-3)
Version: 1.2-3+b1

Package: libfoo1
Status: install ok installed
Architecture: i386
Multi-Arch: same
Source: foo (1.2-3)
Version: 1.2-3+b1

Package: libssl3
Status: install ok installed
Architecture: amd64
Source: openssl
Version: 3.0.15-1~deb12u1

Package: gzip
Status: install ok installed
Architecture: amd64
Source: gzip (1.12-1)
Version: 1.12-1";

/// `(name, arch, version, source, source version)` as the engine reads
/// them off the wire (absent: the binary's own).
fn as_the_engine_reads(packages: &[InstalledPackage]) -> Vec<(String, String, String, String, String)> {
    packages
        .iter()
        .map(|p| {
            let arch = p.arch.as_deref().unwrap_or_default().to_owned();
            let (source, source_version) = (p.source_name().to_owned(), p.source_version().to_owned());
            (p.name.to_string(), arch, p.version.to_string(), source, source_version)
        })
        .collect()
}

fn rows(list: &[(&str, &str, &str, &str, &str)]) -> Vec<(String, String, String, String, String)> {
    list.iter().map(|(a, b, c, d, e)| ((*a).into(), (*b).into(), (*c).into(), (*d).into(), (*e).into())).collect()
}

#[test]
fn dpkg_packages_name_their_source_and_keep_architecture_copies() {
    let records = parse_dpkg_status(DPKG_SOURCES);
    let dpkg = |name: &str, version: &str, arch: &str| PackageRecord::new(PackageManager::Dpkg, name, version, arch);
    assert_eq!(
        records,
        vec![
            dpkg("bsdutils", "1:2.38.1-5+deb12u3", "amd64").built_from("util-linux", "2.38.1-5+deb12u3"),
            dpkg("util-linux", "2.38.1-5+deb12u3", "amd64"),
            dpkg("libfoo1", "1.2-3+b1", "amd64").built_from("foo", "1.2-3"),
            dpkg("libfoo1", "1.2-3+b1", "i386").built_from("foo", "1.2-3"),
            dpkg("libssl3", "3.0.15-1~deb12u1", "amd64").built_from("openssl", "3.0.15-1~deb12u1"),
            dpkg("gzip", "1.12-1", "amd64"),
        ]
    );
    // The wire carries only what differs from the binary's own.
    let wire: Vec<serde_json::Value> =
        records.iter().map(|r| serde_json::to_value(r.installed()).expect("JSON")).collect();
    assert_eq!(
        wire[0],
        serde_json::json!({"manager": "dpkg", "name": "bsdutils", "version": "1:2.38.1-5+deb12u3",
                           "arch": "amd64", "source": "util-linux", "sourceVersion": "2.38.1-5+deb12u3"})
    );
    assert_eq!(
        wire[4],
        serde_json::json!({"manager": "dpkg", "name": "libssl3", "version": "3.0.15-1~deb12u1",
                           "arch": "amd64", "source": "openssl"})
    );
    assert_eq!(wire[5], serde_json::json!({"manager": "dpkg", "name": "gzip", "version": "1.12-1", "arch": "amd64"}));
    // Both libfoo1 copies reach the engine, sorted by name and architecture.
    let report = patchward_agent::inventory::InventoryReport { records, problems: vec![] };
    let inventory = report.inventory(vec![]);
    assert_eq!(
        as_the_engine_reads(&inventory.packages),
        rows(&[
            ("bsdutils", "amd64", "1:2.38.1-5+deb12u3", "util-linux", "2.38.1-5+deb12u3"),
            ("gzip", "amd64", "1.12-1", "gzip", "1.12-1"),
            ("libfoo1", "amd64", "1.2-3+b1", "foo", "1.2-3"),
            ("libfoo1", "i386", "1.2-3+b1", "foo", "1.2-3"),
            ("libssl3", "amd64", "3.0.15-1~deb12u1", "openssl", "3.0.15-1~deb12u1"),
            ("util-linux", "amd64", "2.38.1-5+deb12u3", "util-linux", "2.38.1-5+deb12u3"),
        ])
    );
}

/// dpkg-query's own reading of an admin directory, as the engine should
/// see it: `(name, arch, version, source, source version)`.
fn dpkg_query_sources(admindir: &Path) -> Vec<(String, String, String, String, String)> {
    let output = Command::new("dpkg-query")
        .arg(format!("--admindir={}", admindir.display()))
        .args([
            "-W",
            "-f",
            "${db:Status-Status}\t${Package}\t${Architecture}\t${Version}\t${source:Package}\t${source:Version}\n",
        ])
        .output()
        .expect("dpkg-query runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut rows: Vec<_> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            let [status, name, arch, version, source, source_version] = columns.as_slice() else { return None };
            let installed = ["installed", "triggers-pending", "triggers-awaited"].contains(status);
            let row = |s: &str| s.to_owned();
            installed.then(|| (row(name), row(arch), row(version), row(source), row(source_version)))
        })
        .collect();
    rows.sort();
    rows
}

/// Packages built with `Source:` fields and architecture copies, installed
/// by the real dpkg on a sandbox root: the inventory reads each package's
/// source as dpkg-query does.
#[test]
fn sources_read_as_dpkg_query_reads_them_on_a_sandbox_root() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let root = DpkgRoot::sandbox(&dir.path().join("root")).expect("a sandbox root");
    let installer = DebInstaller::new(root.clone());
    let native = String::from_utf8(Command::new("dpkg").arg("--print-architecture").output().expect("dpkg").stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();
    let foreign = if native == "i386" { "amd64" } else { "i386" };
    let added = Command::new("dpkg")
        .args(root.dpkg_argv().iter().skip(1))
        .args(["--add-architecture", foreign])
        .output()
        .expect("dpkg --add-architecture runs");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let libfoo = |arch: &str| {
        DebSpec::new("libfoo1", "1.2-3+b1")
            .architecture(arch)
            .field("Multi-Arch", "same")
            .field("Source", "foo (1.2-3)")
    };
    let specs = [
        DebSpec::new("util-linux", "2.38.1-5+deb12u3").architecture(&native),
        DebSpec::new("bsdutils", "1:2.38.1-5+deb12u3")
            .architecture(&native)
            .field("Source", "util-linux (2.38.1-5+deb12u3)"),
        libfoo(&native),
        libfoo(foreign),
        DebSpec::new("libssl3", "3.0.15-1~deb12u1").architecture(&native).field("Source", "openssl"),
    ];
    let cache = Cache::open(&dir.path().join("state")).expect("a cache");
    let out = dir.path().join("build");
    std::fs::create_dir_all(&out).expect("the build directory");
    for spec in &specs {
        let blob = cache.put(&std::fs::read(spec.build(&out).expect("dpkg-deb builds")).expect("read")).expect("put");
        let staged = VerifiedPackage::stage(&blob, PackageType::Deb, cache.staging_dir()).expect("staged");
        assert_eq!(installer.install(&staged, &[]).expect("dpkg runs"), Outcome::Succeeded, "{}", spec.name);
    }

    let records = read_dpkg_packages(&root.admindir()).expect("reads the status file");
    let report = patchward_agent::inventory::InventoryReport { records, problems: vec![] };
    let mut ours = as_the_engine_reads(&report.inventory(vec![]).packages);
    ours.sort();
    let theirs = dpkg_query_sources(&root.admindir());
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 5, "both libfoo1 copies are listed: {ours:?}");
    assert!(ours.contains(&rows(&[("libfoo1", foreign, "1.2-3+b1", "foo", "1.2-3")])[0]));
    assert!(ours.contains(&rows(&[("bsdutils", &native, "1:2.38.1-5+deb12u3", "util-linux", "2.38.1-5+deb12u3")])[0]));
}

/// This machine's own dpkg database: every package's source as dpkg-query
/// reads it.
#[test]
fn this_machines_sources_read_as_dpkg_query_reads_them() {
    let admindir = Path::new("/var/lib/dpkg");
    assert!(
        admindir.join("status").exists(),
        "this test needs a Debian host with a dpkg database at /var/lib/dpkg: run it where the agent runs"
    );
    let records = read_dpkg_packages(admindir).expect("reads the status file");
    let report = patchward_agent::inventory::InventoryReport { records, problems: vec![] };
    let mut ours = as_the_engine_reads(&report.inventory(vec![]).packages);
    ours.sort();
    assert_eq!(ours, dpkg_query_sources(admindir));
}

#[test]
fn source_rpms_split_from_the_right() {
    let parsed = |field| parse_source_rpm(field).map(|s: SourceRpm<'_>| (s.name, s.version, s.release));
    assert_eq!(parsed("openssl-3.0.7-27.el9.src.rpm"), Some(("openssl", "3.0.7", "27.el9")));
    assert_eq!(parsed("perl-IO-Socket-SSL-2.073-1.el9.src.rpm"), Some(("perl-IO-Socket-SSL", "2.073", "1.el9")));
    assert_eq!(parsed("kernel-5.14.0-427.13.1.el9_4.src.rpm"), Some(("kernel", "5.14.0", "427.13.1.el9_4")));
    assert_eq!(parsed("java-17-openjdk-17.0.9.0.9-2.el9.nosrc.rpm"), Some(("java-17-openjdk", "17.0.9.0.9", "2.el9")));
    assert_eq!(parsed("(none)"), None);
    assert_eq!(parsed(""), None);
    assert_eq!(parsed("openssl-3.0.7.src.rpm"), None);
    assert_eq!(parsed("openssl-3.0.7-27.el9.x86_64.rpm"), None);
}

const RPM_QA_SOURCES: &str = "openssl-libs\t1:3.0.7-27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm\n\
openssl-libs\t1:3.0.7-27.el9\ti686\topenssl-3.0.7-27.el9.src.rpm\n\
bash\t0:5.1.8-9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm\n\
python3-libs\t0:3.9.18-3.el9\tx86_64\tpython3.9-3.9.18-3.el9.src.rpm\n\
perl-Errno\t0:1.30-481.el9\tx86_64\tperl-5.32.1-481.el9.src.rpm\n\
gpg-pubkey\t0:fd431d51-4ae0493b\t(none)\t(none)\n\
local-thing\t0:1.0-1\tx86_64\t(none)\n";

#[test]
fn rpm_lines_name_their_source_rpm_with_the_binarys_epoch() {
    let records = parse_rpm_query(RPM_QA_SOURCES);
    let rpm = |name: &str, version: &str, arch: &str| PackageRecord::new(PackageManager::Rpm, name, version, arch);
    assert_eq!(
        records,
        vec![
            // SOURCERPM has no epoch; the source's is the binary's 1.
            rpm("openssl-libs", "1:3.0.7-27.el9", "x86_64").built_from("openssl", "1:3.0.7-27.el9"),
            rpm("openssl-libs", "1:3.0.7-27.el9", "i686").built_from("openssl", "1:3.0.7-27.el9"),
            rpm("bash", "5.1.8-9.el9", "x86_64"),
            rpm("python3-libs", "3.9.18-3.el9", "x86_64").built_from("python3.9", "3.9.18-3.el9"),
            rpm("perl-Errno", "1.30-481.el9", "x86_64").built_from("perl", "5.32.1-481.el9"),
            rpm("local-thing", "1.0-1", "x86_64"),
        ]
    );
    assert_eq!(records[0].source.as_deref(), Some("openssl"));
    assert_eq!(records[0].source_version, None);
    assert_eq!(records[4].source_version.as_deref(), Some("5.32.1-481.el9"));
    let inventory = patchward_agent::inventory::InventoryReport { records, problems: vec![] }.inventory(vec![]);
    let arches: Vec<_> = inventory
        .packages
        .iter()
        .filter(|p| &*p.name == "openssl-libs")
        .map(|p| p.arch.as_deref().map(str::to_owned))
        .collect();
    assert_eq!(arches, [Some("i686".to_owned()), Some("x86_64".to_owned())]);
}

// --- the Windows edge, as data ------------------------------------------

#[test]
fn windows_command_lines_are_written_out() {
    assert_eq!(
        hotfix_query().to_string(),
        r#"powershell.exe -NoProfile -NonInteractive -Command "Get-HotFix | Select-Object -ExpandProperty HotFixID""#
    );
    assert_eq!(
        registry_query(r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion", "UBR"),
        CommandLine::new(
            "reg.exe",
            ["query", r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion", "/v", "UBR", "/reg:64"]
        )
    );
    assert_eq!(
        uninstall_query(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall").args,
        vec!["query", r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall", "/s"]
    );
    let version = file_version_query(r"C:\Program Files\O'Brien\app.exe");
    assert_eq!(version.program, "powershell.exe");
    assert_eq!(
        version.args[3],
        r"$p = 'C:\Program Files\O''Brien\app.exe'; if (Test-Path -LiteralPath $p -PathType Leaf) { $v = (Get-Item -LiteralPath $p).VersionInfo; '{0}.{1}.{2}.{3}' -f $v.FileMajorPart, $v.FileMinorPart, $v.FileBuildPart, $v.FilePrivatePart } else { 'MISSING' }"
    );
    assert!(file_hash_query(r"C:\x.dll").args[3].contains("(Get-FileHash -Algorithm SHA256 -LiteralPath $p).Hash"));
    assert_eq!(powershell_literal("a'b$c"), "'a''b$c'");
}

#[test]
fn windows_outputs_parse() {
    // Get-HotFix, as PowerShell prints it (CRLF, a trailing blank line,
    // the odd "File 1" placeholder of an update without an id).
    let hotfixes = "KB5031455\r\nkb5032190\r\nFile 1\r\nKB5027397\r\n\r\n";
    assert_eq!(parse_hotfix_ids(hotfixes), vec!["KB5027397", "KB5031455", "KB5032190"]);

    let ubr = "\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\r\n    UBR    REG_DWORD    0x116c\r\n\r\n";
    assert_eq!(parse_reg_query_value(ubr, "UBR").as_deref(), Some("4460"));
    let display = "\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\n    DisplayVersion    REG_SZ    23H2\n    ProductName    REG_SZ    Windows 10 Pro  Edition\n";
    assert_eq!(parse_reg_query_value(display, "displayversion").as_deref(), Some("23H2"));
    assert_eq!(parse_reg_query_value(display, "ProductName").as_deref(), Some("Windows 10 Pro  Edition"));
    assert_eq!(parse_reg_query_value(display, "UBR"), None);

    let uninstall = [
        "",
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\7-Zip",
        "    DisplayName    REG_SZ    7-Zip 24.08 (x64)",
        "    DisplayVersion    REG_SZ    24.08",
        "    NoModify    REG_DWORD    0x1",
        "",
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\AddressBook",
        "",
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{90160000-008C-0000-1000-0000000FF1CE}",
        "    DisplayName    REG_SZ    Office 16 Click-to-Run Extensibility Component",
        "    UninstallString    REG_EXPAND_SZ    MsiExec.exe /X{90160000-008C-0000-1000-0000000FF1CE}",
        "",
    ]
    .join("\r\n");
    let uninstall = uninstall.as_str();
    assert_eq!(
        parse_uninstall_entries(uninstall),
        vec![
            InstalledProgram {
                key: r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\7-Zip".into(),
                display_name: "7-Zip 24.08 (x64)".into(),
                display_version: Some("24.08".into()),
            },
            InstalledProgram {
                key: r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\{90160000-008C-0000-1000-0000000FF1CE}"
                    .into(),
                display_name: "Office 16 Click-to-Run Extensibility Component".into(),
                display_version: None,
            },
        ]
    );

    assert_eq!(parse_file_version("10.0.22631.4460\r\n"), Ok(Some("10.0.22631.4460".into())));
    assert_eq!(parse_file_version("10.0.22621.1 (WinBuild.160101.0800)"), Ok(Some("10.0.22621.1".into())));
    assert_eq!(parse_file_version("MISSING\r\n"), Ok(None));
    assert!(parse_file_version("Get-Item : Access is denied").is_err());
    let hash = "4D9F3C1B0A7E6D5C4B3A29180F7E6D5C4B3A29180F7E6D5C4B3A29180F7E6D5C";
    assert_eq!(parse_file_hash(hash), Ok(Some(hash.to_ascii_lowercase())));
    assert_eq!(parse_file_hash("MISSING"), Ok(None));
    assert!(parse_file_hash("not a hash").is_err());
}

#[test]
fn the_windows_probe_runs_those_commands() {
    let key = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion";
    let runner = ScriptedCommands::new()
        .answer(hotfix_query(), "KB5032190\r\n")
        .answer(registry_query(key, "UBR"), &format!("\r\n{key}\r\n    UBR    REG_DWORD    0x116c\r\n"))
        .fail(
            registry_query(key, "Missing"),
            1,
            "ERROR: The system was unable to find the specified registry key or value.",
        )
        .fail(registry_query(key, "Denied"), 1, "ERROR: Access is denied.")
        .answer(file_version_query(r"C:\Windows\System32\ntoskrnl.exe"), "10.0.22631.4460\r\n")
        .answer(
            uninstall_query(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"),
            "HKEY_LOCAL_MACHINE\\X\\7-Zip\r\n    DisplayName    REG_SZ    7-Zip\r\n",
        )
        .fail(uninstall_query(r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall"), 1, "ERROR: …");
    let probe = CommandWindowsProbe { runner };
    assert_eq!(probe.installed_hotfixes().expect("hotfixes"), vec!["KB5032190"]);
    assert_eq!(probe.registry_value(key, "UBR").expect("UBR"), Some("4460".into()));
    assert_eq!(probe.registry_value(key, "Missing").expect("a missing value is not an error"), None);
    assert!(probe.registry_value(key, "Denied").is_err());
    assert_eq!(
        probe.file_version(r"C:\Windows\System32\ntoskrnl.exe").expect("version"),
        Some("10.0.22631.4460".into())
    );
    assert_eq!(probe.installed_programs().expect("programs").len(), 1);
}
