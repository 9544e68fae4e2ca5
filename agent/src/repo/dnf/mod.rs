//! dnf, as the client of the device's own signed repositories: the twin of
//! [`super::apt`], with the same shape (the same records, fetches and
//! directions, a private staging folder per transaction) so the caller
//! treats both alike. Verified against dnf 4.14 and rpm 4.18.
//!
//! **Configuration is the system's own.** `--config=FILE` when the agent's
//! `dnf.config` names one, otherwise whatever dnf reads by itself. The agent
//! never sets `gpgcheck` or `repo_gpgcheck` (nor `localpkg_gpgcheck`, but
//! for its own backups: below); it
//! answers yes (`--assumeyes`) where dnf would ask a person: to the
//! transaction it decided on, and to importing the keys a repository's own
//! `gpgkey=` names. Every command adds only:
//!
//! - `skip_if_unavailable=False`: a repository whose metadata does not
//!   verify is an error, not skipped. Debian's default `dnf.conf` skips it
//!   and `makecache` then exits 0 (measured): this is apt's `--error-on=any`.
//! - `exit_on_lock=True`: dnf otherwise waits for its own lock forever; a
//!   held lock is "retry later" (G8), as is rpm's transaction lock, tested
//!   without waiting before an install (as [`crate::install::rpm`] does).
//! - C messages (`LC_ALL=C.UTF-8`, an empty `LANGUAGE`, which Python's
//!   gettext would read first): the transaction table is parsed.
//! - `--cacheonly` on everything but [`Dnf::refresh`]: the metadata is
//!   fetched and verified once, and nothing else touches the network.
//! - `strict=True` on a transaction: a target dnf cannot install is an
//!   error, not skipped with "Nothing to do.".
//!
//! **A root other than `/`** (`RpmRoot::sandbox` or `RpmRoot::tree`) moves
//! only the package database: `--installroot=ROOT` (dnf then keeps its
//! cache, history and logs under ROOT, whatever the configuration says, and
//! reads `ROOT/etc/dnf/dnf.conf` and `ROOT/etc/yum.repos.d` first when no
//! config is given), `--disableplugin=local` (its post-transaction hook
//! fails the transaction on GPG under an installroot) and
//! `--disableplugin=generate_completion_cache` (it writes the host's
//! `/var/cache/dnf/packages.db`, whatever the root). rpm's `%_dbpath` is
//! a macro dnf has no option for, and Debian's rpm keeps `~/.rpmdb`; rpm
//! reads `~/.rpmmacros` last, so every command runs with `HOME` set to
//! [`MACROS_HOME`] inside the root, whose `.rpmmacros` says `%_dbpath
//! /var/lib/rpm`, the database `RpmRoot` names with `--dbpath`. A sandbox
//! (an empty tree without a shell) also gets `tsflags=noscripts`, as
//! `RpmInstaller` passes `--noscripts`. `--releasever`: the agent's setting
//! if any; otherwise none when the root's database has a
//! `system-release(releasever)` provider (dnf reads it there, as it does on
//! `/`: `9` on a RHEL 9.4 whose os-release says `9.4`); otherwise
//! `VERSION_ID` of the root's os-release; otherwise none (dnf warns, and a
//! `$releasever` in a repository's URL stays unexpanded: the refresh fails).
//!
//! **The agent never lets dnf download.** The transaction is read from the
//! simulation's table (`--assumeno`); for each file it needs, its URL
//! (`repoquery --location`) and its sha256 and size from the signed index
//! (`%{chksum}`, which dnf 4 prints as Python's repr of hawkey's `(type,
//! bytes)` tuple, sha256 being type 2; `%{downloadsize}`). The agent fetches
//! and re-hashes the files itself and stages them under their location's
//! file name; [`Dnf::install`] places them in dnf's own package cache for
//! their repository (`%{pkgdir}`) and runs `--cacheonly`, so dnf checks the
//! same bytes against the signed index once more ("has incorrect checksum"
//! otherwise), checks signatures as the repository's `gpgcheck` says, and
//! downloads nothing. Handing them over as local files instead would check
//! them only as `localpkg_gpgcheck` says (off by default). The placed
//! copies are removed afterwards. A `file://` repository's `%{pkgdir}` is
//! the repository itself: nothing is placed there, dnf reads (and checks)
//! its files where they are. Local `files` are the agent's own backups
//! (`crate::repo::backup::rpm`), unsigned and vouched for by the sha256 it
//! journaled: they are handed over as such with `localpkg_gpgcheck=False`.
//!
//! **Refusals:** a refresh with any error; a transaction that would remove a
//! package: every installed name is protected (`protected_packages=glob:`
//! a file listing them, so dnf itself refuses "removing the following
//! protected packages", obsoletes and the `installonly_limit` included),
//! and a table with a `Removing` section or a `replacing` line is refused
//! too; a held lock (retry later).
//!
//! Source versions follow the inventory's rule (`crate::inventory`):
//! `%{SOURCERPM}` has no epoch, and the binary's is taken as the source's,
//! so a record and an installed package of one source compare alike.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RepoError;
use super::apt::{Direction, Fetch, IndexRecord, PackageVersion};
use crate::cache::{Sha256Digest, io_error};
use crate::install::deb::try_lock;
use crate::install::process::{self, ProcessExit, ProcessOutput, QUERY_BYTES};
use crate::install::rpm::{DB_PATH, RpmRoot};
use crate::install::{InstallError, check_package_name};

mod output;

use output::{Action, Row, version_of};
pub use output::{Transaction, parse_records, parse_transaction};

/// Where, inside a root other than `/`, the `HOME` holding `.rpmmacros`
/// is: the only file the agent adds to such a root.
pub const MACROS_HOME: &str = "/var/lib/patchward/dnf-home";

/// The protected-packages list, in the transaction's staging folder.
const PROTECTED_FILE: &str = "protected-packages.conf";

/// How long a query, a simulation or a refresh may take; installs take
/// the agent's install timeout.
const QUERY_TIMEOUT: Duration = Duration::from_secs(600);

