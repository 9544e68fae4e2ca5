//! The demo's Debian side: small `.deb` packages built with `dpkg-deb`,
//! sandbox roots that look like Debian 12 machines to an agent run with
//! `--root` (an os-release, a hostname, a time zone and a dpkg database),
//! and each sandbox's apt configuration.
//!
//! The agent has its own dpkg code (`agent/src/install/deb.rs`), which the
//! engine does not link: the engine stays independent of the agent crate,
//! and all the demo needs from dpkg is these commands. The flags are the
//! agent's sandbox flags, so the agent later acts on the same database.
//!
//! **apt.** A device patches through apt, as a Debian machine does: its
//! agent runs `apt-get` with `APT_CONFIG` naming [`AptConfig`]'s file,
//! which keeps everything apt reads and writes in a folder of the device's
//! own (`Dir`, `Dir::State`, `Dir::Cache`, `Dir::Log`, every `Dir::Etc::*`,
//! so nothing of the host's `/etc/apt` is read), points `Dir::State::status`
//! at the sandbox's dpkg database, fixes the architecture (no foreign
//! architecture of the host's dpkg leaks in), fetches no translations, and
//! runs downloads as root when run as root (`APT::Sandbox::User "root"`:
//! the `_apt` user cannot reach a folder private to root, and the warning
//! about it would fail `apt-get update --error-on=any`). Its one sources
//! line is `deb [signed-by=KEY.asc] URL SUITE main`. The dpkg options for
//! the root are not in it: the agent adds `--root` and `--admindir` itself
//! when it runs with `--root`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Who the demo's packages say made them.
pub const MAINTAINER: &str = "patchward demo <demo@patchward.invalid>";

/// A binary package's control fields: what [`build`] writes into the
/// package and what the vendor's `Packages` index says of it, from one
/// value so the two cannot disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    pub package: String,
    pub version: String,
    /// `all` for the demo's packages.
    pub architecture: String,
    pub maintainer: String,
    /// One line.
    pub description: String,
    /// `Source:`, when the source package is named otherwise (`pwlib`, or
    /// `pwlib (1.0-1)` when its version differs too).
    pub source: Option<String>,
}

impl Control {
    /// A demo package: `Architecture: all`, built from a source of its own
    /// name.
    pub fn demo(name: &str, version: &str) -> Control {
        Control {
            package: name.to_owned(),
            version: version.to_owned(),
            architecture: "all".into(),
            maintainer: MAINTAINER.into(),
            description: format!("patchward demo package {name}"),
            source: None,
        }
    }

    /// The source package's name: `Source:` without a version, or the
    /// package's own.
    pub fn source_name(&self) -> &str {
        self.source.as_deref().and_then(|s| s.split_whitespace().next()).unwrap_or(&self.package)
    }

    /// `NAME_VERSION_ARCH.deb`, an epoch's `:` written `%3a` (as Debian's
    /// archive names files).
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.package, self.version.replace(':', "%3a"), self.architecture)
    }

    /// The `DEBIAN/control` file.
    fn text(&self) -> String {
        let source = self.source.as_ref().map(|s| format!("Source: {s}\n")).unwrap_or_default();
        format!(
            "Package: {}\n{source}Version: {}\nArchitecture: {}\nMaintainer: {}\nDescription: {}\n",
            self.package, self.version, self.architecture, self.maintainer, self.description
        )
    }
}

/// Builds `OUT_DIR/NAME_VERSION_all.deb`, which installs
/// `usr/share/NAME/version` (holding the version), and returns its path.
pub fn build_deb(out_dir: &Path, name: &str, version: &str) -> anyhow::Result<PathBuf> {
    build(out_dir, &Control::demo(name, version))
}

