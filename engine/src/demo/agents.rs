//! The demo's agents: real `patchward-agent` processes, each with its own
//! sandbox root, apt configuration, state directory, config file and log,
//! run as the service runs (`patchward-agent run`), long-polling the
//! engine. Each process gets `APT_CONFIG` naming its device's apt
//! configuration (`debian::AptConfig`), as a machine's apt has its own
//! `/etc/apt`; the agent adds the root's dpkg options itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};

use super::debian::{AptConfig, AptSource, Sandbox, tool_path};

/// The agent binary's file name.
pub fn agent_file_name() -> String {
    format!("patchward-agent{}", std::env::consts::EXE_SUFFIX)
}

/// Where the agent binary is, or how to get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentBinary {
    /// Beside the running `patchward`.
    Found(PathBuf),
    /// Not built yet, and this `patchward` runs under cargo (`cargo run`):
    /// build it into the same target folder.
    Build(CargoBuild),
    /// Neither.
    Missing { expected: PathBuf },
}

/// `cargo build -p patchward-agent` into the folder `patchward` was built in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CargoBuild {
    pub cargo: OsString,
    pub manifest: PathBuf,
    pub target_dir: PathBuf,
    /// `dev`, `release` or a custom profile's name.
    pub profile: String,
    /// Where the binary lands.
    pub binary: PathBuf,
}

impl CargoBuild {
    /// The command line, for the user to read.
    pub fn describe(&self) -> String {
        format!(
            "{} build -p patchward-agent --bin patchward-agent --profile {} (CARGO_TARGET_DIR={})",
            Path::new(&self.cargo).file_name().map_or_else(|| "cargo".into(), |n| n.to_string_lossy()),
            self.profile,
            self.target_dir.display()
        )
    }

    /// Runs the build (its output goes to this process's stderr) and
    /// returns the binary.
    pub fn run(&self) -> anyhow::Result<PathBuf> {
        let status = std::process::Command::new(&self.cargo)
            .args(["build", "-p", "patchward-agent", "--bin", "patchward-agent", "--profile", &self.profile])
            .arg("--manifest-path")
            .arg(&self.manifest)
            .env("CARGO_TARGET_DIR", &self.target_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .with_context(|| format!("failed to run {}", self.describe()))?;
        if !status.success() {
            bail!("{} failed ({status})", self.describe());
        }
        if !self.binary.is_file() {
            bail!("{} succeeded, but {} is not there", self.describe(), self.binary.display());
        }
        Ok(self.binary.clone())
    }
}

/// Finds the agent beside `exe` (the running `patchward`); else, when
/// `cargo` is given (the `CARGO` variable `cargo run` sets), says how to
/// build it in `workspace`.
pub fn locate_agent(exe: &Path, cargo: Option<OsString>, workspace: &Path) -> AgentBinary {
    let Some(bin_dir) = exe.parent() else {
        return AgentBinary::Missing { expected: PathBuf::from(agent_file_name()) };
    };
    let expected = bin_dir.join(agent_file_name());
    if expected.is_file() {
        return AgentBinary::Found(expected);
    }
    let manifest = workspace.join("Cargo.toml");
    // cargo puts a profile's binaries in TARGET/PROFILE-DIR (or
    // TARGET/TRIPLE/PROFILE-DIR): `debug` is the `dev` profile's folder.
    let (Some(cargo), Some(profile_dir), Some(target_dir)) =
        (cargo, bin_dir.file_name().and_then(|n| n.to_str()), bin_dir.parent())
    else {
        return AgentBinary::Missing { expected };
    };
    if !manifest.is_file() {
        return AgentBinary::Missing { expected };
    }
    let profile = if profile_dir == "debug" { "dev" } else { profile_dir }.to_owned();
    AgentBinary::Build(CargoBuild { cargo, manifest, target_dir: target_dir.to_owned(), profile, binary: expected })
}

/// One demo device: its sandbox, its files, and its agent once started.
pub struct Agent {
    pub name: String,
    pub ring: String,
    pub sandbox: Sandbox,
    /// Its apt, trusting the vendor's repository.
    pub apt: AptConfig,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Option<tokio::process::Child>,
}

impl Agent {
    /// Lays out `dir/NAME/{root,apt,state,run,agent.yaml,agent.log}` with
    /// a sandbox root named `name`, its apt trusting `source` for
    /// `architecture`, and writes the agent's config.
    pub fn prepare(
        dir: &Path,
        name: &str,
        ring: &str,
        poll: patchward_api::Duration,
        source: &AptSource,
        architecture: &str,
    ) -> anyhow::Result<Agent> {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).with_context(|| format!("failed to create {}", home.display()))?;
        let sandbox = Sandbox::create(&home.join("root"), name, "Europe/Helsinki")?;
        let home = std::path::absolute(&home).with_context(|| format!("failed to resolve {}", home.display()))?;
        let apt = AptConfig::create(&home.join("apt"), &sandbox, source, architecture)?;
        let config = home.join("agent.yaml");
        let text = config_text(name, ring, &home, sandbox.root(), poll);
        std::fs::write(&config, text).with_context(|| format!("failed to write {}", config.display()))?;
        Ok(Agent {
            name: name.to_owned(),
            ring: ring.to_owned(),
            sandbox,
            apt,
            config,
            log: home.join("agent.log"),
            child: None,
        })
    }