/// One line per available version of a package (installed ones are not
/// listed by `repoquery` without `--installed`).
const RECORD_FORMAT: &str = "%{name}\t%{arch}\t%{epoch}:%{version}-%{release}\t%{sourcerpm}\t%{reponame}";

/// One line per file of a repository: `%{chksum}` last, since Python's
/// repr of its tuple holds a space.
const FILE_FORMAT: &str =
    "%{name}\t%{arch}\t%{epoch}:%{version}-%{release}\t%{downloadsize}\t%{pkgdir}\t%{location}\t%{chksum}";

/// Whether a command may refresh the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metadata {
    Refresh,
    Cached,
}

/// A root other than `/`.
#[derive(Debug, Clone)]
struct InstallRoot {
    path: PathBuf,
    sandbox: bool,
    releasever: Option<String>,
}

/// dnf on the system, or with its package database under an rpm root.
#[derive(Debug, Clone)]
pub struct Dnf {
    rpm: RpmRoot,
    installroot: Option<InstallRoot>,
    config: Option<PathBuf>,
    timeout: Duration,
}

impl Dnf {
    /// dnf acting on `root`'s rpm database (`RpmRoot::system()` for the
    /// machine's own), reading `config` (the agent's `dnf.config`) or else
    /// its own, installs bounded by `timeout`.
    pub fn new(root: RpmRoot, config: Option<PathBuf>, timeout: Duration) -> Dnf {
        let installroot = (root.root() != Path::new("/")).then(|| InstallRoot {
            path: root.root().to_owned(),
            sandbox: is_sandbox(&root),
            releasever: root_releasever(&root),
        });
        Dnf { rpm: root, installroot, config, timeout }
    }

    /// The agent's `--releasever` for a root other than `/`: it wins over
    /// what the root says. Ignored for `/`, where dnf detects it.
    pub fn with_releasever(mut self, releasever: &str) -> Result<Dnf, RepoError> {
        check_word("release version", releasever)?;
        if let Some(root) = &mut self.installroot {
            root.releasever = Some(releasever.to_owned());
        }
        Ok(self)
    }

    /// `dnf` and the options every command carries.
    /// The rpm database dnf acts on.
    pub fn rpm(&self) -> &RpmRoot {
        &self.rpm
    }

