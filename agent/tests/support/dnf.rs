//! Signed dnf repositories on 127.0.0.1 and sandboxed rpm roots, with the
//! real rpmbuild, rpmsign, createrepo_c, gpg, rpm and dnf (Debian 12:
//! rpm 4.18, dnf 4.14, createrepo_c 0.17). The twin of [`super::apt`].
//!
//! ```text
//! /// One binary package to build (deterministic but for rpmsign's
//! /// signature: SOURCE_DATE_EPOCH is the build time, the build host fixed).
//! pub struct Rpm { pub name, pub version, pub release, pub arch /* the host's (x86_64) | noarch */,
//!                  pub epoch: Option<u32>,
//!                  pub source: Option<String> /* the source rpm's name */,
//!                  pub requires, pub obsoletes: Vec<String>,
//!                  pub files: Vec<(String /* absolute path */, Vec<u8>)> }
//! Rpm::new(name, version, release, arch) -> Rpm
//! Rpm::epoch(self, e) / source_rpm(self, name) / requires(self, r) / obsoletes(self, o)
//!    / file(self, path, bytes) -> Rpm
//! Rpm::file_name(&self) -> String          // NAME-VERSION-RELEASE.ARCH.rpm (no epoch)
//! Rpm::evr(&self) -> String                // [EPOCH:]VERSION-RELEASE, as dnf and the inventory write it
//! Rpm::source_rpm_name(&self) -> String    // SOURCE-VERSION-RELEASE.src.rpm
//! Rpm::build(&self, out_dir) -> PathBuf    // out_dir/file_name(), unsigned
//!
//! /// A signed repository served over HTTP on 127.0.0.1 until dropped.
//! DnfRepo::new(dir, rpms) -> DnfRepo
//! DnfRepo::publish(&mut self, rpms)        // replaces the package set, re-signs
//! DnfRepo::url(&self) -> String            // http://127.0.0.1:PORT
//! DnfRepo::key(&self) -> PathBuf           // armored public key, for gpgkey=file://
//! DnfRepo::location(&self, rpm) -> String  // "Packages/NAME-VERSION-RELEASE.ARCH.rpm"
//! DnfRepo::file(&self, relative) -> PathBuf // the served file on disk
//! DnfRepo::requests(&self) -> Vec<String>  // decoded paths, "/repodata/repomd.xml", in order
//! DnfRepo::clear_requests(&self)
//! DnfRepo::tamper(&self, relative)         // flips one byte of a served file
//! other_key(dir) -> PathBuf                // a stranger's fresh armored public key
//!
//! /// A sandboxed rpm root and the dnf.conf of a client of one repository.
//! pub struct DnfSandbox { pub dir, pub root /* the installroot */, pub config /* dnf.conf */,
//!                         pub home /* HOME with .rpmmacros */ }
//! DnfSandbox::new(dir, repo_url, key) -> DnfSandbox
//! DnfSandbox::rpm_install(&self, rpms)      // rpm --upgrade on the root, panics on failure
//! DnfSandbox::installed(&self) -> BTreeMap<String, String> // NAME → [EPOCH:]VERSION-RELEASE
//! DnfSandbox::dnf(&self, args) -> Output    // the fixture's own dnf on the root
//! DnfSandbox::cached_packages(&self) -> Vec<PathBuf> // *.rpm left in dnf's cache
//! ```
//!
//! The repository: `Packages/NAME-VERSION-RELEASE.ARCH.rpm`, each signed
//! with `rpmsign --addsign` by an ed25519 key made for the repository in its
//! own GNUPGHOME (Debian's rpm needs `__gpg` pointed at `/usr/bin/gpg`),
//! indexed by `createrepo_c --no-database`, and `repodata/repomd.xml`
//! signed by the same key (`repomd.xml.asc`, detached and armored, as
//! `repo_gpgcheck` wants it); that home's gpg-agent is stopped on drop. It
//! is served by the tests' HTTP server ([`super::http`]) on a runtime of
//! its own: use it from synchronous tests.
//!
//! A binary built from another source (`source_rpm`) comes from a spec of
//! that name with the binary as its only subpackage (`%package -n NAME`),
//! so its `SOURCERPM` is `SOURCE-VERSION-RELEASE.src.rpm`; an epoch is the
//! subpackage's own, which `SOURCERPM` never shows.
//!
//! The sandbox: an rpm database initialised at `ROOT/var/lib/rpm`
//! (`RpmRoot`'s `DB_PATH`), and a dnf.conf with `gpgcheck`,
//! `repo_gpgcheck` and `localpkg_gpgcheck` on, `reposdir` in the sandbox
//! (outside the root, so dnf does not look for it inside), and
//! `skip_if_unavailable=True` (Debian's default): a repository that fails
//! to verify must be refused by the agent all the same. dnf keeps
//! `cachedir`, `persistdir` and `logdir` under the installroot whatever the
//! configuration says (measured), so they are written as the root sees
//! them. The configuration also names the root (`installroot=`): a dnf call
//! that forgot `--installroot` still acts on the sandbox, never on the CI
//! host; the agent's own `--installroot` and its `.rpmmacros` (without
//! which dnf reads Debian's `~/.rpmdb`, finds nothing installed and fails)
//! are what the tests see.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};

