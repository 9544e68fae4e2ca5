//! `patchward window` on the example repository, as an admin runs it.

use patchward_tests::{patchward, workspace_root};

fn window(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let output = patchward().arg("window").args(args).current_dir(workspace_root()).output().unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.code(), json, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn the_night_window_opens_at_22_helsinki_time_on_weekdays_and_keeps_the_freeze() {
    let (code, json, stderr) = window(&[
        "servers-night",
        "--policies",
        "policies",
        "--at",
        "2026-12-18T12:00:00Z",
        "--next",
        "3",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(json["open"], false);
    assert_eq!(
        json["next"],
        serde_json::json!([
            {"at": "2026-12-18T20:00:00Z", "open": true},
            {"at": "2026-12-19T02:00:00Z", "open": false},
            // The year-end freeze ends at 00:00 local on 2 January, inside Friday's night.
            {"at": "2027-01-01T22:00:00Z", "open": true}
        ])
    );
}

#[test]
fn device_zone_windows_use_the_zone_given() {
    let at = ["--at", "2026-11-24T04:30:00Z", "--next", "1", "--format", "json", "--policies", "policies"];
    let (_, utc, _) = window(&[&["servers-early"], &at[..], &["--device-timezone", "UTC"]].concat());
    assert_eq!(utc["open"], true, "04:30 UTC is before 06:00 UTC");
    let (_, helsinki, _) = window(&[&["servers-early"], &at[..], &["--device-timezone", "Europe/Helsinki"]].concat());
    assert_eq!(helsinki["open"], false, "06:30 in Helsinki is after 06:00");
    assert_eq!(helsinki["next"][0]["at"], "2026-11-24T22:00:00Z", "midnight in Helsinki");
}

#[test]
fn an_unknown_window_is_named_with_a_suggestion() {
    let (code, _, stderr) = window(&["servers-nite", "--policies", "policies"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("did you mean `servers-night`"), "{stderr}");
}
