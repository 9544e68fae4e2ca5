//! The durable report queue (T25, T26): every event for the engine is
//! queued here with the device's next sequence number and stays until the
//! engine has answered for it. A batch whose answer was lost is sent again;
//! the engine records each seq once.
//!
//! On disk, two files in the state directory:
//!
//! - `outbox.snapshot.json` ([`SNAPSHOT_FILE`]), replaced whole by
//!   [`StateDir::write_atomic`]:
//!   `{"format":1,"nextSeq":N,"acknowledgedThrough":A,"journalSeqReported":J,
//!   "dropNotice":{…},"events":[AgentEvent…]}`;
//! - `outbox.jsonl` ([`LOG_FILE`]), the records since that snapshot, one a
//!   line, each fsync'd before the call returns:
//!   `{"push":{"event":{AgentEvent},"journalSeq":J}}` and
//!   `{"ack":{"through":A}}`.
//!
//! Opening reads the snapshot and replays the log over it. A compaction
//! writes a new snapshot and then empties the log; a crash between the two
//! replays the old log over the new snapshot, which changes nothing: a push
//! below the snapshot's `nextSeq` is already in it (or was acknowledged or
//! dropped), and an acknowledgement is a high-water mark. So a kill -9 at
//! any point leaves the old state or the new one. A torn last log line was
//! never acknowledged and is dropped; other damage is an error naming
//! file:line.
//!
//! Seqs never repeat: `nextSeq` only rises, it is in every snapshot, and a
//! compaction never forgets it.
//!
//! The queue is bounded ([`OutboxConfig::max_events`],
//! [`OutboxConfig::max_bytes`]). When a push finds it full, the oldest
//! `step` events go first, then the oldest of the other kinds that are no
//! outcome; `report` events are never dropped (with nothing but reports
//! left the queue grows past its bound rather than lose one). It drops down
//! to 90% of the bounds at once, so a full queue costs one snapshot per
//! tenth, not one per push, and what was dropped is counted in one
//! synthetic `error` event (replaced, with the counts added up, while it is
//! still pending).
//!
//! Retries: [`Outbox::record_failure`] schedules the next attempt with an
//! exponential backoff (5s, 10s, 20s, … capped at 15 minutes by default)
//! on the caller's clock, without jitter so tests can predict it. The
//! schedule lives in memory: after a restart the agent tries at once.

use std::collections::VecDeque;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use patchward_api::ReportStatus;
use patchward_api::events::{AgentEvent, EventKind};
use serde::{Deserialize, Serialize};

use crate::state::{JsonLines, StateDir, StateError};

pub const SNAPSHOT_FILE: &str = "outbox.snapshot.json";
pub const LOG_FILE: &str = "outbox.jsonl";
const SNAPSHOT_FORMAT: u32 = 1;

/// The queue's bounds and retry schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxConfig {
    /// At most this many events pending (reports excepted, see the module).
    pub max_events: usize,
    /// At most this many bytes of pending events, as JSON.
    pub max_bytes: usize,
    /// The delay after the first failed attempt; it doubles after each.
    pub first_retry: SignedDuration,
    /// The longest delay between attempts.
    pub max_retry: SignedDuration,
    /// Log records after which an acknowledgement compacts into a snapshot.
    pub compact_after_records: usize,
}

impl Default for OutboxConfig {
    fn default() -> OutboxConfig {
        OutboxConfig {
            max_events: 10_000,
            max_bytes: 8 * 1024 * 1024,
            first_retry: SignedDuration::from_secs(5),
            max_retry: SignedDuration::from_mins(15),
            compact_after_records: 1_000,
        }
    }
}

/// An event to queue; the outbox gives it its seq.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub patch: Option<String>,
    pub status: Option<ReportStatus>,
    pub generation: Option<u64>,
    pub action: Option<patchward_api::desired::Action>,
    pub policy: Option<String>,
    pub message: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub at: Timestamp,
}

impl NewEvent {
    pub fn new(kind: EventKind, at: Timestamp) -> NewEvent {
        NewEvent {
            kind,
            patch: None,
            status: None,
            generation: None,
            action: None,
            policy: None,
            message: None,
            detail: None,
            at,
        }
    }