use patchward_agent::install::rpm::DB_PATH;

use super::apt::{Gpg, make_dir, percent_decode, replace_file, resolve, run, stranger_key, write_file};
use super::http::{Body, Reply, Request, Server};

/// Every Rpm is built with this timestamp and host.
const SOURCE_DATE_EPOCH: &str = "1700000000";
const REPO_UID: &str = "Patchward Test Repository <repo@example.invalid>";
/// The repository's id in the sandbox's configuration.
pub const REPO_ID: &str = "patchward-test";

// ---------------------------------------------------------------- Rpm

/// One binary package to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rpm {
    pub name: String,
    pub version: String,
    pub release: String,
    /// The host's architecture (`x86_64`) or `noarch`.
    pub arch: String,
    pub epoch: Option<u32>,
    /// The source rpm's name, when it is not the binary's.
    pub source: Option<String>,
    pub requires: Vec<String>,
    pub obsoletes: Vec<String>,
    /// (absolute path such as `/usr/share/pwlib/VERSION`, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Files among `files` marked `%config(noreplace)`.
    pub config: Vec<String>,
    /// The `%post` scriptlet's body.
    pub post: Option<String>,
}

impl Rpm {
    pub fn new(name: &str, version: &str, release: &str, arch: &str) -> Rpm {
        for (what, value) in [("name", name), ("version", version), ("release", release), ("arch", arch)] {
            assert!(
                !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+._~".contains(c) || (c == '-' && what == "name")),
                "bad rpm {what} {value:?}"
            );
        }
        Rpm {
            name: name.to_owned(),
            version: version.to_owned(),
            release: release.to_owned(),
            arch: arch.to_owned(),
            epoch: None,
            source: None,
            requires: Vec::new(),
            obsoletes: Vec::new(),
            files: Vec::new(),
            config: Vec::new(),
            post: None,
        }
    }

    pub fn epoch(mut self, epoch: u32) -> Rpm {
        self.epoch = Some(epoch);
        self
    }

    pub fn source_rpm(mut self, source: &str) -> Rpm {
        assert!(!source.is_empty() && !source.contains(char::is_whitespace), "bad source {source:?}");
        self.source = Some(source.to_owned());
        self
    }

    /// A `Requires:` value, such as `libpw1 = 1:1.0-2`.
    pub fn requires(mut self, requires: &str) -> Rpm {
        assert!(!requires.contains('\n'), "bad requires {requires:?}");
        self.requires.push(requires.to_owned());
        self
    }

    /// An `Obsoletes:` value, such as `pw-legacy < 2`.
    pub fn obsoletes(mut self, obsoletes: &str) -> Rpm {
        assert!(!obsoletes.contains('\n'), "bad obsoletes {obsoletes:?}");
        self.obsoletes.push(obsoletes.to_owned());
        self
    }

    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Rpm {
        let relative = Path::new(path.trim_start_matches('/'));
        assert!(
            path.starts_with('/')
                && relative.components().all(|c| matches!(c, Component::Normal(_)))
                && !path.contains(char::is_whitespace),
            "bad package file path {path:?}"
        );
        self.files.push((path.to_owned(), bytes.into()));
        self
    }

