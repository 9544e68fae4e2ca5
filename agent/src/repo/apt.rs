//! apt, as the client of the device's own signed repositories.
//!
//! Every command runs with the environment the agent was started with, so
//! `APT_CONFIG` selects apt's configuration exactly as it does for apt
//! itself. With a dpkg root other than `/` only the package database moves:
//! apt is given dpkg's root options (`DPkg::Options`) and
//! `Dir::State::status`; apt's sources, keys, lists and cache stay where
//! its configuration puts them.
//!
//! The agent never lets apt download: it reads the exact URLs and sha256
//! digests from the signed index (`--print-uris` with
//! `Acquire::ForceHash=SHA256`), fetches and re-hashes the files itself,
//! stages them in a private archive folder under the names apt looks for,
//! and runs the install with `--no-download` pointed at that folder, so apt
//! checks the same bytes against the signed index once more.
//!
//! Refusals: a metadata refresh with any warning or signature failure
//! (`--error-on=any`), a transaction that would remove a package
//! (`--no-remove`, and the simulation's `Remv` lines named), a held lock
//! (retry later, G8).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::RepoError;
use crate::cache::Sha256Digest;
use crate::install::deb::DpkgRoot;
use crate::install::process::{self, ProcessExit, ProcessOutput, QUERY_BYTES};
use crate::install::{InstallError, check_package_name};

/// One exact package version: `name:arch=version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PackageVersion {
    pub name: String,
    pub arch: String,
    pub version: String,
}

impl PackageVersion {
    /// As apt-get takes it on its command line.
    fn spec(&self) -> String {
        format!("{}:{}={}", self.name, self.arch, self.version)
    }
}

/// One version of a binary package in the repositories' signed index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexRecord {
    pub name: String,
    pub arch: String,
    pub version: String,
    /// The source package: `Source:` or, without one, the package itself.
    pub source: String,
    pub source_version: String,
    /// Whether a repository offers it: the installed version is listed
    /// too (from the dpkg database) with no file to download.
    pub downloadable: bool,
}

/// A file the transaction needs, as the signed index names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub url: String,
    /// The archive's name in apt's cache (`NAME_VERSION_ARCH.deb`).
    pub file: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

/// Whether a transaction may move packages to lower versions (a restore).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upgrade,
    Downgrade,
}

/// apt on the system, or with its package database under a dpkg root.
#[derive(Debug, Clone)]
pub struct Apt {
    root: Option<DpkgRoot>,
    timeout: Duration,
}

/// How long a query or a refresh may take; installs take the agent's
/// install timeout.
const QUERY_TIMEOUT: Duration = Duration::from_secs(600);

impl Apt {
    /// apt acting on `root`'s dpkg database (`DpkgRoot::system()` for the
    /// machine's own), installs bounded by `timeout`.
    pub fn new(root: DpkgRoot, timeout: Duration) -> Apt {
        let root = (root.root() != Path::new("/")).then_some(root);
        Apt { root, timeout }
    }

