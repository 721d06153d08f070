//! Counting what a transaction did only once it has committed. A use case notes what happened as it goes
//! (an order created, a shipment delivered) in a [`Tally`]; whoever commits the transaction hands the tally
//! to its metrics afterwards. So a rolled-back write counts nothing, and a body rerun after a serialization
//! failure counts once: the runner restarts the tally at each run. Consumers, whose transactions the
//! messaging crate commits, keep each event's notes in [`ByEvent`] until their `after_commit` hook.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use uuid::Uuid;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while noting leaves a list that is still a list: keep counting rather than poisoning metrics.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one transaction did, in the order it happened. Clones share the list, so a transaction body (which
/// owns its inputs, as it may run more than once) notes into its runner's tally.
#[derive(Debug)]
pub struct Tally<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Tally<T> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }
}

impl<T> Clone for Tally<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Tally<T> {
    /// Forgets what an earlier run of the body noted: that run did not commit.
    pub fn restart(&self) {
        locked(&self.0).clear();
    }

    pub fn note(&self, what: T) {
        locked(&self.0).push(what);
    }

    /// What was noted, leaving the tally empty.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *locked(&self.0))
    }
}

/// Most events whose notes wait for their commit. Only events whose transaction failed to commit and that
/// are redelivered elsewhere (another instance) leave notes behind; past this many the stale ones are
/// dropped so they cannot pile up. It is far above what is ever in flight (consumer lanes × batch size).
const MAX_WAITING_EVENTS: usize = 10_000;

/// The notes of the events a consumer applied, until their transaction commits.
#[derive(Debug)]
pub struct ByEvent<T>(Mutex<HashMap<Uuid, Vec<T>>>);

impl<T> Default for ByEvent<T> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<T> ByEvent<T> {
    /// Keeps what applying `event` noted, replacing the notes of an earlier delivery of it (which did not
    /// commit, or it would not be delivered again).
    pub fn keep(&self, event: Uuid, notes: Vec<T>) {
        let mut waiting = locked(&self.0);
        if waiting.len() >= MAX_WAITING_EVENTS {
            waiting.clear();
        }
        if notes.is_empty() {
            waiting.remove(&event);
        } else {
            waiting.insert(event, notes);
        }
    }

    /// The notes of `event`, whose transaction has committed.
    pub fn committed(&self, event: Uuid) -> Vec<T> {
        locked(&self.0).remove(&event).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_tally_forgets_the_earlier_run() {
        let tally = Tally::default();
        let body = tally.clone();
        body.note(1);
        tally.restart();
        body.note(2);
        assert_eq!(tally.take(), vec![2]);
        assert!(tally.take().is_empty());
    }

    #[test]
    fn notes_of_an_event_wait_for_its_commit_and_a_redelivery_replaces_them() {
        let waiting = ByEvent::default();
        let event = Uuid::now_v7();
        waiting.keep(event, vec!["first delivery"]);
        waiting.keep(event, vec!["second delivery"]);
        assert_eq!(waiting.committed(event), vec!["second delivery"]);
        assert!(waiting.committed(event).is_empty());
    }
}