    /// A file marked `%config(noreplace)`.
    pub fn config_file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Rpm {
        self = self.file(path, bytes);
        self.config.push(path.to_owned());
        self
    }

    /// A `%post` scriptlet (`/bin/sh`); no line may start with `%`.
    pub fn post(mut self, body: &str) -> Rpm {
        assert!(!body.lines().any(|l| l.starts_with('%')), "bad scriptlet {body:?}");
        self.post = Some(body.to_owned());
        self
    }

    /// `NAME-VERSION-RELEASE.ARCH.rpm`, as rpmbuild names it.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.{}.rpm", self.name, self.version, self.release, self.arch)
    }

    /// `[EPOCH:]VERSION-RELEASE`: the epoch only when there is one.
    pub fn evr(&self) -> String {
        let vr = format!("{}-{}", self.version, self.release);
        self.epoch.map_or(vr.clone(), |e| format!("{e}:{vr}"))
    }

    pub fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }

    /// `%{SOURCERPM}`: the source's name, version and release, no epoch.
    pub fn source_rpm_name(&self) -> String {
        format!("{}-{}-{}.src.rpm", self.source_name(), self.version, self.release)
    }

    /// The spec: the binary is the main package, or the only subpackage of
    /// a spec named after its source.
    fn spec(&self, tree: &Path) -> String {
        let subpackage = self.source.as_ref().is_some_and(|s| *s != self.name);
        let mut head = format!(
            "Name: {}\nVersion: {}\nRelease: {}\nSummary: {} for patchward's tests\nLicense: Apache-2.0\n",
            self.source_name(),
            self.version,
            self.release,
            self.source_name()
        );
        if self.arch == "noarch" {
            head.push_str("BuildArch: noarch\n");
        }
        let mut tags = String::new();
        if let Some(epoch) = self.epoch {
            tags.push_str(&format!("Epoch: {epoch}\n"));
        }
        for requires in &self.requires {
            tags.push_str(&format!("Requires: {requires}\n"));
        }
        for obsoletes in &self.obsoletes {
            tags.push_str(&format!("Obsoletes: {obsoletes}\n"));
        }
        let description = "%description\npatchward test package\n";
        let (package, files) = if subpackage {
            let n = &self.name;
            (
                format!("{description}%package -n {n}\nSummary: {n}\n{tags}%description -n {n}\n{n}\n"),
                format!("%files -n {n}\n"),
            )
        } else {
            head.push_str(&tags);
            (description.to_owned(), "%files\n".to_owned())
        };
        let listed: String = self
            .files
            .iter()
            .map(|(path, _)| match self.config.contains(path) {
                true => format!("%config(noreplace) {path}\n"),
                false => format!("{path}\n"),
            })
            .collect();
        let install = format!("%install\nmkdir -p %{{buildroot}}\ncp -a {}/. %{{buildroot}}/\n", tree.display());
        let post = match (&self.post, subpackage) {
            (None, _) => String::new(),
            (Some(body), false) => format!("%post\n{body}\n"),
            (Some(body), true) => format!("%post -n {}\n{body}\n", self.name),
        };
        format!("{head}{package}{install}{post}{files}{listed}")
    }

    /// Builds `out_dir/NAME-VERSION-RELEASE.ARCH.rpm` with rpmbuild (a
    /// scratch top directory next to it is removed afterwards). Panics on
    /// failure.
    pub fn build(&self, out_dir: &Path) -> PathBuf {
        make_dir(out_dir);
        let out_dir = std::fs::canonicalize(out_dir).unwrap();
        let top = out_dir.join(format!(".{}.rpmbuild", self.file_name()));
        if top.exists() {
            std::fs::remove_dir_all(&top).unwrap();
        }
        let tree = top.join("tree");
        make_dir(&tree);
        for (path, bytes) in &self.files {
            let file = tree.join(path.trim_start_matches('/'));
            make_dir(file.parent().unwrap());
            write_file(&file, bytes, 0o644);
        }
        let spec = top.join("package.spec");
        write_file(&spec, self.spec(&tree).as_bytes(), 0o644);
        let mut command = Command::new("rpmbuild");
        for define in [
            format!("_topdir {}", top.display()),
            // No brp scripts, debuginfo or build-id links: fast, deterministic.
            "__os_install_post %{nil}".to_owned(),
            "debug_package %{nil}".to_owned(),
            "_build_id_links none".to_owned(),
            "_buildhost patchward-test".to_owned(),
            "use_source_date_epoch_as_buildtime 1".to_owned(),
            "clamp_mtime_to_source_date_epoch 1".to_owned(),
        ] {
            command.arg("--define").arg(define);
        }
        if self.arch != "noarch" {
            command.arg(format!("--target={}", self.arch));
        }
        // --nodeps: no build requirements to check, and rpmbuild would
        // otherwise open the host's rpm database.
        command.args(["--nodeps", "-bb"]).arg(&spec).env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH).env("LC_ALL", "C");
        run(&mut command);
        let rpm = out_dir.join(self.file_name());
        std::fs::rename(top.join("RPMS").join(&self.arch).join(self.file_name()), &rpm)
            .unwrap_or_else(|e| panic!("rpmbuild left no {}: {e}", self.file_name()));
        std::fs::remove_dir_all(&top).unwrap();
        rpm
    }
}