    /// `program` and the root options every command carries.
    fn argv(&self, program: &str) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![program.into()];
        if let Some(root) = &self.root {
            for option in root.dpkg_argv().into_iter().skip(1) {
                let mut flag = OsString::from("DPkg::Options::=");
                flag.push(option);
                argv.extend(["-o".into(), flag]);
            }
            let mut status = OsString::from("Dir::State::status=");
            status.push(root.admindir().join("status"));
            argv.extend(["-o".into(), status]);
        }
        argv
    }

    fn run(&self, argv: &[OsString], timeout: Duration) -> Result<ProcessOutput, RepoError> {
        let env = [("DEBIAN_FRONTEND", std::ffi::OsStr::new("noninteractive"))];
        Ok(process::run_keeping(argv, &env, None, timeout, QUERY_BYTES)?)
    }

    /// Refreshes the metadata; any signature failure or warning refuses.
    pub fn refresh(&self) -> Result<(), RepoError> {
        let mut argv = self.argv("apt-get");
        argv.extend(["update", "-q", "--error-on=any"].map(OsString::from));
        let out = self.run(&argv, QUERY_TIMEOUT)?;
        match out.exit {
            ProcessExit::Code(0) => Ok(()),
            _ if lock_held(&out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out.stderr_tail) }),
            _ => Err(RepoError::Refresh { message: last_error(&out.stderr_tail) }),
        }
    }

    /// Every version of `name` for `arch` the index holds; none when apt
    /// does not know the package.
    pub fn records(&self, name: &str, arch: &str) -> Result<Vec<IndexRecord>, RepoError> {
        check_package_name(name)?;
        check_package_name(arch)?;
        let mut argv = self.argv("apt-cache");
        argv.extend(["show".into(), format!("{name}:{arch}").into()]);
        let out = self.run(&argv, QUERY_TIMEOUT)?;
        match out.exit {
            ProcessExit::Code(0) => {}
            // "No packages found": apt does not know it.
            ProcessExit::Code(100) if !lock_held(&out.stderr_tail) => return Ok(Vec::new()),
            exit => return Err(failed("apt-cache show", exit, &out)),
        }
        Ok(parse_records(&out.stdout_tail).into_iter().filter(|r| r.name == name).collect())
    }

    /// The common options of a transaction over `targets` and local
    /// `files`.
    fn transaction(&self, direction: Direction, archives: &Path) -> Vec<OsString> {
        let mut argv = self.argv("apt-get");
        let mut cache = OsString::from("Dir::Cache::archives=");
        cache.push(archives);
        argv.extend(["-o".into(), cache, "--no-remove".into()]);
        if direction == Direction::Downgrade {
            argv.push("--allow-downgrades".into());
        }
        argv
    }

    fn operands(targets: &[PackageVersion], files: &[&Path]) -> Result<Vec<OsString>, RepoError> {
        let mut operands = Vec::new();
        for target in targets {
            check_package_name(&target.name)?;
            check_package_name(&target.arch)?;
            check_package_name(&target.version)?;
            operands.push(target.spec().into());
        }
        // An absolute path is a file to apt, never a package name.
        operands.extend(files.iter().map(|f| f.as_os_str().to_owned()));
        Ok(operands)
    }

    /// Simulates the transaction; refuses one that would remove anything.
    pub fn simulate(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<(), RepoError> {
        let mut argv = self.transaction(direction, archives);
        argv.extend(["install", "-s", "-q"].map(OsString::from));
        argv.extend(Self::operands(targets, files)?);
        let out = self.run(&argv, QUERY_TIMEOUT)?;
        let removed = removals(&out.stdout_tail);
        if !removed.is_empty() {
            return Err(RepoError::WouldRemove { packages: removed });
        }
        match out.exit {
            ProcessExit::Code(0) => Ok(()),
            _ if lock_held(&out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out.stderr_tail) }),
            exit => Err(failed("apt-get install -s", exit, &out)),
        }
    }

    /// The files the transaction would fetch, from the signed index.
    pub fn uris(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<Vec<Fetch>, RepoError> {
        let mut argv = self.transaction(direction, archives);
        argv.extend(["install", "--print-uris", "-qq", "-o", "Acquire::ForceHash=SHA256"].map(OsString::from));
        argv.extend(Self::operands(targets, files)?);
        let out = self.run(&argv, QUERY_TIMEOUT)?;
        match out.exit {
            ProcessExit::Code(0) => parse_uris(&out.stdout_tail, files),
            _ if lock_held(&out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out.stderr_tail) }),
            exit => Err(failed("apt-get install --print-uris", exit, &out)),
        }
    }

    /// Installs exactly `targets` from the archives staged in `archives`
    /// (apt downloads nothing) and the staged `files`, keeping existing
    /// configuration files.
    pub fn install(
        &self,
        targets: &[PackageVersion],
        files: &[&Path],
        direction: Direction,
        archives: &Path,
    ) -> Result<(), RepoError> {
        std::fs::create_dir_all(archives.join("partial"))
            .map_err(|e| InstallError::from(crate::cache::io_error("failed to create", archives)(e)))?;
        let mut argv = self.transaction(direction, archives);
        argv.extend(["install", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef"].map(OsString::from));
        // apt refuses local files alongside `--no-download` ("Pathname to
        // install is not absolute"); every archive the index names is
        // staged and verified here first, so apt finds them all in place.
        if files.is_empty() {
            argv.push("--no-download".into());
        }
        argv.extend(["-o", "Dpkg::Options::=--force-confold"].map(OsString::from));
        argv.extend(Self::operands(targets, files)?);
        let out = self.run(&argv, self.timeout)?;
        match out.exit {
            ProcessExit::Code(0) => Ok(()),
            _ if lock_held(&out.stderr_tail) => Err(RepoError::Locked { message: last_error(&out.stderr_tail) }),
            exit => Err(failed("apt-get install", exit, &out)),
        }
    }
}

fn failed(command: &str, exit: ProcessExit, out: &ProcessOutput) -> RepoError {
    RepoError::Failed { command: command.into(), exit, message: last_error(&out.stderr_tail) }
}

/// apt's and dpkg's words for a lock someone else holds.
fn lock_held(stderr: &str) -> bool {
    ["Could not get lock", "Unable to acquire the dpkg frontend lock", "Unable to lock", "is locked by another"]
        .iter()
        .any(|needle| stderr.contains(needle))
}

/// The error and warning lines of apt's output, for a message.
fn last_error(stderr: &str) -> String {
    let lines: Vec<&str> =
        stderr.lines().map(str::trim).filter(|l| l.starts_with("E:") || l.starts_with("W:")).collect();
    let chosen = if lines.is_empty() { stderr.trim() } else { &lines.join(" ") };
    chosen.chars().take(2000).collect()
}

/// The stanzas of `apt-cache show`.
pub fn parse_records(text: &str) -> Vec<IndexRecord> {
    text.split("\n\n").filter_map(parse_record).collect()
}

fn parse_record(stanza: &str) -> Option<IndexRecord> {
    let field = |key: &str| {
        stanza.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_owned()))
    };
    let (name, arch, version) = (field("Package")?, field("Architecture")?, field("Version")?);
    let (source, source_version) = match field("Source") {
        None => (name.clone(), version.clone()),
        Some(source) => match source.split_once(" (") {
            Some((source, version)) => (source.trim().to_owned(), version.trim_end_matches(')').trim().to_owned()),
            None => (source, version.clone()),
        },
    };
    let downloadable = field("Filename").is_some();
    Some(IndexRecord { name, arch, version, source, source_version, downloadable })
}

