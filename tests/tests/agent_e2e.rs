//! Issue 7's end-to-end test: a real engine on 127.0.0.1 following a real
//! git policy repository and a real feed, and two real `patchward-agent`
//! processes, each with its own sandbox dpkg root and state directory.
//!
//! A commit approves a patch (a .deb built here with dpkg-deb) in two
//! stages: the pilot agent installs it at once, the production agent only
//! after the stage delay (the engine's fake clock, and the agents' clock
//! file, moved by a day). Both report back and the compliance view says
//! so. Their Location's mirror serves tampered bytes: the agents refuse
//! them, fall back to the engine's copy, and dpkg runs once, on the real
//! bytes. Then a `git revert` of the approval restores the version each
//! had before (0.9, from the backup the agent made before upgrading): a
//! package patchward upgraded is never removed.

mod agent_support;

use agent_support::{AgentProcess, Office, T0, admin_get, approve, installed_version, sandbox};
use patchward::clock::Clock;
use patchward_agent::install::deb::DebSpec;
use patchward_tests::{HttpServer, Reply, git, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_rolls_out_to_pilot_then_production_and_tampered_mirror_bytes_never_install() {
    let dir = tempfile::tempdir().unwrap();
    let packages = dir.path().join("packages");
    std::fs::create_dir_all(&packages).unwrap();
    let old_deb = DebSpec::new("pw-hello", "0.9").build(&packages).unwrap();
    let new_deb = DebSpec::new("pw-hello", "1.0").build(&packages).unwrap();
    let new_bytes = std::fs::read(&new_deb).unwrap();

    // The vendor serves the feed and the package; the office mirror serves
    // the right length of the wrong bytes.
    let mut tampered = new_bytes.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0xff;
    let mirror = HttpServer::start(move |_| Reply::ok(tampered.clone()));
    let office = Office::start(dir.path(), new_bytes, mirror).await;
    let (base, admin, clock, repo, digest) =
        (office.base.clone(), office.admin.clone(), office.clock.clone(), office.repo.clone(), office.digest.clone());
    let mirror = &office.mirror;
    until("the feed imported", || async {
        admin_get(&base, &admin, "/api/v1/status").await["catalogRevision"].as_u64() == Some(1)
    })
    .await;

    let clock_file = dir.path().join("agent-clock");
    std::fs::write(&clock_file, T0).unwrap();
    let pilot = AgentProcess::new(
        dir.path(),
        "pilot-01",
        "pilot",
        sandbox(dir.path(), "pilot-01", Some(&old_deb)),
        &clock_file,
    );
    let production = AgentProcess::new(
        dir.path(),
        "prod-01",
        "production",
        sandbox(dir.path(), "prod-01", Some(&old_deb)),
        &clock_file,
    );
    let token = office.enrollment_token(2).await;
    for agent in [&pilot, &production] {
        agent.run(&["enroll", "--server", &base, "--token", &token]);
        let identity = std::fs::metadata(agent.state.join("identity.json")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&identity.permissions()) & 0o777, 0o600);
    }

    // Nothing approved yet: a pass changes nothing.
    for agent in [&pilot, &production] {
        agent.run(&["run", "--once"]);
        assert_eq!(installed_version(&agent.root).as_deref(), Some("0.9"), "{}", agent.name);
    }

    // The approval lands, through the webhook-equivalent sync.
    approve(&repo);
    let commit = git(&repo, &["rev-parse", "HEAD"]);
    let sync = reqwest::Client::new().post(format!("{base}/api/v1/sync")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(sync.status().as_u16(), 202);
    until("the approval in force", || async {
        admin_get(&base, &admin, "/api/v1/status").await["applied"]["revision"].as_str() == Some(commit.as_str())
    })
    .await;
    until("the media master has the package", || async {
        let response = reqwest::Client::new()
            .get(format!("{base}/api/v1/blobs/{digest}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        response.status().is_success()
    })
    .await;

    pilot.run(&["run", "--once"]);
    assert_eq!(installed_version(&pilot.root).as_deref(), Some("1.0"), "the pilot installs at once");
    production.run(&["run", "--once"]);
    assert_eq!(installed_version(&production.root).as_deref(), Some("0.9"), "production waits for its stage");

    // A day later (both clocks), production's stage is due.
    clock.advance(jiff::SignedDuration::from_hours(25));
    std::fs::write(&clock_file, clock.now().to_string()).unwrap();
    let sync = reqwest::Client::new().post(format!("{base}/api/v1/sync")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(sync.status().as_u16(), 202);
    until("production's stage due", || async {
        let device = admin_get(&base, &admin, "/api/v1/devices/prod-01").await;
        device["items"].as_array().is_some_and(|items| items.iter().any(|i| i["status"] == "due"))
    })
    .await;
    production.run(&["run", "--once"]);
    assert_eq!(installed_version(&production.root).as_deref(), Some("1.0"), "production after the delay");

    // The mirror was asked and its bytes refused; dpkg ran once per device,
    // on the real bytes (its own log says what it installed).
    assert!(mirror.requests().iter().any(|r| r.path == format!("/blobs/{digest}")));
    for agent in [&pilot, &production] {
        let log = std::fs::read_to_string(agent.root.join("var/log/dpkg.log")).unwrap();
        let installs =
            log.lines().filter(|l| l.contains(" install pw-hello") || l.contains(" upgrade pw-hello")).count();
        assert_eq!(installs, 2, "{}: 0.9 at set-up, 1.0 once: {log}", agent.name);
        // A pass reports the outcome; another changes nothing.
        agent.run(&["run", "--once"]);
    }

    // Both reported back: the engine has their reports, and the
    // compliance view counts them patched.
    until("both reports recorded", || async {
        let compliance = admin_get(&base, &admin, "/api/v1/compliance").await;
        compliance["compliant"].as_u64() == Some(2) && compliance["devices"].as_u64() == Some(2)
    })
    .await;
    let audit = admin_get(&base, &admin, "/api/v1/audit").await;
    let reports = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "agent.report" && e["detail"]["status"] == "succeeded")
        .count();
    assert_eq!(reports, 2, "one success report per device");

    // The approval is reverted: the patch goes back to the review queue,
    // and both devices restore the version they had before it.
    git(&repo, &["revert", "--no-edit", "HEAD"]);
    let revert = git(&repo, &["rev-parse", "HEAD"]);
    office.sync().await;
    until("the revert in force", || async {
        admin_get(&base, &admin, "/api/v1/status").await["applied"]["revision"].as_str() == Some(revert.as_str())
    })
    .await;
    for agent in [&pilot, &production] {
        let device = office.get(&format!("/api/v1/devices/{}", agent.name)).await;
        let items = device["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{}: {device}", agent.name);
        assert_eq!(items[0]["action"], "uninstall", "{}: {device}", agent.name);
        assert_eq!(items[0]["status"], "due", "{}: {device}", agent.name);
        assert_eq!(items[0]["source"], "retraction/approval withdrawn", "{}: {device}", agent.name);
        agent.run(&["run", "--once"]);
        assert_eq!(
            installed_version(&agent.root).as_deref(),
            Some("0.9"),
            "{}: the revert restores the previous version, it does not remove",
            agent.name
        );
        // The restore is reported; afterwards nothing is left to do.
        agent.run(&["run", "--once"]);
    }
    until("both restores recorded, nothing left to undo", || async {
        let mut done = true;
        for agent in [&pilot, &production] {
            let device = office.get(&format!("/api/v1/devices/{}", agent.name)).await;
            done &= device["items"].as_array().is_some_and(|items| items.iter().all(|i| i["status"] == "removed"));
        }
        done
    })
    .await;
    let audit = office.get("/api/v1/audit").await;
    let lost = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "approval.lost");
    let lost = lost.unwrap_or_else(|| panic!("the audit log records the approval lost: {audit}"));
    assert_eq!(lost["detail"]["patch"], "PW-2026-0001");
    assert_eq!(lost["detail"]["devices"], 2, "lost on both devices: {lost}");
    assert!(lost["actor"].as_str().unwrap().starts_with("commit:"), "attributed to the revert's author: {lost}");
    office.running.shutdown().await;
}