// ---------------------------------------------------------------- gpg

/// `rpmsign --addsign` on every file with `gpg`'s key (Debian's rpm calls
/// `gpg2` unless told otherwise).
fn sign_rpms(gpg: &Gpg, rpms: &[PathBuf]) {
    if rpms.is_empty() {
        return;
    }
    let mut command = Command::new("rpmsign");
    command
        .env("GNUPGHOME", &gpg.home)
        .env("LC_ALL", "C")
        .args(["--define", "__gpg /usr/bin/gpg", "--define"])
        .arg(format!("_gpg_name {}", gpg.uid))
        .arg("--addsign")
        .args(rpms);
    run(&mut command);
}

/// A stranger's key: a different fresh armored public key, for the "wrong
/// key" tests.
pub fn other_key(dir: &Path) -> PathBuf {
    stranger_key(dir, true)
}

// ---------------------------------------------------------------- DnfRepo

/// A signed dnf repository served over HTTP on 127.0.0.1 until dropped.
pub struct DnfRepo {
    www: PathBuf,
    build: PathBuf,
    gpg: Gpg,
    key: PathBuf,
    server: Server,
    runtime: Option<tokio::runtime::Runtime>,
}

impl DnfRepo {
    /// Makes the signing key, builds, signs and indexes the repository in
    /// `dir/www` and serves it. The public key is `dir/key.asc`.
    pub fn new(dir: &Path, rpms: &[Rpm]) -> DnfRepo {
        make_dir(dir);
        let dir = std::fs::canonicalize(dir).unwrap();
        let www = dir.join("www");
        make_dir(&www);
        let gpg = Gpg::new(&dir.join("gnupg"), REPO_UID);
        let key = dir.join("key.asc");
        gpg.export(&key, true);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let root = www.clone();
        let server = runtime.block_on(Server::start(move |request, _| serve(&root, request)));
        let mut repo = DnfRepo { www, build: dir.join("build"), gpg, key, server, runtime: Some(runtime) };
        repo.publish(rpms);
        repo
    }

    /// Replaces the package set: rebuilds and re-signs the packages, the
    /// index and its signature.
    pub fn publish(&mut self, rpms: &[Rpm]) {
        for sub in ["Packages", "repodata"] {
            let path = self.www.join(sub);
            if path.exists() {
                std::fs::remove_dir_all(&path).unwrap();
            }
        }
        make_dir(&self.www.join("Packages"));
        let mut served = Vec::new();
        for rpm in rpms {
            let built = rpm.build(&self.build);
            let path = self.file(&self.location(rpm));
            std::fs::rename(&built, &path).unwrap();
            served.push(path);
        }
        sign_rpms(&self.gpg, &served);
        run(Command::new("createrepo_c").args(["--no-database", "--quiet"]).arg(&self.www));
        let repomd = self.www.join("repodata/repomd.xml");
        run(self
            .gpg
            .command()
            .args(["--detach-sign", "--armor", "-o"])
            .arg(repomd.with_extension("xml.asc"))
            .arg(&repomd));
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        self.server.base()
    }