    /// A `report` of an install or uninstall outcome.
    pub fn report(patch: impl Into<String>, status: ReportStatus, generation: u64, at: Timestamp) -> NewEvent {
        NewEvent::new(EventKind::Report, at).patch(patch).status(status).generation(generation)
    }

    pub fn patch(mut self, patch: impl Into<String>) -> NewEvent {
        self.patch = Some(patch.into());
        self
    }

    pub fn status(mut self, status: ReportStatus) -> NewEvent {
        self.status = Some(status);
        self
    }

    pub fn generation(mut self, generation: u64) -> NewEvent {
        self.generation = Some(generation);
        self
    }

    /// What a `report` says was done, and under which deployment policy:
    /// what lets the engine remove a patch whose approval is withdrawn.
    pub fn outcome_of(mut self, action: patchward_api::desired::Action, policy: Option<String>) -> NewEvent {
        self.action = Some(action);
        self.policy = policy;
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> NewEvent {
        self.message = Some(message.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> NewEvent {
        self.detail = Some(detail);
        self
    }

    fn with_seq(self, seq: u64) -> AgentEvent {
        let NewEvent { kind, patch, status, generation, action, policy, message, detail, at } = self;
        AgentEvent { seq, at, kind, patch, status, generation, action, policy, message, detail }
    }
}

/// What the pending synthetic `error` event has counted so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DropNotice {
    /// The synthetic event's own seq.
    seq: u64,
    steps: u64,
    others: u64,
    first_seq: u64,
    last_seq: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Snapshot {
    format: u32,
    next_seq: u64,
    acknowledged_through: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journal_seq_reported: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drop_notice: Option<DropNotice>,
    events: Vec<AgentEvent>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
enum LogRecord {
    #[serde(rename_all = "camelCase")]
    Push {
        event: AgentEvent,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        journal_seq: Option<u64>,
    },
    Ack {
        through: u64,
    },
}

#[derive(Clone, Debug)]
struct Pending {
    event: AgentEvent,
    /// Its size as JSON, what the byte bound counts.
    bytes: usize,
}

impl Pending {
    fn new(event: AgentEvent) -> Pending {
        let bytes = serde_json::to_vec(&event).map_or(0, |json| json.len());
        Pending { event, bytes }
    }
}

/// The queue's logical content: what a snapshot holds.
#[derive(Clone, Debug)]
struct Queue {
    events: VecDeque<Pending>,
    bytes: usize,
    next_seq: u64,
    acknowledged_through: u64,
    journal_seq_reported: Option<u64>,
    drop_notice: Option<DropNotice>,
}

impl Queue {
    fn push_back(&mut self, event: AgentEvent) {
        let pending = Pending::new(event);
        self.bytes += pending.bytes;
        self.next_seq = self.next_seq.max(pending.event.seq + 1);
        self.events.push_back(pending);
    }

    fn acknowledge(&mut self, through: u64) -> usize {
        self.acknowledged_through = self.acknowledged_through.max(through);
        let mut removed = 0;
        while self.events.front().is_some_and(|front| front.event.seq <= through) {
            if let Some(front) = self.events.pop_front() {
                self.bytes -= front.bytes;
                removed += 1;
            }
        }
        if self.drop_notice.as_ref().is_some_and(|notice| notice.seq <= through) {
            self.drop_notice = None;
        }
        removed
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            next_seq: self.next_seq,
            acknowledged_through: self.acknowledged_through,
            journal_seq_reported: self.journal_seq_reported,
            drop_notice: self.drop_notice.clone(),
            events: self.events.iter().map(|pending| pending.event.clone()).collect(),
        }
    }

    /// Drops events, by the module's policy, until `incoming` more events
    /// of `incoming_bytes` fit under the low-water marks; records what went
    /// in the synthetic notice (pushed at the end, with a new seq).
    fn make_room(&mut self, config: &OutboxConfig, incoming: usize, incoming_bytes: usize, at: Timestamp) {
        const NOTICE_BYTES: usize = 400;
        let low_events = config.max_events - config.max_events / 10;
        let low_bytes = config.max_bytes - config.max_bytes / 10;
        // The previous notice is replaced by one with the counts added up.
        let mut notice = match self.drop_notice.take() {
            Some(notice) => {
                if let Some(index) = self.events.iter().position(|pending| pending.event.seq == notice.seq) {
                    if let Some(old) = self.events.remove(index) {
                        self.bytes -= old.bytes;
                    }
                }
                notice
            }
            None => DropNotice::default(),
        };
        let mut events_over = (self.events.len() + incoming + 1).saturating_sub(low_events);
        let mut bytes_over = (self.bytes + incoming_bytes + NOTICE_BYTES).saturating_sub(low_bytes);
        let mut drop = vec![false; self.events.len()];
        // Steps first, then whatever is no report.
        let is_step: fn(EventKind) -> bool = |kind| kind == EventKind::Step;
        let is_no_report: fn(EventKind) -> bool = |kind| kind != EventKind::Report;
        for droppable in [is_step, is_no_report] {
            for (index, pending) in self.events.iter().enumerate() {
                if events_over == 0 && bytes_over == 0 {
                    break;
                }
                if drop[index] || !droppable(pending.event.kind) {
                    continue;
                }
                drop[index] = true;
                events_over = events_over.saturating_sub(1);
                bytes_over = bytes_over.saturating_sub(pending.bytes);
                let seq = pending.event.seq;
                if pending.event.kind == EventKind::Step {
                    notice.steps += 1;
                } else {
                    notice.others += 1;
                }
                notice.first_seq = if notice.first_seq == 0 { seq } else { notice.first_seq.min(seq) };
                notice.last_seq = notice.last_seq.max(seq);
            }
        }
        let mut index = 0;
        let bytes = &mut self.bytes;
        self.events.retain(|pending| {
            let keep = !drop[index];
            index += 1;
            if !keep {
                *bytes -= pending.bytes;
            }
            keep
        });
        if notice.steps + notice.others > 0 {
            notice.seq = self.next_seq;
            let message = format!(
                "outbox full: dropped {} step event(s) and {} other event(s) between seq {} and {} \
                 while the engine was unreachable",
                notice.steps, notice.others, notice.first_seq, notice.last_seq
            );
            let detail = serde_json::json!({
                "outboxDropped": {
                    "steps": notice.steps,
                    "others": notice.others,
                    "firstSeq": notice.first_seq,
                    "lastSeq": notice.last_seq,
                }
            });
            let event = NewEvent::new(EventKind::Error, at).message(message).detail(detail).with_seq(notice.seq);
            self.push_back(event);
            self.drop_notice = Some(notice);
        }
    }
}

/// The outbox: the queue in memory, mirrored on disk by every call before
/// it returns.
#[derive(Debug)]
pub struct Outbox {
    state: StateDir,
    config: OutboxConfig,
    log: JsonLines,
    log_records: usize,
    queue: Queue,
    failures: u32,
    next_attempt_at: Option<Timestamp>,
}

impl Outbox {
    /// Opens (creating) the outbox with the default bounds. Only the agent
    /// holding [`StateDir::lock_exclusive`] may.
    pub fn open(state: &StateDir) -> Result<Outbox, StateError> {
        Outbox::open_with(state, OutboxConfig::default())
    }

    pub fn open_with(state: &StateDir, config: OutboxConfig) -> Result<Outbox, StateError> {
        let snapshot: Snapshot = match state.read_json(SNAPSHOT_FILE)? {
            Some(snapshot) => snapshot,
            None => Snapshot {
                format: SNAPSHOT_FORMAT,
                next_seq: 1,
                acknowledged_through: 0,
                journal_seq_reported: None,
                drop_notice: None,
                events: Vec::new(),
            },
        };
        let snapshot_path = state.path().join(SNAPSHOT_FILE);
        let corrupt = |reason: String| StateError::Corrupt { path: snapshot_path.clone(), line: None, reason };
        if snapshot.format != SNAPSHOT_FORMAT {
            return Err(corrupt(format!("unknown format {} (this agent reads {SNAPSHOT_FORMAT})", snapshot.format)));
        }
        let mut queue = Queue {
            events: VecDeque::with_capacity(snapshot.events.len()),
            bytes: 0,
            next_seq: snapshot.next_seq.max(1),
            acknowledged_through: snapshot.acknowledged_through,
            journal_seq_reported: snapshot.journal_seq_reported,
            drop_notice: snapshot.drop_notice,
        };
        let mut previous = snapshot.acknowledged_through;
        for event in snapshot.events {
            if event.seq <= previous || event.seq >= queue.next_seq {
                return Err(corrupt(format!(
                    "event seq {} out of order (after {previous}, next {})",
                    event.seq, queue.next_seq
                )));
            }
            previous = event.seq;
            let pending = Pending::new(event);
            queue.bytes += pending.bytes;
            queue.events.push_back(pending);
        }

        let opened = JsonLines::open::<LogRecord>(state, LOG_FILE)?;
        let log_records = opened.records.len();
        let mut last_pushed = 0u64;
        for (line, record) in opened.records {
            match record {
                LogRecord::Push { event, journal_seq } => {
                    if event.seq <= last_pushed {
                        return Err(StateError::Corrupt {
                            path: opened.log.path().to_owned(),
                            line: Some(line),
                            reason: format!("seq {} does not follow seq {last_pushed}", event.seq),
                        });
                    }
                    last_pushed = event.seq;
                    // Below the snapshot's horizon: already in it, or
                    // acknowledged or dropped since (a crash between a
                    // snapshot and the emptying of the log).
                    if event.seq < queue.next_seq || event.seq <= queue.acknowledged_through {
                        continue;
                    }
                    if let Some(journal_seq) = journal_seq {
                        queue.journal_seq_reported = queue.journal_seq_reported.max(Some(journal_seq));
                    }
                    queue.push_back(event);
                }
                LogRecord::Ack { through } => {
                    queue.acknowledge(through);
                }
            }
        }
        Ok(Outbox {
            state: state.clone(),
            config,
            log: opened.log,
            log_records,
            queue,
            failures: 0,
            next_attempt_at: None,
        })
    }

    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Queues an event and returns its seq once it is on disk. The
    /// arguments are [`AgentEvent`]'s fields but the seq.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        kind: EventKind,
        patch: Option<&str>,
        status: Option<ReportStatus>,
        generation: Option<u64>,
        message: Option<&str>,
        detail: Option<serde_json::Value>,
        at: Timestamp,
    ) -> Result<u64, StateError> {
        self.push_event(NewEvent {
            kind,
            patch: patch.map(str::to_owned),
            status,
            generation,
            action: None,
            policy: None,
            message: message.map(str::to_owned),
            detail,
            at,
        })
    }

    /// Queues an event and returns its seq once it is on disk.
    pub fn push_event(&mut self, event: NewEvent) -> Result<u64, StateError> {
        self.push_inner(event, None)
    }

    /// Queues the report of the journal entry `journal_seq`, unless one
    /// was already queued for it (or for a later entry): the converge loop
    /// calls this again after a crash between journaling an outcome and
    /// queueing its report. `None` when it was already queued.
    pub fn push_for_journal(&mut self, journal_seq: u64, event: NewEvent) -> Result<Option<u64>, StateError> {
        if self.queue.journal_seq_reported.is_some_and(|reported| reported >= journal_seq) {
            return Ok(None);
        }
        self.push_inner(event, Some(journal_seq)).map(Some)
    }

    /// The highest journal seq a report was queued for.
    pub fn journal_seq_reported(&self) -> Option<u64> {
        self.queue.journal_seq_reported
    }

    fn push_inner(&mut self, event: NewEvent, journal_seq: Option<u64>) -> Result<u64, StateError> {
        let at = event.at;
        let incoming = Pending::new(event.with_seq(self.queue.next_seq));
        let full = self.queue.events.len() + 1 > self.config.max_events
            || self.queue.bytes + incoming.bytes > self.config.max_bytes;
        if full {
            // Drops go through a snapshot; the queue changes only once it
            // is on disk.
            let mut queue = self.queue.clone();
            queue.make_room(&self.config, 1, incoming.bytes, at);
            let mut event = incoming.event;
            event.seq = queue.next_seq;
            let seq = event.seq;
            if journal_seq.is_some() {
                queue.journal_seq_reported = queue.journal_seq_reported.max(journal_seq);
            }
            queue.push_back(event);
            self.write_snapshot(&queue)?;
            self.queue = queue;
            return Ok(seq);
        }
        let seq = incoming.event.seq;
        self.log.append(&LogRecord::Push { event: incoming.event.clone(), journal_seq })?;
        self.log_records += 1;
        if journal_seq.is_some() {
            self.queue.journal_seq_reported = self.queue.journal_seq_reported.max(journal_seq);
        }
        self.queue.push_back(incoming.event);
        Ok(seq)
    }

    /// Up to `limit` pending events, oldest (lowest seq) first.
    pub fn pending(&self, limit: usize) -> Vec<AgentEvent> {
        self.queue.events.iter().take(limit).map(|pending| pending.event.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.events.is_empty()
    }

    /// The bytes of the pending events, as the bound counts them.
    pub fn pending_bytes(&self) -> usize {
        self.queue.bytes
    }

    /// The seq the next push gets.
    pub fn next_seq(&self) -> u64 {
        self.queue.next_seq
    }

    pub fn acknowledged_through(&self) -> u64 {
        self.queue.acknowledged_through
    }

    /// The engine answered for every event up to `through`: removes them,
    /// durably, and returns how many went. A seq not yet given out is not
    /// acknowledged (the engine cannot have seen it).
    pub fn acknowledge(&mut self, through: u64) -> Result<usize, StateError> {
        let through = through.min(self.queue.next_seq - 1);
        if through <= self.queue.acknowledged_through {
            return Ok(0);
        }
        self.log.append(&LogRecord::Ack { through })?;
        self.log_records += 1;
        let removed = self.queue.acknowledge(through);
        if self.queue.events.is_empty() || self.log_records >= self.config.compact_after_records {
            self.compact()?;
        }
        Ok(removed)
    }

    /// Writes the queue into a new snapshot and empties the log.
    pub fn compact(&mut self) -> Result<(), StateError> {
        let queue = self.queue.clone();
        self.write_snapshot(&queue)
    }

    fn write_snapshot(&mut self, queue: &Queue) -> Result<(), StateError> {
        self.state.write_json(SNAPSHOT_FILE, &queue.snapshot())?;
        self.log.clear()?;
        self.log_records = 0;
        Ok(())
    }

    /// A send failed (no answer, an error status): the next attempt is due
    /// at the returned instant, `first_retry` after the first failure and
    /// twice as long after each one since, up to `max_retry`.
    pub fn record_failure(&mut self, now: Timestamp) -> Timestamp {
        self.failures = self.failures.saturating_add(1);
        let mut delay = self.config.first_retry;
        for _ in 1..self.failures {
            delay = delay.checked_mul(2).unwrap_or(self.config.max_retry);
            if delay >= self.config.max_retry {
                break;
            }
        }
        let delay = delay.min(self.config.max_retry);
        let next = now.checked_add(delay).unwrap_or(Timestamp::MAX);
        self.next_attempt_at = Some(next);
        next
    }

    /// The engine answered: the next attempt need not wait.
    pub fn record_success(&mut self) {
        self.failures = 0;
        self.next_attempt_at = None;
    }

    /// When the next attempt is due, after failures.
    pub fn next_attempt_at(&self) -> Option<Timestamp> {
        self.next_attempt_at
    }

    /// Failed attempts since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether to send now: something is pending and the backoff has run
    /// out. A schedule further away than `max_retry` means the clock jumped
    /// backwards; waiting it out could take days, so it is due.
    pub fn due(&self, now: Timestamp) -> bool {
        if self.queue.events.is_empty() {
            return false;
        }
        match self.next_attempt_at {
            None => true,
            Some(next) => now >= next || now.duration_until(next) > self.config.max_retry,
        }
    }
}