    fn argv(&self, metadata: Metadata) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec!["dnf".into()];
        if let Some(config) = &self.config {
            argv.push(flag("--config=", config));
        }
        if let Some(root) = &self.installroot {
            argv.push(flag("--installroot=", &root.path));
            // `local` fails the transaction on GPG under an installroot;
            // `generate_completion_cache` writes the host's
            // /var/cache/dnf/packages.db whatever the root.
            argv.extend(["--disableplugin=local", "--disableplugin=generate_completion_cache"].map(OsString::from));
            if let Some(releasever) = &root.releasever {
                argv.push(format!("--releasever={releasever}").into());
            }
            if root.sandbox {
                argv.push("--setopt=tsflags=noscripts".into());
            }
        }
        argv.extend(["--setopt=skip_if_unavailable=False", "--setopt=exit_on_lock=True"].map(OsString::from));
        if metadata == Metadata::Cached {
            argv.push("--cacheonly".into());
        }
        argv
    }

    /// The `HOME` whose `.rpmmacros` moves `%_dbpath` into the root,
    /// (re)written when it is not as expected; none for `/`.
    fn macros_home(&self) -> Result<Option<PathBuf>, RepoError> {
        let Some(root) = &self.installroot else { return Ok(None) };
        let home = root.path.join(MACROS_HOME.trim_start_matches('/'));
        let file = home.join(".rpmmacros");
        let text = format!("# patchward: dnf --installroot uses the database RpmRoot names\n%_dbpath {DB_PATH}\n");
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            std::fs::create_dir_all(&home).map_err(|e| InstallError::from(io_error("failed to create", &home)(e)))?;
            std::fs::write(&file, text).map_err(|e| InstallError::from(io_error("failed to write", &file)(e)))?;
        }
        Ok(Some(home))
    }

    fn run(&self, argv: &[OsString], timeout: Duration) -> Result<ProcessOutput, RepoError> {
        let home = self.macros_home()?;
        let mut env: Vec<(&str, &OsStr)> = vec![("LC_ALL", OsStr::new("C.UTF-8")), ("LANGUAGE", OsStr::new(""))];
        if let Some(home) = &home {
            env.push(("HOME", home.as_os_str()));
        }
        Ok(process::run_keeping(argv, &env, None, timeout, QUERY_BYTES)?)
    }

    /// Refreshes the metadata; any error (a signature that does not
    /// verify, a repository out of reach) refuses.
    pub fn refresh(&self) -> Result<(), RepoError> {
        let mut argv = self.argv(Metadata::Refresh);
        argv.extend(["--assumeyes", "makecache", "--refresh"].map(OsString::from));
        let out = self.run(&argv, QUERY_TIMEOUT)?;
        match out.exit {
            ProcessExit::Code(0) => Ok(()),
            exit if lock_held(exit, &out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out) }),
            _ => Err(RepoError::Refresh { message: last_error(&out) }),
        }
    }

    /// Every version of `name` for `arch` the repositories offer; none
    /// when they do not know the package.
    pub fn records(&self, name: &str, arch: &str) -> Result<Vec<IndexRecord>, RepoError> {
        check_package_name(name)?;
        check_package_name(arch)?;
        let mut argv = self.argv(Metadata::Cached);
        argv.extend(["--quiet".into(), "repoquery".into(), "--queryformat".into(), RECORD_FORMAT.into()]);
        argv.extend([format!("--arch={arch}").into(), name.into()]);
        let out = self.query(&argv, "dnf repoquery")?;
        let records = parse_records(&out).map_err(|line| unparsed("dnf repoquery", line))?;
        Ok(records.into_iter().filter(|r| r.name == name && r.arch == arch).collect())
    }

    /// Runs a query that succeeds with exit 0; its standard output.
    fn query(&self, argv: &[OsString], command: &str) -> Result<String, RepoError> {
        let out = self.run(argv, QUERY_TIMEOUT)?;
        match out.exit {
            ProcessExit::Code(0) => Ok(out.stdout_tail),
            exit if lock_held(exit, &out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out) }),
            exit => Err(failed(command, exit, &out)),
        }
    }

    /// Simulates the transaction; refuses one that would remove anything.
    pub fn simulate(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<(), RepoError> {
        self.plan(targets, files, direction, archives).map(drop)
    }

    /// The transaction as dnf would run it (`--assumeno`), every installed
    /// package protected; refuses one that would remove anything.
    fn plan(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<Vec<Row>, RepoError> {
        let protected = self.protect(archives)?;
        let mut argv = self.transaction(protected, "--assumeno", direction, !files.is_empty());
        argv.extend(operands(targets, files)?);
        let out = self.run(&argv, QUERY_TIMEOUT)?;
        refuse_protected(&out.stderr_tail)?;
        let command = format!("dnf --assumeno {}", verb(direction));
        let transaction = match parse_transaction(&out.stdout_tail) {
            Ok(Some(transaction)) => transaction,
            // "Nothing to do.": every target is installed already.
            Ok(None) if out.exit == ProcessExit::Code(0) => Transaction::default(),
            Ok(None) if lock_held(out.exit, &out.stderr_tail) => {
                return Err(RepoError::Locked { message: last_error(&out) });
            }
            Ok(None) => return Err(failed(&command, out.exit, &out)),
            Err(line) => return Err(unparsed(&command, line)),
        };
        let removed = transaction.removals();
        if !removed.is_empty() {
            return Err(RepoError::WouldRemove { packages: removed });
        }
        Ok(transaction.rows)
    }

    /// A transaction's command up to its operands: `strict`, so a target
    /// dnf cannot install is an error rather than skipped ("Nothing to
    /// do."), whatever the configuration says.
    ///
    /// The only local files the agent hands over are its own backups,
    /// rebuilt from the rpm database and unsigned: what vouches for them is
    /// the sha256 it journaled, checked again as they were staged (G1). So
    /// a transaction with files says `localpkg_gpgcheck=False`; the
    /// repositories' packages stay checked as their `gpgcheck` says.
    fn transaction(&self, protected: OsString, answer: &str, direction: Direction, files: bool) -> Vec<OsString> {
        let mut argv = self.argv(Metadata::Cached);
        argv.extend([protected, "--setopt=strict=True".into()]);
        if files {
            argv.push("--setopt=localpkg_gpgcheck=False".into());
        }
        argv.extend([answer.into(), verb(direction).into()]);
        argv
    }

    /// Writes the names of every installed package to the protected list
    /// in `archives`; the option that names it.
    fn protect(&self, archives: &Path) -> Result<OsString, RepoError> {
        let file = archives.join(PROTECTED_FILE);
        // dnf splits the option's value at spaces and commas and expands
        // glob patterns: the path must hold none.
        let text = file.to_str().unwrap_or(" ");
        if text.contains(|c: char| c.is_whitespace() || ",*?[]{}".contains(c)) {
            return Err(InstallError::InvalidName {
                what: "staging path",
                value: text.chars().take(200).collect(),
                why: "dnf cannot read a protected list under a path with spaces, commas or glob characters",
            }
            .into());
        }
        let mut argv = self.rpm.rpm_argv();
        argv.extend(["--query", "--all", "--queryformat=%{NAME}\\n"].map(OsString::from));
        let out = process::run_keeping(&argv, &[], None, QUERY_TIMEOUT, QUERY_BYTES)?;
        if out.exit != ProcessExit::Code(0) {
            return Err(failed("rpm --query --all", out.exit, &out));
        }
        let mut names: Vec<&str> = out.stdout_tail.lines().map(str::trim).filter(|n| !n.is_empty()).collect();
        names.sort_unstable();
        names.dedup();
        std::fs::create_dir_all(archives).map_err(|e| InstallError::from(io_error("failed to create", archives)(e)))?;
        let list: String = names.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&file, list).map_err(|e| InstallError::from(io_error("failed to write", &file)(e)))?;
        Ok(flag("--setopt=protected_packages=glob:", &file))
    }

    /// The files the transaction needs, from the signed index: dependencies
    /// included, those already installed or local not.
    pub fn uris(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<Vec<Fetch>, RepoError> {
        let rows = self.plan(targets, files, direction, archives)?;
        let mut fetches = Vec::new();
        for (repo, rows) in by_repository(&rows) {
            let files = self.repo_files(repo, &rows)?;
            let urls = self.locations(repo, &rows)?;
            for file in files {
                fetches.push(file.fetch(repo, &urls)?);
            }
        }
        Ok(fetches)
    }

    /// The index entries of `rows`, all from `repo`, in their order.
    fn repo_files(&self, repo: &str, rows: &[&Row]) -> Result<Vec<RepoFile>, RepoError> {
        let mut argv = self.argv(Metadata::Cached);
        argv.extend(["--quiet".into(), "repoquery".into(), repo_flag(repo)?, "--queryformat".into()]);
        argv.push(FILE_FORMAT.into());
        argv.extend(specs(rows)?);
        let out = self.query(&argv, "dnf repoquery")?;
        let mut files = parse_repo_files(&out).map_err(|line| unparsed("dnf repoquery", line))?;
        rows.iter()
            .map(|row| {
                let found =
                    files.iter().position(|f| (&f.name, &f.arch, &f.version) == (&row.name, &row.arch, &row.version));
                found.map(|i| files.swap_remove(i)).ok_or_else(|| RepoError::Unparsed {
                    command: format!("dnf repoquery --repo={repo}"),
                    line: format!("(nothing for {})", row.spec()),
                })
            })
            .collect()
    }

    /// The URLs of `rows`' files in `repo` (its first mirror's).
    fn locations(&self, repo: &str, rows: &[&Row]) -> Result<Vec<String>, RepoError> {
        let mut argv = self.argv(Metadata::Cached);
        argv.extend(["--quiet".into(), "repoquery".into(), repo_flag(repo)?, "--location".into()]);
        argv.extend(specs(rows)?);
        let out = self.query(&argv, "dnf repoquery --location")?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
    }

    /// Installs exactly `targets` from the files staged in `archives`
    /// (dnf downloads nothing) and the local `files`.
    pub fn install(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<(), RepoError> {
        self.check_rpm_lock()?;
        let rows = self.plan(targets, files, direction, archives)?;
        let placed = self.place(&rows, archives)?;
        let protected = flag("--setopt=protected_packages=glob:", &archives.join(PROTECTED_FILE));
        let mut argv = self.transaction(protected, "--assumeyes", direction, !files.is_empty());
        argv.extend(operands(targets, files)?);
        let out = self.run(&argv, self.timeout);
        drop(placed);
        let out = out?;
        refuse_protected(&out.stderr_tail)?;
        match out.exit {
            ProcessExit::Code(0) => Ok(()),
            exit if lock_held(exit, &out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out) }),
            exit => Err(failed(&format!("dnf {}", verb(direction)), exit, &out)),
        }
    }

    /// rpm's transaction lock fails dnf's transaction once it has started
    /// ("can't create transaction lock"): tested first, without waiting.
    fn check_rpm_lock(&self) -> Result<(), RepoError> {
        let lock = self.rpm.db_dir().join(".rpm.lock");
        if lock.parent().is_some_and(Path::is_dir) && try_lock(&lock)?.is_none() {
            let message = format!("the rpm transaction lock {} is held by another process", lock.display());
            return Err(RepoError::Locked { message });
        }
        Ok(())
    }

    /// Puts every staged file the transaction needs where dnf looks for
    /// its repository's downloads. A local repository's (`file://`) files
    /// are dnf's to read where they are: nothing is placed there.
    fn place(&self, rows: &[Row], archives: &Path) -> Result<Placed, RepoError> {
        let mut placed = Placed(Vec::new());
        for (repo, rows) in by_repository(rows) {
            for file in self.repo_files(repo, &rows)? {
                if !is_download_cache(&file.pkgdir, repo) {
                    continue;
                }
                let name = file_name(&file.location).ok_or_else(|| unparsed("dnf repoquery", file.location.clone()))?;
                let staged = archives.join(name);
                if !staged.is_file() {
                    return Err(RepoError::NotStaged { package: file.spec(), path: staged });
                }
                let target = file.pkgdir.join(name);
                place_file(&staged, &target)?;
                placed.0.push(target);
            }
        }
        Ok(placed)
    }
}

