//! When each device last checked in: every authenticated agent request (a
//! poll of its desired state, an inventory, events) moves its "last seen",
//! so a healthy device that has nothing to report never looks offline.
//!
//! Kept in memory, not written per request: polls are the engine's hottest
//! path, and a store write each would cost far more than the answer. The
//! store's `last_seen` moves with every inventory and event batch; what a
//! view shows is the later of the two. After a restart a device shows its
//! stored time until its next poll, minutes at most. On a shared store
//! each replica writes the check-ins it saw every [`FLUSH_EVERY`] (one
//! statement for all of them), so the leader's views show devices that
//! poll another replica as seen too.

use std::sync::Mutex;

use crate::store::fleet::DeviceRecord;

/// Noted on every poll: hashed fast.
type HashMap<K, V> = foldhash::HashMap<K, V>;

/// How often a replica on a shared store writes the check-ins it saw.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, Default)]
pub struct CheckIns {
    last: Mutex<HashMap<String, jiff::Timestamp>>,
    /// Check-ins not yet written to a shared store.
    unwritten: Mutex<HashMap<String, jiff::Timestamp>>,
}

impl CheckIns {
    /// Notes that `device` checked in at `at` (a later time wins).
    pub fn note(&self, device: &str, at: jiff::Timestamp) {
        for map in [&self.last, &self.unwritten] {
            let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match map.get_mut(device) {
                Some(seen) => *seen = (*seen).max(at),
                None => {
                    map.insert(device.to_owned(), at);
                }
            }
        }
    }

    /// The check-ins noted since the last call, to write to the store.
    pub fn take_unwritten(&self) -> Vec<(String, jiff::Timestamp)> {
        let mut unwritten = self.unwritten.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::take(&mut *unwritten).into_iter().collect()
    }

    /// When `device` last checked in since the engine started.
    pub fn last(&self, device: &str) -> Option<jiff::Timestamp> {
        self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(device).copied()
    }

    /// Moves each record's `last_seen` to its latest check-in.
    pub fn apply(&self, record: &mut DeviceRecord) {
        if let Some(at) = self.last(&record.id) {
            record.last_seen = record.last_seen.max(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_check_in_wins() {
        let check_ins = CheckIns::default();
        let t = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(check_ins.last("ws-01"), None);
        check_ins.note("ws-01", t("2026-12-05T10:00:00Z"));
        check_ins.note("ws-01", t("2026-12-05T09:00:00Z"));
        assert_eq!(check_ins.last("ws-01"), Some(t("2026-12-05T10:00:00Z")));
    }
}
