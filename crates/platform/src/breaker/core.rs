//! The breaker's state machine, driven by an explicit clock so its window math is testable without
//! waiting. Callers hold the breaker's mutex around each method; none of them awaits.

use std::time::Instant;

use super::window::Window;
use super::{BreakerConfig, BreakerState, Rejected};

/// A state change, logged and exported after the lock is released.
pub(super) struct Transition {
    pub(super) from: BreakerState,
    pub(super) to: BreakerState,
    pub(super) successes: u64,
    pub(super) failures: u64,
    /// When it happened: for a move to open, the moment the reset timeout starts.
    pub(super) at: Instant,
}

pub(super) struct Core {
    pub(super) state: BreakerState,
    /// Bumped on every transition, so an outcome from a permit of an earlier state is not mistaken for
    /// a trial result.
    generation: u64,
    opened_at: Instant,
    trials_admitted: u32,
    pub(super) window: Window,
}

impl Core {
    pub(super) fn new(config: &BreakerConfig, now: Instant) -> Self {
        Self {
            state: BreakerState::Closed,
            generation: 0,
            opened_at: now,
            trials_admitted: 0,
            window: Window::new(config.rolling_window, config.buckets, now),
        }
    }

    fn transition(&mut self, to: BreakerState, now: Instant) -> Transition {
        let (successes, failures) = self.window.totals(now);
        let from = self.state;
        self.state = to;
        self.generation += 1;
        self.trials_admitted = 0;
        match to {
            BreakerState::Open => self.opened_at = now,
            // A fresh window: the failures that opened the breaker must not trip it again at once.
            BreakerState::Closed => self.window.clear(),
            BreakerState::HalfOpen => {}
        }
        Transition {
            from,
            to,
            successes,
            failures,
            at: now,
        }
    }

    pub(super) fn effective_state(&self, config: &BreakerConfig, now: Instant) -> BreakerState {
        if self.state == BreakerState::Open && now >= self.opened_at + config.reset_timeout {
            BreakerState::HalfOpen
        } else {
            self.state
        }
    }

    /// Admits a call or says how long to wait. May move open → half-open.
    pub(super) fn acquire(
        &mut self,
        config: &BreakerConfig,
        now: Instant,
    ) -> (Result<Ticket, Rejected>, Option<Transition>) {
        let mut transition = None;
        if self.state == BreakerState::Open {
            let reopens = self.opened_at + config.reset_timeout;
            if now < reopens {
                self.window.record_rejection(now);
                return (
                    Err(Rejected {
                        retry_after: reopens - now,
                    }),
                    None,
                );
            }
            transition = Some(self.transition(BreakerState::HalfOpen, now));
        }
        let ticket = match self.state {
            BreakerState::HalfOpen if self.trials_admitted >= config.half_open_max_calls => {
                self.window.record_rejection(now);
                // The trial's own deadline bounds how long until the breaker decides again.
                Err(Rejected {
                    retry_after: config.timeout,
                })
            }
            BreakerState::HalfOpen => {
                self.trials_admitted += 1;
                Ok(Ticket {
                    generation: self.generation,
                    trial: true,
                })
            }
            _ => Ok(Ticket {
                generation: self.generation,
                trial: false,
            }),
        };
        (ticket, transition)
    }

    pub(super) fn record(
        &mut self,
        config: &BreakerConfig,
        ticket: Ticket,
        failed: bool,
        now: Instant,
    ) -> Option<Transition> {
        if ticket.trial {
            if ticket.generation != self.generation || self.state != BreakerState::HalfOpen {
                return None;
            }
            let to = if failed {
                BreakerState::Open
            } else {
                BreakerState::Closed
            };
            return Some(self.transition(to, now));
        }
        if self.state != BreakerState::Closed {
            // A late answer to a call admitted before the breaker opened says nothing new.
            return None;
        }
        self.window.record(failed, now);
        if !failed {
            return None;
        }
        let (successes, failures) = self.window.totals(now);
        let volume = successes + failures;
        let tripped = volume >= u64::from(config.volume_threshold)
            && failures * 100 >= u64::from(config.error_threshold_percent) * volume;
        tripped.then(|| self.transition(BreakerState::Open, now))
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    generation: u64,
    pub(super) trial: bool,
}