/// Where staged packages go for one transaction.
pub fn archives_dir(staging: &Path) -> PathBuf {
    staging.join("dnf-packages")
}

/// Whether `pkgdir` is dnf's download cache for `repo`
/// (`CACHEDIR/REPO-HASH/packages`, HASH 16 hex digits), not a local
/// repository's own folder, which `%{pkgdir}` names for a `file://`
/// repository. Anything else places nothing: dnf then fails for want of
/// the file (`--cacheonly`), it never deletes a repository's.
fn is_download_cache(pkgdir: &Path, repo: &str) -> bool {
    let repo_cache = pkgdir.parent().and_then(Path::file_name).and_then(OsStr::to_str);
    let hash = repo_cache.and_then(|dir| dir.strip_prefix(repo)?.strip_prefix('-'));
    pkgdir.file_name() == Some(OsStr::new("packages"))
        && hash.is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Files placed in dnf's package cache, removed when dropped.
struct Placed(Vec<PathBuf>);

impl Drop for Placed {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A hard link where the staging and dnf's cache share a filesystem, a
/// copy otherwise; whatever was there (dnf's leftover download) is
/// replaced.
fn place_file(staged: &Path, target: &Path) -> Result<(), RepoError> {
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |e| RepoError::from(InstallError::from(io_error(action, &path)(e)))
    };
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(io("failed to create", dir))?;
    }
    match std::fs::remove_file(target) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("failed to replace", target)(e)),
        _ => {}
    }
    if std::fs::hard_link(staged, target).is_err() {
        std::fs::copy(staged, target).map_err(io("failed to copy to", target))?;
    }
    Ok(())
}

/// dnf's verb for a transaction: `install` installs or upgrades to the
/// exact versions named.
fn verb(direction: Direction) -> &'static str {
    match direction {
        Direction::Upgrade => "install",
        Direction::Downgrade => "downgrade",
    }
}

/// `NAME-[EPOCH:]VERSION-RELEASE.ARCH` for each target, then the local
/// files (absolute, ending in `.rpm`: dnf takes anything else for a name).
fn operands(targets: &[PackageVersion], files: &[&Path]) -> Result<Vec<OsString>, RepoError> {
    let mut operands = Vec::new();
    for target in targets {
        check_package_name(&target.name)?;
        check_package_name(&target.arch)?;
        check_package_name(&target.version)?;
        operands.push(format!("{}-{}.{}", target.name, target.version, target.arch).into());
    }
    for file in files {
        if file.extension() != Some(OsStr::new("rpm")) {
            return Err(InstallError::InvalidName {
                what: "package file",
                value: file.display().to_string(),
                why: "dnf takes a local package only by a name ending in .rpm",
            }
            .into());
        }
        let absolute =
            std::path::absolute(file).map_err(|e| InstallError::from(io_error("failed to resolve", file)(e)))?;
        operands.push(absolute.into_os_string());
    }
    Ok(operands)
}

fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path.as_os_str());
    flag
}

fn repo_flag(repo: &str) -> Result<OsString, RepoError> {
    check_word("repository id", repo)?;
    Ok(format!("--repo={repo}").into())
}

/// A value passed on dnf's command line: no option, no glob, no space.
fn check_word(what: &'static str, value: &str) -> Result<(), InstallError> {
    let valid = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.len() <= 200
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "-._:~+".contains(c));
    if valid {
        Ok(())
    } else {
        Err(InstallError::InvalidName {
            what,
            value: value.chars().take(80).collect(),
            why: "it may hold only letters, digits and - . _ : ~ +, starting with a letter or digit",
        })
    }
}

