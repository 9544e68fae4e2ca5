//! Installed packages, for the engine's applicability (`fixes`) and the
//! agent's `package` detection: dpkg's status database, parsed here, and
//! rpm's database, asked through `rpm` itself (its format is a Berkeley DB,
//! NDB or SQLite file depending on the release: only rpm reads them all).

use std::io;
use std::path::{Path, PathBuf};

use patchward_api::{InstalledPackage, Inventory, PackageManager};

use crate::observe::{CommandError, CommandLine, CommandRunner};

/// One installed package, with its architecture (the wire type has none:
/// the engine matches by name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRecord {
    pub manager: PackageManager,
    pub name: String,
    pub version: String,
    pub arch: String,
}

impl PackageRecord {
    pub fn installed(&self) -> InstalledPackage {
        InstalledPackage { manager: self.manager, name: self.name.clone(), version: self.version.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Command(#[from] CommandError),
}

// --- dpkg -----------------------------------------------------------------

/// dpkg's database under a root, as `dpkg --root ROOT` finds it.
pub fn dpkg_admindir(root: &Path) -> PathBuf {
    root.join("var/lib/dpkg")
}

/// The packages that are installed according to a dpkg `status` file.
///
/// A stanza counts when its `Status` (`want flag state`) has the flag `ok`
/// and a state in which the package's files are unpacked and configured:
/// `installed`, or `triggers-awaited` / `triggers-pending` (configured,
/// with trigger processing outstanding). The want word does not matter: a
/// package on `hold` (`hold ok installed`) or selected for removal but not
/// yet removed (`deinstall ok installed`) is still on disk at its version;
/// leaving a held, vulnerable openssl out of the inventory would hide it
/// from the engine's applicability. Half-installed, unpacked-only,
/// config-files and `reinstreq` stanzas are not installed.
pub fn parse_dpkg_status(text: &str) -> Vec<PackageRecord> {
    let mut records = Vec::new();
    for stanza in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut arch = None;
        let mut status = None;
        for line in stanza.lines() {
            // Continuation lines (a Description's body, Conffiles) start with space.
            if line.starts_with([' ', '\t']) {
                continue;
            }
            let Some((field, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            // Field names are case-insensitive in deb822.
            match field.trim().to_ascii_lowercase().as_str() {
                "package" => name = Some(value),
                "version" => version = Some(value),
                "architecture" => arch = Some(value),
                "status" => status = Some(value),
                _ => {}
            }
        }
        let (Some(name), Some(version), Some(status)) = (name, version, status) else { continue };
        let words: Vec<&str> = status.split_whitespace().collect();
        let installed = matches!(words.as_slice(), [_, "ok", "installed" | "triggers-awaited" | "triggers-pending"]);
        if installed && !name.is_empty() && !version.is_empty() {
            records.push(PackageRecord {
                manager: PackageManager::Dpkg,
                name: name.to_owned(),
                version: version.to_owned(),
                arch: arch.unwrap_or("").to_owned(),
            });
        }
    }
    records
}

/// Reads `ADMINDIR/status`.
pub fn read_dpkg_packages(admindir: &Path) -> Result<Vec<PackageRecord>, InventoryError> {
    let path = admindir.join("status");
    // dpkg writes UTF-8, but a maintainer's name in a stray encoding must
    // not cost the whole inventory.
    let bytes = std::fs::read(&path).map_err(|source| InventoryError::Read { path, source })?;
    Ok(parse_dpkg_status(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")))
}

// --- rpm ------------------------------------------------------------------

/// The query format: one line per package, tab-separated.
pub const RPM_QUERY_FORMAT: &str = "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\n";

/// `rpm --root ROOT -qa --qf …`: every installed package.
pub fn rpm_query_command(root: &Path) -> CommandLine {
    CommandLine::new(
        "rpm",
        [
            "--root".to_owned(),
            root.display().to_string(),
            "-qa".to_owned(),
            "--qf".to_owned(),
            RPM_QUERY_FORMAT.to_owned(),
        ],
    )
}

/// Parses [`RPM_QUERY_FORMAT`] lines.
///
/// `%{EPOCHNUM}` is 0 for a package without an epoch; the version is
/// written without it then (`3.0.7-27.el9`, as rpm and the advisories print
/// it), and as `1:3.0.7-27.el9` with one. The engine's rpm comparison reads
/// a missing epoch as 0, so both forms compare the same against any
/// `fixedVersion`. `gpg-pubkey` entries are imported signing keys, not
/// packages, and are left out.
pub fn parse_rpm_query(text: &str) -> Vec<PackageRecord> {
    text.lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let name = columns.next()?.trim();
            let evr = columns.next()?.trim();
            let arch = columns.next().unwrap_or("").trim();
            if name.is_empty() || name == "gpg-pubkey" {
                return None;
            }
            let (epoch, version_release) = evr.split_once(':')?;
            if version_release.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let version = match epoch.trim_start_matches('0') {
                "" => version_release.to_owned(),
                epoch => format!("{epoch}:{version_release}"),
            };
            let arch = if arch == "(none)" { "" } else { arch };
            Some(PackageRecord { manager: PackageManager::Rpm, name: name.to_owned(), version, arch: arch.to_owned() })
        })
        .collect()
}

/// Asks rpm. `Ok(None)` when rpm is not installed (a Debian host without
/// it); an rpm without a database under `root` lists nothing.
pub fn read_rpm_packages(
    root: &Path,
    runner: &dyn CommandRunner,
) -> Result<Option<Vec<PackageRecord>>, InventoryError> {
    match runner.run_ok(&rpm_query_command(root)) {
        Ok(stdout) => Ok(Some(parse_rpm_query(&stdout))),
        Err(CommandError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

// --- together -------------------------------------------------------------

/// Where the inventory is read from.
#[derive(Clone, Debug)]
pub struct InventorySources {
    pub root: PathBuf,
    /// dpkg's `--admindir`; `ROOT/var/lib/dpkg` when unset.
    pub dpkg_admindir: Option<PathBuf>,
    /// Whether to ask rpm (off for a sandbox that has only a dpkg root).
    pub rpm: bool,
}

impl InventorySources {
    pub fn system(root: impl Into<PathBuf>) -> InventorySources {
        InventorySources { root: root.into(), dpkg_admindir: None, rpm: true }
    }
}

/// The inventory, and each source that failed (the others still count).
#[derive(Debug, Default)]
pub struct InventoryReport {
    pub records: Vec<PackageRecord>,
    pub problems: Vec<InventoryError>,
}

impl InventoryReport {
    /// The wire form. A name installed for several architectures (dpkg's
    /// `Multi-Arch: same`) is listed once per distinct version.
    pub fn inventory(&self, patches: Vec<String>) -> Inventory {
        let mut packages: Vec<InstalledPackage> = Vec::with_capacity(self.records.len());
        for record in &self.records {
            let package = record.installed();
            if !packages.contains(&package) {
                packages.push(package);
            }
        }
        packages.sort_by(|a, b| (a.manager, &a.name, &a.version).cmp(&(b.manager, &b.name, &b.version)));
        Inventory { patches, packages }
    }
}

/// Reads dpkg (when its status file exists) and rpm (when `rpm` exists).
/// A host with neither has an empty inventory, not an error.
pub fn collect_inventory(sources: &InventorySources, runner: &dyn CommandRunner) -> InventoryReport {
    let mut report = InventoryReport::default();
    let admindir = sources.dpkg_admindir.clone().unwrap_or_else(|| dpkg_admindir(&sources.root));
    match read_dpkg_packages(&admindir) {
        Ok(records) => report.records.extend(records),
        // No dpkg on this host: nothing to list.
        Err(InventoryError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        Err(e) => report.problems.push(e),
    }
    if sources.rpm {
        match read_rpm_packages(&sources.root, runner) {
            Ok(records) => report.records.extend(records.unwrap_or_default()),
            Err(e) => report.problems.push(e),
        }
    }
    report
}
