//! `script` packages: a shell script run as `sh FILE ARGS…` with a timeout;
//! its exit code is classified like any installer's (G8).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process;
use super::{InstallError, Installer, Outcome, PackageType, Removal, VerifiedPackage, classify};

/// Scripts run at most this long by default.
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone)]
pub struct ScriptInstaller {
    shell: PathBuf,
    timeout: Duration,
    /// Exported to the script as `PATCHWARD_ROOT`: the root it should act on.
    root: PathBuf,
}

impl ScriptInstaller {
    pub fn new(root: &Path) -> ScriptInstaller {
        ScriptInstaller { shell: PathBuf::from("sh"), timeout: DEFAULT_SCRIPT_TIMEOUT, root: root.to_owned() }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> ScriptInstaller {
        self.timeout = timeout;
        self
    }

    /// The argv a run uses: `sh FILE ARGS…`.
    pub fn argv(&self, script: &Path, args: &[String]) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.shell.clone().into(), script.into()];
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    fn run(&self, package: &VerifiedPackage, args: &[String]) -> Result<Outcome, InstallError> {
        package.expect_kind(PackageType::Script)?;
        let argv = self.argv(package.path(), args);
        let env = [("PATCHWARD_ROOT", self.root.as_os_str())];
        // The working directory is the root: a relative path in the script
        // lands inside the tree it manages, never in the agent's cwd.
        let out = process::run(&argv, &env, Some(&self.root), self.timeout)?;
        Ok(classify(out.exit, &out.stderr_tail))
    }
}

impl Installer for ScriptInstaller {
    fn kind(&self) -> PackageType {
        PackageType::Script
    }

    fn install(&self, package: &VerifiedPackage, args: &[String]) -> Result<Outcome, InstallError> {
        self.run(package, args)
    }

    /// Runs a verified uninstall script with its arguments.
    fn uninstall(&self, removal: Removal<'_>) -> Result<Outcome, InstallError> {
        match removal {
            Removal::Run { package, args } => self.run(package, args),
            other => Err(InstallError::UnsupportedRemoval { installer: PackageType::Script, removal: other.name() }),
        }
    }
}