fn specs(rows: &[&Row]) -> Result<Vec<OsString>, RepoError> {
    let mut specs = Vec::new();
    for row in rows {
        for part in [&row.name, &row.arch, &row.version] {
            check_package_name(part)?;
        }
        specs.push(row.spec().into());
    }
    Ok(specs)
}

/// The rows to fetch, grouped by the repository dnf chose for each:
/// nothing installed (`@System`) or local (`@commandline`).
fn by_repository(rows: &[Row]) -> BTreeMap<&str, Vec<&Row>> {
    let mut groups: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.action != Action::Remove && !r.repo.starts_with('@')) {
        groups.entry(row.repo.as_str()).or_default().push(row);
    }
    groups
}

/// Whether `root` is a sandbox: `RpmRoot` keeps it private, and a sandbox
/// is the one that differs from the tree at the same path.
fn is_sandbox(root: &RpmRoot) -> bool {
    RpmRoot::tree(root.root()).is_ok_and(|tree| tree != *root)
}

/// The `--releasever` a root calls for when the agent sets none (see the
/// module doc).
fn root_releasever(root: &RpmRoot) -> Option<String> {
    let mut argv = root.rpm_argv();
    argv.extend(["--query", "--whatprovides", "system-release(releasever)"].map(OsString::from));
    let detected = process::run(&argv, &[], None, Duration::from_secs(60));
    if detected.is_ok_and(|out| out.exit == ProcessExit::Code(0)) {
        return None;
    }
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|file| std::fs::read_to_string(root.root().join(file)).ok())
        .and_then(|text| os_release_version(&text))
}

/// `VERSION_ID` of an os-release file, unquoted.
pub fn os_release_version(text: &str) -> Option<String> {
    let value = text.lines().find_map(|line| line.trim().strip_prefix("VERSION_ID="))?;
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    check_word("release version", value).ok()?;
    Some(value.to_owned())
}

/// dnf's or rpm's words for a lock someone else holds.
fn lock_held(exit: ProcessExit, stderr: &str) -> bool {
    // 200: dnf's own lock, with exit_on_lock.
    exit == ProcessExit::Code(200)
        || ["already locked by", "can't create transaction lock", "Waiting for process with pid"]
            .iter()
            .any(|needle| stderr.contains(needle))
}

/// dnf's messages, for an error: its standard error without the notices
/// that say nothing about this failure (Debian's rpm wrapper, a release
/// version dnf cannot detect), the end kept when it is long.
fn last_error(out: &ProcessOutput) -> String {
    let noise =
        |line: &&str| line.is_empty() || line.starts_with("rpm: ") || line.starts_with("Unable to detect release");
    let lines: Vec<&str> = out.stderr_tail.lines().map(str::trim).filter(|l| !noise(l)).collect();
    let chosen = if lines.is_empty() { out.stdout_tail.trim().to_owned() } else { lines.join(" ") };
    let skip = chosen.chars().count().saturating_sub(2000);
    chosen.chars().skip(skip).collect()
}

fn failed(command: &str, exit: ProcessExit, out: &ProcessOutput) -> RepoError {
    RepoError::Failed { command: command.into(), exit, message: last_error(out) }
}

fn unparsed(command: &str, line: String) -> RepoError {
    RepoError::Unparsed { command: command.into(), line: line.chars().take(500).collect() }
}

/// dnf's refusal to remove a protected package, as [`RepoError::WouldRemove`].
fn refuse_protected(stderr: &str) -> Result<(), RepoError> {
    let needle = "removing the following protected packages:";
    let Some(at) = stderr.find(needle) else { return Ok(()) };
    let rest = stderr[at + needle.len()..].lines().next().unwrap_or("");
    let packages: Vec<String> = rest.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    Err(RepoError::WouldRemove { packages })
}

/// A file's checksum in the index.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Checksum {
    Sha256(Sha256Digest),
    /// Another type (md5, sha1, sha512), by name.
    Other(String),
}

/// One package file of a repository, as its index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RepoFile {
    name: String,
    arch: String,
    version: String,
    size: u64,
    /// dnf's package cache for the repository.
    pkgdir: PathBuf,
    /// Relative to the repository's base URL.
    location: String,
    checksum: Checksum,
}

impl RepoFile {
    fn spec(&self) -> String {
        format!("{}-{}.{}", self.name, self.version, self.arch)
    }

    /// The fetch, its URL the shortest of `urls` ending in the location:
    /// every URL of one repository is one base and a location, and another
    /// location may end in this one.
    fn fetch(&self, repo: &str, urls: &[String]) -> Result<Fetch, RepoError> {
        let bad = |line: String| unparsed("dnf repoquery --location", line);
        let suffix = format!("/{}", self.location.trim_start_matches('/'));
        let url = urls.iter().filter(|u| u.ends_with(&suffix)).min_by_key(|u| u.len());
        let url = url.ok_or_else(|| bad(format!("(no URL for {})", self.location)))?;
        let file = file_name(&self.location).ok_or_else(|| bad(self.location.clone()))?;
        let sha256 = match &self.checksum {
            Checksum::Sha256(digest) => *digest,
            Checksum::Other(found) => {
                return Err(RepoError::NoSha256 { package: self.spec(), repo: repo.into(), found: found.clone() });
            }
        };
        Ok(Fetch { url: url.clone(), file: file.to_owned(), size: self.size, sha256 })
    }
}

/// The file name of a location: the name dnf looks for in its cache.
fn file_name(location: &str) -> Option<&str> {
    let name = location.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then_some(name)
}

/// [`FILE_FORMAT`] lines; the offending line when one is not.
fn parse_repo_files(text: &str) -> Result<Vec<RepoFile>, String> {
    let mut files = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.splitn(7, '\t').collect();
        let [name, arch, evr, size, pkgdir, location, checksum] = fields[..] else { return Err(line.to_owned()) };
        let bad = || line.to_owned();
        files.push(RepoFile {
            name: name.into(),
            arch: arch.into(),
            version: version_of(evr).ok_or_else(bad)?,
            size: size.trim().parse().map_err(|_| bad())?,
            pkgdir: PathBuf::from(pkgdir),
            location: location.into(),
            checksum: parse_chksum(checksum).ok_or_else(bad)?,
        });
    }
    Ok(files)
}

