//! The step journal: append and reopen, a torn last line recovered, other
//! damage refused with file:line, `unfinished` per step, compaction, a
//! read-only view that changes nothing, and a kill -9 loop.

mod crash;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use patchward_agent::cache::Sha256Digest;
use patchward_agent::install::ProcessExit;
use patchward_agent::journal::{Entry, InstallerExit, JOURNAL_FILE, Journal, Step};
use patchward_agent::state::{StateDir, StateError};

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn digest(n: u8) -> Sha256Digest {
    Sha256Digest::of(&[n])
}

fn every_step() -> Vec<Step> {
    vec![
        Step::Downloading { sha256: digest(1) },
        Step::Downloaded { sha256: digest(1) },
        Step::Installing { sha256: digest(1) },
        Step::Verifying,
        Step::Installed,
        Step::Failed { reason: "exit code 2".into(), outcome: Some(InstallerExit::from(ProcessExit::Code(2))) },
        Step::Failed { reason: "detection found it absent".into(), outcome: None },
        Step::RetryLater { until: at(600) },
        Step::Uninstalling,
        Step::Uninstalled,
        Step::Prompted,
        Step::Snoozed { until: at(3600) },
        Step::SelfServiceRequested,
    ]
}

#[test]
fn every_step_survives_a_reopen_in_order_with_rising_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    let steps = every_step();
    for (n, step) in steps.iter().enumerate() {
        let seq = journal.append("PW-1", 3, step.clone(), at(n as i64)).unwrap();
        assert_eq!(seq, n as u64 + 1);
    }
    drop(journal);

    let journal = Journal::open(&state).unwrap();
    assert_eq!(journal.torn_tail_bytes(), 0);
    let reread: Vec<&Entry> = journal.history(None).collect();
    assert_eq!(reread.len(), steps.len());
    for (n, (entry, step)) in reread.iter().zip(&steps).enumerate() {
        assert_eq!(entry.seq, n as u64 + 1);
        assert_eq!(entry.item, "PW-1");
        assert_eq!(entry.generation, 3);
        assert_eq!(entry.at, at(n as i64));
        assert_eq!(&entry.step, step);
    }
    assert_eq!(journal.next_seq(), steps.len() as u64 + 1);
    assert_eq!(journal.last("PW-1").unwrap().step, Step::SelfServiceRequested);
    assert_eq!(journal.last("PW-2"), None);
}

#[test]
fn the_file_is_one_json_line_per_entry_with_the_digest_in_hex() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    journal.append("PW-1", 3, Step::Installing { sha256: digest(1) }, at(0)).unwrap();
    journal.append("PW-1", 3, Step::RetryLater { until: at(60) }, at(1)).unwrap();
    let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["step"]["kind"], "installing");
    assert_eq!(first["step"]["sha256"], digest(1).to_hex());
    let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["step"]["kind"], "retry-later");
    assert_eq!(second["step"]["until"], at(60).to_string());
}

#[test]
fn a_torn_last_line_is_dropped_and_cut_off_and_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    journal.append("PW-1", 1, Step::Downloading { sha256: digest(1) }, at(0)).unwrap();
    journal.append("PW-1", 1, Step::Downloaded { sha256: digest(1) }, at(1)).unwrap();
    drop(journal);
    let path = dir.path().join(JOURNAL_FILE);
    let whole = std::fs::read(&path).unwrap();
    // Half of a third line, as a crash mid-write leaves it.
    let torn = br#"{"seq":3,"at":"2027-01-15T08:00:02Z","item":"PW-1","generation":1,"step":{"kind":"insta"#;
    std::fs::write(&path, [&whole[..], &torn[..]].concat()).unwrap();

    let mut journal = Journal::open(&state).unwrap();
    assert_eq!(journal.torn_tail_bytes(), torn.len() as u64);
    assert_eq!(journal.len(), 2);
    assert_eq!(std::fs::read(&path).unwrap(), whole, "the torn line is cut off the file");
    assert_eq!(journal.append("PW-1", 1, Step::Installing { sha256: digest(1) }, at(2)).unwrap(), 3);
    drop(journal);
    let journal = Journal::open(&state).unwrap();
    assert_eq!(journal.len(), 3);
    assert_eq!(journal.last("PW-1").unwrap().step, Step::Installing { sha256: digest(1) });
}

