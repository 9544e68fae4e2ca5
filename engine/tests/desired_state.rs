//! The desired state built from the example plan: items with their
//! deployment policy and windows inlined, packages by sha256, the mirrors
//! of the device's Location; signed in a DSSE envelope that verifies with
//! the engine's public key and follows `schemas/desired-state.json`.

mod support;

use std::path::PathBuf;

use patchward::catalog::coverage::CoverageSet;
use patchward::plan::desired::{Envelope, desired_state};
use patchward::plan::{CompiledPolicy, PlanCatalog, PlanInput, plan};
use patchward::policy::{PolicyLimits, PolicySource, load_policy};
use patchward_api::desired::{Action, DesiredState, Status};
use patchward_api::dsse;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// The example feed as the plan catalog of `policy`, and the example fleet.
fn example_catalog_and_fleet(policy: &CompiledPolicy, now: jiff::Timestamp) -> (PlanCatalog, patchward_api::Fleet) {
    let feed = std::fs::read(root().join("examples/plan/feed.json")).unwrap();
    let (records, _) =
        patchward::catalog::offline_catalog(patchward::policy::model::FeedFormat::Patchward, &feed, now).unwrap();
    let catalog = PlanCatalog::new(records, &CoverageSet::of_policy(&policy.policy));
    let fleet_text = std::fs::read_to_string(root().join("examples/plan/fleet.yaml")).unwrap();
    let fleet =
        patchward::policy::yaml::from_str(&fleet_text, &patchward::policy::yaml::YamlLimits::default()).unwrap();
    (catalog, fleet)
}

#[test]
fn the_example_devices_desired_state_is_complete_signed_and_schema_valid() {
    let load = load_policy(&PolicySource::Folder(root().join("policies")), &PolicyLimits::default()).unwrap();
    let policy =
        CompiledPolicy::compile(load.policy.unwrap(), Some("0123456789abcdef0123456789abcdef01234567".into())).unwrap();
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let (catalog, fleet) = example_catalog_and_fleet(&policy, now);
    let computed = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &fleet.devices, ledger: None, now });
    let index = computed.devices.iter().position(|d| d.id == "ws-0042").unwrap();
    let envelope = Envelope {
        generation: 7,
        catalog_revision: 3,
        issued_at: now,
        expires_at: "2026-12-01T12:00:00Z".parse().unwrap(),
    };
    let state = desired_state(&computed, &policy, &catalog, &computed.devices[index], &envelope);

    assert_eq!((state.device.as_str(), state.generation, state.catalog_revision), ("ws-0042", 7, 3));
    assert_eq!(state.policy_revision, "0123456789abcdef0123456789abcdef01234567");
    assert_eq!(state.mirrors, ["http://ip-hel-01:8080/blobs"]);
    assert_eq!(state.max_bandwidth_kbps, Some(4096));
    let kb = state.items.iter().find(|i| i.patch == "KB5032190").unwrap();
    assert_eq!((kb.action, kb.status, kb.stage), (Action::Install, Status::Due, Some(1)));
    assert_eq!((kb.source.kind.as_str(), kb.source.name.as_str()), ("rule", "critical-security"));
    assert_eq!(kb.policy.name, "emergency");
    assert_eq!(kb.policy.mode, patchward_api::deployment::DeploymentMode::Immediate);
    let windows: Vec<&str> = kb.windows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(windows, ["servers-early", "servers-night", "workstations-day"]);
    assert_eq!(kb.windows[1].timezone, "Europe/Helsinki");
    assert_eq!(kb.packages.len(), 1);
    assert_eq!(kb.packages[0].kind, "msu");
    assert_eq!(kb.packages[0].sha256.len(), 64);
    let software = state.items.iter().find(|i| i.patch == "7zip@24.08").unwrap();
    assert_eq!((software.source.kind.as_str(), software.packages[0].kind.as_str()), ("assignment", "msi"));
    assert_eq!(software.packages[0].args, ["/quiet", "/norestart"]);

    // Signed, verified with the public key, decoded back to the same state.
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let body = serde_json::to_vec(&state).unwrap();
    let signed = dsse::sign(dsse::DESIRED_STATE_TYPE, &body, &key);
    let public = dsse::parse_public_key(&dsse::public_key_text(&key.verifying_key())).unwrap();
    let verified = dsse::verify(&signed, dsse::DESIRED_STATE_TYPE, &public).unwrap();
    let decoded: DesiredState = serde_json::from_slice(&verified).unwrap();
    assert_eq!(decoded, state);

    // The payload and the envelope follow their schemas.
    for (file, value) in [
        ("desired-state.json", serde_json::to_value(&state).unwrap()),
        ("dsse-envelope.json", serde_json::to_value(&signed).unwrap()),
    ] {
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root().join("schemas").join(file)).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{file}: {errors:#?}");
    }
}