    fn command(&self, binary: &Path, args: &[&str]) -> anyhow::Result<tokio::process::Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("failed to open {}", self.log.display()))?;
        let log_err = log.try_clone().with_context(|| format!("failed to open {}", self.log.display()))?;
        let mut command = tokio::process::Command::new(binary);
        command
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .env("PATH", tool_path())
            .env("APT_CONFIG", &self.apt.file)
            // The demo runs on the wall clock, and on loopback only.
            .env_remove("PATCHWARD_AGENT_CLOCK_FILE");
        for proxy in ["http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            command.env_remove(proxy);
        }
        Ok(command)
    }

    /// `patchward-agent enroll`: trades `token` for the device's credential.
    pub async fn enroll(&self, binary: &Path, server: &str, token: &str) -> anyhow::Result<()> {
        let status = self
            .command(binary, &["enroll", "--server", server, "--token", token])?
            .status()
            .await
            .with_context(|| format!("failed to run {}", binary.display()))?;
        if !status.success() {
            bail!("{}: patchward-agent enroll failed ({status}); its log is {}", self.name, self.log.display());
        }
        Ok(())
    }

    /// Starts `patchward-agent run`, the service.
    ///
    /// Linux: the agent gets SIGTERM when the thread that started it ends,
    /// so a demo killed outright leaves no agent behind. Call this from a
    /// thread that lives as long as the demo (the main thread).
    pub fn start(&mut self, binary: &Path) -> anyhow::Result<()> {
        let mut command = self.command(binary, &["run"])?;
        command.kill_on_drop(true);
        #[cfg(target_os = "linux")]
        {
            // SAFETY: the closure runs in the child between fork and exec
            // and makes only async-signal-safe calls (prctl, getppid).
            let parent = std::process::id() as libc::pid_t;
            unsafe {
                command.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        return Err(std::io::Error::other("the demo ended before its agent started"));
                    }
                    Ok(())
                });
            }
        }
        let child = command.spawn().with_context(|| format!("failed to start {}", binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the agent process ended by itself (and how).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Stops the agent as systemd would: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: std::time::Duration) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on the pid of a child we have not reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

/// The agent's config file (`schemas/agent-config.json`): its state and
/// socket under `home`, its root the sandbox, the ring as a label.
fn config_text(name: &str, ring: &str, home: &Path, root: &Path, poll: patchward_api::Duration) -> String {
    format!(
        "# patchward-agent's config for the demo device {name}\n\
         state: {state}\nruntime: {runtime}\nroot: {root}\npollInterval: {poll}\n\
         labels: {{ring: {ring}, role: workstation}}\n",
        state = yaml_path(&home.join("state")),
        runtime = yaml_path(&home.join("run")),
        root = yaml_path(root),
    )
}

/// A path as a YAML scalar: single-quoted, so that no character of it
/// means anything to YAML.
fn yaml_path(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_is_found_beside_patchward_or_built_into_the_same_target_folder() {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("clone");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(workspace.join("Cargo.toml"), "[workspace]\n").unwrap();
        let debug = dir.path().join("target/debug");
        std::fs::create_dir_all(&debug).unwrap();
        let exe = debug.join("patchward");
        let cargo = Some(OsString::from("/usr/bin/cargo"));
        assert_eq!(
            locate_agent(&exe, cargo.clone(), &workspace),
            AgentBinary::Build(CargoBuild {
                cargo: "/usr/bin/cargo".into(),
                manifest: workspace.join("Cargo.toml"),
                target_dir: dir.path().join("target"),
                profile: "dev".into(),
                binary: debug.join(agent_file_name()),
            })
        );
        let release = dir.path().join("target/release/patchward");
        let AgentBinary::Build(build) = locate_agent(&release, cargo.clone(), &workspace) else { panic!() };
        assert_eq!(build.profile, "release");
        assert_eq!(
            locate_agent(&exe, None, &workspace),
            AgentBinary::Missing { expected: debug.join(agent_file_name()) }
        );
        std::fs::write(debug.join(agent_file_name()), "").unwrap();
        assert_eq!(locate_agent(&exe, cargo, &workspace), AgentBinary::Found(debug.join(agent_file_name())));
    }

    #[test]
    fn the_config_is_one_the_agent_reads() {
        let home = Path::new("/tmp/demo's/agents/pilot-01");
        let text = config_text("pilot-01", "pilot", home, &home.join("root"), "15s".parse().unwrap());
        let limits = crate::policy::yaml::YamlLimits::default();
        let file: patchward_api::agent_config::ConfigFile = crate::policy::yaml::from_str(&text, &limits).unwrap();
        assert_eq!(file.state, Some(home.join("state")));
        assert_eq!(file.runtime, Some(home.join("run")));
        assert_eq!(file.root, Some(home.join("root")));
        assert_eq!(file.poll_interval, Some("15s".parse().unwrap()));
        let labels = file.labels.unwrap();
        assert_eq!(labels.get("ring").map(String::as_str), Some("pilot"));
    }

    #[test]
    fn paths_are_quoted_for_yaml() {
        assert_eq!(yaml_path(Path::new("/tmp/it's here: #1")), "'/tmp/it''s here: #1'");
    }
}
