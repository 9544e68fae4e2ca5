//! Acknowledged rewrites of history: `patchward ack-rewrite SHA` lets the
//! reconciler follow a force-pushed branch to that commit, once. Kept in
//! the store, so a restart neither forgets nor repeats one.

use std::collections::BTreeSet;

use super::Engine;
use crate::store::StoreError;

const ACKNOWLEDGED: &str = "acknowledged-rewrites";

impl Engine {
    /// Acknowledges a rewrite of history to `commit` (`patchward
    /// ack-rewrite`): the reconciler may follow it once.
    pub fn acknowledge_rewrite(&self, commit: &str) -> Result<(), StoreError> {
        let _guard = self.acknowledgements.lock().unwrap_or_else(|p| p.into_inner());
        let mut acknowledged: BTreeSet<String> =
            crate::store::Store::wait(self.store.engine_state(ACKNOWLEDGED)).map(Option::unwrap_or_default)?;
        acknowledged.insert(commit.to_owned());
        crate::store::Store::wait(self.store.set_engine_state(ACKNOWLEDGED, &acknowledged))
    }

    /// The acknowledged rewrites not yet used.
    pub fn acknowledged_rewrites(&self) -> Result<BTreeSet<String>, StoreError> {
        crate::store::Store::wait(self.store.engine_state(ACKNOWLEDGED)).map(Option::unwrap_or_default)
    }

    /// Uses up the acknowledgement of `commit`.
    pub fn use_acknowledgement(&self, commit: &str) -> Result<(), StoreError> {
        let _guard = self.acknowledgements.lock().unwrap_or_else(|p| p.into_inner());
        let mut acknowledged: BTreeSet<String> =
            crate::store::Store::wait(self.store.engine_state(ACKNOWLEDGED)).map(Option::unwrap_or_default)?;
        if acknowledged.remove(commit) {
            crate::store::Store::wait(self.store.set_engine_state(ACKNOWLEDGED, &acknowledged))?;
        }
        Ok(())
    }
}
