//! The fleet side of the store: enrollment tokens (single-use, limited,
//! expiring), devices found by their credential, events recorded once by
//! sequence number (T26), the audit log; all durable across a reopen, and
//! no secret stored in the clear. Run on both backends: sled, and a real
//! PostgreSQL started for the test.

mod support;

use patchward::store::fleet::{EnrollError, EnrollmentToken};
use patchward_api::{Facts, Inventory};
use support::postgres::Place;

store_suite!(
    tokens_enroll_as_many_devices_as_they_allow_and_no_more,
    events_are_recorded_once_by_sequence_number_and_survive_a_reopen,
    the_audit_log_appends_in_order_and_pages,
    desired_generations_move_only_forward_and_only_with_the_content,
    engine_states_are_listed_by_prefix_and_only_those,
    the_device_directory_follows_every_write,
);

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn facts(host: &str) -> Facts {
    Facts { hostname: Some(host.into()), ..Facts::default() }
}

async fn tokens_enroll_as_many_devices_as_they_allow_and_no_more(place: &Place) {
    let store = place.open().await;
    let now = t("2026-11-24T12:00:00Z");
    let single = "enroll-single-5f0c1d2e3a4b";
    let team = "enroll-team-9a8b7c6d5e4f";
    let old = "enroll-old-1234567890ab";
    store
        .create_enrollment_token(single, &EnrollmentToken { uses_left: 1, expires_at: None, created_at: now })
        .await
        .unwrap();
    store
        .create_enrollment_token(team, &EnrollmentToken { uses_left: 2, expires_at: None, created_at: now })
        .await
        .unwrap();
    store
        .create_enrollment_token(
            old,
            &EnrollmentToken { uses_left: 5, expires_at: Some(t("2026-11-24T11:00:00Z")), created_at: now },
        )
        .await
        .unwrap();

    let first = store.enroll(single, "dev-1", "credential-of-dev-1-aaaaaaaa", facts("one"), now).await.unwrap();
    assert_eq!((first.id.as_str(), first.enrolled_at), ("dev-1", now));
    assert!(matches!(store.enroll(single, "dev-2", "c2", facts("two"), now).await, Err(EnrollError::UsedUp)));
    store.enroll(team, "dev-2", "credential-of-dev-2-bbbbbbbb", facts("two"), now).await.unwrap();
    assert!(matches!(store.enroll(team, "dev-2", "c3", facts("again"), now).await, Err(EnrollError::DeviceExists(_))));
    store.enroll(team, "dev-3", "credential-of-dev-3-cccccccc", facts("three"), now).await.unwrap();
    assert!(matches!(store.enroll(team, "dev-4", "c4", facts("four"), now).await, Err(EnrollError::UsedUp)));
    assert!(matches!(store.enroll(old, "dev-5", "c5", facts("five"), now).await, Err(EnrollError::Expired(_))));
    assert!(matches!(store.enroll("nope", "dev-6", "c6", facts("six"), now).await, Err(EnrollError::UnknownToken)));
    drop(store);

    let store = place.open().await;
    let found = store.device_by_credential("credential-of-dev-2-bbbbbbbb").await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), found.facts.hostname.as_deref()), ("dev-2", Some("two")));
    assert!(store.device_by_credential("credential-of-nobody").await.unwrap().is_none());
    assert_eq!(
        store.devices().await.unwrap().iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["dev-1", "dev-2", "dev-3"]
    );
    drop(store);

    // Neither tokens nor credentials are kept in the clear.
    let bytes = place.bytes_at_rest();
    for secret in [single, team, "credential-of-dev-1-aaaaaaaa", "credential-of-dev-2-bbbbbbbb"] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} is stored in the clear");
    }
}

