//! The fleet side of the store: enrollment tokens (single-use, limited,
//! expiring), devices found by their credential, events recorded once by
//! sequence number (T26), the audit log; all durable across a reopen, and
//! no secret stored in the clear.

use patchward::store::Store;
use patchward::store::fleet::{EnrollError, EnrollmentToken};
use patchward_api::{Facts, Inventory};

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn facts(host: &str) -> Facts {
    Facts { hostname: Some(host.into()), ..Facts::default() }
}

#[test]
fn tokens_enroll_as_many_devices_as_they_allow_and_no_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = t("2026-11-24T12:00:00Z");
    let single = "enroll-single-5f0c1d2e3a4b";
    let team = "enroll-team-9a8b7c6d5e4f";
    let old = "enroll-old-1234567890ab";
    patchward::store::Store::wait(
        store.create_enrollment_token(single, &EnrollmentToken { uses_left: 1, expires_at: None, created_at: now }),
    )
    .unwrap();
    patchward::store::Store::wait(
        store.create_enrollment_token(team, &EnrollmentToken { uses_left: 2, expires_at: None, created_at: now }),
    )
    .unwrap();
    patchward::store::Store::wait(store.create_enrollment_token(
        old,
        &EnrollmentToken { uses_left: 5, expires_at: Some(t("2026-11-24T11:00:00Z")), created_at: now },
    ))
    .unwrap();

    let first =
        patchward::store::Store::wait(store.enroll(single, "dev-1", "credential-of-dev-1-aaaaaaaa", facts("one"), now))
            .unwrap();
    assert_eq!((first.id.as_str(), first.enrolled_at), ("dev-1", now));
    assert!(matches!(
        patchward::store::Store::wait(store.enroll(single, "dev-2", "c2", facts("two"), now)),
        Err(EnrollError::UsedUp)
    ));
    patchward::store::Store::wait(store.enroll(team, "dev-2", "credential-of-dev-2-bbbbbbbb", facts("two"), now))
        .unwrap();
    assert!(matches!(
        patchward::store::Store::wait(store.enroll(team, "dev-2", "c3", facts("again"), now)),
        Err(EnrollError::DeviceExists(_))
    ));
    patchward::store::Store::wait(store.enroll(team, "dev-3", "credential-of-dev-3-cccccccc", facts("three"), now))
        .unwrap();
    assert!(matches!(
        patchward::store::Store::wait(store.enroll(team, "dev-4", "c4", facts("four"), now)),
        Err(EnrollError::UsedUp)
    ));
    assert!(matches!(
        patchward::store::Store::wait(store.enroll(old, "dev-5", "c5", facts("five"), now)),
        Err(EnrollError::Expired(_))
    ));
    assert!(matches!(
        patchward::store::Store::wait(store.enroll("nope", "dev-6", "c6", facts("six"), now)),
        Err(EnrollError::UnknownToken)
    ));
    drop(store);

    let store = Store::open(dir.path()).unwrap();
    let found =
        patchward::store::Store::wait(store.device_by_credential("credential-of-dev-2-bbbbbbbb")).unwrap().unwrap();
    assert_eq!((found.id.as_str(), found.facts.hostname.as_deref()), ("dev-2", Some("two")));
    assert!(patchward::store::Store::wait(store.device_by_credential("credential-of-nobody")).unwrap().is_none());
    assert_eq!(
        patchward::store::Store::wait(store.devices()).unwrap().iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["dev-1", "dev-2", "dev-3"]
    );
    drop(store);

    // Neither tokens nor credentials are on disk in the clear.
    let mut bytes = Vec::new();
    for entry in walk(dir.path()) {
        bytes.extend(std::fs::read(entry).unwrap());
    }
    for secret in [single, team, "credential-of-dev-1-aaaaaaaa", "credential-of-dev-2-bbbbbbbb"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is stored in the clear");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

#[test]
fn events_are_recorded_once_by_sequence_number_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let now = t("2026-11-24T12:00:00Z");
    {
        let store = Store::open(dir.path()).unwrap();
        patchward::store::Store::wait(
            store.create_enrollment_token("tok", &EnrollmentToken { uses_left: 1, expires_at: None, created_at: now }),
        )
        .unwrap();
        patchward::store::Store::wait(store.enroll("tok", "dev-1", "cred", Facts::default(), now)).unwrap();
        let event = |n: u64| (n, serde_json::json!({"patch": "KB1", "status": format!("step {n}")}));
        let first =
            patchward::store::Store::wait(store.record_events("dev-1", &[event(1), event(2), event(3)], now)).unwrap();
        assert_eq!((first.recorded, first.duplicates), (3, 0));
        // The response was lost; the agent sends 2 and 3 again, with 4.
        let retry =
            patchward::store::Store::wait(store.record_events("dev-1", &[event(2), event(3), event(4)], now)).unwrap();
        assert_eq!((retry.recorded, retry.duplicates), (1, 2));
        patchward::store::Store::wait(store.update_inventory(
            "dev-1",
            facts("renamed"),
            Inventory { patches: vec!["KB1".into()], packages: vec![] },
            now,
        ))
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let seqs: Vec<u64> = patchward::store::Store::wait(store.events("dev-1")).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(
        patchward::store::Store::wait(store.events("dev-1")).unwrap()[1].body["status"],
        "step 2",
        "the first copy is kept"
    );
    let device = patchward::store::Store::wait(store.device("dev-1")).unwrap().unwrap();
    assert_eq!((device.last_event, device.facts.hostname.as_deref()), (4, Some("renamed")));
    assert_eq!(device.inventory.patches, ["KB1"]);
}

#[test]
fn the_audit_log_appends_in_order_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for (i, action) in ["revision.applied", "approval.gained", "sync"].iter().enumerate() {
            let seq = patchward::store::Store::wait(store.append_audit(
                t("2026-11-24T12:00:00Z"),
                "commit:Ada Admin <ada@example.com>",
                action,
                serde_json::json!({"n": i}),
            ))
            .unwrap();
            assert_eq!(seq, i as u64 + 1);
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        patchward::store::Store::wait(store.append_audit(
            t("2026-11-24T13:00:00Z"),
            "admin",
            "ack-rewrite",
            serde_json::json!({})
        ))
        .unwrap(),
        4
    );
    let all = patchward::store::Store::wait(store.audit(0, 100)).unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["revision.applied", "approval.gained", "sync", "ack-rewrite"]
    );
    let page = patchward::store::Store::wait(store.audit(2, 1)).unwrap();
    assert_eq!((page.len(), page[0].seq), (1, 3));

    // Newest first, by sequence number, filtered, and whether more remain.
    let seqs = |(entries, more): (Vec<patchward::store::fleet::AuditEntry>, bool)| {
        (entries.iter().map(|e| e.seq).collect::<Vec<_>>(), more)
    };
    assert_eq!(patchward::store::Store::wait(store.audit_len()).unwrap(), 4);
    assert_eq!(seqs(patchward::store::Store::wait(store.audit_newest(None, 2, |_| true)).unwrap()), (vec![4, 3], true));
    assert_eq!(
        seqs(patchward::store::Store::wait(store.audit_newest(Some(3), 2, |_| true)).unwrap()),
        (vec![2, 1], false)
    );
    assert_eq!(
        seqs(patchward::store::Store::wait(store.audit_newest(Some(3), 5, |_| true)).unwrap()),
        (vec![2, 1], false)
    );
    let by_commits = |e: &patchward::store::fleet::AuditEntry| e.actor.starts_with("commit:");
    assert_eq!(seqs(patchward::store::Store::wait(store.audit_newest(None, 1, by_commits)).unwrap()), (vec![3], true));
    assert_eq!(
        seqs(patchward::store::Store::wait(store.audit_newest(Some(2), 1, by_commits)).unwrap()),
        (vec![1], false)
    );
    assert_eq!(
        seqs(patchward::store::Store::wait(store.audit_newest(None, 9, |e| e.action == "none")).unwrap()),
        (vec![], false)
    );
}

#[test]
fn desired_generations_move_only_forward_and_only_with_the_content() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(patchward::store::Store::wait(store.desired_generation("dev-1", "aaa")).unwrap(), 1);
        assert_eq!(
            patchward::store::Store::wait(store.desired_generation("dev-1", "aaa")).unwrap(),
            1,
            "the same content keeps its generation"
        );
        assert_eq!(patchward::store::Store::wait(store.desired_generation("dev-1", "bbb")).unwrap(), 2);
        assert_eq!(patchward::store::Store::wait(store.desired_generation("dev-2", "aaa")).unwrap(), 1, "per device");
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(patchward::store::Store::wait(store.desired_generation("dev-1", "bbb")).unwrap(), 2, "after a restart");
    // Back to an older content: a new generation, never the old number.
    assert_eq!(patchward::store::Store::wait(store.desired_generation("dev-1", "aaa")).unwrap(), 3);
}
