//! Installed packages, for the engine's applicability (`fixes`) and the
//! agent's detection: dpkg's status database, parsed here, and rpm's
//! database, asked through `rpm` itself (its format is a Berkeley DB, NDB
//! or SQLite file depending on the release: only rpm reads them all).
//!
//! Every package names the source it was built from (DESIGN, "The
//! inventory names each package's source"), because Debian's and Ubuntu's
//! advisories name source packages and compare source versions:
//!
//! - **dpkg**: the `Source:` field. Absent, the package is its own source
//!   at its own version; `Source: x` names another source at the binary's
//!   version; `Source: x (1.2-3)` carries the source's own version, which
//!   differs from the binary's when the binary has an epoch the source has
//!   not (`bsdutils 1:2.38.1-5+deb12u3` from `util-linux 2.38.1-5+deb12u3`)
//!   or is a binNMU (`libfoo1 1.2-3+b1` from `foo 1.2-3`). This is how
//!   `dpkg-query`'s `${source:Package}` and `${source:Version}` read it.
//! - **rpm**: `%{SOURCERPM}`, `name-version-release.src.rpm`, split from
//!   the right (names may hold `-`, versions and releases may not).
//!   Packages without one (`gpg-pubkey`) say `(none)`. The file name has
//!   no epoch: the source's is taken to be the binary's (`%{EPOCHNUM}`,
//!   written only when non-zero), since subpackages inherit the spec's.
//!
//! On the wire a source is named only where it differs from the binary's
//! name, and a source version only where it differs from the binary's
//! version: absent means "the binary's own", and most packages need neither.
//! Architecture copies (`libssl3:amd64` and `libssl3:i386`) are separate
//! entries, each with its `arch` in the manager's own words.

use std::io;
use std::path::{Path, PathBuf};

use patchward_api::{InstalledPackage, Inventory, PackageManager};

use crate::observe::{CommandError, CommandLine, CommandRunner};

/// One installed package: what the wire's [`InstalledPackage`] says, with
/// the architecture always known (empty where the manager has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackageRecord {
    pub manager: PackageManager,
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package, only where it is not `name`.
    pub source: Option<String>,
    /// The source's version, only where it is not `version`.
    pub source_version: Option<String>,
}

impl PackageRecord {
    /// A package that is its own source.
    pub fn new(manager: PackageManager, name: &str, version: &str, arch: &str) -> PackageRecord {
        PackageRecord {
            manager,
            name: name.to_owned(),
            version: version.to_owned(),
            arch: arch.to_owned(),
            source: None,
            source_version: None,
        }
    }

    /// Built from `source` at `source_version`; either is kept only where
    /// it differs from the binary's own (see the module docs).
    pub fn built_from(mut self, source: &str, source_version: &str) -> PackageRecord {
        self.source = (source != self.name).then(|| source.to_owned());
        self.source_version = (source_version != self.version).then(|| source_version.to_owned());
        self
    }

    pub fn installed(&self) -> InstalledPackage {
        InstalledPackage {
            manager: self.manager,
            name: self.name.as_str().into(),
            version: self.version.as_str().into(),
            arch: (!self.arch.is_empty()).then(|| self.arch.as_str().into()),
            source: self.source.as_deref().map(Into::into),
            source_version: self.source_version.as_deref().map(Into::into),
        }
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
    text.split("\n\n").filter_map(parse_dpkg_stanza).collect()
}

/// The fields of one stanza that the inventory reads.
#[derive(Default)]
struct DpkgStanza<'a> {
    name: Option<&'a str>,
    version: Option<&'a str>,
    arch: Option<&'a str>,
    status: Option<&'a str>,
    source: Option<&'a str>,
}

fn parse_dpkg_stanza(stanza: &str) -> Option<PackageRecord> {
    let mut fields = DpkgStanza::default();
    for line in stanza.lines() {
        // Continuation lines (a Description's body, Conffiles) start with space.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        // Field names are case-insensitive in deb822.
        match field.trim().to_ascii_lowercase().as_str() {
            "package" => fields.name = Some(value),
            "version" => fields.version = Some(value),
            "architecture" => fields.arch = Some(value),
            "status" => fields.status = Some(value),
            "source" => fields.source = Some(value),
            _ => {}
        }
    }
    let (Some(name), Some(version), Some(status)) = (fields.name, fields.version, fields.status) else {
        return None;
    };
    let words: Vec<&str> = status.split_whitespace().collect();
    let installed = matches!(words.as_slice(), [_, "ok", "installed" | "triggers-awaited" | "triggers-pending"]);
    if !installed || name.is_empty() || version.is_empty() {
        return None;
    }
    let record = PackageRecord::new(PackageManager::Dpkg, name, version, fields.arch.unwrap_or(""));
    Some(match fields.source.and_then(parse_dpkg_source) {
        Some((source, source_version)) => record.built_from(source, source_version.unwrap_or(version)),
        None => record,
    })
}