async fn events_are_recorded_once_by_sequence_number_and_survive_a_reopen(place: &Place) {
    let now = t("2026-11-24T12:00:00Z");
    {
        let store = place.open().await;
        store
            .create_enrollment_token("tok", &EnrollmentToken { uses_left: 1, expires_at: None, created_at: now })
            .await
            .unwrap();
        store.enroll("tok", "dev-1", "cred", Facts::default(), now).await.unwrap();
        let event = |n: u64| (n, serde_json::json!({"patch": "KB1", "status": format!("step {n}")}));
        let first = store.record_events("dev-1", &[event(1), event(2), event(3)], now).await.unwrap();
        assert_eq!((first.recorded, first.duplicates), (3, 0));
        // The response was lost; the agent sends 2 and 3 again, with 4.
        let retry = store.record_events("dev-1", &[event(2), event(3), event(4)], now).await.unwrap();
        assert_eq!((retry.recorded, retry.duplicates), (1, 2));
        store
            .update_inventory(
                "dev-1",
                facts("renamed"),
                Inventory { patches: vec!["KB1".into()], packages: vec![] },
                now,
            )
            .await
            .unwrap();
    }
    let store = place.open().await;
    let seqs: Vec<u64> = store.events("dev-1").await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(store.events("dev-1").await.unwrap()[1].body["status"], "step 2", "the first copy is kept");
    let device = store.device("dev-1").await.unwrap().unwrap();
    assert_eq!((device.last_event, device.facts.hostname.as_deref()), (4, Some("renamed")));
    assert_eq!(device.inventory.patches, ["KB1"]);
}

async fn the_audit_log_appends_in_order_and_pages(place: &Place) {
    {
        let store = place.open().await;
        for (i, action) in ["revision.applied", "approval.gained", "sync"].iter().enumerate() {
            let seq = store
                .append_audit(
                    t("2026-11-24T12:00:00Z"),
                    "commit:Ada Admin <ada@example.com>",
                    action,
                    serde_json::json!({"n": i}),
                )
                .await
                .unwrap();
            assert_eq!(seq, i as u64 + 1);
        }
    }
    let store = place.open().await;
    assert_eq!(
        store.append_audit(t("2026-11-24T13:00:00Z"), "admin", "ack-rewrite", serde_json::json!({})).await.unwrap(),
        4
    );
    let all = store.audit(0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["revision.applied", "approval.gained", "sync", "ack-rewrite"]
    );
    let page = store.audit(2, 1).await.unwrap();
    assert_eq!((page.len(), page[0].seq), (1, 3));

    // Newest first, by sequence number, filtered, and whether more remain.
    let seqs = |(entries, more): (Vec<patchward::store::fleet::AuditEntry>, bool)| {
        (entries.iter().map(|e| e.seq).collect::<Vec<_>>(), more)
    };
    assert_eq!(store.audit_len().await.unwrap(), 4);
    assert_eq!(seqs(store.audit_newest(None, 2, |_| true).await.unwrap()), (vec![4, 3], true));
    assert_eq!(seqs(store.audit_newest(Some(3), 2, |_| true).await.unwrap()), (vec![2, 1], false));
    assert_eq!(seqs(store.audit_newest(Some(3), 5, |_| true).await.unwrap()), (vec![2, 1], false));
    let by_commits = |e: &patchward::store::fleet::AuditHead<'_>| e.actor.starts_with("commit:");
    assert_eq!(seqs(store.audit_newest(None, 1, by_commits).await.unwrap()), (vec![3], true));
    assert_eq!(seqs(store.audit_newest(Some(2), 1, by_commits).await.unwrap()), (vec![1], false));
    assert_eq!(seqs(store.audit_newest(None, 9, |e| e.action == "none").await.unwrap()), (vec![], false));
}

