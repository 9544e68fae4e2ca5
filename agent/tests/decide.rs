//! The decision table: every file in `tests/cases/decide/*.yaml` is one
//! scenario, `decide` (or a user request) run on it, and the decision
//! checked against `expect`.
//!
//! A case file:
//!
//! ```yaml
//! now: "2026-11-24T10:00:00Z"
//! item:                      # every key optional
//!   patch: KB1               # default KB5032190
//!   action: install          # default install
//!   status: due              # default due
//!   notBefore: "…"           # default 2026-11-23T00:00:00Z
//!   deadline: "…"
//!   deviceZone: Europe/Helsinki   # default UTC; null for none
//!   policy: {mode: immediate}     # `name` defaults to `under-test`; `windows` to the names below
//!   windows: [{timezone: UTC, intervals: [{start: "08:00", end: "17:00"}]}]   # names default w0, w1, …
//!   fallback: {policy: …, windows: …, fallback: …}                           # the same defaults
//!   userRequest: {snoozesUsed: 1}
//! local: {…}                 # LocalItemState; firstSeen defaults to notBefore
//! observations: {…}          # Observations; a series may be {value: 3, since: "…"}: a sample every 30 s up to now
//! request: snooze            # or self-service-install; default: decide
//! expect: {decision: install-now, reason: {kind: immediate}}
//! ```
//!
//! `expect` lists the fields that matter: each must equal the decision's
//! (instants compare as instants, nested objects the same way, lists
//! exactly); `decision` (or `granted` / `refusal` for a request) is always
//! required. A refusal's `message` is its text for the user.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use patchward_agent::decide::{
    Decision, Item, LocalItemState, Observations, decide, decide_self_service_install, decide_snooze,
};
use patchward_api::deployment::{ResolvedDeployment, UserRequest};
use serde_json::{Map, Value, json};

const DEFAULT_NOT_BEFORE: &str = "2026-11-23T00:00:00Z";

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/decide")
}

fn field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn timestamp(value: &Value, what: &str) -> Result<Timestamp, String> {
    value.as_str().and_then(|s| s.parse().ok()).ok_or_else(|| format!("`{what}` is not an RFC 3339 instant: {value}"))
}

/// A deployment written in a case, with its defaults: the policy's name and
/// its windows' names.
fn deployment(spec: &Map<String, Value>, path: &str) -> Result<(Value, Vec<Value>, Option<Value>), String> {
    let mut windows: Vec<Value> = field(spec, "windows").and_then(Value::as_array).cloned().unwrap_or_default();
    for (index, window) in windows.iter_mut().enumerate() {
        if let Some(window) = window.as_object_mut() {
            window.entry("name").or_insert_with(|| json!(format!("w{index}")));
        }
    }
    let mut policy = field(spec, "policy").cloned().ok_or_else(|| format!("`{path}.policy` is missing"))?;
    if let Some(policy) = policy.as_object_mut() {
        policy.entry("name").or_insert_with(|| json!("under-test"));
        if !windows.is_empty() {
            policy
                .entry("windows")
                .or_insert_with(|| json!(windows.iter().map(|w| w["name"].clone()).collect::<Vec<_>>()));
        }
    }
    let fallback = match field(spec, "fallback").and_then(Value::as_object) {
        None => None,
        Some(inner) => {
            let (policy, windows, fallback) = deployment(inner, &format!("{path}.fallback"))?;
            let mut value = json!({"policy": policy, "windows": windows});
            if let Some(fallback) = fallback {
                value["fallback"] = fallback;
            }
            Some(value)
        }
    };
    Ok((policy, windows, fallback))
}

/// Samples every 30 s from `since` up to `now`, for `{value, since}`.
fn expand_series(value: &mut Value, now: Timestamp) -> Result<(), String> {
    if let Some(steady) = value.as_object().cloned() {
        let level = steady.get("value").and_then(Value::as_f64).ok_or("a series shorthand needs `value`")?;
        let since = timestamp(steady.get("since").ok_or("a series shorthand needs `since`")?, "since")?;
        let mut samples = Vec::new();
        let mut at = since;
        while at <= now {
            samples.push(json!([at.to_string(), level]));
            at = at.checked_add(jiff::SignedDuration::from_secs(30)).map_err(|e| e.to_string())?;
        }
        *value = Value::Array(samples);
    }
    Ok(())
}

struct Case {
    now: Timestamp,
    item: Item,
    local: LocalItemState,
    observations: Observations,
    request: Option<String>,
    expect: Value,
}

