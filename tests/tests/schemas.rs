//! The JSON Schemas in `schemas/` are generated from the Rust types: they
//! must be fresh, and every YAML file shipped in `policies/` and `examples/`
//! must name its schema on its first line and pass it, checked by an
//! independent validator (the `jsonschema` crate).

use std::path::{Path, PathBuf};

use patchward::policy::yaml::{YamlLimits, from_str_documents};
use patchward::schema::{all_schemas, stale_schemas};
use patchward_tests::workspace_root;
use serde_json::Value;

const MODELINE: &str = "# yaml-language-server: $schema=";

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("a readable folder").map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn shipped_yaml() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["policies", "examples"] {
        yaml_files(&workspace_root().join(dir), &mut files);
    }
    files
}

fn validator(schema_path: &Path) -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("a schema file")).expect("a schema is JSON");
    jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", schema_path.display()))
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("a readable file");
    from_str_documents::<Value>(&text, &YamlLimits::default())
        .into_iter()
        .map(|d| d.unwrap_or_else(|e| panic!("{}:{}: {}", path.display(), e.pos.line, e.message)))
        .collect()
}

#[test]
fn schemas_folder_matches_the_types() {
    let stale = stale_schemas(&workspace_root().join("schemas")).expect("schemas/ is readable");
    assert!(stale.is_empty(), "schemas/ is stale ({stale:?}); run `cargo run -- schemas schemas/`");
}

#[test]
fn every_generated_schema_is_a_valid_draft_2020_12_schema() {
    for file in all_schemas() {
        let schema: Value = serde_json::from_str(&file.content).expect("JSON");
        assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", file.file_name);
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", file.file_name));
    }
}

#[test]
fn every_shipped_yaml_file_names_its_schema_and_passes_it() {
    let files = shipped_yaml();
    assert!(files.len() >= 10, "found only {} YAML files", files.len());
    let mut problems = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable");
        let Some(target) = text.lines().next().and_then(|l| l.strip_prefix(MODELINE)) else {
            problems.push(format!("{}: the first line is not `{MODELINE}...`", path.display()));
            continue;
        };
        if target.starts_with("https://") {
            // A third-party format (a CI workflow): its schema lives elsewhere.
            continue;
        }
        let schema_path = path.parent().unwrap().join(target);
        if !schema_path.is_file() {
            problems.push(format!("{}: names {target}, which does not exist", path.display()));
            continue;
        }
        let validator = validator(&schema_path);
        for (index, document) in documents(&path).iter().enumerate() {
            for error in validator.iter_errors(document) {
                problems.push(format!(
                    "{} document {}: {} at {}",
                    path.display(),
                    index + 1,
                    error,
                    error.instance_path()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_any_kind_schema_refuses_what_validate_refuses() {
    let validator = validator(&workspace_root().join("schemas/policy-document.json"));
    let refused = [
        // An unknown field in a spec.
        r#"{"apiVersion": "patchward.dev/v1", "kind": "Scope", "metadata": {"name": "a"}, "spec": {"colour": "blue"}}"#,
        // A spec of another kind.
        r#"{"apiVersion": "patchward.dev/v1", "kind": "Scope", "metadata": {"name": "a"}, "spec": {"mode": "prompt"}}"#,
        // An unknown kind, a wrong apiVersion, a duration without a unit.
        r#"{"apiVersion": "patchward.dev/v1", "kind": "Scop", "metadata": {"name": "a"}, "spec": {}}"#,
        r#"{"apiVersion": "v1", "kind": "Scope", "metadata": {"name": "a"}, "spec": {}}"#,
        r#"{"apiVersion": "patchward.dev/v1", "kind": "CatalogSource", "metadata": {"name": "a"}, "spec": {"url": "https://x", "interval": "24"}}"#,
        r#"{"apiVersion": "patchward.dev/v1", "kind": "MaintenanceWindow", "metadata": {"name": "a"}, "spec": {"timezone": "UTC", "intervals": [{"start": "6:00", "end": "07:00"}]}}"#,
    ];
    for text in refused {
        let document: Value = serde_json::from_str(text).unwrap();
        assert!(!validator.is_valid(&document), "the schema accepted {text}");
    }
    let accepted: Value = serde_json::from_str(
        r#"{"apiVersion": "patchward.dev/v1", "kind": "DeploymentPolicy", "metadata": {"name": "a"}, "spec": {"mode": "prompt", "prompt": {"timeout": "60s"}}}"#,
    )
    .unwrap();
    assert!(validator.is_valid(&accepted));
}