async fn desired_generations_move_only_forward_and_only_with_the_content(place: &Place) {
    {
        let store = place.open().await;
        assert_eq!(store.desired_generation("dev-1", "aaa").await.unwrap(), 1);
        assert_eq!(store.desired_generation("dev-1", "aaa").await.unwrap(), 1, "the same content keeps its generation");
        assert_eq!(store.desired_generation("dev-1", "bbb").await.unwrap(), 2);
        assert_eq!(store.desired_generation("dev-2", "aaa").await.unwrap(), 1, "per device");
    }
    let store = place.open().await;
    assert_eq!(store.desired_generation("dev-1", "bbb").await.unwrap(), 2, "after a restart");
    // Back to an older content: a new generation, never the old number.
    assert_eq!(store.desired_generation("dev-1", "aaa").await.unwrap(), 3);
}

async fn engine_states_are_listed_by_prefix_and_only_those(place: &Place) {
    {
        let store = place.open().await;
        for (name, value) in [("requests/dev-2", 2), ("requests/dev-1", 1), ("requestsx", 9), ("trend", 7)] {
            store.set_engine_state(name, &vec![value]).await.unwrap();
        }
    }
    let store = place.open().await;
    let listed: Vec<(String, Vec<u32>)> = store.engine_states("requests/").await.unwrap();
    assert_eq!(listed, [("requests/dev-1".to_owned(), vec![1]), ("requests/dev-2".to_owned(), vec![2])]);
    assert!(store.engine_states::<Vec<u32>>("nothing/").await.unwrap().is_empty());
}