/// Builds `OUT_DIR/`[`Control::file_name`] from `control`, installing
/// `usr/share/PACKAGE/version`, and returns its path.
pub fn build(out_dir: &Path, control: &Control) -> anyhow::Result<PathBuf> {
    let name = &control.package;
    let tree = out_dir.join(format!("{name}_{}.tree", control.version));
    let debian = tree.join("DEBIAN");
    let payload = tree.join("usr/share").join(name);
    for dir in [&debian, &payload] {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    write(&debian.join("control"), control.text().as_bytes())?;
    write(&payload.join("version"), format!("{}\n", control.version).as_bytes())?;
    let deb = out_dir.join(control.file_name());
    let mut command = Command::new("dpkg-deb");
    command.arg("--root-owner-group").arg("--build").arg(&tree).arg(&deb);
    run(command, "dpkg-deb --build")?;
    std::fs::remove_dir_all(&tree).with_context(|| format!("failed to remove {}", tree.display()))?;
    Ok(deb)
}

/// dpkg's architecture on this machine (`dpkg --print-architecture`): the
/// one the vendor indexes and the devices' apt uses.
pub fn native_architecture() -> anyhow::Result<String> {
    let output = Command::new("dpkg")
        .arg("--print-architecture")
        .env("PATH", tool_path())
        .output()
        .context("failed to run dpkg --print-architecture")?;
    let arch = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || arch.is_empty() {
        bail!("dpkg --print-architecture failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(arch)
}

/// A sandbox root: a folder the agent treats as a machine's `/`.
#[derive(Clone, Debug)]
pub struct Sandbox {
    root: PathBuf,
}

impl Sandbox {
    /// Makes `root` a Debian 12 machine named `hostname` in `timezone`, with
    /// the empty dpkg database dpkg expects (the layout the agent's
    /// `DpkgRoot::sandbox` creates).
    pub fn create(root: &Path, hostname: &str, timezone: &str) -> anyhow::Result<Sandbox> {
        let root = std::path::absolute(root).with_context(|| format!("failed to resolve {}", root.display()))?;
        let sandbox = Sandbox { root };
        let admin = sandbox.admindir();
        for dir in [
            sandbox.root.join("etc"),
            admin.join("info"),
            admin.join("updates"),
            admin.join("triggers"),
            sandbox.root.join("var/log"),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("failed to create {}", dir.display()))?;
        }
        let etc = sandbox.root.join("etc");
        write(
            &etc.join("os-release"),
            b"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        )?;
        write(&etc.join("hostname"), format!("{hostname}\n").as_bytes())?;
        write(&etc.join("timezone"), format!("{timezone}\n").as_bytes())?;
        write(&admin.join("status"), b"")?;
        write(&admin.join("available"), b"")?;
        Ok(sandbox)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Its dpkg database (`ROOT/var/lib/dpkg`).
    pub fn admindir(&self) -> PathBuf {
        self.root.join("var/lib/dpkg")
    }

    /// `dpkg --install DEB` on this root.
    pub fn install(&self, deb: &Path) -> anyhow::Result<()> {
        let mut command = Command::new("dpkg");
        command.args(self.dpkg_flags()).arg("--install").arg(deb).env("PATH", tool_path());
        run(command, &format!("dpkg --install {} on {}", deb.display(), self.root.display()))
    }

    /// The version of `package` dpkg's database says is installed, if any.
    pub fn installed_version(&self, package: &str) -> anyhow::Result<Option<String>> {
        let output = Command::new("dpkg-query")
            .arg(flag("--admindir=", &self.admindir()))
            .arg("--show")
            .arg("--showformat=${db:Status-Status}\t${Version}")
            .arg(package)
            .output()
            .context("failed to run dpkg-query")?;
        if !output.status.success() {
            // dpkg-query exits 1 for a package it does not know.
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(match text.split_once('\t') {
            Some(("installed", version)) => Some(version.trim().to_owned()),
            _ => None,
        })
    }

    /// dpkg's log of this root (`var/log/dpkg.log`): every `remove` or
    /// `purge` it records, as `PACKAGE VERSION`.
    pub fn removals(&self) -> anyhow::Result<Vec<String>> {
        let log = self.root.join("var/log/dpkg.log");
        let text = match std::fs::read_to_string(&log) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("failed to read {}", log.display())),
        };
        // `DATE TIME ACTION PACKAGE:ARCH OLD NEW`
        Ok(text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                match fields[..] {
                    [_, _, "remove" | "purge", package, version, ..] => Some(format!("{package} {version}")),
                    _ => None,
                }
            })
            .collect())
    }

    fn dpkg_flags(&self) -> Vec<OsString> {
        vec![
            flag("--root=", &self.root),
            flag("--admindir=", &self.admindir()),
            flag("--log=", &self.root.join("var/log/dpkg.log")),
            // The sandbox holds no shell to chroot into, and the demo runs
            // as a user: dpkg otherwise refuses both.
            "--force-script-chrootless".into(),
            "--force-not-root".into(),
        ]
    }
}

/// `PATH` with the system folders dpkg insists on finding `ldconfig` and
/// `start-stop-daemon` in, which a user's `PATH` often lacks on Debian.
pub fn tool_path() -> OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    for dir in ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        if !dirs.iter().any(|d| d == Path::new(dir)) {
            dirs.push(PathBuf::from(dir));
        }
    }
    std::env::join_paths(dirs).unwrap_or(current)
}