/// `'URL' FILE SIZE SHA256:hex` lines. A `local` file handed to apt is
/// listed too, as `'file:PATH' FILE SIZE` without a hash: not a fetch.
pub fn parse_uris(text: &str, local: &[&Path]) -> Result<Vec<Fetch>, RepoError> {
    let unparsed = |line: &str| RepoError::Unparsed { command: "apt-get --print-uris".into(), line: line.into() };
    let is_local =
        |url: &str| url.strip_prefix("file:").is_some_and(|path| local.iter().any(|l| *l == Path::new(path)));
    let mut fetches = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| l.starts_with('\'')) {
        let (url, rest) = line[1..].split_once('\'').ok_or_else(|| unparsed(line))?;
        if is_local(url) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let [file, size, hash] = fields[..] else { return Err(unparsed(line)) };
        // apt quotes a URL with a scheme and names a plain file: anything
        // else is not a line of its (fuzzing found an empty URL).
        let plain_file = !file.is_empty() && !file.contains(['/', '\'', '"']) && file != "." && file != "..";
        let has_scheme = url.contains("://") || url.starts_with("file:/");
        if !has_scheme || !plain_file {
            return Err(unparsed(line));
        }
        let hex = hash.strip_prefix("SHA256:").ok_or_else(|| unparsed(line))?;
        fetches.push(Fetch {
            url: url.to_owned(),
            file: file.to_owned(),
            size: size.parse().map_err(|_| unparsed(line))?,
            sha256: Sha256Digest::parse(hex).map_err(|_| unparsed(line))?,
        });
    }
    Ok(fetches)
}