/// What the agent needs beyond the plan: a scheduled-prompt item carries
/// its fallback policy resolved (with that policy's own windows), and a
/// patch carries the catalog's detection rules.
#[test]
fn items_carry_their_fallback_policy_and_their_detection_rules() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    support::copy_dir(&root().join("policies"), &policies);
    let software = policies.join("software/7zip.yaml");
    let text = std::fs::read_to_string(&software).unwrap();
    std::fs::write(&software, text.replace("policy: workstation-prompt", "policy: workstation-morning-prompt"))
        .unwrap();
    let load = load_policy(&PolicySource::Folder(policies), &PolicyLimits::default()).unwrap();
    let policy = CompiledPolicy::compile(load.policy.unwrap(), None).unwrap();
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let (catalog, fleet) = example_catalog_and_fleet(&policy, now);
    let computed = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &fleet.devices, ledger: None, now });
    let envelope = Envelope { generation: 1, catalog_revision: 1, issued_at: now, expires_at: now };
    let states: Vec<DesiredState> =
        computed.devices.iter().map(|d| desired_state(&computed, &policy, &catalog, d, &envelope)).collect();
    let items = || states.iter().flat_map(|s| s.items.iter());

    let prompted = items().find(|i| i.policy.name == "workstation-morning-prompt").expect("a prompted item");
    let fallback = prompted.fallback.as_ref().expect("its fallback");
    assert_eq!(fallback.policy.name, "workstation-idle");
    assert_eq!(fallback.policy.mode, patchward_api::deployment::DeploymentMode::Idle);
    assert!(fallback.windows.is_empty(), "workstation-idle names no windows: {:?}", fallback.windows);
    let windows: Vec<&str> = prompted.windows.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(windows, ["workstations-day"], "the prompting policy's own");
    assert!(fallback.fallback.is_none(), "idle has no fallback of its own");
    assert!(
        items()
            .filter(|i| i.policy.mode != patchward_api::deployment::DeploymentMode::ScheduledPrompt)
            .all(|i| i.fallback.is_none())
    );

    let openssl = items().find(|i| i.patch == "DSA-5900-1").expect("the openssl advisory is planned");
    let detect = openssl.detect.as_ref().expect("its detection rules");
    let patchward_api::detection::DetectionRule::Package(rule) = &detect.any_of[0] else { panic!("{detect:?}") };
    assert_eq!((rule.name.as_str(), rule.at_least.as_str()), ("openssl", "3.0.15-1~deb12u1"));
}

/// DESIGN's compatibility rule across the typed contract: agents of the
/// release before the typed `DesiredItem` refused a deployment policy or
/// window with a field they did not know. What the engine emits for the
/// shipped policies therefore holds only the fields they knew; a field added
/// to the wire types must be optional and appear in this list only with a
/// note in DESIGN (this release's agents ignore fields they do not know).
#[test]
fn the_typed_policy_and_windows_emit_only_fields_the_previous_agents_know() {
    const POLICY: [&str; 12] = [
        "name",
        "mode",
        "windows",
        "prompt",
        "scheduledPrompt",
        "idle",
        "restart",
        "ignoreWindows",
        "ignoreBlackouts",
        "reboot",
        "adminOnly",
        "selfService",
    ];
    const WINDOW: [&str; 4] = ["name", "timezone", "intervals", "blackouts"];
    let load = load_policy(&PolicySource::Folder(root().join("policies")), &PolicyLimits::default()).unwrap();
    let policy = CompiledPolicy::compile(load.policy.unwrap(), None).unwrap();
    let now: jiff::Timestamp = "2026-11-24T12:00:00Z".parse().unwrap();
    let (catalog, fleet) = example_catalog_and_fleet(&policy, now);
    let computed = plan(&PlanInput { policy: &policy, catalog: &catalog, fleet: &fleet.devices, ledger: None, now });
    let envelope = Envelope { generation: 1, catalog_revision: 1, issued_at: now, expires_at: now };
    let mut seen = 0;
    for device in computed.devices.iter() {
        let state = desired_state(&computed, &policy, &catalog, device, &envelope);
        let json = serde_json::to_value(&state).unwrap();
        for item in json["items"].as_array().unwrap() {
            for key in item["policy"].as_object().unwrap().keys() {
                assert!(POLICY.contains(&key.as_str()), "policy field {key} is new to older agents: {item}");
            }
            for window in item["windows"].as_array().unwrap() {
                for key in window.as_object().unwrap().keys() {
                    assert!(WINDOW.contains(&key.as_str()), "window field {key} is new to older agents");
                }
            }
            seen += 1;
        }
    }
    assert!(seen > 0, "the example plan has items");
}
