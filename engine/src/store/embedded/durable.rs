//! Group commit: one sled flush makes every write before it durable.
//!
//! Every acknowledged write is flushed first. While agents enroll by the
//! hundred per second, each request's own flush would seal and write a
//! small log buffer of its own, and sync it; the flushes, not the writes,
//! were most of the engine's time. So a writer that needs its writes
//! durable asks for a flush here: if none is running it runs one, covering
//! every request made so far; if one is running, it waits for the next one,
//! which covers it (a flush already under way may have missed its write).
//!
//! Correctness rests on one order: a caller's writes happen before its
//! request is numbered, and a flush covers the requests numbered before it
//! began. So a caller answered by a flush that covers its number has its
//! writes on disk.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

#[derive(Default)]
pub(super) struct GroupFlush {
    state: Mutex<FlushState>,
    finished: Condvar,
}

#[derive(Default)]
struct FlushState {
    /// Requests numbered so far.
    requested: u64,
    /// Every request up to this one is durable.
    durable: u64,
    /// A flush is under way.
    flushing: bool,
    /// The last flush that failed: the requests it covered, and why.
    failed: Option<(u64, String)>,
}

impl GroupFlush {
    fn state(&self) -> MutexGuard<'_, FlushState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns once every write this thread made before the call is on
    /// disk (`flush` runs sled's flush), or the flush that covered them
    /// failed: its error.
    pub(super) fn flush(&self, flush: impl Fn() -> Result<(), String>) -> Result<(), String> {
        let mut state = self.state();
        state.requested += 1;
        let mine = state.requested;
        loop {
            if state.durable >= mine {
                return match &state.failed {
                    // A failed flush answers the requests it covered.
                    Some((covered, reason)) if *covered >= mine => Err(reason.clone()),
                    _ => Ok(()),
                };
            }
            if state.flushing {
                state = self.finished.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.flushing = true;
            let covers = state.requested;
            drop(state);
            let outcome = flush();
            state = self.state();
            state.flushing = false;
            state.durable = covers;
            state.failed = outcome.err().map(|reason| (covers, reason));
            self.finished.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn a_lone_request_runs_its_own_flush() {
        let group = GroupFlush::default();
        let runs = AtomicU64::new(0);
        for _ in 0..3 {
            group
                .flush(|| {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
                .unwrap();
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "nothing to share: each request flushes");
    }

    #[test]
    fn a_failed_flush_fails_the_requests_it_covered_and_the_next_one_succeeds() {
        let group = GroupFlush::default();
        assert_eq!(group.flush(|| Err("disk full".into())), Err("disk full".into()));
        assert_eq!(group.flush(|| Ok(())), Ok(()));
    }

    /// Every caller's write must have been made before a flush that began
    /// after it: each flush snapshots the writes made so far, and each
    /// caller checks that the flush that answered it saw its write.
    #[test]
    fn every_caller_is_answered_by_a_flush_that_saw_its_write() {
        let group = Arc::new(GroupFlush::default());
        let written = Arc::new(AtomicU64::new(0));
        let on_disk = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, written, on_disk) = (group.clone(), written.clone(), on_disk.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        group
                            .flush(|| {
                                let seen = written.load(Ordering::SeqCst);
                                std::thread::yield_now();
                                on_disk.fetch_max(seen, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        // Writes are numbered in order, so "mine" being on
                        // disk means the snapshot reached it.
                        assert!(on_disk.load(Ordering::SeqCst) >= mine, "answered before write {mine} was flushed");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    }
}