fn load(path: &Path) -> Result<Case, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let doc: Value = serde_saphyr::from_str(&text).map_err(|e| format!("not YAML: {e}"))?;
    let doc = doc.as_object().ok_or("a case is a mapping")?;
    for key in doc.keys() {
        if !["now", "item", "local", "observations", "request", "expect"].contains(&key.as_str()) {
            return Err(format!("unknown key `{key}`"));
        }
    }
    let now = timestamp(field(doc, "now").ok_or("`now` is missing")?, "now")?;
    let empty = Map::new();
    let item_spec = field(doc, "item").and_then(Value::as_object).unwrap_or(&empty);
    for key in item_spec.keys() {
        let known = [
            "patch",
            "action",
            "status",
            "notBefore",
            "deadline",
            "deviceZone",
            "policy",
            "windows",
            "fallback",
            "userRequest",
        ];
        if !known.contains(&key.as_str()) {
            return Err(format!("unknown key `item.{key}`"));
        }
    }
    let (policy, windows, fallback) = deployment(item_spec, "item")?;
    let deployment = ResolvedDeployment::from_json(&policy, &windows, fallback.as_ref()).map_err(|e| e.to_string())?;
    let not_before = timestamp(item_spec.get("notBefore").unwrap_or(&json!(DEFAULT_NOT_BEFORE)), "item.notBefore")?;
    let parse =
        |key: &str, default: Value| -> Result<Value, String> { Ok(item_spec.get(key).cloned().unwrap_or(default)) };
    let item = Item {
        patch: parse("patch", json!("KB5032190"))?.as_str().unwrap_or("KB5032190").to_owned(),
        action: serde_json::from_value(parse("action", json!("install"))?).map_err(|e| format!("item.action: {e}"))?,
        status: serde_json::from_value(parse("status", json!("due"))?).map_err(|e| format!("item.status: {e}"))?,
        not_before,
        deadline: field(item_spec, "deadline").map(|d| timestamp(d, "item.deadline")).transpose()?,
        deployment,
        device_zone: match item_spec.get("deviceZone") {
            None => Some("UTC".to_owned()),
            Some(zone) => zone.as_str().map(str::to_owned),
        },
        user_request: field(item_spec, "userRequest")
            .map(|v| serde_json::from_value::<UserRequest>(v.clone()))
            .transpose()
            .map_err(|e| format!("item.userRequest: {e}"))?
            .unwrap_or_default(),
    };
    let mut local = field(doc, "local").cloned().unwrap_or_else(|| json!({}));
    if let Some(map) = local.as_object_mut() {
        map.entry("firstSeen").or_insert_with(|| json!(not_before.to_string()));
    }
    let local: LocalItemState = serde_json::from_value(local).map_err(|e| format!("local: {e}"))?;
    let mut observations = field(doc, "observations").cloned().unwrap_or_else(|| json!({}));
    for series in ["cpuBusyPercent", "networkKbps"] {
        if let Some(value) = observations.get_mut(series) {
            expand_series(value, now).map_err(|e| format!("observations.{series}: {e}"))?;
        }
    }
    let observations: Observations = serde_json::from_value(observations).map_err(|e| format!("observations: {e}"))?;
    let expect = field(doc, "expect").cloned().ok_or("`expect` is missing")?;
    let request = field(doc, "request").and_then(Value::as_str).map(str::to_owned);
    Ok(Case { now, item, local, observations, request, expect })
}

/// `expected` ⊆ `actual`: every key given matches; lists match exactly.
fn mismatches(expected: &Value, actual: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, want) in want {
                let here = format!("{path}.{key}");
                match have.get(key) {
                    Some(have) => mismatches(want, have, &here, out),
                    None if want.is_null() => {}
                    None => out.push(format!("{here}: expected {want}, the decision has no such field")),
                }
            }
        }
        (Value::Array(want), Value::Array(have)) if want.len() == have.len() => {
            for (index, (want, have)) in want.iter().zip(have).enumerate() {
                mismatches(want, have, &format!("{path}[{index}]"), out);
            }
        }
        (Value::Number(want), Value::Number(have)) if want.as_f64() == have.as_f64() => {}
        (Value::String(want), Value::String(have)) => {
            let instants = (want.parse::<Timestamp>(), have.parse::<Timestamp>());
            let same = match instants {
                (Ok(want), Ok(have)) => want == have,
                _ => want == have,
            };
            if !same {
                out.push(format!("{path}: expected {want:?}, got {have:?}"));
            }
        }
        (want, have) if want == have => {}
        (want, have) => out.push(format!("{path}: expected {want}, got {have}")),
    }
}