/// `%{chksum}`: Python's repr of hawkey's `(type, bytes)`, e.g.
/// `(2, b'?z\xcft5')`; hawkey's types are 0 md5, 1 sha1, 2 sha256,
/// 3 sha512.
fn parse_chksum(text: &str) -> Option<Checksum> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let (kind, repr) = inner.split_once(',')?;
    let bytes = parse_bytes_repr(repr.trim())?;
    Some(match (kind.trim(), bytes.len()) {
        ("2", 32) => Checksum::Sha256(Sha256Digest::parse(&hex::encode(&bytes)).ok()?),
        ("2", _) => return None,
        ("0", _) => Checksum::Other("md5".into()),
        ("1", _) => Checksum::Other("sha1".into()),
        ("3", _) => Checksum::Other("sha512".into()),
        (kind, _) => Checksum::Other(format!("checksum type {kind}")),
    })
}

/// Python's repr of `bytes`: `b'…'` (or `b"…"` when the bytes hold a `'`
/// and no `"`), printable ASCII as itself, `\\`, the quote, `\t`, `\n`,
/// `\r` escaped, every other byte `\xhh`.
fn parse_bytes_repr(repr: &str) -> Option<Vec<u8>> {
    let rest = repr.strip_prefix('b')?;
    let quote = *rest.as_bytes().first().filter(|q| **q == b'\'' || **q == b'"')?;
    let body = rest[1..].strip_suffix(quote as char)?;
    let mut out = Vec::with_capacity(body.len());
    let mut bytes = body.bytes();
    while let Some(byte) = bytes.next() {
        if byte == quote {
            return None;
        }
        if byte != b'\\' {
            out.push(byte);
            continue;
        }
        out.push(match bytes.next()? {
            b'\\' => b'\\',
            b'\'' => b'\'',
            b'"' => b'"',
            b't' => b'\t',
            b'n' => b'\n',
            b'r' => b'\r',
            b'x' => {
                let digits = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&digits).ok()?, 16).ok()?
            }
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from dnf 4.14 on a sandbox (`--assumeno`, stdout).
    const UPGRADE: &str = "\
Last metadata expiration check: 0:00:57 ago on Sat Dec  5 20:19:27 2026.
Dependencies resolved.
================================================================================
 Package             Architecture      Version            Repository       Size
================================================================================
Upgrading:
 libpw1              x86_64            1:1.0-2            test            6.0 k
 pw-tools            x86_64            1.0-2              test            6.0 k

Transaction Summary
================================================================================
Upgrade  2 Packages

Total download size: 12 k
";

    const INSTALL_WITH_DEPENDENCY: &str = "\
Dependencies resolved.
=================================================================================================================
 Package                                                Arch    Version                               Repo   Size
=================================================================================================================
Installing:
 pw-a-very-long-package-name-for-testing-the-wrapping   noarch  1.0.0.20240101git1234567-1.fc40.extra test  5.6 k
Installing dependencies:
 pw-tools                                               x86_64  1.0-1                                 test  6.0 k

Transaction Summary
=================================================================================================================
Install  2 Packages
";

    const REMOVE: &str = "\
Dependencies resolved.
================================================================================
 Package            Architecture     Version              Repository       Size
================================================================================
Removing:
 libpw1             x86_64           1:1.0-1              @test             2  
Removing dependent packages:
 pw-tools           x86_64           1.0-1                @test             2  

Transaction Summary
================================================================================
Remove  2 Packages
";

    const OBSOLETES: &str = "\
Dependencies resolved.
================================================================================
 Package               Architecture     Version            Repository      Size
================================================================================
Installing:
 pw-newtools           noarch           2.0-1              test           5.5 k
     replacing  pw-legacy.noarch 1.0-1

Transaction Summary
================================================================================
Install  1 Package
";

    fn row(action: Action, name: &str, arch: &str, version: &str, repo: &str) -> Row {
        Row { action, name: name.into(), arch: arch.into(), version: version.into(), repo: repo.into() }
    }

    #[test]
    fn the_table_gives_each_package_its_action_version_and_repository() {
        let upgrade = parse_transaction(UPGRADE).unwrap().unwrap();
        assert_eq!(
            upgrade.rows,
            [
                row(Action::Upgrade, "libpw1", "x86_64", "1:1.0-2", "test"),
                row(Action::Upgrade, "pw-tools", "x86_64", "1.0-2", "test")
            ]
        );
        assert!(upgrade.removals().is_empty());
        let install = parse_transaction(INSTALL_WITH_DEPENDENCY).unwrap().unwrap();
        assert_eq!(install.rows[1], row(Action::Install, "pw-tools", "x86_64", "1.0-1", "test"));
        assert_eq!(install.rows[0].version, "1.0.0.20240101git1234567-1.fc40.extra");
        let downgrade = UPGRADE.replace("Upgrading:", "Downgrading:");
        assert!(parse_transaction(&downgrade).unwrap().unwrap().rows.iter().all(|r| r.action == Action::Downgrade));
    }

    #[test]
    fn removals_and_obsoleted_packages_are_named() {
        assert_eq!(parse_transaction(REMOVE).unwrap().unwrap().removals(), ["libpw1", "pw-tools"]);
        let obsoletes = parse_transaction(OBSOLETES).unwrap().unwrap();
        assert_eq!(obsoletes.rows.len(), 1);
        assert_eq!(obsoletes.removals(), ["pw-legacy"]);
    }

    #[test]
    fn a_wrapped_row_continues_on_an_indented_line() {
        // dnf's fmtColumns puts an overflowing column's value on its own
        // line and indents the rest (seen on a narrow terminal).
        let text = "\
================
 Package  Arch  Version  Repository  Size
================
Upgrading:
 a-package-name-longer-than-its-column
          x86_64  2:3.0-1.el9  baseos  1.2 M
 short    noarch  1.0-1  appstream  10 k
";
        let rows = parse_transaction(text).unwrap().unwrap().rows;
        assert_eq!(
            rows[0],
            row(Action::Upgrade, "a-package-name-longer-than-its-column", "x86_64", "2:3.0-1.el9", "baseos")
        );
        assert_eq!(rows[1], row(Action::Upgrade, "short", "noarch", "1.0-1", "appstream"));
    }

    #[test]
    fn nothing_to_do_has_no_table_and_an_unknown_section_is_refused() {
        let nothing =
            "Package libpw1-1:1.0-2.x86_64 is already installed.\nDependencies resolved.\nNothing to do.\nComplete!\n";
        assert_eq!(parse_transaction(nothing), Ok(None));
        let modules = UPGRADE.replace("Upgrading:", "Enabling module streams:");
        assert_eq!(parse_transaction(&modules), Err("Enabling module streams:".to_owned()));
    }

    #[test]
    fn dnfs_protected_package_refusal_names_the_packages() {
        let stderr = "Error: \n Problem: The operation would result in removing the following protected packages: pw-legacy, kernel-core\n(try to add '--skip-broken' to skip uninstallable packages or '--nobest' to use not only best candidate packages)\n";
        match refuse_protected(stderr) {
            Err(RepoError::WouldRemove { packages }) => assert_eq!(packages, ["pw-legacy", "kernel-core"]),
            other => panic!("{other:?}"),
        }
        assert!(refuse_protected("Error: GPG check FAILED\n").is_ok());
    }

    #[test]
    fn records_carry_the_source_rpm_with_the_binarys_epoch() {
        let text = "libpw1\tx86_64\t1:1.0-1\tpwlib-1.0-1.src.rpm\ttest\n\
                    pw-tools\tx86_64\t0:1.0-2\tpwlib-1.0-2.src.rpm\ttest\n\
                    gpg-thing\tnoarch\t0:1-1\t(none)\t@System\n";
        let records = parse_records(text).unwrap();
        assert_eq!(records[0].version, "1:1.0-1");
        assert_eq!((records[0].source.as_str(), records[0].source_version.as_str()), ("pwlib", "1:1.0-1"));
        assert_eq!(records[1].version, "1.0-2");
        assert_eq!((records[1].source.as_str(), records[1].source_version.as_str()), ("pwlib", "1.0-2"));
        assert_eq!((records[2].source.as_str(), records[2].source_version.as_str()), ("gpg-thing", "1-1"));
        assert!(records[0].downloadable && !records[2].downloadable, "only a repository's entry is offered");
        assert!(parse_records("libpw1\tx86_64\n").is_err());
    }

    // Captured: `%{chksum}` of libpw1-1.0-2, whose sha256 is 3f7acf74….
    const CHKSUM: &str =
        r"(2, b'?z\xcft5\x9a\xc9\xb3C\xb1\xb5L\x07CA\xa1#\x14\x1d\xbb1\xb2\xb3\xa1\x14\xb3\x18\x07\xc3\x993\xc9')";

    #[test]
    fn the_checksum_tuple_gives_the_sha256() {
        let expected = "3f7acf74359ac9b343b1b54c074341a123141dbb31b2b3a114b31807c39933c9";
        assert_eq!(parse_chksum(CHKSUM), Some(Checksum::Sha256(Sha256Digest::parse(expected).unwrap())));
        // Python switches to double quotes for bytes holding a ' and no ".
        let quoted = format!("(2, b\"'{}\")", r"\x00".repeat(31));
        let Some(Checksum::Sha256(digest)) = parse_chksum(&quoted) else { panic!("{quoted}") };
        assert_eq!(&digest.to_hex()[..4], "2700");
        assert_eq!(parse_bytes_repr(r"b'\\\'\t\n\r\x7f'"), Some(b"\\'\t\n\r\x7f".to_vec()));
        assert_eq!(parse_chksum(r"(1, b'\x01\x02')"), Some(Checksum::Other("sha1".into())));
        assert_eq!(parse_chksum(r"(2, b'short')"), None);
        assert_eq!(parse_bytes_repr(r"b'unterminated"), None);
        assert_eq!(parse_bytes_repr(r"b'a'b'"), None);
    }

    #[test]
    fn repository_files_give_the_url_size_and_sha256() {
        let text = format!(
            "libpw1\tx86_64\t1:1.0-2\t6097\t/r/var/cache/dnf/test-eed6a9799f8df12b/packages\tPackages/libpw1-1.0-2.x86_64.rpm\t{CHKSUM}\n"
        );
        let files = parse_repo_files(&text).unwrap();
        assert_eq!(files[0].version, "1:1.0-2");
        assert_eq!(files[0].pkgdir, Path::new("/r/var/cache/dnf/test-eed6a9799f8df12b/packages"));
        let urls = [
            "http://127.0.0.1:8/x/Packages/libpw1-1.0-2.x86_64.rpm".to_owned(),
            "http://127.0.0.1:8/Packages/libpw1-1.0-2.x86_64.rpm".to_owned(),
        ];
        let fetch = files[0].fetch("test", &urls).unwrap();
        assert_eq!(fetch.url, urls[1]);
        assert_eq!(fetch.file, "libpw1-1.0-2.x86_64.rpm");
        assert_eq!(fetch.size, 6097);
        assert!(fetch.sha256.to_hex().starts_with("3f7acf74"));
        let mut sha1 = files[0].clone();
        sha1.checksum = Checksum::Other("sha1".into());
        assert!(matches!(sha1.fetch("test", &urls), Err(RepoError::NoSha256 { .. })));
        assert!(files[0].fetch("test", &urls[..0]).is_err());
    }

    #[test]
    fn staged_files_go_to_dnfs_download_cache_only() {
        assert!(is_download_cache(Path::new("/r/var/cache/dnf/test-eed6a9799f8df12b/packages"), "test"));
        assert!(!is_download_cache(Path::new("/r/var/cache/dnf/testing-eed6a9799f8df12b/packages"), "test"));
        // A file:// repository: %{pkgdir} is its own folder.
        assert!(!is_download_cache(Path::new("/srv/repo"), "test"));
        assert!(!is_download_cache(Path::new("/srv/test-mirror/packages"), "test"));
    }

    #[test]
    fn the_release_version_is_read_from_os_release() {
        let text = "NAME=\"Rocky Linux\"\nVERSION=\"9.4 (Blue Onyx)\"\nID=\"rocky\"\nVERSION_ID=\"9.4\"\n";
        assert_eq!(os_release_version(text).as_deref(), Some("9.4"));
        assert_eq!(os_release_version("VERSION_ID=40\n").as_deref(), Some("40"));
        assert_eq!(os_release_version("ID=x\n"), None);
        assert_eq!(os_release_version("VERSION_ID=\"$(x)\"\n"), None);
    }

    #[test]
    fn a_root_moves_the_database_and_disables_the_local_plugin() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty database directory: RpmRoot::sandbox runs no rpm.
        std::fs::create_dir_all(dir.path().join("var/lib/rpm")).unwrap();
        std::fs::write(dir.path().join("var/lib/rpm/rpmdb.sqlite"), b"").unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/os-release"), "VERSION_ID=\"9\"\n").unwrap();
        let root = std::path::absolute(dir.path()).unwrap();
        let dnf =
            Dnf::new(RpmRoot::sandbox(dir.path()).unwrap(), Some("/etc/agent/dnf.conf".into()), Duration::from_secs(1));
        let argv: Vec<String> = dnf.argv(Metadata::Cached).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(argv[..2], ["dnf", "--config=/etc/agent/dnf.conf"]);
        for expected in [
            format!("--installroot={}", root.display()),
            "--disableplugin=local".into(),
            "--disableplugin=generate_completion_cache".into(),
            "--releasever=9".into(),
            "--setopt=tsflags=noscripts".into(),
            "--setopt=skip_if_unavailable=False".into(),
            "--setopt=exit_on_lock=True".into(),
            "--cacheonly".into(),
        ] {
            assert!(argv.contains(&expected), "{expected} missing from {argv:?}");
        }
        assert!(!argv.iter().any(|a| a.contains("gpgcheck")), "signature checks stay as configured");
        let home = dnf.macros_home().unwrap().unwrap();
        assert_eq!(home, root.join("var/lib/patchward/dnf-home"));
        let macros = std::fs::read_to_string(home.join(".rpmmacros")).unwrap();
        assert!(macros.lines().any(|l| l == "%_dbpath /var/lib/rpm"), "{macros}");
        let pinned = dnf.with_releasever("9.4").unwrap();
        assert!(pinned.argv(Metadata::Refresh).contains(&OsString::from("--releasever=9.4")));
        assert!(!pinned.argv(Metadata::Refresh).contains(&OsString::from("--cacheonly")));
        let tree = Dnf::new(RpmRoot::tree(dir.path()).unwrap(), None, Duration::from_secs(1));
        assert!(!tree.argv(Metadata::Cached).contains(&OsString::from("--setopt=tsflags=noscripts")));
    }

    #[test]
    fn the_system_gets_no_root_options() {
        let dnf = Dnf::new(RpmRoot::system(), None, Duration::from_secs(1));
        let argv: Vec<String> = dnf.argv(Metadata::Refresh).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(argv, ["dnf", "--setopt=skip_if_unavailable=False", "--setopt=exit_on_lock=True"]);
        assert_eq!(dnf.macros_home().unwrap(), None);
        let protected = || OsString::from("--setopt=protected_packages=glob:/s/p");
        let transaction = dnf.transaction(protected(), "--assumeno", Direction::Downgrade, false);
        let tail: Vec<&OsStr> = transaction.iter().skip(3).map(OsString::as_os_str).collect();
        assert_eq!(
            tail,
            ["--cacheonly", "--setopt=protected_packages=glob:/s/p", "--setopt=strict=True", "--assumeno", "downgrade"]
        );
        let with_backups = dnf.transaction(protected(), "--assumeyes", Direction::Downgrade, true);
        let local = OsString::from("--setopt=localpkg_gpgcheck=False");
        assert!(with_backups.contains(&local), "only the agent's own backups, vouched for by their sha256");
        assert!(
            !with_backups.iter().any(|a| a == "--nogpgcheck" || a.to_string_lossy().starts_with("--setopt=gpgcheck"))
        );
    }

    #[test]
    fn operands_are_exact_versions_and_rpm_files() {
        let target = PackageVersion { name: "libpw1".into(), arch: "x86_64".into(), version: "1:1.0-2".into() };
        let given = operands(std::slice::from_ref(&target), &[Path::new("/s/b.rpm")]).unwrap();
        assert_eq!(given, [OsString::from("libpw1-1:1.0-2.x86_64"), OsString::from("/s/b.rpm")]);
        assert!(operands(&[], &[Path::new("/s/backup")]).is_err());
        let option = PackageVersion { name: "--nogpgcheck".into(), ..target };
        assert!(operands(&[option], &[]).is_err());
        assert!(repo_flag("*").is_err());
    }

    #[test]
    fn locks_and_errors_are_told_apart() {
        assert!(lock_held(ProcessExit::Code(200), ""));
        assert!(lock_held(
            ProcessExit::Code(1),
            "RPM: error: can't create transaction lock on /r/var/lib/rpm/.rpm.lock (Resource temporarily unavailable)\n"
        ));
        assert!(!lock_held(ProcessExit::Code(1), "Error: GPG check FAILED\n"));
        let out = ProcessOutput {
            exit: ProcessExit::Code(1),
            stdout_tail: String::new(),
            stderr_tail: "rpm: RPM should not be used directly install RPM packages, use Alien instead!\nImporting GPG key 0x9245D6D6:\nError: Failed to download metadata for repo 'test': repomd.xml GPG signature verification error: Bad GPG signature\n".into(),
        };
        assert_eq!(
            last_error(&out),
            "Importing GPG key 0x9245D6D6: Error: Failed to download metadata for repo 'test': repomd.xml GPG signature verification error: Bad GPG signature"
        );
    }
}