/// dpkg's `Source:` field: `x` or `x (1.2-3)`, the source's name and, when
/// it differs from the binary's, its version. `None` for an empty field;
/// a version not closed by `)` is ignored (the name still counts).
pub fn parse_dpkg_source(field: &str) -> Option<(&str, Option<&str>)> {
    let field = field.trim();
    let (name, rest) = field.split_once(char::is_whitespace).unwrap_or((field, ""));
    if name.is_empty() {
        return None;
    }
    let version =
        rest.trim().strip_prefix('(').and_then(|v| v.strip_suffix(')')).map(str::trim).filter(|v| !v.is_empty());
    Some((name, version))
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
pub const RPM_QUERY_FORMAT: &str = "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\n";

/// `rpm --root ROOT -qa --qf …`: every installed package. Under a root
/// other than `/` the database is the one the agent's rpm and dnf use
/// there (`RpmRoot`'s `--dbpath`): Debian's rpm would otherwise look in
/// `ROOT/root/.rpmdb`.
pub fn rpm_query_command(root: &Path) -> CommandLine {
    let mut args = vec!["--root".to_owned(), root.display().to_string()];
    if root != Path::new("/") {
        args.push(format!("--dbpath={}", crate::install::rpm::DB_PATH));
    }
    args.extend(["-qa".to_owned(), "--qf".to_owned(), RPM_QUERY_FORMAT.to_owned()]);
    CommandLine::new("rpm", args)
}

/// Parses [`RPM_QUERY_FORMAT`] lines.
///
/// `%{EPOCHNUM}` is 0 for a package without an epoch; the version is
/// written without it then (`3.0.7-27.el9`, as rpm and the advisories print
/// it), and as `1:3.0.7-27.el9` with one. The engine's rpm comparison reads
/// a missing epoch as 0, so both forms compare the same against any
/// `fixedVersion`. `gpg-pubkey` entries are imported signing keys, not
/// packages, and are left out. A line without the source column (an older
/// query format) is its own source.
pub fn parse_rpm_query(text: &str) -> Vec<PackageRecord> {
    text.lines().filter_map(parse_rpm_line).collect()
}

fn parse_rpm_line(line: &str) -> Option<PackageRecord> {
    let mut columns = line.split('\t');
    let name = columns.next()?.trim();
    let evr = columns.next()?.trim();
    let arch = columns.next().unwrap_or("").trim();
    let source_rpm = columns.next().unwrap_or("").trim();
    if name.is_empty() || name == "gpg-pubkey" {
        return None;
    }
    let (epoch, version_release) = evr.split_once(':')?;
    if version_release.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let epoch = epoch.trim_start_matches('0');
    let with_epoch = |version_release: &str| match epoch {
        "" => version_release.to_owned(),
        epoch => format!("{epoch}:{version_release}"),
    };
    let arch = if arch == "(none)" { "" } else { arch };
    let record = PackageRecord::new(PackageManager::Rpm, name, &with_epoch(version_release), arch);
    Some(match parse_source_rpm(source_rpm) {
        // SOURCERPM's file name has no epoch, but the source has one: the
        // spec's `Epoch:` is the source rpm's and its subpackages inherit
        // it (a `%package` section may set its own, which few specs do), so
        // the binary's epoch is the source's. Without it, a source version
        // compared against an advisory's `1:3.0.7-28.el9` would always be
        // below.
        Some(source) => record.built_from(source.name, &with_epoch(&source.version_release())),
        None => record,
    })
}

/// A source rpm's file name, `name-version-release.src.rpm`, taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceRpm<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub release: &'a str,
}

impl SourceRpm<'_> {
    pub fn version_release(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }
}

/// Parses `%{SOURCERPM}`, split from the right: the release and the version
/// hold no `-`, the name may (`python3-libs-3.9.18-3.el9.src.rpm`). `None`
/// for `(none)` (a package without a source rpm, as `gpg-pubkey`), an
/// empty column or a name that is not a source rpm's. `.nosrc.rpm` (a
/// source package shipped without its sources) counts the same.
pub fn parse_source_rpm(field: &str) -> Option<SourceRpm<'_>> {
    let field = field.trim();
    let stem = field.strip_suffix(".src.rpm").or_else(|| field.strip_suffix(".nosrc.rpm"))?;
    let (name_version, release) = stem.rsplit_once('-')?;
    let (name, version) = name_version.rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return None;
    }
    Some(SourceRpm { name, version, release })
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
    /// The wire form, sorted by manager, name, architecture and version.
    /// A name installed for several architectures (dpkg's `Multi-Arch:
    /// same`) is one entry per architecture: a fix is judged on every copy,
    /// and one old copy still carries the flaw. Exact duplicates are listed
    /// once.
    pub fn inventory(&self, patches: Vec<String>) -> Inventory {
        let mut packages: Vec<InstalledPackage> = self.records.iter().map(PackageRecord::installed).collect();
        let key = |p: &InstalledPackage| {
            (p.manager, p.name.clone(), p.arch.clone(), p.version.clone(), p.source.clone(), p.source_version.clone())
        };
        packages.sort_by_cached_key(key);
        packages.dedup();
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
