//! Data-driven tests of the planner: one YAML file per scenario under
//! `tests/cases/plan/`, each holding policy files, a catalog, a fleet, an
//! instant (and optionally a ledger), and what the plan must say. Every case
//! runs through the real `patchward plan --format json`.
//!
//! Catalog patches in a case may leave out `title`, `vendor`, `product`,
//! `category` (security) and `released`; the runner fills them in. A
//! DeploymentPolicy `fast` (immediate) is added to every case's policy.
//!
//! Expectations are checked only where given:
//! - `devices`: every device that has items, each with exactly these patches
//!   (in plan order, by patch id); each item's fields given are compared;
//!   `source` is written `rule/NAME` or `approval/NAME`;
//! - `excluded`, `scopes`, `location`: per device;
//! - `reviewQueue`, `held`, `superseded`, `undecided`: patch ids;
//! - `matched`: per rule, the patches its match selects;
//! - `gates`: `{patch, stage, succeeded, failed, passed}` each;
//! - `software`: per device, every software item (fields given compared);
//! - `exposure`: every device that has exposure, each with exactly these
//!   patches (by patch id); each row's fields given are compared;
//! - `diagnostics`: each text appears in some `path:line:col: severity: message`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use patchward::policy::yaml::{YamlLimits, from_str};
use patchward_tests::{patchward, workspace_root};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    at: String,
    policies: BTreeMap<String, String>,
    catalog: Vec<Value>,
    #[serde(default)]
    fleet: Vec<Value>,
    #[serde(default)]
    ledger: Option<Vec<Value>>,
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Expect {
    devices: Option<BTreeMap<String, Vec<BTreeMap<String, Value>>>>,
    excluded: Option<BTreeMap<String, Vec<String>>>,
    scopes: Option<BTreeMap<String, Vec<String>>>,
    location: Option<BTreeMap<String, Option<String>>>,
    review_queue: Option<Vec<String>>,
    held: Option<Vec<String>>,
    superseded: Option<Vec<String>>,
    undecided: Option<Vec<String>>,
    matched: Option<BTreeMap<String, Vec<String>>>,
    gates: Option<Vec<BTreeMap<String, Value>>>,
    /// Per device, its software items: `{package, version, action, status}`.
    software: Option<BTreeMap<String, Vec<BTreeMap<String, Value>>>>,
    /// Per device, its exposure rows: `{patch, decision, ...}`.
    exposure: Option<BTreeMap<String, Vec<BTreeMap<String, Value>>>>,
    /// Fields of the plan's summary (`withheldRetractions`, `removed`, …).
    summary: Option<BTreeMap<String, Value>>,
    diagnostics: Option<Vec<String>>,
}

const PRELUDE: &str =
    "apiVersion: patchward.dev/v1\nkind: DeploymentPolicy\nmetadata: {name: fast}\nspec: {mode: immediate}\n";

fn cases() -> Vec<(PathBuf, Case)> {
    let dir = workspace_root().join("tests/cases/plan");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/cases/plan exists")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 12, "expected the whole case collection, found {}", paths.len());
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a readable case");
            let case = from_str::<Case>(&text, &YamlLimits::default())
                .unwrap_or_else(|e| panic!("{}:{}:{}: {}", path.display(), e.pos.line, e.pos.col, e.message));
            (path, case)
        })
        .collect()
}

fn feed(patches: &[Value]) -> Value {
    let patches: Vec<Value> = patches
        .iter()
        .map(|patch| {
            let mut full = json!({
                "title": "a patch", "vendor": "Vendor", "product": "Product", "category": "security",
                "released": "2026-11-01T00:00:00Z"
            });
            for (key, value) in patch.as_object().expect("a patch is a map") {
                full[key] = value.clone();
            }
            full
        })
        .collect();
    json!({"revision": 1, "generatedAt": "2026-11-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z", "patches": patches})
}

fn run_case(path: &Path, case: &Case) -> Value {
    let dir = tempfile::tempdir().expect("a temp dir");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("prelude.yaml"), PRELUDE).unwrap();
    for (name, text) in &case.policies {
        std::fs::write(policies.join(name), text).unwrap();
    }
    let catalog = dir.path().join("catalog.json");
    std::fs::write(&catalog, serde_json::to_vec(&feed(&case.catalog)).unwrap()).unwrap();
    let fleet = dir.path().join("fleet.json");
    std::fs::write(&fleet, serde_json::to_vec(&json!({"devices": case.fleet})).unwrap()).unwrap();
    let mut command = patchward();
    command.arg("plan").arg("--policies").arg(&policies).arg("--catalog").arg(&catalog).arg("--fleet").arg(&fleet);
    command.args(["--at", &case.at, "--format", "json"]);
    if let Some(ledger) = &case.ledger {
        let file = dir.path().join("ledger.json");
        std::fs::write(&file, serde_json::to_vec(ledger).unwrap()).unwrap();
        command.arg("--ledger").arg(file);
    }
    let output = command.output().expect("patchward runs");
    assert!(
        output.status.success(),
        "{}: plan failed ({:?}): {}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--format json prints JSON")
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|e| e["patch"].as_str().unwrap().to_owned()).collect()
}