fn outcome(case: &Case) -> Result<Value, String> {
    let value = match case.request.as_deref() {
        None => serde_json::to_value(decide(&case.item, &case.local, &case.observations, case.now)),
        Some("snooze") => match decide_snooze(&case.item, &case.local, case.now) {
            Ok(granted) => serde_json::to_value(json!({"granted": granted})),
            Err(refusal) => serde_json::to_value(refusal.clone()).map(|mut v| {
                v["message"] = json!(refusal.to_string());
                v
            }),
        },
        Some("self-service-install") => match decide_self_service_install(&case.item, &case.local, case.now) {
            Ok(accepted) => serde_json::to_value(json!({"granted": accepted})),
            Err(refusal) => serde_json::to_value(refusal.clone()).map(|mut v| {
                v["message"] = json!(refusal.to_string());
                v
            }),
        },
        Some(other) => return Err(format!("unknown request `{other}`: snooze or self-service-install")),
    };
    value.map_err(|e| e.to_string())
}

fn run(path: &Path) -> Result<(), String> {
    let case = load(path)?;
    let tag = if case.request.is_some() { ["granted", "refusal"].as_slice() } else { ["decision"].as_slice() };
    if !tag.iter().any(|key| case.expect.get(key).is_some()) {
        return Err(format!("`expect` must name `{}`", tag.join("` or `")));
    }
    let actual = outcome(&case)?;
    let mut out = Vec::new();
    mismatches(&case.expect, &actual, "expect", &mut out);
    if out.is_empty() { Ok(()) } else { Err(format!("{}\n    the whole outcome: {actual}", out.join("\n    "))) }
}

