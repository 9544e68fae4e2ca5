//! Re-plans of single devices, combined into batches.
//!
//! Every inventory re-plans its device before it is answered. One at a
//! time, each re-plan pays the whole of a plan's fixed costs (the
//! catalog-wide indexes, a store flush for its generation, a signal).
//! While agents enroll in hundreds per second those costs dominate. So a
//! device to re-plan joins a queue. One waiter at a time is the combiner:
//! it takes the planning lock, plans every device waiting then in one call,
//! and answers each with its generation; the others sleep until answered
//! (flat combining: no extra thread, and a lone re-plan costs what it did).
//! Nobody spins: while a full plan holds the planning lock, only the
//! combiner waits for it, and the rest sleep on the queue.
//!
//! A batch that fails answers its devices [`Answer::Alone`]: each then
//! plans by itself, so every caller gets its own device's error.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

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

/// Devices waiting to be planned, and the answers not yet taken.
///
/// One waiter at a time is the combiner: it takes the planning lock and
/// plans every device waiting then. The others sleep until the combiner
/// answers (or gives up its turn), so none of them spins while a full plan
/// holds the planning lock.
#[derive(Default)]
pub struct ReplanQueue {
    queue: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Default)]
struct Queue {
    next: Ticket,
    waiting: Vec<(Ticket, String)>,
    answers: HashMap<Ticket, Answer>,
    /// A combiner is planning (or waiting for the planning lock).
    combining: bool,
}

/// What a waiting re-plan does next.
pub enum Turn<'a> {
    /// Its device was planned.
    Answered(Answer),
    /// Its turn to plan every device waiting.
    Combine(Combiner<'a>),
}

/// The combiner's turn: ends when it answers, or is dropped (a panic while
/// planning), which answers its batch [`Answer::Alone`].
pub struct Combiner<'a> {
    queue: &'a ReplanQueue,
    batch: Vec<(Ticket, String)>,
}

impl ReplanQueue {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `device` for re-planning.
    pub fn enqueue(&self, device: &str) -> Ticket {
        let mut queue = self.queue();
        queue.next += 1;
        let ticket = queue.next;
        queue.waiting.push((ticket, device.to_owned()));
        ticket
    }

    /// Sleeps until `ticket` is answered or it is its turn to combine.
    pub fn wait_turn(&self, ticket: Ticket) -> Turn<'_> {
        let mut queue = self.queue();
        loop {
            if let Some(answer) = queue.answers.remove(&ticket) {
                return Turn::Answered(answer);
            }
            if !queue.combining {
                queue.combining = true;
                return Turn::Combine(Combiner { queue: self, batch: Vec::new() });
            }
            queue = self.changed.wait(queue).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Combiner<'_> {
    /// Every device waiting, taken from the queue to be planned now (call
    /// it under the planning lock, so that devices queued while the lock
    /// was held join the batch).
    pub fn take(&mut self) -> &[(Ticket, String)] {
        self.batch.extend(std::mem::take(&mut self.queue.queue().waiting));
        &self.batch
    }

    /// Answers the batch taken (one answer per device) and ends the turn.
    pub fn answer(mut self, answer: impl Fn(&str) -> Answer) {
        let answers: Vec<(Ticket, Answer)> = self.batch.iter().map(|(t, id)| (*t, answer(id))).collect();
        self.batch.clear();
        self.finish(answers);
    }

    fn finish(&self, answers: Vec<(Ticket, Answer)>) {
        let mut queue = self.queue.queue();
        queue.answers.extend(answers);
        queue.combining = false;
        self.queue.changed.notify_all();
    }
}

impl Drop for Combiner<'_> {
    fn drop(&mut self) {
        let answers = self.batch.iter().map(|(t, _)| (*t, Answer::Alone)).collect();
        self.finish(answers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combine(queue: &ReplanQueue, ticket: Ticket) -> Combiner<'_> {
        match queue.wait_turn(ticket) {
            Turn::Combine(combiner) => combiner,
            Turn::Answered(answer) => panic!("answered {answer:?}, not a turn"),
        }
    }

    #[test]
    fn a_batch_answers_every_ticket_it_took_and_only_those() {
        let queue = ReplanQueue::default();
        let (a, b) = (queue.enqueue("a"), queue.enqueue("b"));
        let mut combiner = combine(&queue, a);
        assert_eq!(combiner.take(), [(a, "a".to_owned()), (b, "b".to_owned())]);
        let late = queue.enqueue("c");
        combiner.answer(|id| Answer::Planned(Some(id.len() as u64)));
        assert!(matches!(queue.wait_turn(a), Turn::Answered(Answer::Planned(Some(1)))));
        assert!(matches!(queue.wait_turn(b), Turn::Answered(Answer::Planned(Some(1)))));
        let mut next = combine(&queue, late);
        assert_eq!(next.take(), [(late, "c".to_owned())], "c joined after the batch was taken");
    }

    #[test]
    fn a_combiner_dropped_before_answering_sends_its_batch_to_plan_alone() {
        let queue = ReplanQueue::default();
        let a = queue.enqueue("a");
        let mut combiner = combine(&queue, a);
        combiner.take();
        drop(combiner);
        assert!(matches!(queue.wait_turn(a), Turn::Answered(Answer::Alone)));
    }

    #[test]
    fn waiters_sleep_until_the_combiner_answers() {
        let queue = std::sync::Arc::new(ReplanQueue::default());
        let first = queue.enqueue("first");
        let mut combiner = combine(&queue, first);
        let waiter = {
            let queue = queue.clone();
            let ticket = queue.enqueue("second");
            std::thread::spawn(move || match queue.wait_turn(ticket) {
                Turn::Answered(answer) => answer,
                Turn::Combine(_) => panic!("a second combiner while the first plans"),
            })
        };
        // The waiter was queued before the batch is taken, so the batch holds it.
        assert_eq!(combiner.take().len(), 2);
        combiner.answer(|_| Answer::Planned(Some(3)));
        assert_eq!(waiter.join().unwrap(), Answer::Planned(Some(3)));
    }
}
