//! Windows installers — msi (`msiexec`), msu (`wusa`), exe (the vendor's own
//! silent switches) — as exact command lines, data first.
//!
//! The command lines are built as argv vectors ([`msi_install_argv`] and its
//! siblings) and run through a [`CommandRunner`]. The real runner,
//! [`WindowsRunner`], runs them on Windows and is unavailable elsewhere; the
//! tests on Linux give the installers a fake runner to check the exit-code
//! classification (G8), since Windows installers cannot run here.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::process::ProcessOutput;
use super::{InstallError, Installer, Outcome, PackageType, Removal, VerifiedPackage, classify};

/// Windows installers run at most this long by default (a cumulative update
/// can take most of an hour).
pub const DEFAULT_WINDOWS_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Runs one command line.
pub trait CommandRunner: Send + Sync {
    fn run(&self, argv: &[OsString], timeout: Duration) -> Result<ProcessOutput, InstallError>;
}

/// The real runner: Windows only.
#[derive(Debug, Clone, Copy, Default)]
pub struct WindowsRunner;

impl CommandRunner for WindowsRunner {
    #[cfg(windows)]
    fn run(&self, argv: &[OsString], timeout: Duration) -> Result<ProcessOutput, InstallError> {
        super::process::run(argv, &[], None, timeout)
    }

    #[cfg(not(windows))]
    fn run(&self, argv: &[OsString], _timeout: Duration) -> Result<ProcessOutput, InstallError> {
        let program = argv.first().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        Err(InstallError::Unavailable { what: format!("{program} (a Windows installer)") })
    }
}

/// Appends the package's args, leaving out those the base command already
/// has (`/quiet`, `/norestart` appear in many catalogs' args too).
fn with_args(mut argv: Vec<OsString>, args: &[String]) -> Vec<OsString> {
    for arg in args {
        if !argv.iter().any(|a| a.to_string_lossy().eq_ignore_ascii_case(arg)) {
            argv.push(arg.into());
        }
    }
    argv
}

/// `msiexec /i "FILE" /qn /norestart ARGS…`
pub fn msi_install_argv(file: &Path, args: &[String]) -> Vec<OsString> {
    with_args(vec!["msiexec.exe".into(), "/i".into(), file.into(), "/qn".into(), "/norestart".into()], args)
}

/// `msiexec /x {PRODUCT-CODE} /qn /norestart ARGS…`
pub fn msi_uninstall_argv(product_code: &str, args: &[String]) -> Result<Vec<OsString>, InstallError> {
    check_product_code(product_code)?;
    Ok(with_args(vec!["msiexec.exe".into(), "/x".into(), product_code.into(), "/qn".into(), "/norestart".into()], args))
}

/// `wusa.exe FILE /quiet /norestart ARGS…`
pub fn msu_install_argv(file: &Path, args: &[String]) -> Vec<OsString> {
    with_args(vec!["wusa.exe".into(), file.into(), "/quiet".into(), "/norestart".into()], args)
}

/// `wusa.exe /uninstall /kb:NNN /quiet /norestart`
pub fn msu_uninstall_argv(kb: &str, args: &[String]) -> Result<Vec<OsString>, InstallError> {
    let number = kb.strip_prefix("KB").or_else(|| kb.strip_prefix("kb")).unwrap_or(kb);
    if number.is_empty() || number.len() > 10 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InstallError::InvalidName {
            what: "KB number",
            value: kb.chars().take(40).collect(),
            why: "it must be digits, optionally after KB",
        });
    }
    Ok(with_args(
        vec![
            "wusa.exe".into(),
            "/uninstall".into(),
            format!("/kb:{number}").into(),
            "/quiet".into(),
            "/norestart".into(),
        ],
        args,
    ))
}

/// `FILE ARGS…`: an exe takes exactly its vendor's silent switches.
pub fn exe_argv(file: &Path, args: &[String]) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![file.into()];
    argv.extend(args.iter().map(OsString::from));
    argv
}

