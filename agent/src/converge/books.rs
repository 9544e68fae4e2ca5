//! The agent's durable books: the journal, the outbox and its memory
//! (`memory.json`), behind one lock, and the one way a step and its event
//! are written together.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::decide::LocalItemState;
use crate::journal::{Journal, Step};
use crate::outbox::{NewEvent, Outbox};
use crate::state::{StateDir, StateError};
use crate::trust::Trusted;

const MEMORY_FILE: &str = "memory.json";

/// What the agent remembers between passes (`memory.json`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    /// The desired state in force, as received (re-verified on load).
    pub trusted: Option<Trusted>,
    pub items: BTreeMap<String, LocalItemState>,
    /// The latest time read off the clock (expiry never goes back, T38).
    pub latest_time: Option<Timestamp>,
    /// A digest of the last facts and inventory the engine acknowledged.
    pub uploaded: Option<String>,
    /// The last give-up reason reported per item (reported once each).
    #[serde(default)]
    pub gave_up: BTreeMap<String, String>,
    /// The items reported not applicable to this device, so each is
    /// reported once (again only after it applied in between).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub not_applicable: std::collections::BTreeSet<String>,
    /// Per item installed through the repositories, the way back to what
    /// it upgraded (kept until the item is retracted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub way_back: BTreeMap<String, crate::repo::way_back::WayBack>,
}

/// The agent's durable books, behind one lock.
pub struct Books {
    pub state: StateDir,
    pub journal: Journal,
    pub outbox: Outbox,
    pub memory: Memory,
}

impl Books {
    pub fn open(state: StateDir) -> Result<Books, StateError> {
        let journal = Journal::open(&state)?;
        let outbox = Outbox::open(&state)?;
        let memory = state.read_json(MEMORY_FILE)?.unwrap_or_default();
        Ok(Books { state, journal, outbox, memory })
    }

    pub fn save(&self) -> Result<(), StateError> {
        self.state.write_json(MEMORY_FILE, &self.memory)
    }

    /// Journals `step` and queues `event` (if any) in one go.
    pub(super) fn record(
        &mut self,
        item: &str,
        generation: u64,
        step: Step,
        event: Option<NewEvent>,
        now: Timestamp,
    ) -> Result<(), StateError> {
        let seq = self.journal.append(item, generation, step, now)?;
        if let Some(event) = event {
            self.outbox.push_for_journal(seq, event)?;
        }
        Ok(())
    }
}
