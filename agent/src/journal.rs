//! The step journal (G6): every step of converging an item is appended
//! before it starts and after it ends, and each append is fsync'd before
//! [`Journal::append`] returns. After a crash, the last entry of each item
//! says where it stopped.
//!
//! On disk: `STATE/journal.jsonl`, one [`Entry`] a line, for example
//!
//! ```text
//! {"seq":7,"at":"2026-11-22T18:00:00Z","item":"PW-2026-0042","generation":12,"step":{"kind":"installing","sha256":"9f86…"}}
//! {"seq":8,"at":"2026-11-22T18:00:04Z","item":"PW-2026-0042","generation":12,"step":{"kind":"verifying"}}
//! ```
//!
//! `seq` rises by one per append (a compaction keeps the highest, so it
//! never repeats). Opening drops a torn last line: it was never
//! acknowledged, so nothing was done on its strength. Any other damage (a
//! complete line that does not parse, a seq that does not rise) is an error
//! naming file:line, never an empty history.
//!
//! # Recovery rules
//!
//! [`Journal::unfinished`] lists the items whose last step was still under
//! way when the agent stopped. The converge loop resolves each before it
//! decides anything new:
//!
//! - **`Downloading {sha256}`**: resume the download. The cache keeps the
//!   bytes so far in `cache/sha256/<hex>.partial`; the download continues
//!   from its length with a `Range` request and verifies the whole file
//!   (T21). Then `Downloaded`. Nothing is installed on the strength of a
//!   `Downloading`.
//! - **`Installing {sha256}`**: the installer ran fully, partly or not at
//!   all; its outcome is lost. Never run it again blindly and never report
//!   on the strength of the journal: run detection (T22). Present →
//!   append `Installed` and report succeeded. Absent → append
//!   `Failed {reason: "the agent stopped during the install; detection
//!   found it absent"}`, report failed, and let the decision retry it
//!   (a dpkg left half-configured is absent to detection).
//! - **`Verifying`**: the installer said it succeeded, detection had not
//!   answered yet: run detection and apply the rule of `Installing`.
//! - **`Uninstalling`**: run detection. Absent → `Uninstalled`; present →
//!   `Failed`, and the decision retries.
//! - Every other step is finished: `Downloaded` waits for the decision
//!   (the blob is re-hashed before any install anyway, G1); `Installed`,
//!   `Uninstalled` and `Failed` are outcomes; `RetryLater`, `Prompted`,
//!   `Snoozed` and `SelfServiceRequested` are inputs to the decision.
//!
//! Reports: an outcome (`Installed`, `Uninstalled`, `Failed`) is journaled
//! first and then queued in the outbox with
//! [`crate::outbox::Outbox::push_for_journal`] under the entry's seq. After
//! a crash between the two, an outcome entry whose seq is above
//! [`crate::outbox::Outbox::journal_seq_reported`] has no report yet: queue
//! it then (the outbox refuses a second one for the same seq).

use std::collections::HashMap;
use std::path::Path;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::cache::Sha256Digest;
use crate::install::ProcessExit;
use crate::state::{JsonLines, StateDir, StateError};

/// The journal's file in the state directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// One journaled step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Entry {
    /// From 1, rising by one per append; never reused.
    pub seq: u64,
    pub at: Timestamp,
    /// The item: a patch id (or `package@version`).
    pub item: String,
    /// The desired-state generation the agent acted on.
    pub generation: u64,
    pub step: Step,
}