/// `{XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX}`
fn check_product_code(code: &str) -> Result<(), InstallError> {
    let invalid = || InstallError::InvalidName {
        what: "product code",
        value: code.chars().take(60).collect(),
        why: "it must be a {GUID}",
    };
    let inner = code.strip_prefix('{').and_then(|c| c.strip_suffix('}')).ok_or_else(invalid)?;
    let groups: Vec<&str> = inner.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    if groups.len() != 5
        || groups.iter().zip(lengths).any(|(g, n)| g.len() != n || !g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(invalid());
    }
    Ok(())
}

/// A command line as Windows' CommandLineToArgvW reads it back: arguments
/// with spaces, tabs or quotes are quoted, backslashes before a quote
/// doubled. For logs and the tests; the runner passes argv.
pub fn render_command_line(argv: &[OsString]) -> String {
    argv.iter()
        .map(|arg| {
            let arg = arg.to_string_lossy();
            if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
                return arg.into_owned();
            }
            let mut quoted = String::from("\"");
            let mut backslashes = 0;
            for c in arg.chars() {
                match c {
                    '\\' => backslashes += 1,
                    '"' => {
                        quoted.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                        quoted.push('"');
                        backslashes = 0;
                    }
                    c => {
                        quoted.extend(std::iter::repeat_n('\\', backslashes));
                        quoted.push(c);
                        backslashes = 0;
                    }
                }
            }
            quoted.extend(std::iter::repeat_n('\\', backslashes * 2));
            quoted.push('"');
            quoted
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One Windows package type on a runner.
#[derive(Clone)]
pub struct WindowsInstaller {
    kind: PackageType,
    runner: Arc<dyn CommandRunner>,
    timeout: Duration,
}

impl WindowsInstaller {
    /// `kind` is msi, msu or exe.
    pub fn new(kind: PackageType, runner: Arc<dyn CommandRunner>) -> Result<WindowsInstaller, InstallError> {
        match kind {
            PackageType::Msi | PackageType::Msu | PackageType::Exe => {
                Ok(WindowsInstaller { kind, runner, timeout: DEFAULT_WINDOWS_TIMEOUT })
            }
            other => Err(InstallError::Unavailable { what: format!("a Windows installer for {other} packages") }),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> WindowsInstaller {
        self.timeout = timeout;
        self
    }

    /// The exact argv an install of `package` runs.
    pub fn install_argv(&self, file: &Path, args: &[String]) -> Vec<OsString> {
        match self.kind {
            PackageType::Msi => msi_install_argv(file, args),
            PackageType::Msu => msu_install_argv(file, args),
            _ => exe_argv(file, args),
        }
    }

    /// The exact argv a removal runs.
    pub fn uninstall_argv(&self, removal: Removal<'_>) -> Result<Vec<OsString>, InstallError> {
        match (self.kind, removal) {
            (PackageType::Msi, Removal::ProductCode(code)) => msi_uninstall_argv(code, &[]),
            (PackageType::Msu, Removal::Kb(kb)) => msu_uninstall_argv(kb, &[]),
            (PackageType::Exe, Removal::Run { package, args }) => {
                package.expect_kind(PackageType::Exe)?;
                Ok(exe_argv(package.path(), args))
            }
            (kind, removal) => Err(InstallError::UnsupportedRemoval { installer: kind, removal: removal.name() }),
        }
    }

    fn run(&self, argv: &[OsString]) -> Result<Outcome, InstallError> {
        let out = self.runner.run(argv, self.timeout)?;
        Ok(classify(out.exit, &out.stderr_tail))
    }
}

impl Installer for WindowsInstaller {
    fn kind(&self) -> PackageType {
        self.kind
    }

    fn install(&self, package: &VerifiedPackage, args: &[String]) -> Result<Outcome, InstallError> {
        package.expect_kind(self.kind)?;
        self.run(&self.install_argv(package.path(), args))
    }

    fn uninstall(&self, removal: Removal<'_>) -> Result<Outcome, InstallError> {
        let argv = self.uninstall_argv(removal)?;
        self.run(&argv)
    }
}
