//! The agent's trust in time and in its engine, at the process level: the
//! real `patchward-agent` against a fake engine whose desired states the
//! test signs (and which can close its port, or lose an answer), with the
//! agent's clock in a file the test moves.
//!
//! - T24: an older generation, the same generation with other content, a
//!   state signed by another key, one for another device and an expired one
//!   are each refused and reported (`refused-state`); generation 5 stays.
//! - T25/T26: the engine unreachable for hours: the last valid state keeps
//!   running inside its windows (not before), reports queue durably and
//!   arrive once, in seq order; a lost answer makes the agent resend the
//!   same seqs, never renumbered.
//! - T38: the clock set back past the state's expiry does not make it fresh.

mod agent_support;

use agent_support::{
    AgentProcess, FakeEngine, T0, daily_window, deb_item, desired_state, installed, sandbox, sha256_hex, ts,
};
use patchward_agent::install::deb::DebSpec;
use patchward_api::events::EventKind;
use patchward_tests::{HttpServer, Reply};

fn agent_on(dir: &std::path::Path, engine: &FakeEngine) -> AgentProcess {
    let clock = dir.join("clock");
    std::fs::write(&clock, T0).unwrap();
    let agent = AgentProcess::new(dir, "ws-01", "pilot", sandbox(dir, "ws-01", None), &clock);
    engine.enroll(&agent);
    agent
}

fn deb(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let packages = dir.join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    std::fs::read(DebSpec::new(name, "1.0").build(&packages).unwrap()).unwrap()
}

#[test]
fn t24_older_conflicting_forged_foreign_or_expired_states_are_refused_and_generation_5_stays() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FakeEngine::start();
    let agent = agent_on(dir.path(), &engine);
    let good = desired_state(5, "2026-12-01T00:00:00Z", vec![]);
    engine.serve(&good);
    agent.run(&["run", "--once"]);
    assert_eq!(agent.status()["generation"], 5);
    assert!(engine.refusals().is_empty());

    let older = desired_state(4, "2026-12-02T00:00:00Z", vec![]);
    let mut conflicting = good.clone();
    conflicting.policy_revision = "deadbeef".into();
    let newer = desired_state(6, "2026-12-02T00:00:00Z", vec![]);
    let mut foreign = newer.clone();
    foreign.device = "ws-02".into();
    let expired = desired_state(6, "2026-11-24T11:59:59Z", vec![]);
    let other_key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let cases: [(&str, &dyn Fn(), &str); 5] = [
        ("an older generation", &|| engine.serve(&older), "generation 4 is older than generation 5"),
        ("generation 5 with other content", &|| engine.serve(&conflicting), "generation 5 was seen with other content"),
        ("another key", &|| engine.serve_signed_by(&newer, &other_key), "signature does not verify"),
        ("another device", &|| engine.serve(&foreign), "for device ws-02"),
        ("an expired state", &|| engine.serve(&expired), "expired at 2026-11-24T11:59:59Z"),
    ];
    for (index, (what, serve, reason)) in cases.iter().enumerate() {
        serve();
        agent.run(&["run", "--once"]);
        assert_eq!(agent.status()["generation"], 5, "{what}: generation 5 stays in force");
        let refusals = engine.refusals();
        assert_eq!(refusals.len(), index + 1, "{what}: one refused-state event each: {refusals:?}");
        let message = refusals[index].message.clone().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message:?} names {reason:?}");
    }

    // The good state again changes nothing; a genuinely newer one is taken.
    engine.serve(&good);
    agent.run(&["run", "--once"]);
    assert_eq!(agent.status()["generation"], 5);
    engine.serve(&newer);
    agent.run(&["run", "--once"]);
    assert_eq!(agent.status()["generation"], 6);
    assert_eq!(engine.refusals().len(), cases.len(), "no refusal of a good state");
}