/// The directory (what the admin's lists show of each device) says what
/// the records say after every kind of write: before it is first read, and
/// after. On PostgreSQL, also after another replica's writes, and after a
/// write whose transaction began before a read but committed after it.
async fn the_device_directory_follows_every_write(place: &Place) {
    let now = t("2026-11-24T12:00:00Z");
    let store = place.open().await;
    let token = EnrollmentToken { uses_left: 9, expires_at: None, created_at: now };
    store.create_enrollment_token("tok", &token).await.unwrap();
    store.enroll("tok", "dev-1", "cred-1", facts("one"), now).await.unwrap();
    let hostnames = |store: patchward::store::Store| async move {
        let entries = store.device_entries().await.unwrap();
        entries.iter().map(|e| format!("{}={}", e.id, e.facts.hostname.as_deref().unwrap_or("-"))).collect::<Vec<_>>()
    };
    assert_eq!(hostnames(store.clone()).await, ["dev-1=one"], "loaded at the first read");

    let later = t("2026-11-24T13:00:00Z");
    store.enroll("tok", "dev-2", "cred-2", facts("two"), now).await.unwrap();
    store.update_inventory("dev-1", facts("renamed"), Inventory::default(), later).await.unwrap();
    let report = serde_json::json!({"kind": "report", "patch": "KB1", "status": "succeeded", "action": "install"});
    store.record_events("dev-2", &[(1, report)], later).await.unwrap();
    assert_eq!(hostnames(store.clone()).await, ["dev-1=renamed", "dev-2=two"]);
    let entries = store.device_entries().await.unwrap();
    assert_eq!((entries[0].last_seen, entries[1].last_seen), (later, later));
    assert_eq!(entries[1].reports.iter().map(|r| r.patch.as_str()).collect::<Vec<_>>(), ["KB1"]);
    for (entry, record) in entries.iter().zip(store.devices().await.unwrap()) {
        let stored = (&record.id, &record.facts, record.enrolled_at, record.last_seen, &record.reports);
        assert_eq!((&entry.id, &entry.facts, entry.enrolled_at, entry.last_seen, &entry.reports), stored);
    }

    let Place::Database { url, .. } = place else { return };
    let other = place.open().await;
    other.enroll("tok", "dev-3", "cred-3", facts("three"), now).await.unwrap();
    other.update_inventory("dev-2", facts("moved"), Inventory::default(), later).await.unwrap();
    assert_eq!(hostnames(store.clone()).await, ["dev-1=renamed", "dev-2=moved", "dev-3=three"], "another replica's");

    // A write still running while a newer one commits and the directory
    // is read: it lands after that read, and the next read has it.
    let (mut late, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let late = late.transaction().await.unwrap();
    late.execute(
        "UPDATE device SET record = jsonb_set(record, '{facts,hostname}', '\"late\"'), \
         written_by = pg_current_xact_id() WHERE id = 'dev-1'",
        &[],
    )
    .await
    .unwrap();
    other.enroll("tok", "dev-4", "cred-4", facts("four"), now).await.unwrap();
    assert_eq!(hostnames(store.clone()).await[3], "dev-4=four");
    late.commit().await.unwrap();
    assert_eq!(hostnames(store.clone()).await[0], "dev-1=late", "a late commit is not skipped");
}

/// T46 at the store: two replicas (two pools on one database) doing the
/// same thing at once. A single-use token enrolls one device, a batch of
/// events is recorded once, and audit sequence numbers stay gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_operation_at_two_replicas_happens_once() {
    let pg = support::postgres::Postgres::start();
    let url = pg.database("replicas");
    let (one, two) =
        (patchward::store::Store::connect(&url).await.unwrap(), patchward::store::Store::connect(&url).await.unwrap());
    let now = t("2026-11-24T12:00:00Z");
    for round in 0..20 {
        let token = format!("single-use-{round}");
        one.create_enrollment_token(&token, &EnrollmentToken { uses_left: 1, expires_at: None, created_at: now })
            .await
            .unwrap();
        let (device_a, device_b) = (format!("a-{round}"), format!("b-{round}"));
        let (cred_a, cred_b) = (format!("cred-a-{round}"), format!("cred-b-{round}"));
        let (a, b) = tokio::join!(
            one.enroll(&token, &device_a, &cred_a, facts("a"), now),
            two.enroll(&token, &device_b, &cred_b, facts("b"), now),
        );
        assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1, "round {round}: {a:?} {b:?}");
        assert!(matches!(a.err().or(b.err()), Some(EnrollError::UsedUp)));
    }
    let device = one.devices().await.unwrap()[0].id.clone();
    let batch: Vec<(u64, serde_json::Value)> =
        (1..=10).map(|n| (n, serde_json::json!({"kind": "step", "n": n}))).collect();
    let (a, b) = tokio::join!(one.record_events(&device, &batch, now), two.record_events(&device, &batch, now));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.recorded + b.recorded, a.duplicates + b.duplicates), (10, 10), "recorded once");

    let appends = (0..40).map(|i| {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tokio::spawn(
            async move { store.append_audit(now, "admin", "test", serde_json::json!({"i": i})).await.unwrap() },
        )
    });
    let mut seqs: Vec<u64> = Vec::new();
    for append in appends {
        seqs.push(append.await.unwrap());
    }
    let log: Vec<u64> = one.audit(0, 1000).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(log, (1..=log.len() as u64).collect::<Vec<_>>(), "gap-free");
    seqs.sort();
    assert_eq!(seqs, log[log.len() - 40..], "each append got its own number");

    // A rewrite acknowledged at both at once is acknowledged once; 40
    // user requests added at both at once are all kept.
    let ack = |store: patchward::store::Store| async move {
        let insert = |acks: &mut std::collections::BTreeSet<String>| acks.insert("c0ffee".into());
        store.update_engine_state("acks", insert).await
    };
    let (a, b) = tokio::join!(ack(one.clone()), ack(two.clone()));
    assert_eq!(usize::from(a.unwrap()) + usize::from(b.unwrap()), 1, "acknowledged once");
    let adds = (0..40).map(|i| {
        let store = if i % 2 == 0 { one.clone() } else { two.clone() };
        tokio::spawn(async move { store.update_engine_state("requests", move |r: &mut Vec<u32>| r.push(i)).await })
    });
    for add in adds {
        add.await.unwrap().unwrap();
    }
    let mut requests: Vec<u32> = one.engine_state("requests").await.unwrap().unwrap();
    requests.sort();
    assert_eq!(requests, (0..40).collect::<Vec<_>>(), "no update lost");
}