/// Whether `dpkg`, `dpkg-deb` and `apt-get` can be run here: the demo
/// builds real .deb packages and its agents patch through apt.
pub fn check_tools() -> anyhow::Result<()> {
    for (tool, why) in [
        ("dpkg", "the demo's agents install real .deb packages into sandboxes with dpkg"),
        ("dpkg-deb", "the demo's vendor builds its .deb packages with dpkg-deb"),
        ("apt-get", "the demo's agents patch through apt, from the vendor's signed apt repository"),
    ] {
        let found = Command::new(tool).arg("--version").env("PATH", tool_path()).output();
        if !found.is_ok_and(|o| o.status.success()) {
            bail!(
                "`{tool}` is not available: {why}, so the demo runs on Debian, Ubuntu or any Linux with the dpkg \
                 and apt packages installed (`apt-get install dpkg apt` on a Debian-like system)"
            );
        }
    }
    Ok(())
}

/// The repository a device's apt trusts: one sources line.
#[derive(Clone, Debug)]
pub struct AptSource {
    /// The repository's base URL (`http://127.0.0.1:PORT/debian`).
    pub url: String,
    pub suite: String,
    pub component: String,
    /// The repository's public key, armored (`.asc`).
    pub key: PathBuf,
}

impl AptSource {
    /// `deb [signed-by=KEY] URL SUITE COMPONENT`; refused for a key path
    /// the line cannot hold.
    pub fn line(&self) -> anyhow::Result<String> {
        let key = self.key.to_str().filter(|k| !k.contains(|c: char| c.is_whitespace() || c == ']'));
        let Some(key) = key else {
            bail!(
                "the key file {} cannot be named in an apt sources line (a space, `]` or a name that is not \
                 UTF-8): keep the demo's files in a plainer folder (--dir)",
                self.key.display()
            );
        };
        Ok(format!("deb [signed-by={key}] {} {} {}\n", self.url, self.suite, self.component))
    }
}

/// One device's apt configuration, isolated from the host (the module
/// docs say how).
#[derive(Clone, Debug)]
pub struct AptConfig {
    /// apt's `Dir`: `etc/apt`, `var/lib/apt`, `var/cache/apt`, `var/log/apt`.
    pub dir: PathBuf,
    /// The file `APT_CONFIG` names (`DIR/apt.conf`).
    pub file: PathBuf,
}

impl AptConfig {
    /// Lays out `dir` for apt on `sandbox`'s dpkg database, trusting
    /// `source` alone, for `architecture`.
    pub fn create(dir: &Path, sandbox: &Sandbox, source: &AptSource, architecture: &str) -> anyhow::Result<AptConfig> {
        let dir = std::path::absolute(dir).with_context(|| format!("failed to resolve {}", dir.display()))?;
        for sub in [
            "etc/apt/apt.conf.d",
            "etc/apt/sources.list.d",
            "etc/apt/preferences.d",
            "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            // apt-get install fails after dpkg succeeded without it.
            "var/log/apt",
        ] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).with_context(|| format!("failed to create {}", path.display()))?;
        }
        write(&dir.join("etc/apt/sources.list"), source.line()?.as_bytes())?;
        let file = dir.join("apt.conf");
        write(&file, apt_config_text(&dir, &sandbox.admindir().join("status"), architecture)?.as_bytes())?;
        Ok(AptConfig { dir, file })
    }
}

/// The `APT_CONFIG` file: every folder apt uses inside `dir`.
fn apt_config_text(dir: &Path, status: &Path, architecture: &str) -> anyhow::Result<String> {
    let quoted = |path: &Path| match path.to_str().filter(|p| !p.contains(['"', '\n'])) {
        Some(text) => Ok(text.to_owned()),
        None => bail!(
            "{} cannot be written in an apt configuration file (a `\"` or a name that is not UTF-8)",
            path.display()
        ),
    };
    let (d, status) = (quoted(dir)?, quoted(status)?);
    Ok(format!(
        r#"// patchward demo: this device's apt, isolated from the host's /etc/apt.
// The agent adds the dpkg options of its root (--root, --admindir) itself.
Dir "{d}/";
Dir::State "{d}/var/lib/apt/";
Dir::State::Lists "{d}/var/lib/apt/lists/";
Dir::State::status "{status}";
Dir::Cache "{d}/var/cache/apt/";
Dir::Cache::Archives "{d}/var/cache/apt/archives/";
Dir::Etc "{d}/etc/apt/";
Dir::Etc::Main "{d}/etc/apt/apt.conf";
Dir::Etc::Parts "{d}/etc/apt/apt.conf.d/";
Dir::Etc::SourceList "{d}/etc/apt/sources.list";
Dir::Etc::SourceParts "{d}/etc/apt/sources.list.d/";
Dir::Etc::Trusted "{d}/etc/apt/trusted.gpg";
Dir::Etc::TrustedParts "{d}/etc/apt/trusted.gpg.d/";
Dir::Etc::Preferences "{d}/etc/apt/preferences";
Dir::Etc::PreferencesParts "{d}/etc/apt/preferences.d/";
Dir::Log "{d}/var/log/apt/";
APT::Architecture "{architecture}";
APT::Architectures {{ "{architecture}"; }};
Acquire::Languages "none";
Acquire::http::Proxy "DIRECT";
APT::Sandbox::User "root";
"#
    ))
}

