//! The ledger: when each (rule, patch) pair first matched. A rule's stage
//! delays count from the later of the patch's release and this instant, so
//! a rule added today sends old patches through the pilot first, today.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LedgerEntry {
    pub rule: String,
    pub patch: String,
    #[schemars(with = "String")]
    pub at: jiff::Timestamp,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Rule → patch → first match: looked up by borrowed names, since the
    /// planner asks once per matched pair.
    first_matched: BTreeMap<String, BTreeMap<String, jiff::Timestamp>>,
}

impl Ledger {
    pub fn first_matched(&self, rule: &str, patch: &str) -> Option<jiff::Timestamp> {
        self.first_matched.get(rule)?.get(patch).copied()
    }

    /// Records the first match; a later one never moves it.
    pub fn record(&mut self, entry: LedgerEntry) {
        self.first_matched.entry(entry.rule).or_default().entry(entry.patch).or_insert(entry.at);
    }

    pub fn entries(&self) -> impl Iterator<Item = LedgerEntry> + '_ {
        self.first_matched.iter().flat_map(|(rule, patches)| {
            patches.iter().map(move |(patch, at)| LedgerEntry { rule: rule.clone(), patch: patch.clone(), at: *at })
        })
    }

    pub fn len(&self) -> usize {
        self.first_matched.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.first_matched.is_empty()
    }
}

impl FromIterator<LedgerEntry> for Ledger {
    fn from_iter<I: IntoIterator<Item = LedgerEntry>>(iter: I) -> Self {
        let mut ledger = Ledger::default();
        for entry in iter {
            ledger.record(entry);
        }
        ledger
    }
}

/// The (rule, patch) pairs that match now and never did before: what the
/// engine adds to its ledger.
pub(super) fn additions(
    ledger: &Ledger,
    policy: &super::CompiledPolicy,
    catalog: &super::PlanCatalog,
    matches: &[super::rules::RuleMatches],
    now: jiff::Timestamp,
) -> Vec<LedgerEntry> {
    let mut added = Vec::new();
    for (rule, outcome) in policy.rules.iter().zip(matches) {
        for &patch in &outcome.matched {
            let id = catalog.patches[patch as usize].id();
            if ledger.first_matched(&rule.name, id).is_none() {
                added.push(LedgerEntry { rule: rule.name.clone(), patch: id.to_owned(), at: now });
            }
        }
    }
    added
}
