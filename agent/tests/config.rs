//! The agent's config: defaults, the file, the flags, and the errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use patchward_agent::config::{ConfigError, Overrides, Settings};
use patchward_agent::download::{Limits, MinRate};
use patchward_api::agent_config::{LogFormat as Format, LogLevel as Level};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/agent/patchward-agent.yaml")
}

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn the_documented_example_is_exactly_the_defaults() {
    let settings = Settings::load(Some(&example()), Overrides::default()).unwrap();
    assert_eq!(settings, Settings::default());
    // And the defaults are the ones documented, spelled out once more here
    // so that a change to a default must change this test and the example.
    assert_eq!(
        settings,
        Settings {
            server: None,
            state: "/var/lib/patchward-agent".into(),
            runtime: "/run/patchward-agent".into(),
            root: "/".into(),
            poll_interval: Duration::from_secs(60),
            labels: BTreeMap::new(),
            groups: vec![],
            download: Limits {
                max_bandwidth_kbps: None,
                stall_timeout: Duration::from_secs(60),
                min_rate: Some(MinRate { bytes_per_second: 1024, window: Duration::from_secs(120) }),
                total_timeout: Some(Duration::from_secs(6 * 3600)),
                max_resumes: 3,
            },
            install_timeout: Duration::from_secs(30 * 60),
            log: patchward_agent::config::LogSettings { format: Format::Text, level: Level::Info },
            dnf_config: None,
            dnf_releasever: None,
        }
    );
    assert_eq!(settings.download, Limits::default());
    assert_eq!(settings.socket(), PathBuf::from("/run/patchward-agent/agent.sock"));
}

#[test]
fn flags_beat_the_file_and_the_file_beats_the_defaults() {
    let (_dir, path) = write(
        "server: https://engine.example:8420\n\
         state: /srv/pw-state\n\
         root: /srv/root-from-file\n\
         pollInterval: 5m\n\
         labels: {site: lyon}\n\
         groups: [kiosks]\n\
         download:\n  stallTimeout: 30s\n  minRate: {bytesPerSecond: 0, window: 1m}\n  totalTimeout: 0s\n\
         log: {format: json}\n",
    );
    let settings = Settings::load(
        Some(&path),
        Overrides { root: Some("/sandbox/root".into()), log_level: Some(Level::Debug), ..Overrides::default() },
    )
    .unwrap();
    let defaults = Settings::default();
    // The flags.
    assert_eq!(settings.root, PathBuf::from("/sandbox/root"));
    assert_eq!(settings.log.level, Level::Debug);
    // The file.
    assert_eq!(settings.server.as_ref().map(|u| u.as_str()), Some("https://engine.example:8420/"));
    assert_eq!(settings.state, PathBuf::from("/srv/pw-state"));
    assert_eq!(settings.poll_interval, Duration::from_secs(300));
    assert_eq!(settings.labels, BTreeMap::from([("site".to_owned(), "lyon".to_owned())]));
    assert_eq!(settings.groups, ["kiosks"]);
    assert_eq!(settings.download.stall_timeout, Duration::from_secs(30));
    assert_eq!(settings.download.min_rate, None, "bytesPerSecond: 0 turns the check off");
    assert_eq!(settings.download.total_timeout, None, "0s: no limit");
    assert_eq!(settings.log.format, Format::Json);
    // The defaults, where neither says.
    assert_eq!(settings.runtime, defaults.runtime);
    assert_eq!(settings.download.max_resumes, defaults.download.max_resumes);
    assert_eq!(settings.install_timeout, defaults.install_timeout);
}

#[test]
fn a_relative_flag_path_is_taken_from_the_current_directory() {
    let settings = Settings::load(None, Overrides { state: Some("rel/state".into()), ..Overrides::default() }).unwrap();
    assert_eq!(settings.state, std::env::current_dir().unwrap().join("rel/state"));
}

#[test]
fn a_typo_names_the_file_line_and_column() {
    let (_dir, path) = write("state: /var/lib/x\ndownload:\n  stallTimeot: 30s\n");
    let error = Settings::load(Some(&path), Overrides::default()).unwrap_err();
    let ConfigError::Syntax { line, col, ref message, .. } = error else { panic!("{error:?}") };
    assert_eq!((line, col), (3, 3));
    assert!(message.contains("unknown field `stallTimeot`") && message.contains("`stallTimeout`"), "{message}");
    let text = error.to_string();
    assert!(text.starts_with(&format!("{}:3:3: ", path.display())), "{text}");
}

#[test]
fn a_bad_value_names_its_place_too() {
    let (_dir, path) = write("pollInterval: 60\nlog:\n  level: loud\n");
    let text = Settings::load(Some(&path), Overrides::default()).unwrap_err().to_string();
    assert!(text.starts_with(&format!("{}:1:", path.display())), "{text}");
    let (_dir, path) = write("log:\n  level: loud\n");
    let text = Settings::load(Some(&path), Overrides::default()).unwrap_err().to_string();
    assert!(text.starts_with(&format!("{}:2:", path.display())) && text.contains("loud"), "{text}");
}

#[test]
fn settings_that_cannot_work_are_refused_by_name() {
    for (yaml, field) in [
        ("pollInterval: 0s\n", "pollInterval"),
        ("installTimeout: 0s\n", "installTimeout"),
        ("state: relative/dir\n", "state"),
        ("state: /var/lib/pw\nruntime: /var/lib/pw\n", "runtime"),
        ("server: ftp://engine.example\n", "server"),
        ("download: {minRate: {bytesPerSecond: 10, window: 0s}}\n", "download.minRate.window"),
    ] {
        let (_dir, path) = write(yaml);
        let error = Settings::load(Some(&path), Overrides::default()).unwrap_err();
        assert!(matches!(&error, ConfigError::Invalid { field: f, .. } if *f == field), "{yaml}: {error:?}");
        assert!(error.to_string().starts_with(&path.display().to_string()), "{error}");
    }
}

#[test]
fn a_missing_file_names_its_path() {
    let path = Path::new("/nonexistent/patchward-agent/config.yaml");
    let text = Settings::load(Some(path), Overrides::default()).unwrap_err().to_string();
    assert!(text.starts_with("/nonexistent/patchward-agent/config.yaml: "), "{text}");
}
