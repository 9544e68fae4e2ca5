//! Issue 15's rollback of a package our own feed delivers by URL (T42 for
//! `.deb` patches): the real `patchward-agent` against a fake engine.
//!
//! - A patch that upgraded an installed package is restored from the
//!   backup the agent made before upgrading (the end-to-end test shows it
//!   through a `git revert`).
//! - A patch that added a package is undone by removing what it added.
//! - A patch with no recorded way back (installed by other means, or before
//!   this release) is reported unavailable and stays.

mod agent_support;

use agent_support::{AgentProcess, FakeEngine, T0, deb_item, desired_state, installed, sandbox, sha256_hex};
use patchward_agent::install::deb::DebSpec;
use patchward_api::events::EventKind;

const EXPIRES: &str = "2026-12-24T00:00:00Z";

fn device(dir: &std::path::Path, preinstalled: Option<&std::path::Path>) -> (AgentProcess, FakeEngine) {
    let clock = dir.join("clock");
    std::fs::write(&clock, T0).unwrap();
    let agent = AgentProcess::new(dir, "ws-01", "pilot", sandbox(dir, "ws-01", preinstalled), &clock);
    let engine = FakeEngine::start();
    engine.enroll(&agent);
    (agent, engine)
}

fn item(action: &str, bytes: &[u8]) -> serde_json::Value {
    let mut item = deb_item("PW-HELLO", "pw-hello", "1.0", bytes, vec![]);
    item["action"] = action.into();
    item
}

#[test]
fn a_patch_that_added_a_package_is_undone_by_removing_it() {
    let dir = tempfile::tempdir().unwrap();
    let deb = DebSpec::new("pw-hello", "1.0").build(dir.path()).unwrap();
    let bytes = std::fs::read(&deb).unwrap();
    let (agent, engine) = device(dir.path(), None);
    engine.book.lock().unwrap().blobs.insert(sha256_hex(&bytes), bytes.clone());
    engine.serve(&desired_state(1, EXPIRES, vec![item("install", &bytes)]));
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-hello").as_deref(), Some("1.0"));
    engine.serve(&desired_state(2, EXPIRES, vec![item("uninstall", &bytes)]));
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-hello"), None, "what the patch added is removed");
    assert_eq!(agent.steps("PW-HELLO").last().map(String::as_str), Some("uninstalled"));
}

#[test]
fn a_patch_with_no_recorded_way_back_is_reported_unavailable_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let deb = DebSpec::new("pw-hello", "1.0").build(dir.path()).unwrap();
    let bytes = std::fs::read(&deb).unwrap();
    // Installed by other means: the agent recorded nothing.
    let (agent, engine) = device(dir.path(), Some(&deb));
    engine.serve(&desired_state(1, EXPIRES, vec![item("uninstall", &bytes)]));
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-hello").as_deref(), Some("1.0"), "it stays");
    let errors: Vec<String> =
        engine.recorded().iter().filter(|e| e.kind == EventKind::Error).filter_map(|e| e.message.clone()).collect();
    assert!(errors.iter().any(|m| m.contains("retraction unavailable")), "{errors:?}");
}