fn check(path: &Path, case: &Case, plan: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    let mut expect_eq = |what: String, actual: Value, expected: Value| {
        if actual != expected {
            failures.push(format!("{what}: expected {expected}, got {actual}"));
        }
    };
    let devices: BTreeMap<String, &Value> =
        plan["devices"].as_array().unwrap().iter().map(|d| (d["id"].as_str().unwrap().to_owned(), d)).collect();
    let e = &case.expect;
    if let Some(expected) = &e.devices {
        let with_items: Vec<&String> =
            devices.iter().filter(|(_, d)| !d["items"].as_array().unwrap().is_empty()).map(|(id, _)| id).collect();
        expect_eq("devices with items".into(), json!(with_items), json!(expected.keys().collect::<Vec<_>>()));
        for (id, items) in expected {
            let Some(device) = devices.get(id) else { continue };
            let actual = device["items"].as_array().unwrap();
            let patches: Vec<&Value> = actual.iter().map(|i| &i["patch"]).collect();
            let wanted: Vec<&Value> = items.iter().map(|i| &i["patch"]).collect();
            expect_eq(format!("{id} items"), json!(patches), json!(wanted));
            for (item, want) in actual.iter().zip(items) {
                for (field, value) in want {
                    let got = if field == "source" {
                        json!(format!(
                            "{}/{}",
                            item["source"]["kind"].as_str().unwrap(),
                            item["source"]["name"].as_str().unwrap()
                        ))
                    } else {
                        item[field].clone()
                    };
                    expect_eq(format!("{id} {} {field}", want["patch"]), got, value.clone());
                }
            }
        }
    }
    if let Some(expected) = &e.exposure {
        let exposed: Vec<&String> =
            devices.iter().filter(|(_, d)| !d["exposure"].as_array().unwrap().is_empty()).map(|(id, _)| id).collect();
        expect_eq("devices with exposure".into(), json!(exposed), json!(expected.keys().collect::<Vec<_>>()));
        for (id, rows) in expected {
            let Some(device) = devices.get(id) else { continue };
            let actual = device["exposure"].as_array().unwrap();
            for row in actual {
                expect_eq(format!("{id} exposure row's device"), row["device"].clone(), json!(id));
            }
            let patches: Vec<&Value> = actual.iter().map(|r| &r["patch"]).collect();
            let wanted: Vec<&Value> = rows.iter().map(|r| &r["patch"]).collect();
            expect_eq(format!("{id} exposure"), json!(patches), json!(wanted));
            for (row, want) in actual.iter().zip(rows) {
                for (field, value) in want {
                    expect_eq(format!("{id} exposure {} {field}", want["patch"]), row[field].clone(), value.clone());
                }
            }
        }
    }
    for (field, expected) in [("excluded", &e.excluded), ("scopes", &e.scopes)] {
        for (id, list) in expected.iter().flatten() {
            let actual: Vec<Value> = devices[id][field]
                .as_array()
                .map(|a| a.iter().map(|x| if field == "excluded" { x["patch"].clone() } else { x.clone() }).collect())
                .unwrap_or_default();
            expect_eq(format!("{id} {field}"), json!(actual), json!(list));
        }
    }
    for (id, location) in e.location.iter().flatten() {
        expect_eq(format!("{id} location"), devices[id]["location"].clone(), json!(location));
    }
    for (field, expected) in [
        ("reviewQueue", &e.review_queue),
        ("held", &e.held),
        ("superseded", &e.superseded),
        ("undecided", &e.undecided),
    ] {
        if let Some(expected) = expected {
            expect_eq(field.into(), json!(ids(&plan[field])), json!(expected));
        }
    }
    for (field, expected) in e.summary.iter().flatten() {
        expect_eq(format!("summary {field}"), plan["summary"][field].clone(), expected.clone());
    }
    for (rule, expected) in e.matched.iter().flatten() {
        let actual = plan["rules"].as_array().unwrap().iter().find(|r| r["name"] == json!(rule));
        expect_eq(
            format!("rule {rule} matched"),
            actual.map(|r| r["matched"].clone()).unwrap_or(Value::Null),
            json!(expected),
        );
    }
    if let Some(gates) = &e.gates {
        let actual: Vec<Value> = plan["gates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| json!({"patch": g["patch"], "stage": g["stage"], "succeeded": g["succeeded"], "failed": g["failed"], "passed": g["passed"]}))
            .collect();
        expect_eq("gates".into(), json!(actual), json!(gates));
    }
    for (id, wanted) in e.software.iter().flatten() {
        let actual = devices[id]["software"].as_array().cloned().unwrap_or_default();
        let projected: Vec<Value> = actual
            .iter()
            .zip(wanted)
            .map(|(item, want)| json!(want.keys().map(|k| (k.clone(), item[k].clone())).collect::<BTreeMap<_, _>>()))
            .collect();
        expect_eq(format!("{id} software count"), json!(actual.len()), json!(wanted.len()));
        expect_eq(format!("{id} software"), json!(projected), json!(wanted));
    }
    if let Some(wanted) = &e.diagnostics {
        let lines: Vec<String> = plan["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let file = d["path"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
                format!(
                    "{file}:{}:{}: {}: {}",
                    d["line"],
                    d["col"],
                    d["severity"].as_str().unwrap(),
                    d["message"].as_str().unwrap()
                )
            })
            .collect();
        for text in wanted {
            if !lines.iter().any(|l| l.contains(text.as_str())) {
                failures.push(format!("no diagnostic contains {text:?}; got {lines:#?}"));
            }
        }
        if wanted.is_empty() && !lines.is_empty() {
            failures.push(format!("expected no diagnostics, got {lines:#?}"));
        }
    }
    failures.into_iter().map(|f| format!("{}: {f}", path.display())).collect()
}

#[test]
fn every_plan_case_gives_the_expected_plan() {
    let mut failures = Vec::new();
    for (path, case) in cases() {
        let plan = run_case(&path, &case);
        let found = check(&path, &case, &plan);
        if !found.is_empty() {
            failures.push(format!("{} ({})\n  {}", path.display(), case.description, found.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
