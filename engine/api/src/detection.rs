//! The catalog's `detect` rules (and a SoftwarePackage version's
//! `detection`) as the agent receives them: how a device proves an item is
//! installed. The JSON shape is the engine's (`policy::model::Detection`):
//! `{anyOf: [{package: {manager, name, atLeast}} | {fileVersion: {path,
//! atLeast}} | {registry: {key, value, atLeast}} | {file: {path, sha256}}]}`,
//! an externally tagged camelCase enum; any one rule that holds is enough.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::PackageManager;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Detection {
    pub any_of: Vec<DetectionRule>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DetectionRule {
    /// A package at or above a version, by the manager's own ordering.
    Package(PackageDetection),
    /// A file whose version resource is at least this (Windows).
    FileVersion(FileVersionDetection),
    /// A registry value at least this (Windows).
    Registry(RegistryDetection),
    /// A file whose content has this sha256.
    File(FileHashDetection),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageDetection {
    pub manager: PackageManager,
    pub name: String,
    pub at_least: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileVersionDetection {
    pub path: String,
    pub at_least: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryDetection {
    pub key: String,
    pub value: String,
    pub at_least: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileHashDetection {
    pub path: String,
    /// 64 hex digits.
    pub sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `detect` of the example feed's first patch, as the engine writes it.
    const FEED_DETECT: &str = r#"{"anyOf": [
        {"registry": {"key": "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion", "value": "UBR", "atLeast": "4460"}},
        {"fileVersion": {"path": "C:\\Windows\\System32\\ntoskrnl.exe", "atLeast": "10.0.22631.4460"}},
        {"package": {"manager": "dpkg", "name": "openssl", "atLeast": "3.0.15-1~deb12u1"}},
        {"file": {"path": "/usr/lib/x86_64-linux-gnu/libssl.so.3", "sha256": "4d9f3c1b0a7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c4b3a29180f7e6d5c"}}
    ]}"#;

    #[test]
    fn reads_and_writes_the_engines_shape() {
        let detection: Detection = serde_json::from_str(FEED_DETECT).expect("the engine's shape parses");
        assert_eq!(
            detection.any_of[0],
            DetectionRule::Registry(RegistryDetection {
                key: r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion".into(),
                value: "UBR".into(),
                at_least: "4460".into(),
            })
        );
        assert_eq!(
            detection.any_of[2],
            DetectionRule::Package(PackageDetection {
                manager: PackageManager::Dpkg,
                name: "openssl".into(),
                at_least: "3.0.15-1~deb12u1".into(),
            })
        );
        // Written back, it is the same JSON value the engine wrote.
        let expected: serde_json::Value = serde_json::from_str(FEED_DETECT).expect("valid JSON");
        assert_eq!(serde_json::to_value(&detection).expect("serializes"), expected);
    }

    #[test]
    fn refuses_what_the_engine_refuses() {
        // A field added within v1 is optional and ignored by an agent that
        // does not know it (DESIGN, "Compatibility between releases").
        let newer = r#"{"anyOf": [{"package": {"manager": "dpkg", "name": "a", "atLeast": "1", "arch": "amd64"}}]}"#;
        assert!(serde_json::from_str::<Detection>(newer).is_ok(), "refused {newer}");
        // An unknown rule kind, snake_case names, an unknown manager.
        for bad in [
            r#"{"anyOf": [{"service": {"name": "a"}}]}"#,
            r#"{"anyOf": [{"file_version": {"path": "a", "atLeast": "1"}}]}"#,
            r#"{"anyOf": [{"package": {"manager": "apk", "name": "a", "atLeast": "1"}}]}"#,
            r#"{"any_of": []}"#,
        ] {
            assert!(serde_json::from_str::<Detection>(bad).is_err(), "accepted {bad}");
        }
    }
}
