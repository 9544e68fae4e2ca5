//! A bounded history of timestamped samples: the last `keep` of them, and
//! at most `max_samples`, so memory stays fixed whatever the poll rate.

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};

#[derive(Clone, Debug)]
pub struct SampleHistory {
    keep: SignedDuration,
    max_samples: usize,
    samples: VecDeque<(Timestamp, f64)>,
}

impl SampleHistory {
    pub fn new(keep: SignedDuration, max_samples: usize) -> SampleHistory {
        SampleHistory { keep, max_samples: max_samples.max(1), samples: VecDeque::new() }
    }

    /// Records `value` at `at`. A sample older than the newest one means
    /// the clock went back: the history no longer says what happened
    /// "in the last N minutes", so it starts over.
    pub fn push(&mut self, at: Timestamp, value: f64) {
        if self.samples.back().is_some_and(|(last, _)| *last > at) {
            self.samples.clear();
        }
        self.samples.push_back((at, value));
        let horizon = at.checked_sub(self.keep).ok();
        while let Some((first, _)) = self.samples.front() {
            let too_old = horizon.is_some_and(|h| *first < h);
            if too_old || self.samples.len() > self.max_samples {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Oldest first.
    pub fn samples(&self) -> Vec<(Timestamp, f64)> {
        self.samples.iter().copied().collect()
    }

    pub fn latest(&self) -> Option<(Timestamp, f64)> {
        self.samples.back().copied()
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Since when every sample has been below `threshold`: the time of the
    /// oldest sample of the unbroken run that reaches the newest one.
    /// `None` when the newest is not below. A run reaching back to the
    /// oldest kept sample only proves that far.
    pub fn below_since(&self, threshold: f64) -> Option<Timestamp> {
        self.samples.iter().rev().take_while(|(_, value)| *value < threshold).last().map(|(at, _)| *at)
    }
}