    /// The armored public key, for `gpgkey=file://`.
    pub fn key(&self) -> PathBuf {
        self.key.clone()
    }

    /// Where the rpm is in the repository, as primary.xml's location says.
    pub fn location(&self, rpm: &Rpm) -> String {
        format!("Packages/{}", rpm.file_name())
    }

    /// The served file on disk (`relative` as in a URL path, with or
    /// without its leading `/`, not percent-encoded).
    pub fn file(&self, relative: &str) -> PathBuf {
        let relative = Path::new(relative.trim_start_matches('/'));
        assert!(relative.components().all(|c| matches!(c, Component::Normal(_))), "bad path {relative:?}");
        self.www.join(relative)
    }

    /// The paths requested so far, in order, percent-decoded and without
    /// the query: `/repodata/repomd.xml`, `/Packages/…rpm`.
    pub fn requests(&self) -> Vec<String> {
        self.server.requests().iter().map(request_path).collect()
    }

    pub fn clear_requests(&self) {
        self.server.requests.lock().unwrap().clear();
    }

    /// Flips one byte in the middle of a served file (a package,
    /// repomd.xml, primary.xml.gz…). A later `publish` rebuilds it intact.
    pub fn tamper(&self, relative: &str) {
        let path = self.file(relative);
        let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("tamper {}: {e}", path.display()));
        assert!(!bytes.is_empty(), "cannot tamper an empty {}", path.display());
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        replace_file(&path, &bytes);
    }
}

impl Drop for DnfRepo {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        self.gpg.stop_agent();
    }
}

fn request_path(request: &Request) -> String {
    percent_decode(request.path.split(['?', '#']).next().unwrap_or(""))
}

/// A static file, or 404.
fn serve(root: &Path, request: &Request) -> Reply {
    match resolve(root, &request_path(request)).and_then(|file| std::fs::read(file).ok()) {
        Some(bytes) => Reply::new(200, Body::Exact(bytes)),
        None => Reply::status(404),
    }
}

// ---------------------------------------------------------------- DnfSandbox

/// A sandboxed rpm root and a dnf configuration naming one repository.
pub struct DnfSandbox {
    pub dir: PathBuf,
    /// The installroot (`dir/root`): its database is `ROOT/var/lib/rpm`.
    pub root: PathBuf,
    /// The dnf.conf (`dir/dnf.conf`), for the agent's `dnf.config`.
    pub config: PathBuf,
    /// A HOME whose `.rpmmacros` points rpm at `ROOT/var/lib/rpm`, for the
    /// fixture's own dnf calls.
    pub home: PathBuf,
}

impl DnfSandbox {
    /// A client of the repository at `repo_url` trusting `key` (armored),
    /// on an empty rpm root.
    pub fn new(dir: &Path, repo_url: &str, key: &Path) -> DnfSandbox {
        make_dir(dir);
        let dir = std::fs::canonicalize(dir).unwrap();
        let (root, home) = (dir.join("root"), dir.join("home"));
        make_dir(&root);
        make_dir(&home);
        make_dir(&dir.join("repos.d"));
        let key = std::path::absolute(key).unwrap();
        for path in [&dir, &key] {
            let text = path.to_str().expect("a UTF-8 path");
            assert!(!text.contains(|c: char| c.is_whitespace() || ",*?[]".contains(c)), "unusable path {text:?}");
        }
        write_file(&home.join(".rpmmacros"), format!("%_dbpath {DB_PATH}\n").as_bytes(), 0o644);
        let repo = format!(
            "[{REPO_ID}]\nname=patchward test repository\nbaseurl={repo_url}/\nenabled=1\ngpgcheck=1\nrepo_gpgcheck=1\ngpgkey=file://{}\n",
            key.display()
        );
        write_file(&dir.join("repos.d").join(format!("{REPO_ID}.repo")), repo.as_bytes(), 0o644);
        let config = dir.join("dnf.conf");
        write_file(&config, dnf_conf(&dir, &root).as_bytes(), 0o644);
        let sandbox = DnfSandbox { dir, root, config, home };
        run(sandbox.rpm().arg("--initdb"));
        sandbox
    }