fn flag(name: &str, path: &Path) -> OsString {
    let mut flag = OsString::from(name);
    flag.push(path.as_os_str());
    flag
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("failed to write {}", path.display()))
}

fn run(mut command: Command, what: &str) -> anyhow::Result<()> {
    let output = command.output().with_context(|| format!("failed to run {what}"))?;
    if !output.status.success() {
        bail!("{what} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_package_installs_into_a_sandbox_and_dpkg_says_so() {
        check_tools().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let old = build_deb(dir.path(), "pw-hello", "0.9").unwrap();
        let new = build_deb(dir.path(), "pw-hello", "1.0").unwrap();
        let sandbox = Sandbox::create(&dir.path().join("ws-01"), "ws-01", "UTC").unwrap();
        assert_eq!(sandbox.installed_version("pw-hello").unwrap(), None);
        sandbox.install(&old).unwrap();
        assert_eq!(sandbox.installed_version("pw-hello").unwrap().as_deref(), Some("0.9"));
        sandbox.install(&new).unwrap();
        assert_eq!(sandbox.installed_version("pw-hello").unwrap().as_deref(), Some("1.0"));
        let shipped = std::fs::read_to_string(sandbox.root().join("usr/share/pw-hello/version")).unwrap();
        assert_eq!(shipped, "1.0\n");
        let hostname = std::fs::read_to_string(sandbox.root().join("etc/hostname")).unwrap();
        assert_eq!(hostname, "ws-01\n");
        assert_eq!(sandbox.removals().unwrap(), Vec::<String>::new(), "an upgrade removes nothing");
    }

    /// The vendor's repository, written to a folder, through a sandbox's
    /// isolated apt: `apt-get update --error-on=any` verifies InRelease
    /// with the published `.asc` key, and the index offers both versions
    /// where the agent looks (`NAME:all`).
    #[test]
    fn a_sandboxs_apt_verifies_the_vendors_repository_and_sees_both_versions() {
        use crate::demo::archive::{Archive, ArchiveKey, PoolPackage, Suite};
        check_tools().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().canonicalize().unwrap();
        let packages: Vec<PoolPackage> = ["0.9", "1.0"]
            .iter()
            .map(|v| {
                let deb = build_deb(&dir, "pw-hello", v).unwrap();
                PoolPackage::new(Control::demo("pw-hello", v), std::fs::read(deb).unwrap())
            })
            .collect();
        let arch = native_architecture().unwrap();
        let suite = Suite {
            origin: "patchward demo".into(),
            label: "patchward demo".into(),
            suite: "bookworm-security".into(),
            architecture: arch.clone(),
            description: "test".into(),
            date: jiff::Timestamp::now(),
        };
        let key = ArchiveKey::generate("patchward demo archive <demo@patchward.invalid>").unwrap();
        let archive = Archive::build(&suite, &packages, &key).unwrap();
        for (path, bytes) in &archive.files {
            let file = dir.join("www").join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, bytes).unwrap();
        }
        std::fs::write(dir.join("key.asc"), &key.public_armored).unwrap();
        let sandbox = Sandbox::create(&dir.join("root"), "ws-01", "UTC").unwrap();
        let source = AptSource {
            url: format!("file:{}", dir.join("www").display()),
            suite: suite.suite.clone(),
            component: "main".into(),
            key: dir.join("key.asc"),
        };
        let apt = AptConfig::create(&dir.join("apt"), &sandbox, &source, &arch).unwrap();
        let run = |program: &str, args: &[&str]| {
            let output = Command::new(program).args(args).env("APT_CONFIG", &apt.file).env("LC_ALL", "C").output();
            let output = output.unwrap();
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            assert!(output.status.success(), "{program} {args:?} failed: {text}");
            text
        };
        run("apt-get", &["update", "--error-on=any"]);
        let shown = run("apt-cache", &["show", "pw-hello:all"]);
        assert!(shown.contains("Version: 0.9\n") && shown.contains("Version: 1.0\n"), "{shown}");
        // A stranger's key fails the refresh.
        let other = ArchiveKey::generate("someone else <other@patchward.invalid>").unwrap();
        std::fs::write(dir.join("key.asc"), &other.public_armored).unwrap();
        let output = Command::new("apt-get")
            .args(["update", "--error-on=any"])
            .env("APT_CONFIG", &apt.file)
            .env("LC_ALL", "C")
            .output()
            .unwrap();
        assert!(!output.status.success(), "apt trusted a repository signed by another key");
    }
}