#[test]
fn t25_t26_offline_for_hours_installs_inside_windows_and_reports_arrive_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = FakeEngine::start();
    let (night, dawn) = (deb(dir.path(), "pw-night"), deb(dir.path(), "pw-dawn"));
    // The office mirror stays up while the engine is away.
    let blobs = [(sha256_hex(&night), night.clone()), (sha256_hex(&dawn), dawn.clone())];
    let mirror = HttpServer::start(move |request| {
        match blobs.iter().find(|(digest, _)| request.path == format!("/blobs/{digest}")) {
            Some((_, bytes)) => Reply::ok(bytes.clone()),
            None => Reply::status(404),
        }
    });
    let mut state = desired_state(
        5,
        "2026-11-27T12:00:00Z",
        vec![
            deb_item("PW-NIGHT", "pw-night", "1.0", &night, vec![daily_window("night", "02:00", "04:00")]),
            deb_item("PW-DAWN", "pw-dawn", "1.0", &dawn, vec![daily_window("dawn", "05:00", "06:00")]),
        ],
    );
    state.mirrors = vec![mirror.url("/blobs")];
    engine.serve(&state);
    let agent = agent_on(dir.path(), &engine);
    agent.run(&["run", "--once"]);
    assert_eq!(agent.status()["generation"], 5);
    assert_eq!(installed(&agent.root, "pw-night"), None, "12:00: outside the night window");
    let answered_before = engine.book.lock().unwrap().batches.len();

    // The engine's port closes; the agent's clock runs on through the night.
    engine.server.close();
    let steps = [
        ("2026-11-24T16:00:00Z", false, false),
        ("2026-11-25T01:59:59Z", false, false),
        ("2026-11-25T02:00:00Z", true, false),
        ("2026-11-25T04:30:00Z", true, false),
        ("2026-11-25T05:00:00Z", true, true),
        ("2026-11-25T09:00:00Z", true, true),
    ];
    for (at, night_in, dawn_in) in steps {
        agent.set_clock(ts(at));
        agent.run(&["run", "--once"]);
        assert_eq!(installed(&agent.root, "pw-night").is_some(), night_in, "{at}: pw-night");
        assert_eq!(installed(&agent.root, "pw-dawn").is_some(), dawn_in, "{at}: pw-dawn");
        assert_eq!(agent.status()["generation"], 5, "{at}: the last valid state stays in force");
    }

    // The engine returns, and loses its first answer: it read the batch
    // and dropped the connection.
    engine.book.lock().unwrap().lose_next = 1;
    engine.server.reopen();
    agent.run(&["run", "--once"]);
    let lost = engine.book.lock().unwrap().lost.clone();
    assert_eq!(lost.len(), 1, "the agent sent its queue once");
    let lost = &lost[0];
    let lost_seqs: Vec<u64> = lost.iter().map(|e| e.seq).collect();
    assert!(lost_seqs.windows(2).all(|w| w[0] < w[1]), "in seq order: {lost_seqs:?}");
    assert_eq!(engine.book.lock().unwrap().batches.len(), answered_before, "nothing recorded from a lost answer");

    // The next pass sends the same seqs again (nothing renumbered).
    agent.run(&["run", "--once"]);
    let resent = engine.book.lock().unwrap().batches[answered_before..].concat();
    assert!(resent.len() >= lost.len(), "{resent:?}");
    assert_eq!(&resent[..lost.len()], &lost[..], "the same events under the same seqs");
    let seqs: Vec<u64> = resent.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in seq order, each once: {seqs:?}");

    // Each install reported once, in the order it happened, stamped when it
    // happened (queued offline), not when it was sent.
    let (night_ok, dawn_ok) = (engine.successes("PW-NIGHT"), engine.successes("PW-DAWN"));
    assert_eq!((night_ok.len(), dawn_ok.len()), (1, 1), "{:?}", engine.recorded());
    assert!(night_ok[0].seq < dawn_ok[0].seq);
    assert_eq!(night_ok[0].at, ts("2026-11-25T02:00:00Z"));
    assert_eq!(dawn_ok[0].at, ts("2026-11-25T05:00:00Z"));
    assert!(lost.iter().any(|e| e.seq == night_ok[0].seq) && lost.iter().any(|e| e.seq == dawn_ok[0].seq));

    // Acknowledged: a further pass sends nothing again.
    let arrivals = engine.arrivals().len();
    agent.run(&["run", "--once"]);
    assert_eq!(engine.arrivals().len(), arrivals, "nothing is sent twice once acknowledged");
    let kinds: Vec<EventKind> = engine.recorded().iter().map(|e| e.kind).collect();
    assert!(!kinds.contains(&EventKind::RefusedState), "{kinds:?}");
}

