//! The planner's package applicability decided exactly as dpkg decides:
//! one patch fixing `openssl` at a version, devices with many installed
//! versions around it, and each device's status checked against
//! `dpkg --compare-versions` (the real dpkg of this machine).

use std::process::Command;

use patchward_tests::{patchward, workspace_root};
use serde_json::json;

const FIXED: &str = "3.0.15-1~deb12u1";
const INSTALLED: &[&str] = &[
    "3.0.15-1~deb12u1",
    "3.0.15-1~deb12u0",
    "3.0.15-1~deb11u9",
    "3.0.15-1",
    "3.0.15",
    "3.0.15~rc1-1",
    "3.0.14-1+deb12u9",
    "3.0.16-0~deb12u1",
    "1:3.0.0-1",
    "0:3.0.15-1~deb12u1",
    "3.0.15-1~deb12u1+b1",
    "3.0.15-1~deb12u1.1",
    "3.0.15-1~~",
    "3.0.9-1",
    "3.0.150-1",
    "3.0a-1",
];

fn dpkg_at_least(installed: &str, fixed: &str) -> bool {
    Command::new("dpkg").args(["--compare-versions", installed, "ge", fixed]).status().expect("dpkg runs").success()
}

#[test]
fn package_fixes_follow_dpkg_compare_versions() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("policy.yaml"),
        "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n---\n\
         apiVersion: patchward.dev/v1\nkind: ApprovalRule\nmetadata: {name: all}\n\
         spec: {match: 'true', action: approve, stages: [{scope: all, policy: fast}]}\n",
    )
    .unwrap();
    let feed = json!({"revision": 1, "generatedAt": "2026-11-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z",
        "patches": [{"id": "DSA-1", "title": "openssl", "vendor": "Debian", "product": "openssl", "category": "security",
                     "released": "2026-11-01T00:00:00Z",
                     "fixes": [{"manager": "dpkg", "package": "openssl", "fixedVersion": FIXED}]}]});
    let devices: Vec<serde_json::Value> = INSTALLED
        .iter()
        .enumerate()
        .map(|(i, version)| {
            json!({"id": format!("d{i:02}"), "inventory": {"packages": [{"manager": "dpkg", "name": "openssl", "version": version}]}})
        })
        .collect();
    std::fs::write(dir.path().join("feed.json"), feed.to_string()).unwrap();
    std::fs::write(dir.path().join("fleet.json"), json!({"devices": devices}).to_string()).unwrap();
    let output = patchward()
        .current_dir(workspace_root())
        .arg("plan")
        .arg("--policies")
        .arg(&policies)
        .arg("--catalog")
        .arg(dir.path().join("feed.json"))
        .arg("--fleet")
        .arg(dir.path().join("fleet.json"))
        .args(["--at", "2026-11-24T12:00:00Z", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut installed_count = 0;
    for (i, version) in INSTALLED.iter().enumerate() {
        let device = &plan["devices"][i];
        assert_eq!(device["id"], format!("d{i:02}"));
        let status = device["items"][0]["status"].as_str().unwrap();
        let expected = if dpkg_at_least(version, FIXED) { "installed" } else { "due" };
        installed_count += usize::from(expected == "installed");
        assert_eq!(status, expected, "openssl {version} against {FIXED}");
    }
    assert!(installed_count > 3 && installed_count < INSTALLED.len() - 3, "both sides are exercised");
}
