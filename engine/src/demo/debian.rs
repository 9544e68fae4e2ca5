//! The demo's Debian side: small `.deb` packages built with `dpkg-deb`, and
//! sandbox roots that look like Debian 12 machines to an agent run with
//! `--root` (an os-release, a hostname, a time zone and a dpkg database).
//!
//! The agent has its own dpkg code (`agent/src/install/deb.rs`), which the
//! engine does not link: the engine stays independent of the agent crate,
//! and all the demo needs from dpkg is these two commands. The flags are the
//! agent's sandbox flags, so the agent later acts on the same database.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// Builds `OUT_DIR/NAME_VERSION_all.deb`, which installs
/// `usr/share/NAME/version` (holding the version), and returns its path.
pub fn build_deb(out_dir: &Path, name: &str, version: &str) -> anyhow::Result<PathBuf> {
    let tree = out_dir.join(format!("{name}_{version}.tree"));
    let control = tree.join("DEBIAN");
    let payload = tree.join("usr/share").join(name);
    for dir in [&control, &payload] {
        std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    }
    let fields = format!(
        "Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: patchward demo <demo@patchward.invalid>\n\
         Description: patchward demo package {name}\n"
    );
    write(&control.join("control"), fields.as_bytes())?;
    write(&payload.join("version"), format!("{version}\n").as_bytes())?;
    let deb = out_dir.join(format!("{name}_{version}_all.deb"));
    let mut command = Command::new("dpkg-deb");
    command.arg("--root-owner-group").arg("--build").arg(&tree).arg(&deb);
    run(command, "dpkg-deb --build")?;
    std::fs::remove_dir_all(&tree).with_context(|| format!("failed to remove {}", tree.display()))?;
    Ok(deb)
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

    fn admindir(&self) -> PathBuf {
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

/// Whether `dpkg` and `dpkg-deb` can be run here: the demo's agents install
/// real .deb packages.
pub fn check_tools() -> anyhow::Result<()> {
    for tool in ["dpkg", "dpkg-deb"] {
        let found = Command::new(tool).arg("--version").env("PATH", tool_path()).output();
        if !found.is_ok_and(|o| o.status.success()) {
            bail!(
                "`{tool}` is not available: the demo's agents install real .deb packages into sandboxes with \
                 dpkg, so it runs on Debian, Ubuntu or any Linux with the dpkg package installed"
            );
        }
    }
    Ok(())
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
    }
}
