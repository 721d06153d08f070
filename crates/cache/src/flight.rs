//! Single-flight: of the concurrent misses for one key, one (the leader) runs the loader and the others
//! wait for its value. The map lock is a std mutex held only for a map operation, never across `.await`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

pub(crate) type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub(crate) enum State {
    Running,
    Done(Shared),
    /// The leader's loader failed or its future was dropped: waiters try again themselves.
    Failed,
}

#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<String, watch::Sender<State>>>,
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Follower(watch::Receiver<State>),
}

impl Flights {
    pub fn join(&self, key: &str) -> Role<'_> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = running.get(key) {
            return Role::Follower(sender.subscribe());
        }
        let (sender, _) = watch::channel(State::Running);
        running.insert(key.to_owned(), sender.clone());
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_owned(),
            sender,
            finished: false,
        })
    }

    /// Waits for the leader; `None` when it failed (the caller then competes to lead).
    pub async fn wait(mut receiver: watch::Receiver<State>) -> Option<Shared> {
        let state = receiver
            .wait_for(|state| !matches!(state, State::Running))
            .await
            .ok()?
            .clone();
        match state {
            State::Done(value) => Some(value),
            State::Running | State::Failed => None,
        }
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Held by the leader. Dropping it without `finish` (loader error, cancelled request) releases the
/// waiters with `Failed`, so a waiter never hangs on a leader that went away.
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: String,
    sender: watch::Sender<State>,
    finished: bool,
}

impl LeaderGuard<'_> {
    pub fn finish(mut self, value: Shared) {
        self.release(State::Done(value));
    }

    fn release(&mut self, state: State) {
        if self.finished {
            return;
        }
        self.finished = true;
        {
            let mut running = self
                .flights
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if running
                .get(&self.key)
                .is_some_and(|s| s.same_channel(&self.sender))
            {
                running.remove(&self.key);
            }
        }
        self.sender.send_replace(state);
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        self.release(State::Failed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_value_and_a_dropped_leader_releases_them() {
        let flights = Flights::default();
        let Role::Leader(leader) = flights.join("k") else {
            panic!("first caller leads")
        };
        let Role::Follower(waiting) = flights.join("k") else {
            panic!("second caller follows")
        };
        leader.finish(Arc::new(7_u32));
        let value = Flights::wait(waiting).await.expect("value");
        assert_eq!(value.downcast_ref::<u32>(), Some(&7));
        assert_eq!(flights.in_flight(), 0);

        let Role::Leader(leader) = flights.join("k") else {
            panic!("a new flight starts after the last one ended")
        };
        let Role::Follower(waiting) = flights.join("k") else {
            panic!("follows")
        };
        drop(leader);
        assert!(Flights::wait(waiting).await.is_none());
        assert_eq!(flights.in_flight(), 0);
    }
}
