//! msi, msu and exe installers: their exact command lines as data, and the
//! exit-code classification (G8, T23) through a fake runner — the one fake
//! allowed, since Windows installers cannot run on Linux.

use std::ffi::OsString;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchward_agent::cache::Cache;
use patchward_agent::install::windows::{
    CommandRunner, WindowsInstaller, WindowsRunner, exe_argv, msi_install_argv, msi_uninstall_argv, msu_install_argv,
    msu_uninstall_argv, render_command_line,
};
use patchward_agent::install::{
    InstallError, Installer, Outcome, PackageType, ProcessExit, ProcessOutput, Removal, VerifiedPackage,
};

fn strings(argv: &[OsString]) -> Vec<String> {
    argv.iter().map(|a| a.to_string_lossy().into_owned()).collect()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn msi_command_lines() {
    let file = Path::new(r"C:\ProgramData\patchward\staging\ab.msi");
    assert_eq!(
        strings(&msi_install_argv(file, &args(&["ALLUSERS=1", "/qn"]))),
        ["msiexec.exe", "/i", r"C:\ProgramData\patchward\staging\ab.msi", "/qn", "/norestart", "ALLUSERS=1"]
    );
    let with_space = Path::new(r"C:\Program Data\x.msi");
    assert_eq!(
        render_command_line(&msi_install_argv(with_space, &[])),
        r#"msiexec.exe /i "C:\Program Data\x.msi" /qn /norestart"#
    );
    let code = "{12345678-9ABC-DEF0-1234-56789ABCDEF0}";
    assert_eq!(strings(&msi_uninstall_argv(code, &[]).unwrap()), ["msiexec.exe", "/x", code, "/qn", "/norestart"]);
    for bad in ["12345678-9ABC-DEF0-1234-56789ABCDEF0", "{1234}", "{12345678-9ABC-DEF0-1234-56789ABCDEFG}", "/i evil"] {
        assert!(matches!(msi_uninstall_argv(bad, &[]), Err(InstallError::InvalidName { .. })), "{bad}");
    }
}

#[test]
fn msu_command_lines() {
    let file = Path::new(r"C:\staging\windows11.0-kb5032190-x64.msu");
    // The catalog's args often repeat the defaults: they are not doubled.
    assert_eq!(
        strings(&msu_install_argv(file, &args(&["/quiet", "/norestart"]))),
        ["wusa.exe", r"C:\staging\windows11.0-kb5032190-x64.msu", "/quiet", "/norestart"]
    );
    assert_eq!(
        strings(&msu_uninstall_argv("KB5032190", &[]).unwrap()),
        ["wusa.exe", "/uninstall", "/kb:5032190", "/quiet", "/norestart"]
    );
    assert_eq!(strings(&msu_uninstall_argv("5032190", &[]).unwrap())[2], "/kb:5032190");
    assert!(msu_uninstall_argv("KB50321 /extract", &[]).is_err());
    assert!(msu_uninstall_argv("KB", &[]).is_err());
}

#[test]
fn exe_command_lines_are_the_file_and_its_silent_args() {
    let file = Path::new(r"C:\staging\setup 7.exe");
    let argv = exe_argv(file, &args(&["/S", "/D=C:\\Program Files\\App"]));
    assert_eq!(strings(&argv), [r"C:\staging\setup 7.exe", "/S", r"/D=C:\Program Files\App"]);
    assert_eq!(render_command_line(&argv), r#""C:\staging\setup 7.exe" /S "/D=C:\Program Files\App""#);
}

#[test]
fn command_lines_render_with_windows_quoting() {
    let argv: Vec<OsString> =
        ["a", "", "b c", r#"say "hi""#, r"trail\", r"dir\ x\"].iter().map(OsString::from).collect();
    assert_eq!(render_command_line(&argv), r#"a "" "b c" "say \"hi\"" trail\ "dir\ x\\""#);
}

/// Answers every command with the next exit code and records its argv.
struct FakeRunner {
    codes: Mutex<Vec<i32>>,
    seen: Mutex<Vec<Vec<String>>>,
}

impl CommandRunner for FakeRunner {
    fn run(&self, argv: &[OsString], _timeout: Duration) -> Result<ProcessOutput, InstallError> {
        self.seen.lock().unwrap().push(strings(argv));
        let code = self.codes.lock().unwrap().remove(0);
        Ok(ProcessOutput {
            exit: ProcessExit::Code(code),
            stdout_tail: String::new(),
            stderr_tail: format!("exited {code}"),
        })
    }
}

fn staged(cache: &Cache, kind: PackageType) -> VerifiedPackage {
    let blob = cache.put(format!("a {kind} package").as_bytes()).unwrap();
    VerifiedPackage::stage(&blob, kind, cache.staging_dir()).unwrap()
}

#[test]
fn exit_codes_are_classified_per_g8_for_every_windows_type() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let table = [
        (0, Outcome::Succeeded),
        (3010, Outcome::SucceededRebootPending),
        (1641, Outcome::SucceededRebootStarted),
        (1603, Outcome::Failed { exit: ProcessExit::Code(1603), stderr_tail: "exited 1603".into() }),
        (
            -2145124329,
            Outcome::Failed { exit: ProcessExit::Code(-2145124329), stderr_tail: "exited -2145124329".into() },
        ),
    ];
    for kind in [PackageType::Msi, PackageType::Msu, PackageType::Exe] {
        let package = staged(&cache, kind);
        let codes: Vec<i32> = table.iter().map(|(c, _)| *c).chain([1618]).collect();
        let runner = Arc::new(FakeRunner { codes: Mutex::new(codes), seen: Mutex::new(vec![]) });
        let installer = WindowsInstaller::new(kind, runner.clone()).unwrap();
        for (code, expected) in &table {
            assert_eq!(&installer.install(&package, &[]).unwrap(), expected, "{kind} exit {code}");
        }
        assert!(matches!(installer.install(&package, &[]).unwrap(), Outcome::RetryLater { .. }), "{kind} 1618");
        // What ran is the staged, verified file and nothing else.
        let seen = runner.seen.lock().unwrap();
        let file = package.path().to_string_lossy().into_owned();
        assert!(seen.iter().all(|argv| argv.contains(&file)), "{kind}: {seen:?}");
        assert!(file.ends_with(&format!(".{kind}")), "wusa and msiexec go by the extension: {file}");
    }
}

#[test]
fn removals_run_their_exact_command_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let runner = Arc::new(FakeRunner { codes: Mutex::new(vec![0, 3010, 0]), seen: Mutex::new(vec![]) });
    let msi = WindowsInstaller::new(PackageType::Msi, runner.clone()).unwrap();
    let msu = WindowsInstaller::new(PackageType::Msu, runner.clone()).unwrap();
    let exe = WindowsInstaller::new(PackageType::Exe, runner.clone()).unwrap();
    let code = "{12345678-9ABC-DEF0-1234-56789ABCDEF0}";
    assert_eq!(msi.uninstall(Removal::ProductCode(code)).unwrap(), Outcome::Succeeded);
    assert_eq!(msu.uninstall(Removal::Kb("KB5032190")).unwrap(), Outcome::SucceededRebootPending);
    let uninstaller = staged(&cache, PackageType::Exe);
    let silent = args(&["/uninstall", "/S"]);
    assert_eq!(exe.uninstall(Removal::Run { package: &uninstaller, args: &silent }).unwrap(), Outcome::Succeeded);
    let seen = runner.seen.lock().unwrap();
    assert_eq!(seen[0], ["msiexec.exe", "/x", code, "/qn", "/norestart"]);
    assert_eq!(seen[1], ["wusa.exe", "/uninstall", "/kb:5032190", "/quiet", "/norestart"]);
    assert_eq!(seen[2], [uninstaller.path().to_string_lossy().into_owned(), "/uninstall".into(), "/S".into()]);
    assert!(matches!(msi.uninstall(Removal::Kb("1")), Err(InstallError::UnsupportedRemoval { .. })));
    assert!(matches!(msu.uninstall(Removal::Package("x")), Err(InstallError::UnsupportedRemoval { .. })));
}

#[test]
fn the_real_runner_is_unavailable_off_windows_and_the_type_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let msi = WindowsInstaller::new(PackageType::Msi, Arc::new(WindowsRunner)).unwrap();
    let package = staged(&cache, PackageType::Msi);
    let error = msi.install(&package, &[]).unwrap_err();
    assert!(matches!(&error, InstallError::Unavailable { what } if what.contains("msiexec")), "{error}");
    let deb = staged(&cache, PackageType::Deb);
    assert!(matches!(msi.install(&deb, &[]), Err(InstallError::WrongType { .. })));
    assert!(WindowsInstaller::new(PackageType::Deb, Arc::new(WindowsRunner)).is_err());
}
