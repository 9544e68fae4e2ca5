//! Acknowledged rewrites of history: `patchward ack-rewrite SHA` lets the
//! reconciler follow a force-pushed branch to that commit, once. Kept in
//! the store, so a restart neither forgets nor repeats one.

use std::collections::BTreeSet;

use super::Engine;
use crate::store::StoreError;

const ACKNOWLEDGED: &str = "acknowledged-rewrites";

impl Engine {
    /// Acknowledges a rewrite of history to `commit` (`patchward
    /// ack-rewrite`): the reconciler may follow it once. False when it was
    /// acknowledged already (at this replica or another).
    pub fn acknowledge_rewrite(&self, commit: &str) -> Result<bool, StoreError> {
        let commit = commit.to_owned();
        let change = move |acknowledged: &mut BTreeSet<String>| acknowledged.insert(commit);
        crate::store::Store::wait(self.store.update_engine_state(ACKNOWLEDGED, change))
    }

    /// The acknowledged rewrites not yet used.
    pub fn acknowledged_rewrites(&self) -> Result<BTreeSet<String>, StoreError> {
        crate::store::Store::wait(self.store.engine_state(ACKNOWLEDGED)).map(Option::unwrap_or_default)
    }

    /// Uses up the acknowledgement of `commit`.
    pub fn use_acknowledgement(&self, commit: &str) -> Result<(), StoreError> {
        let commit = commit.to_owned();
        let change = move |acknowledged: &mut BTreeSet<String>| acknowledged.remove(&commit);
        crate::store::Store::wait(self.store.update_engine_state(ACKNOWLEDGED, change)).map(|_| ())
    }
}
