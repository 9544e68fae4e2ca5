//! Re-plans of single devices, combined into batches.
//!
//! Every inventory re-plans its device before it is answered. One at a
//! time, each re-plan pays the whole of a plan's fixed costs (the
//! catalog-wide indexes, a store flush for its generation, a signal).
//! While agents enroll in hundreds per second those costs dominate. So a
//! device to re-plan joins a queue and waits; whoever takes the planning
//! lock plans every device waiting, in one call, and answers each with its
//! generation (flat combining: no extra thread, and a lone re-plan costs
//! what it did).
//!
//! A batch that fails answers its devices [`Answer::Alone`]: each then
//! plans by itself, so every caller gets its own device's error.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// What a waiting re-plan is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Planned in a batch: the device's generation (`None` while no
    /// policy is in force, or for a device the store does not know).
    Planned(Option<u64>),
    /// The batch failed: plan this device alone.
    Alone,
}

/// A re-plan's place in the queue.
pub type Ticket = u64;

#[derive(Default)]
pub struct ReplanQueue {
    queue: Mutex<Queue>,
    answered: Condvar,
}

#[derive(Default)]
struct Queue {
    next: Ticket,
    waiting: Vec<(Ticket, String)>,
    answers: HashMap<Ticket, Answer>,
}

impl ReplanQueue {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `device` for re-planning.
    pub fn enqueue(&self, device: &str) -> Ticket {
        let mut queue = self.queue();
        queue.next += 1;
        let ticket = queue.next;
        queue.waiting.push((ticket, device.to_owned()));
        ticket
    }

    /// Every device waiting, taken from the queue to be planned now.
    pub fn drain(&self) -> Vec<(Ticket, String)> {
        std::mem::take(&mut self.queue().waiting)
    }

    /// Answers the tickets planned, and wakes their waiters.
    pub fn answer_all(&self, answers: impl IntoIterator<Item = (Ticket, Answer)>) {
        self.queue().answers.extend(answers);
        self.answered.notify_all();
    }

    /// `ticket`'s answer, waiting for it at most `patience`.
    pub fn wait(&self, ticket: Ticket, patience: Duration) -> Option<Answer> {
        let mut queue = self.queue();
        if let Some(answer) = queue.answers.remove(&ticket) {
            return Some(answer);
        }
        queue = self.answered.wait_timeout(queue, patience).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        queue.answers.remove(&ticket)
    }

    /// `ticket`'s answer, if it has one now.
    pub fn answer(&self, ticket: Ticket) -> Option<Answer> {
        self.queue().answers.remove(&ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_answers_every_ticket_it_took_and_only_those() {
        let queue = ReplanQueue::default();
        let (a, b) = (queue.enqueue("a"), queue.enqueue("b"));
        let batch = queue.drain();
        assert_eq!(batch, vec![(a, "a".to_owned()), (b, "b".to_owned())]);
        let late = queue.enqueue("c");
        queue.answer_all(batch.iter().map(|(t, _)| (*t, Answer::Planned(Some(7)))));
        assert_eq!(queue.wait(a, Duration::ZERO), Some(Answer::Planned(Some(7))));
        assert_eq!(queue.answer(b), Some(Answer::Planned(Some(7))));
        assert_eq!(queue.answer(late), None, "c joined after the batch was taken");
        assert_eq!(queue.drain(), vec![(late, "c".to_owned())]);
        assert_eq!(queue.answer(a), None, "an answer is taken once");
    }
}