#[test]
fn t38_a_clock_set_back_past_the_expiry_never_makes_the_state_fresh_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FakeEngine::start();
    let package = deb(dir.path(), "pw-late");
    engine.book.lock().unwrap().blobs.insert(sha256_hex(&package), package.clone());
    // Valid until 12:45; its item's window opens at 12:30.
    let item = deb_item("PW-LATE", "pw-late", "1.0", &package, vec![daily_window("lunch", "12:30", "13:00")]);
    let state = desired_state(5, "2026-11-24T12:45:00Z", vec![item]);
    engine.serve(&state);
    let agent = agent_on(dir.path(), &engine);
    agent.run(&["run", "--once"]);
    assert_eq!(agent.status()["generation"], 5);
    assert_eq!(installed(&agent.root, "pw-late"), None, "12:00: the window is closed");

    // 13:30: expired (and the window closed). Then the clock is set back
    // to 12:35, inside the window and before the expiry by the wall clock.
    agent.set_clock(ts("2026-11-24T13:30:00Z"));
    agent.run(&["run", "--once"]);
    agent.set_clock(ts("2026-11-24T12:35:00Z"));
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-late"), None, "an expired state drives no install after a jump back");
    let refusals = engine.refusals();
    assert!(
        refusals.iter().any(|e| e.message.as_deref().unwrap_or_default().contains("expired")),
        "the engine's stale copy is refused as expired: {refusals:?}"
    );

    // A renewal valid beyond the latest time seen is taken, and installs.
    let mut renewed = state.clone();
    renewed.expires_at = ts("2026-11-24T15:00:00Z");
    engine.serve(&renewed);
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-late").as_deref(), Some("1.0"), "a fresh state acts inside its window");
}

/// A package that no source holds yet (the engine's media master has not
/// fetched it, no mirror has it: every source answers 404) is put off and
/// tried again, never reported failed: a failure would count against the
/// rollout's gate for something that is not the device's fault.
#[test]
fn a_package_no_source_has_yet_is_retried_later_and_never_reported_failed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FakeEngine::start();
    let package = deb(dir.path(), "pw-soon");
    let state = desired_state(3, "2026-11-25T12:00:00Z", vec![deb_item("PW-SOON", "pw-soon", "1.0", &package, vec![])]);
    engine.serve(&state);
    let agent = agent_on(dir.path(), &engine);
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-soon"), None);
    assert_eq!(agent.steps("PW-SOON").last().map(String::as_str), Some("retry-later"), "{:?}", agent.steps("PW-SOON"));
    let failed = |engine: &FakeEngine| {
        engine
            .recorded()
            .into_iter()
            .filter(|e| e.kind == EventKind::Report && e.status == Some(patchward_api::ReportStatus::Failed))
            .count()
    };
    assert_eq!(failed(&engine), 0, "{:?}", engine.recorded());
    assert!(
        engine.recorded().iter().any(|e| e.message.as_deref().unwrap_or_default().contains("HTTP 404")),
        "the step says why: {:?}",
        engine.recorded()
    );

    // The engine has fetched it: the next try, after the back-off, installs.
    engine.book.lock().unwrap().blobs.insert(sha256_hex(&package), package.clone());
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-soon"), None, "not before the back-off ends");
    agent.advance(jiff::SignedDuration::from_mins(6));
    agent.run(&["run", "--once"]);
    assert_eq!(installed(&agent.root, "pw-soon").as_deref(), Some("1.0"));
    assert_eq!(engine.successes("PW-SOON").len(), 1);
    assert_eq!(failed(&engine), 0);
}