/// A step of converging an item, or a user-facing event its history shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// A download of this blob started (or resumed).
    Downloading {
        #[serde(with = "digest_hex")]
        sha256: Sha256Digest,
    },
    /// The blob is in the cache and its sha256 verified.
    Downloaded {
        #[serde(with = "digest_hex")]
        sha256: Sha256Digest,
    },
    /// The installer is about to be handed these (re-hashed) bytes.
    Installing {
        #[serde(with = "digest_hex")]
        sha256: Sha256Digest,
    },
    /// The installer reported success; detection is checking.
    Verifying,
    /// Detection confirmed the item is on the device.
    Installed,
    Failed {
        reason: String,
        /// How the installer ended, when it ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<InstallerExit>,
    },
    /// Not a failure (a held dpkg lock, exit code 1618): try again at `until`.
    RetryLater {
        until: Timestamp,
    },
    Uninstalling,
    /// Detection confirmed the item is gone.
    Uninstalled,
    /// The user was shown the prompt.
    Prompted,
    /// The user (or an unanswered prompt) put the item off.
    Snoozed {
        until: Timestamp,
    },
    /// The user asked for the install (`patchward-agent install`).
    SelfServiceRequested,
}

impl Step {
    /// A step still under way when it is an item's last: what a restart
    /// must resolve (see the module's recovery rules).
    pub fn is_unfinished(&self) -> bool {
        matches!(self, Step::Downloading { .. } | Step::Installing { .. } | Step::Verifying | Step::Uninstalling)
    }

    /// An outcome the engine is told about.
    pub fn is_outcome(&self) -> bool {
        matches!(self, Step::Installed | Step::Uninstalled | Step::Failed { .. })
    }

    /// The step's name as the file spells it (`downloading`, `retry-later`).
    pub fn name(&self) -> &'static str {
        match self {
            Step::Downloading { .. } => "downloading",
            Step::Downloaded { .. } => "downloaded",
            Step::Installing { .. } => "installing",
            Step::Verifying => "verifying",
            Step::Installed => "installed",
            Step::Failed { .. } => "failed",
            Step::RetryLater { .. } => "retry-later",
            Step::Uninstalling => "uninstalling",
            Step::Uninstalled => "uninstalled",
            Step::Prompted => "prompted",
            Step::Snoozed { .. } => "snoozed",
            Step::SelfServiceRequested => "self-service-requested",
        }
    }
}

/// How an installer process ended, as the journal records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum InstallerExit {
    Code { code: i32 },
    Signal { signal: i32 },
    TimedOut { after_ms: u64 },
}

impl From<ProcessExit> for InstallerExit {
    fn from(exit: ProcessExit) -> InstallerExit {
        match exit {
            ProcessExit::Code(code) => InstallerExit::Code { code },
            ProcessExit::Signal(signal) => InstallerExit::Signal { signal },
            ProcessExit::TimedOut(after) => {
                InstallerExit::TimedOut { after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX) }
            }
        }
    }
}

mod digest_hex {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::cache::Sha256Digest;

