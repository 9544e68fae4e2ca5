//! What the agent needs of the machine: its edges, each a narrow trait or
//! a value the tests replace (commands, installers, the repositories'
//! clients, the notifier, the restart).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::install::{Installer, PackageType};
use crate::observe::{Clock, CommandRunner};
use crate::windows::WindowsProbe;

/// What the agent needs of the machine: its edges.
pub struct Platform {
    pub root: PathBuf,
    pub proc: PathBuf,
    pub clock: Arc<dyn Clock>,
    pub commands: Arc<dyn CommandRunner>,
    pub windows: Box<dyn WindowsProbe + Send + Sync>,
    pub installers: BTreeMap<PackageType, Box<dyn Installer + Send + Sync>>,
    pub notifier: Box<dyn crate::notify::Notifier>,
    /// Restarts the machine when an install needs it and the policy says
    /// `reboot: auto`.
    pub rebooter: Box<dyn Reboot>,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    /// Whether rpm is asked for the inventory.
    pub rpm: bool,
    /// The clients of the device's own repositories: apt, dnf or both.
    pub repositories: Vec<crate::repo::Repositories>,
    /// The dpkg database a backup is rebuilt from.
    pub dpkg: Option<crate::install::deb::DpkgRoot>,
}

/// The machine's restart, an edge: `systemctl reboot` on a real machine;
/// a sandbox root is never restarted.
pub trait Reboot: Send + Sync {
    fn reboot(&self, reason: &str) -> Result<(), String>;
}

/// `systemctl reboot`, through the platform's commands.
pub struct SystemReboot(pub Arc<dyn CommandRunner + Send + Sync>);

impl Reboot for SystemReboot {
    fn reboot(&self, _reason: &str) -> Result<(), String> {
        let command = crate::observe::CommandLine::new("systemctl", ["reboot"]);
        self.0.run_ok(&command).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// For sandbox roots: the restart is reported, never done.
pub struct NoReboot;

impl Reboot for NoReboot {
    fn reboot(&self, _reason: &str) -> Result<(), String> {
        Err("this root is a sandbox: the machine is not restarted".into())
    }
}

/// The platform's command runner as a value.
pub(super) struct SharedCommands(pub(super) Arc<dyn CommandRunner>);

impl CommandRunner for SharedCommands {
    fn run(
        &self,
        command: &crate::observe::CommandLine,
    ) -> Result<crate::observe::CommandOutput, crate::observe::CommandError> {
        self.0.run(command)
    }
}