#[test]
fn damage_before_the_last_line_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    for n in 0..3 {
        journal.append("PW-1", 1, Step::Prompted, at(n)).unwrap();
    }
    drop(journal);
    let path = dir.path().join(JOURNAL_FILE);
    let good = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = good.lines().collect();

    let cases = [
        ("garbage on line 2", format!("{}\nnot json\n{}\n", lines[0], lines[2]), 2),
        ("an empty line", format!("{}\n\n{}\n", lines[0], lines[2]), 2),
        ("a repeated seq", format!("{}\n{}\n{}\n", lines[0], lines[1], lines[1]), 3),
        ("an unknown step", format!("{}\n{}\n", lines[0], lines[1].replace("prompted", "teleported")), 2),
        (
            "a bad digest",
            format!(
                "{}\n{}\n",
                lines[0],
                lines[1].replace(r#""kind":"prompted""#, r#""kind":"downloading","sha256":"abc""#)
            ),
            2,
        ),
        ("an unknown field", format!("{}\n", lines[0].replace(r#""seq""#, r#""extra":1,"seq""#)), 1),
    ];
    for (what, text, line) in cases {
        std::fs::write(&path, &text).unwrap();
        let error = Journal::open(&state).unwrap_err();
        match &error {
            StateError::Corrupt { path: named, line: Some(number), .. } => {
                assert_eq!(named, &path, "{what}");
                assert_eq!(*number, line, "{what}: {error}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(error.to_string().starts_with(&format!("{}:{line}: ", path.display())), "{what}: {error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{what}: a refused journal is left as it was");
    }
}

#[test]
fn unfinished_lists_the_items_whose_last_step_is_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    // Each item ends on one step; a finished step earlier in an item's
    // history does not hide an unfinished last one, nor the reverse.
    for (n, step) in every_step().into_iter().enumerate() {
        let item = format!("item-{n:02}");
        journal.append(&item, 1, Step::Prompted, at(0)).unwrap();
        journal.append(&item, 1, step, at(1)).unwrap();
    }
    journal.append("finished-after-installing", 1, Step::Installing { sha256: digest(2) }, at(2)).unwrap();
    journal.append("finished-after-installing", 1, Step::Installed, at(3)).unwrap();

    let check = |journal: &Journal| {
        let unfinished: Vec<(&str, &'static str)> =
            journal.unfinished().iter().map(|entry| (entry.item.as_str(), entry.step.name())).collect();
        assert_eq!(
            unfinished,
            [
                ("item-00", "downloading"),
                ("item-02", "installing"),
                ("item-03", "verifying"),
                ("item-08", "uninstalling")
            ]
        );
    };
    check(&journal);
    drop(journal);
    check(&Journal::open(&state).unwrap());
}

#[test]
fn history_filters_by_item_in_seq_order() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    for n in 0..10 {
        journal.append(if n % 3 == 0 { "PW-A" } else { "PW-B" }, 1, Step::Prompted, at(n)).unwrap();
    }
    let a: Vec<u64> = journal.history(Some("PW-A")).map(|entry| entry.seq).collect();
    assert_eq!(a, [1, 4, 7, 10]);
    let all: Vec<u64> = journal.history(None).map(|entry| entry.seq).collect();
    assert_eq!(all, (1..=10).collect::<Vec<_>>());
    assert_eq!(journal.history(Some("PW-C")).count(), 0);
    assert_eq!(journal.items(), ["PW-B", "PW-A"]);
}

#[test]
fn compaction_keeps_the_last_entries_of_each_item_in_order_and_seqs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    for n in 0..30 {
        let item = ["PW-A", "PW-B", "PW-C"][(n % 3) as usize];
        journal.append(item, 1, Step::Prompted, at(n)).unwrap();
    }
    journal.append("PW-D", 1, Step::Installing { sha256: digest(4) }, at(40)).unwrap();
    let bytes_before = std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len();

    assert_eq!(journal.compact(2).unwrap(), 24);
    let expected = [25, 26, 27, 28, 29, 30, 31];
    let seqs = |journal: &Journal| journal.history(None).map(|entry| entry.seq).collect::<Vec<_>>();
    assert_eq!(seqs(&journal), expected);
    assert!(std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len() < bytes_before / 3);
    assert_eq!(journal.unfinished()[0].item, "PW-D");

    // Appends after a compaction go to the new file, and survive a reopen.
    assert_eq!(journal.append("PW-A", 1, Step::Installed, at(50)).unwrap(), 32);
    drop(journal);
    let mut journal = Journal::open(&state).unwrap();
    assert_eq!(seqs(&journal), [25, 26, 27, 28, 29, 30, 31, 32]);

    // Even keeping none, each item keeps its last entry (recovery reads
    // it) and so the highest seq stays.
    journal.compact(0).unwrap();
    assert_eq!(seqs(&journal), [29, 30, 31, 32]);
    assert_eq!(journal.compact(1).unwrap(), 0);
    assert_eq!(journal.append("PW-E", 1, Step::Prompted, at(60)).unwrap(), 33);
    drop(journal);
    assert_eq!(Journal::open(&state).unwrap().next_seq(), 34);
}

#[test]
fn the_read_only_view_leaves_a_torn_line_alone_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    journal.append("PW-1", 1, Step::Prompted, at(0)).unwrap();
    let path = dir.path().join(JOURNAL_FILE);
    // An agent in the middle of writing its next line.
    std::fs::write(&path, [std::fs::read(&path).unwrap(), b"{\"seq\":2,".to_vec()].concat()).unwrap();
    let before = std::fs::read(&path).unwrap();

    let mut view = Journal::open_read_only(&state).unwrap();
    assert_eq!(view.len(), 1);
    assert!(matches!(view.append("PW-1", 1, Step::Prompted, at(1)), Err(StateError::ReadOnly { .. })));
    assert!(matches!(view.compact(1), Err(StateError::ReadOnly { .. }) | Ok(0)));
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let empty = tempfile::tempdir().unwrap();
    let view = Journal::open_read_only(&StateDir::open(empty.path()).unwrap()).unwrap();
    assert!(view.is_empty());
    assert!(!empty.path().join(JOURNAL_FILE).exists(), "reading creates nothing");
}

#[test]
fn the_journal_file_is_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let mut journal = Journal::open(&state).unwrap();
    journal.append("PW-1", 1, Step::Prompted, at(0)).unwrap();
    journal.append("PW-2", 1, Step::Prompted, at(0)).unwrap();
    journal.append("PW-1", 1, Step::Prompted, at(0)).unwrap();
    assert_eq!(std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    journal.compact(1).unwrap();
    assert_eq!(std::fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
}

// --- kill -9 ---------------------------------------------------------------

/// What the crash child appends as `seq`: a pure function of it, so the
/// parent can check each entry it finds.
fn expected_entry(seq: u64) -> Entry {
    let item = format!("item-{}", seq % 7);
    let step = match seq % 4 {
        0 => Step::Downloading { sha256: Sha256Digest::of(&seq.to_le_bytes()) },
        1 => Step::Installing { sha256: Sha256Digest::of(&seq.to_le_bytes()) },
        2 => Step::Failed { reason: "x".repeat((seq % 500) as usize), outcome: None },
        _ => Step::Installed,
    };
    Entry { seq, at: at(seq as i64), item, generation: seq / 10, step }
}

/// The child compacts (keeping this many per item) before appending a seq
/// that is a multiple of [`COMPACT_EVERY`].
const KEEP_PER_ITEM: usize = 3;
const COMPACT_EVERY: u64 = 40;

/// Not a test: the crash child's entry point (see `crash`).
#[test]
fn crash_child() {
    let Some((role, dir)) = crash::child_role() else { return };
    assert_eq!(role, "journal");
    let state = StateDir::open(&dir).expect("open the state directory");
    let _lock = state.lock_exclusive().expect("the previous child's lock died with it");
    let mut journal = Journal::open(&state).expect("the journal opens after a kill");
    let deadline = std::time::Instant::now() + crash::CHILD_LIFETIME;
    while std::time::Instant::now() < deadline {
        let seq = journal.next_seq();
        if seq % COMPACT_EVERY == 0 {
            journal.compact(KEEP_PER_ITEM).expect("compact");
        }
        let entry = expected_entry(seq);
        let appended = journal.append(&entry.item, entry.generation, entry.step, entry.at).expect("append");
        assert_eq!(appended, seq);
        crash::acknowledge(seq);
    }
}

/// What the journal must hold when seqs `1..=last` were appended: the
/// child's compactions replayed. `compacted_at_end` says whether the
/// compaction due before `last + 1` ran (the kill may have come during it).
fn model(last: u64, compacted_at_end: bool) -> Vec<u64> {
    let mut kept: Vec<u64> = Vec::new();
    for seq in 1..=last + 1 {
        let due = seq % COMPACT_EVERY == 0 && (seq <= last || compacted_at_end);
        if due {
            let mut per_item: BTreeMap<String, usize> = BTreeMap::new();
            let mut keep = BTreeSet::new();
            for &old in kept.iter().rev() {
                let count = per_item.entry(expected_entry(old).item).or_default();
                if *count < KEEP_PER_ITEM {
                    *count += 1;
                    keep.insert(old);
                }
            }
            kept.retain(|old| keep.contains(old));
        }
        if seq <= last {
            kept.push(seq);
        }
    }
    kept
}

fn journal_crash_loop(iterations: usize, budget: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<u64> = Vec::new();
    let mut torn = crash::Rng::seeded("journal torn lines");
    let rounds = crash::crash_loop("journal", "journal", dir.path(), iterations, budget, |round, acks| {
        acknowledged.extend(acks.iter().map(|ack| ack.parse::<u64>().unwrap()));
        let state = StateDir::open(dir.path()).unwrap();
        let journal = Journal::open(&state).unwrap_or_else(|e| panic!("round {round}: the journal must open: {e}"));
        let last = journal.next_seq() - 1;
        let max_acknowledged = acknowledged.last().copied().unwrap_or(0);
        assert!(
            last >= max_acknowledged,
            "round {round}: seq {max_acknowledged} was acknowledged, the journal ends at {last}"
        );
        let present: Vec<u64> = journal.history(None).map(|entry| entry.seq).collect();
        assert!(
            present == model(last, false) || present == model(last, true),
            "round {round}: the journal holds {present:?}, not what appending 1..={last} with compactions leaves"
        );
        for entry in journal.history(None) {
            assert_eq!(entry, &expected_entry(entry.seq), "round {round}");
        }
        drop(journal);
        // A kill -9 cannot split one small write; a power loss can. Leave
        // half of the next, unacknowledged line for the next child.
        if torn.below(2) == 0 {
            let mut line = serde_json::to_vec(&expected_entry(last + 1)).unwrap();
            line.truncate(torn.below(line.len() as u64) as usize + 1);
            let mut file = std::fs::OpenOptions::new().append(true).open(dir.path().join(JOURNAL_FILE)).unwrap();
            std::io::Write::write_all(&mut file, &line).unwrap();
        }
    });
    assert!(rounds >= 3);
    // An acknowledged seq is never given out again.
    let unique: BTreeSet<u64> = acknowledged.iter().copied().collect();
    assert_eq!(unique.len(), acknowledged.len(), "a seq was acknowledged twice");
    assert!(acknowledged.windows(2).all(|pair| pair[0] < pair[1]), "acknowledged seqs go backwards");
    assert!(
        *acknowledged.last().unwrap_or(&0) > COMPACT_EVERY || rounds < iterations,
        "the loop should pass compactions"
    );
}

#[test]
fn kill_9_while_appending_loses_nothing_acknowledged_short() {
    journal_crash_loop(10, Duration::from_secs(8));
}

#[test]
#[ignore = "crash loop: run in CI's bounded step"]
fn kill_9_while_appending_loses_nothing_acknowledged() {
    journal_crash_loop(100, Duration::from_secs(90));
}
