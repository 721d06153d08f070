//! Whether Redis is usable, the invalidations waiting for it, and the `/readyz` check that reports it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use platform::health::{Check, CheckReport};
use serde_json::json;

use crate::Cache;

/// Invalidations that could not reach Redis. Until they are replayed the cache is bypassed, because Redis
/// may still hold the values they were meant to remove (after a partition rather than a restart).
#[derive(Default)]
pub(crate) struct Pending {
    pub keys: Vec<String>,
    pub tags: Vec<String>,
    /// Too many to keep: the whole namespace is dropped on recovery instead.
    pub overflow: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.tags.is_empty() && !self.overflow
    }
}

#[derive(Default)]
struct State {
    pending: Pending,
    last_error: Option<String>,
}

/// The switch that bypasses Redis: `down` is read on every command (an atomic load); the rest changes only
/// on failure and recovery.
///
/// Not a circuit breaker (`platform::breaker`), on purpose: it is closed again by replaying the
/// invalidations Redis missed, not by a trial call succeeding, because serving from a Redis that still
/// holds values meant to be removed would be wrong, however healthy it is. It needs no cool-down either:
/// the probe in `remote` looks at Redis on a fixed short interval, which also bounds how long a recovered
/// Redis goes unused.
#[derive(Default)]
pub(crate) struct Degraded {
    down: AtomicBool,
    state: Mutex<State>,
}

impl Degraded {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn mark_down(&self, error: &str) {
        let mut state = self.state();
        state.last_error = Some(error.to_owned());
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(error, "cache: redis unavailable, requests bypass the cache");
        }
    }

    /// Records invalidations to replay and keeps the cache bypassed until they are.
    pub fn queue(&self, add: impl FnOnce(&mut Pending)) {
        let mut state = self.state();
        add(&mut state.pending);
        if !self.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                "cache: an invalidation failed, requests bypass the cache until it is replayed"
            );
        }
    }

    pub fn take_pending(&self) -> Pending {
        std::mem::take(&mut self.state().pending)
    }

    /// Re-enables Redis unless invalidations were queued meanwhile (checked under the same lock `queue`
    /// takes, so none is lost between the replay and this).
    pub fn mark_up_if_nothing_pending(&self) -> bool {
        let mut state = self.state();
        if !state.pending.is_empty() {
            return false;
        }
        state.last_error = None;
        self.down.store(false, Ordering::Release);
        true
    }

    fn report(&self) -> (bool, usize, bool, Option<String>) {
        let state = self.state();
        (
            self.is_down(),
            state.pending.keys.len() + state.pending.tags.len(),
            state.pending.overflow,
            state.last_error.clone(),
        )
    }
}

/// The cache in `/readyz`: never required, so a dead Redis shows as `degraded` and the service stays
/// ready (requests go to the database).
pub struct CacheCheck(pub(crate) Cache);

impl Check for CacheCheck {
    fn name(&self) -> &str {
        "cache"
    }

    fn required(&self) -> bool {
        false
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            let stats = self.0.stats();
            let mut report = match self.0.redis_store() {
                None => CheckReport::up(),
                Some(store) => {
                    // An idle service may not have noticed Redis going away (or coming back): ask it.
                    if !store.degraded.is_down() {
                        let _ = store.ping().await;
                    }
                    let (down, pending, overflow, error) = store.degraded.report();
                    let mut report = if down {
                        CheckReport::down(
                            error.unwrap_or_else(|| "invalidations waiting for redis".to_owned()),
                        )
                    } else {
                        CheckReport::up()
                    };
                    report
                        .details
                        .insert("pending_invalidations".into(), json!(pending));
                    if let Some(near) = &store.near {
                        report.details.insert(
                            "near_cache".into(),
                            json!({"linked": near.is_linked(), "entries": near.entry_count()}),
                        );
                    }
                    if overflow {
                        report
                            .details
                            .insert("pending_overflow".into(), json!(true));
                    }
                    report
                }
            };
            report
                .details
                .insert("backend".into(), json!(self.0.backend_name()));
            report
                .details
                .insert("hit_ratio".into(), json!(stats.hit_ratio()));
            report
        })
    }
}