    /// rpm on the root's database (`--dbpath`, the agent's).
    fn rpm(&self) -> Command {
        let mut command = Command::new("rpm");
        command.env("LC_ALL", "C").arg(format!("--root={}", self.root.display())).arg(format!("--dbpath={DB_PATH}"));
        command
    }

    /// Installs the rpms into the root with rpm itself (the device's
    /// starting state; no scriptlets, the key need not be imported yet).
    /// Panics on failure.
    pub fn rpm_install(&self, rpms: &[PathBuf]) {
        run(self.rpm().args(["--upgrade", "--nosignature", "--noscripts"]).args(rpms));
    }

    /// Installed packages (not the imported keys): NAME → `[EPOCH:]V-R`.
    pub fn installed(&self) -> BTreeMap<String, String> {
        let output = run(self.rpm().args([
            "--query",
            "--all",
            "--queryformat",
            "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}-%{RELEASE}\\n",
        ]));
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let [name, epoch, vr] = line.split('\t').collect::<Vec<_>>()[..] else { return None };
                let version = if epoch == "0" { vr.to_owned() } else { format!("{epoch}:{vr}") };
                (name != "gpg-pubkey").then(|| (name.to_owned(), version))
            })
            .collect()
    }

    /// Every installed instance of `name` (`[EPOCH:]V-R`, as rpm lists
    /// them): two while a replacement is under way.
    pub fn instances(&self, name: &str) -> Vec<String> {
        let output = self
            .rpm()
            .args(["--query", "--queryformat", "%|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\\n", name])
            .output()
            .expect("run rpm");
        String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.contains(' ')).map(str::to_owned).collect()
    }

    /// dnf on the root with the sandbox's configuration, then `args`.
    /// Returns whatever happened; never panics on a failure.
    pub fn dnf(&self, args: &[&str]) -> Output {
        Command::new("dnf")
            .env("HOME", &self.home)
            .env("LC_ALL", "C.UTF-8")
            .arg(format!("--config={}", self.config.display()))
            .arg(format!("--installroot={}", self.root.display()))
            .args(["--disableplugin=local", "--disableplugin=generate_completion_cache"])
            .args(args)
            .output()
            .expect("run dnf")
    }

    /// Package files left in dnf's cache under the root.
    pub fn cached_packages(&self) -> Vec<PathBuf> {
        let cache = self.root.join("var/cache/dnf");
        let Ok(repos) = std::fs::read_dir(&cache) else { return Vec::new() };
        let mut found: Vec<PathBuf> = repos
            .flatten()
            .filter_map(|repo| std::fs::read_dir(repo.path().join("packages")).ok())
            .flat_map(|files| files.flatten().map(|f| f.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "rpm"))
            .collect();
        found.sort();
        found
    }
}

/// The sandbox's dnf.conf (see the module doc).
fn dnf_conf(dir: &Path, root: &Path) -> String {
    let (d, r) = (dir.display(), root.display());
    format!(
        "# patchward test fixture: dnf on the sandbox root {r} only.
[main]
# A guard: a dnf call without --installroot still acts on the sandbox.
installroot={r}
reposdir={d}/repos.d
# Under the installroot, whatever is written here.
cachedir=/var/cache/dnf
persistdir=/var/lib/dnf
logdir=/var/log
gpgcheck=1
repo_gpgcheck=1
localpkg_gpgcheck=1
# Debian's default: a repository that does not verify is skipped, and the
# agent must refuse it all the same.
skip_if_unavailable=True
installonly_limit=3
best=True
keepcache=False
"
    )
}
