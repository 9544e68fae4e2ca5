//! JSON Schemas generated from the Rust types, for editors and CI.
//!
//! `schemas/` in the repository holds their output; a test fails when the
//! two differ (`cargo run -- schemas schemas/` refreshes them).

use std::path::Path;

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Value, json};

use crate::diagnostics::DiagnosticsReport;
use crate::policy::model::{API_VERSION, Kind, KindVisitor, Metadata, visit_kinds};

const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// One generated schema file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaFile {
    pub file_name: String,
    pub content: String,
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12().for_deserialize().into_generator()
}

fn render(file_name: String, schema: Value) -> SchemaFile {
    let mut content = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    content.push('\n');
    SchemaFile { file_name, content }
}

fn document_properties(kind: Value, metadata: Value, spec: Value) -> Value {
    json!({
        "apiVersion": {"const": API_VERSION},
        "kind": kind,
        "metadata": metadata,
        "spec": spec,
    })
}

fn kind_schema<S: JsonSchema>(kind: Kind) -> SchemaFile {
    let mut generator = generator();
    let metadata = generator.subschema_for::<Metadata>().to_value();
    let spec = generator.subschema_for::<S>().to_value();
    let definitions = generator.take_definitions(true);
    render(
        format!("{}.json", kind.file_stem()),
        json!({
            "$schema": DIALECT,
            "title": format!("patchward {kind}"),
            "description": format!("A {kind} document of a patchward policy repository ({API_VERSION})."),
            "type": "object",
            "additionalProperties": false,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": document_properties(json!({"const": kind.name()}), metadata, spec),
            "$defs": definitions,
        }),
    )
}

fn any_document_schema() -> SchemaFile {
    let mut generator = generator();
    let metadata = generator.subschema_for::<Metadata>().to_value();
    struct Branches<'g> {
        generator: &'g mut SchemaGenerator,
        branches: Vec<Value>,
    }
    impl KindVisitor for Branches<'_> {
        fn visit<S: JsonSchema>(&mut self, kind: Kind) {
            let spec = self.generator.subschema_for::<S>().to_value();
            self.branches.push(json!({
                "if": {"properties": {"kind": {"const": kind.name()}}, "required": ["kind"]},
                "then": {"properties": {"spec": spec}}
            }));
        }
    }
    let mut visitor = Branches { generator: &mut generator, branches: Vec::new() };
    visit_kinds(&mut visitor);
    let branches = visitor.branches;
    let definitions = generator.take_definitions(true);
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    render(
        "policy-document.json".into(),
        json!({
            "$schema": DIALECT,
            "title": "patchward policy document",
            "description": format!("Any document of a patchward policy repository ({API_VERSION}); `kind` picks the spec."),
            "type": "object",
            "additionalProperties": false,
            "required": ["apiVersion", "kind", "metadata", "spec"],
            "properties": document_properties(json!({"enum": names}), metadata, json!({"type": "object"})),
            "allOf": branches,
            "$defs": definitions,
        }),
    )
}

fn plain_schema<T: JsonSchema>(file_name: &str) -> SchemaFile {
    let schema = generator().into_root_schema_for::<T>();
    render(file_name.to_owned(), schema.to_value())
}

/// A schema of something patchward prints (rather than reads).
fn output_schema<T: JsonSchema>(file_name: &str) -> SchemaFile {
    let schema = SchemaSettings::draft2020_12().for_serialize().into_generator().into_root_schema_for::<T>();
    render(file_name.to_owned(), schema.to_value())
}

/// Every schema patchward publishes, in file-name order.
pub fn all_schemas() -> Vec<SchemaFile> {
    struct PerKind(Vec<SchemaFile>);
    impl KindVisitor for PerKind {
        fn visit<S: JsonSchema>(&mut self, kind: Kind) {
            self.0.push(kind_schema::<S>(kind));
        }
    }
    let mut per_kind = PerKind(Vec::new());
    visit_kinds(&mut per_kind);
    let mut files = per_kind.0;
    files.push(any_document_schema());
    files.push(plain_schema::<DiagnosticsReport<'static>>("validate-report.json"));
    files.push(plain_schema::<crate::catalog::feed::Feed>("feed.json"));
    files.push(plain_schema::<patchward_api::Fleet>("fleet.json"));
    files.push(output_schema::<crate::plan::report::PlanReport>("plan.json"));
    files.push(plain_schema::<patchward_api::desired::DesiredState>("desired-state.json"));
    files.push(plain_schema::<crate::daemon::config::ConfigFile>("serve-config.json"));
    files.push(plain_schema::<patchward_api::dsse::Envelope>("dsse-envelope.json"));
    files.push(plain_schema::<patchward_api::agent_config::ConfigFile>("agent-config.json"));
    // The agent API's bodies, both ways.
    files.push(plain_schema::<patchward_api::device::EnrollRequest>("enroll-request.json"));
    files.push(plain_schema::<patchward_api::device::EnrollResponse>("enroll-response.json"));
    files.push(plain_schema::<patchward_api::device::InventoryUpload>("inventory-upload.json"));
    files.push(plain_schema::<patchward_api::device::InventoryAccepted>("inventory-accepted.json"));
    files.push(plain_schema::<patchward_api::events::EventBatch>("event-batch.json"));
    files.push(plain_schema::<patchward_api::events::EventsRecorded>("events-recorded.json"));
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    files
}

/// The files in `dir` that differ from what the types generate (or are
/// missing), and the stray `.json` files nothing generates.
pub fn stale_schemas(dir: &Path) -> std::io::Result<Vec<String>> {
    let expected = all_schemas();
    let mut stale = Vec::new();
    for file in &expected {
        match std::fs::read_to_string(dir.join(&file.file_name)) {
            Ok(content) if content == file.content => {}
            Ok(_) => stale.push(format!("{} is out of date", file.file_name)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => stale.push(format!("{} is missing", file.file_name)),
            Err(e) => return Err(e),
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !expected.iter().any(|f| f.file_name == name) {
            stale.push(format!("{name} is not generated by any type"));
        }
    }
    stale.sort();
    Ok(stale)
}

/// Writes every schema into `dir`.
pub fn write_schemas(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for file in all_schemas() {
        std::fs::write(dir.join(&file.file_name), file.content)?;
    }
    Ok(())
}