#[test]
fn decision_table() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases/decide exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 60, "the decision table has {} cases; every mode and option needs its own", paths.len());
    let failures: Vec<String> = paths
        .iter()
        .filter_map(|path| {
            run(path)
                .err()
                .map(|error| format!("{}:\n    {error}", path.file_name().unwrap_or_default().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), paths.len(), failures.join("\n"));
}

/// A case whose expectation is wrong must fail: the table can catch a change.
#[test]
fn a_wrong_expectation_fails() {
    let dir = std::env::temp_dir().join(format!("patchward-decide-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wrong.yaml");
    std::fs::write(
        &path,
        "now: \"2026-11-24T10:00:00Z\"\nitem: {policy: {mode: immediate}}\nexpect: {decision: wait-until}\n",
    )
    .unwrap();
    let error = run(&path).unwrap_err();
    assert!(error.contains("expect.decision: expected \"wait-until\", got \"install-now\""), "{error}");
    std::fs::write(&path, "now: \"2026-11-24T10:00:00Z\"\nitem: {policy: {mode: immediate}}\nexpect: {reason: {}}\n")
        .unwrap();
    assert!(run(&path).unwrap_err().contains("must name `decision`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The example repository's policies and windows, read from their YAML as
/// written (defaults left out), are accepted by the agent's types.
#[test]
fn the_example_policy_repository_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut seen = 0;
    for file in ["deployment-policies.yaml", "windows.yaml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for document in text.split("\n---\n") {
            let doc: Value = serde_saphyr::from_str(document).unwrap();
            let mut spec = doc["spec"].clone();
            spec["name"] = doc["metadata"]["name"].clone();
            match doc["kind"].as_str() {
                Some("DeploymentPolicy") => {
                    serde_json::from_value::<patchward_api::deployment::DeploymentPolicy>(spec)
                        .unwrap_or_else(|e| panic!("{file}: {}: {e}", doc["metadata"]["name"]));
                }
                Some("MaintenanceWindow") => {
                    let window = serde_json::from_value::<patchward_api::deployment::MaintenanceWindow>(spec)
                        .unwrap_or_else(|e| panic!("{file}: {}: {e}", doc["metadata"]["name"]));
                    window.schedule(Some("Europe/Helsinki")).unwrap();
                }
                other => panic!("{file}: unexpected kind {other:?}"),
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 10, "six policies and four windows");
}

/// T38: whatever `now` is, on the DST days and around them, an install is
/// decided only when a window is open; a wait for the windows names an
/// instant at which they are open.
#[test]
fn no_install_outside_a_window_across_dst_days() {
    let windows = json!([
        {"name": "night", "timezone": "Europe/Helsinki",
         "intervals": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "03:30", "end": "05:00"}]},
        {"name": "device-evening", "timezone": "device",
         "intervals": [{"start": "22:00", "end": "02:00"}],
         "blackouts": [{"from": "2026-10-25T20:00:00Z", "until": "2026-10-25T21:00:00Z"}]}
    ]);
    let windows: Vec<Value> = windows.as_array().unwrap().clone();
    let policy = json!({"name": "p", "mode": "immediate", "windows": ["night", "device-evening"]});
    let deployment = ResolvedDeployment::from_json(&policy, &windows, None).unwrap();
    let schedules: Vec<_> = deployment.windows.iter().map(|w| w.schedule(Some("Europe/Helsinki")).unwrap()).collect();
    let open = |t: Timestamp| schedules.iter().any(|s| s.is_open(t));
    let item = Item {
        patch: "KB1".into(),
        action: patchward_api::desired::Action::Install,
        status: patchward_api::desired::Status::Due,
        not_before: "2026-03-01T00:00:00Z".parse().unwrap(),
        deadline: None,
        deployment,
        device_zone: Some("Europe/Helsinki".into()),
        user_request: UserRequest::default(),
    };
    let local = LocalItemState::new("2026-03-01T00:00:00Z".parse().unwrap(), Default::default());
    for day in ["2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z", "2026-10-24T00:00:00Z", "2026-10-25T00:00:00Z"] {
        let start: Timestamp = day.parse().unwrap();
        // Every 7 minutes for two days, and back again: the order of `now`s
        // is a clock jumping both ways.
        let mut nows: Vec<Timestamp> = (0..(2 * 24 * 60 / 7))
            .map(|step| start.checked_add(jiff::SignedDuration::from_mins(7 * step)).unwrap())
            .collect();
        nows.extend(nows.clone().into_iter().rev());
        for now in nows {
            match decide(&item, &local, &Observations::default(), now) {
                Decision::InstallNow { .. } => assert!(open(now), "installs at {now}, outside every window"),
                Decision::WaitUntil { at, .. } => {
                    assert!(!open(now), "waits at {now}, inside a window");
                    let at = at.expect("a daily window opens again");
                    assert!(at > now && open(at), "waits at {now} until {at}, when no window is open");
                    let mut between = now;
                    while between < at {
                        assert!(!open(between), "waits at {now} until {at}, though a window is open at {between}");
                        between = between.checked_add(jiff::SignedDuration::from_mins(5)).unwrap();
                    }
                }
                other => panic!("at {now}: {other:?}"),
            }
        }
    }
}

/// An item built from a desired item as the engine serves it, with the
/// fields the engine relays beside it.
#[test]
fn an_item_builds_from_a_desired_item() {
    let desired: patchward_api::desired::DesiredItem = serde_json::from_value(json!({
        "patch": "KB5032190", "action": "install", "status": "due",
        "source": {"kind": "rule", "name": "critical-security", "commit": "c0ffee"},
        "stage": 1,
        "policy": {"mode": "scheduled-prompt", "windows": ["workstations-day"],
                   "scheduledPrompt": {"promptWhen": {"after": "06:00"}, "timezone": "device",
                                       "fallback": "workstation-idle", "answerWithin": "10m"},
                   "reboot": "prompt", "adminOnly": false, "selfService": false, "name": "workstation-morning-prompt"},
        "windows": [{"timezone": "device", "intervals": [{"days": ["mon"], "start": "06:00", "end": "24:00"}],
                     "name": "workstations-day"}],
        "notBefore": "2026-11-23T00:00:00Z", "deadline": null, "packages": [],
        "fallback": {"policy": {"name": "workstation-idle", "mode": "idle", "idle": {"noForegroundApps": true}},
                     "windows": []},
        "userRequest": {"snoozesUsed": 1}
    }))
    .unwrap();
    let request = UserRequest { snoozes_used: 1, ..UserRequest::default() };
    let item = Item::from_desired(&desired, Some("Europe/Helsinki".into())).unwrap();
    assert_eq!(item.deployment.policy.name, "workstation-morning-prompt");
    assert_eq!(item.deployment.fallback.as_ref().map(|f| f.policy.name.as_str()), Some("workstation-idle"));
    assert_eq!(item.user_request, request);
    let without = patchward_api::desired::DesiredItem { fallback: None, ..desired };
    let error = Item::from_desired(&without, None).unwrap_err();
    assert!(error.to_string().starts_with("`fallback`:"), "{error}");
}
