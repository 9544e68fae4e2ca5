//! The script installer under `sh`, and the pre-install re-hash (G1, T19):
//! an installer only ever runs the staged copy whose bytes were just hashed.

use std::cell::Cell;
use std::time::Duration;

use patchward_agent::cache::Cache;
use patchward_agent::install::script::ScriptInstaller;
use patchward_agent::install::{
    InstallError, Installer, Outcome, PackageType, ProcessExit, Removal, StageError, VerifiedPackage, install_blob,
};

struct Setup {
    dir: tempfile::TempDir,
    cache: Cache,
    installer: ScriptInstaller,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("state")).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    Setup { installer: ScriptInstaller::new(&root), dir, cache }
}

impl Setup {
    fn staged(&self, script: &str) -> VerifiedPackage {
        let blob = self.cache.put(script.as_bytes()).unwrap();
        VerifiedPackage::stage(&blob, PackageType::Script, self.cache.staging_dir()).unwrap()
    }
}

#[test]
fn a_script_runs_under_sh_with_its_args_in_the_root() {
    let s = setup();
    let package = s.staged("printf '%s|' \"$@\" > installed\necho \"$PATCHWARD_ROOT\" >> installed\n");
    let args = vec!["--mode".to_string(), "two words".to_string()];
    assert_eq!(s.installer.install(&package, &args).unwrap(), Outcome::Succeeded);
    let root = s.dir.path().join("root");
    let written = std::fs::read_to_string(root.join("installed")).unwrap();
    assert_eq!(written, format!("--mode|two words|{}\n", root.display()));
}

#[test]
fn a_failing_script_reports_its_exit_code_and_the_tail_of_stderr() {
    let s = setup();
    let package = s.staged("echo 'step 1 ok'\necho 'disk quota exceeded' >&2\nexit 3\n");
    assert_eq!(
        s.installer.install(&package, &[]).unwrap(),
        Outcome::Failed { exit: ProcessExit::Code(3), stderr_tail: "disk quota exceeded\n".into() }
    );
}

#[test]
fn a_script_past_its_timeout_is_killed_and_fails() {
    let s = setup();
    let installer = s.installer.clone().with_timeout(Duration::from_millis(200));
    let package = s.staged("sleep 30\n");
    let outcome = installer.install(&package, &[]).unwrap();
    assert!(
        matches!(outcome, Outcome::Failed { exit: ProcessExit::TimedOut(t), .. } if t == Duration::from_millis(200)),
        "{outcome:?}"
    );
}

#[test]
fn an_uninstall_script_runs_with_its_own_args() {
    let s = setup();
    let uninstaller = s.staged("test \"$1\" = --remove && touch removed\n");
    let args = vec!["--remove".to_string()];
    assert_eq!(s.installer.uninstall(Removal::Run { package: &uninstaller, args: &args }).unwrap(), Outcome::Succeeded);
    assert!(s.dir.path().join("root/removed").exists());
    assert!(matches!(s.installer.uninstall(Removal::Package("x")), Err(InstallError::UnsupportedRemoval { .. })));
}

#[test]
fn the_staged_copy_is_private_and_removed_after_use() {
    let s = setup();
    let package = s.staged("exit 0\n");
    let path = package.path().to_owned();
    assert!(path.starts_with(s.cache.staging_dir()));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    drop(package);
    assert!(!path.exists());
}

/// Counts its calls; runs nothing.
struct CountingInstaller {
    installs: Cell<u32>,
}

impl Installer for CountingInstaller {
    fn kind(&self) -> PackageType {
        PackageType::Script
    }
    fn install(&self, _: &VerifiedPackage, _: &[String]) -> Result<Outcome, InstallError> {
        self.installs.set(self.installs.get() + 1);
        Ok(Outcome::Succeeded)
    }
    fn uninstall(&self, _: Removal<'_>) -> Result<Outcome, InstallError> {
        unreachable!("not used")
    }
}

#[test]
fn a_cached_file_swapped_after_download_verification_is_refused_before_any_installer_runs() {
    let s = setup();
    let marker = s.dir.path().join("root/ran");
    let genuine = format!("touch {}\n", marker.display());
    let blob = s.cache.put(genuine.as_bytes()).unwrap();

    // After the download was verified, the cached file is replaced (same
    // length, different bytes).
    let evil = format!("echo pwned {}\n", "x".repeat(genuine.len() - 12));
    assert_eq!(evil.len(), genuine.len());
    std::fs::write(blob.path(), &evil).unwrap();

    let counting = CountingInstaller { installs: Cell::new(0) };
    let error = install_blob(&counting, &blob, s.cache.staging_dir(), &[]).unwrap_err();
    let InstallError::Stage(StageError::Mismatch { expected, actual, .. }) = &error else {
        panic!("expected the pre-install check to refuse, got {error}")
    };
    assert_eq!(expected, &blob.digest().to_hex());
    assert_eq!(actual, &patchward_agent::cache::Sha256Digest::of(evil.as_bytes()).to_hex());
    assert_eq!(counting.installs.get(), 0, "no installer may be invoked");

    // The real script installer is not run either, and no staging copy stays.
    assert!(install_blob(&s.installer, &blob, s.cache.staging_dir(), &[]).is_err());
    assert!(!marker.exists());
    assert_eq!(std::fs::read_dir(s.cache.staging_dir()).unwrap().count(), 0);

    // A truncated swap is refused too.
    std::fs::write(blob.path(), &genuine[..5]).unwrap();
    assert!(matches!(
        install_blob(&counting, &blob, s.cache.staging_dir(), &[]),
        Err(InstallError::Stage(StageError::Mismatch { actual_size: 5, .. }))
    ));
    assert_eq!(counting.installs.get(), 0);

    // With the genuine bytes back, the same blob installs, once.
    std::fs::write(blob.path(), &genuine).unwrap();
    assert_eq!(install_blob(&s.installer, &blob, s.cache.staging_dir(), &[]).unwrap(), Outcome::Succeeded);
    assert!(marker.exists());
}