/// The packages a simulation's `Remv` lines name.
fn removals(simulation: &str) -> Vec<String> {
    simulation
        .lines()
        .filter_map(|line| line.strip_prefix("Remv "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Where staged archives go for one transaction.
pub fn archives_dir(staging: &Path) -> PathBuf {
    staging.join("apt-archives")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_records_carry_their_source_and_its_version() {
        let text = "Package: libpw1\nArchitecture: amd64\nVersion: 1:1.0-2\nSource: pwlib (1.0-2)\nFilename: pool/l/libpw1.deb\nDescription: x\n y\n\nPackage: pw-tools\nArchitecture: amd64\nVersion: 1.0-2\nSource: pwlib\n\nPackage: solo\nArchitecture: all\nVersion: 3\n";
        let records = parse_records(text);
        assert_eq!(records.len(), 3);
        assert_eq!((records[0].source.as_str(), records[0].source_version.as_str()), ("pwlib", "1.0-2"));
        assert_eq!((records[1].source.as_str(), records[1].source_version.as_str()), ("pwlib", "1.0-2"));
        assert_eq!((records[2].source.as_str(), records[2].source_version.as_str()), ("solo", "3"));
        assert!(records[0].downloadable && !records[1].downloadable, "only a record with a file is offered");
    }

    #[test]
    fn print_uris_lines_give_url_file_size_and_sha256() {
        let hex = "a".repeat(64);
        let text =
            format!("'http://127.0.0.1:8/pool/libpw1_1.0-2_amd64.deb' libpw1_1%3a1.0-2_amd64.deb 1234 SHA256:{hex}\n");
        let local = Path::new("/var/lib/patchward/staging/abc.deb");
        let text = format!("{text}'file:{}' pw-tools_1.0-1_amd64.deb 720\n", local.display());
        let fetches = parse_uris(&text, &[local]).unwrap();
        assert_eq!(fetches.len(), 1, "{fetches:?}");
        assert_eq!(fetches[0].file, "libpw1_1%3a1.0-2_amd64.deb");
        assert_eq!(fetches[0].size, 1234);
        assert_eq!(fetches[0].sha256.to_hex(), hex);
        assert!(parse_uris("'http://x' file 12 MD5Sum:abc", &[]).is_err());
        assert!(parse_uris("'file:/elsewhere.deb' x.deb 720", &[local]).is_err(), "only the files handed over");
        let sha = format!("SHA256:{hex}");
        let empty_url = format!("'''' ''deb 1234 {sha}");
        assert!(parse_uris(&empty_url, &[]).is_err(), "an empty URL (found by fuzzing)");
        assert!(parse_uris(&format!("'http://x/a.deb' ../a.deb 1 {sha}"), &[]).is_err(), "a file name with a path");
    }

    #[test]
    fn a_simulation_names_what_it_would_remove() {
        let text = "Inst libpw1 [1:1.0-1] (1:1.0-2 x [amd64])\nRemv pw-old [2.0]\nConf libpw1 (1:1.0-2 x [amd64])\n";
        assert_eq!(removals(text), ["pw-old"]);
    }

    #[test]
    fn root_options_move_only_the_package_database() {
        let dir = tempfile::tempdir().unwrap();
        let apt = Apt::new(DpkgRoot::sandbox(dir.path()).unwrap(), Duration::from_secs(1));
        let argv: Vec<String> = apt.argv("apt-get").iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let root = std::path::absolute(dir.path()).unwrap();
        assert!(argv.contains(&format!("DPkg::Options::=--root={}", root.display())));
        assert!(argv.contains(&format!("DPkg::Options::=--admindir={}", root.join("var/lib/dpkg").display())));
        assert!(argv.contains(&format!("Dir::State::status={}", root.join("var/lib/dpkg/status").display())));
        assert!(!argv.iter().any(|a| a.starts_with("Dir::Etc") || a.starts_with("Dir::Cache")));
        let system = Apt::new(DpkgRoot::system(), Duration::from_secs(1));
        assert_eq!(system.argv("apt-get"), vec![OsString::from("apt-get")]);
    }
}