    pub fn serialize<S: Serializer>(digest: &Sha256Digest, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&digest.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Sha256Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sha256Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The journal, read whole into memory (compaction keeps it small).
#[derive(Debug)]
pub struct Journal {
    state: StateDir,
    log: JsonLines,
    entries: Vec<Entry>,
    /// item → index in `entries` of its last entry.
    last_by_item: HashMap<String, usize>,
    next_seq: u64,
    torn_tail_bytes: u64,
}

impl Journal {
    /// Opens the journal for appending (creating it), dropping a torn last
    /// line. Only the agent holding [`StateDir::lock_exclusive`] may.
    pub fn open(state: &StateDir) -> Result<Journal, StateError> {
        let opened = JsonLines::open(state, JOURNAL_FILE)?;
        Journal::from_records(state, opened.log, opened.records, opened.torn_tail_bytes)
    }

    /// Reads the journal without changing it, for `status` and `history`
    /// while an agent may be writing. [`Journal::append`] and
    /// [`Journal::compact`] fail on it.
    pub fn open_read_only(state: &StateDir) -> Result<Journal, StateError> {
        let opened = JsonLines::open_read_only(state, JOURNAL_FILE)?;
        Journal::from_records(state, opened.log, opened.records, opened.torn_tail_bytes)
    }

    fn from_records(
        state: &StateDir,
        log: JsonLines,
        records: Vec<(usize, Entry)>,
        torn_tail_bytes: u64,
    ) -> Result<Journal, StateError> {
        let mut entries = Vec::with_capacity(records.len());
        let mut previous = 0u64;
        for (line, entry) in records {
            if entry.seq <= previous {
                return Err(StateError::Corrupt {
                    path: log.path().to_owned(),
                    line: Some(line),
                    reason: format!("seq {} does not follow seq {previous}", entry.seq),
                });
            }
            previous = entry.seq;
            entries.push(entry);
        }
        let mut journal = Journal {
            state: state.clone(),
            log,
            entries,
            last_by_item: HashMap::new(),
            next_seq: previous + 1,
            torn_tail_bytes,
        };
        journal.index();
        Ok(journal)
    }

    fn index(&mut self) {
        self.last_by_item.clear();
        for (index, entry) in self.entries.iter().enumerate() {
            self.last_by_item.insert(entry.item.clone(), index);
        }
    }

    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// The bytes of a torn last line that opening dropped (0: none).
    pub fn torn_tail_bytes(&self) -> u64 {
        self.torn_tail_bytes
    }

    /// Appends a step and returns its seq once it is on disk.
    pub fn append(&mut self, item: &str, generation: u64, step: Step, at: Timestamp) -> Result<u64, StateError> {
        let entry = Entry { seq: self.next_seq, at, item: item.to_owned(), generation, step };
        self.log.append(&entry)?;
        self.next_seq += 1;
        self.last_by_item.insert(entry.item.clone(), self.entries.len());
        self.entries.push(entry);
        Ok(self.next_seq - 1)
    }

    /// The item's last entry.
    pub fn last(&self, item: &str) -> Option<&Entry> {
        self.last_by_item.get(item).map(|&index| &self.entries[index])
    }

    /// The last entry of each item whose last step is still under way
    /// ([`Step::is_unfinished`]), in seq order.
    pub fn unfinished(&self) -> Vec<&Entry> {
        let mut unfinished: Vec<&Entry> = self
            .last_by_item
            .values()
            .map(|&index| &self.entries[index])
            .filter(|entry| entry.step.is_unfinished())
            .collect();
        unfinished.sort_by_key(|entry| entry.seq);
        unfinished
    }

    /// Every entry (of one item, or of all), oldest first.
    pub fn history<'a>(&'a self, item: Option<&'a str>) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |entry| item.is_none_or(|item| entry.item == item))
    }

    /// The items the journal knows, in the order of their last entries.
    pub fn items(&self) -> Vec<&str> {
        let mut lasts: Vec<&Entry> = self.last_by_item.values().map(|&index| &self.entries[index]).collect();
        lasts.sort_by_key(|entry| entry.seq);
        lasts.into_iter().map(|entry| entry.item.as_str()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The seq the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Rewrites the journal (atomically: the old file or the new after a
    /// crash) keeping the last `keep_per_item` entries of each item, in
    /// their order; returns how many were dropped. At least one entry per
    /// item is kept whatever `keep_per_item` says: the last one is what
    /// recovery reads, and it keeps the highest seq, so seqs never repeat.
    pub fn compact(&mut self, keep_per_item: usize) -> Result<usize, StateError> {
        let keep_per_item = keep_per_item.max(1);
        let mut remaining: HashMap<&str, usize> = HashMap::new();
        let mut keep = vec![false; self.entries.len()];
        for (index, entry) in self.entries.iter().enumerate().rev() {
            let left = remaining.entry(entry.item.as_str()).or_insert(keep_per_item);
            if *left > 0 {
                *left -= 1;
                keep[index] = true;
            }
        }
        let dropped = keep.iter().filter(|&&kept| !kept).count();
        if dropped == 0 {
            return Ok(0);
        }
        let kept: Vec<Entry> =
            self.entries.iter().zip(&keep).filter(|(_, kept)| **kept).map(|(entry, _)| entry.clone()).collect();
        self.log.replace(&self.state, JOURNAL_FILE, &kept)?;
        self.entries = kept;
        self.index();
        Ok(dropped)
    }
}
