//! The `users.profile-cache` consumer: drops the cached profile of a user whose account changed.
//!
//! Writes made by this process already drop the entry right after they commit (`cached::forget`). This
//! consumer covers the writes whose own invalidation cannot reach this cache or never happened:
//! `logicore users create-admin` runs in a process of its own (with the in-memory backend, a cache of its
//! own), and any writer, another users instance sharing Redis included, may stop between its commit and its
//! invalidation. Without this consumer such a write leaves the old role or status served until
//! `cached::PROFILE_TTL` runs out. Events arrive only after their transaction committed, so a read that
//! refills the entry after the eviction sees the new row.
//!
//! The instances of a service share one group, so each event reaches one instance: enough with Redis,
//! where they share the cache too. Several instances each with an in-memory cache still rely on the TTL
//! for the caches the event did not reach; run them with Redis.

use cache::Cache;
use futures::future::BoxFuture;
use messaging::{Envelope, EventType, Handler, Outcome};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::cached;

pub const GROUP: &str = "users.profile-cache";

/// Every event after which a cached profile may be stale. `user.created` is not among them: ids are made
/// at insert, so no profile of a new user can have been cached.
pub const PATTERNS: [&str; 3] = [
    EventType::UserUpdated.as_str(),
    EventType::UserRoleChanged.as_str(),
    EventType::UserDeactivated.as_str(),
];

pub struct ProfileEviction {
    cache: Cache,
}

impl ProfileEviction {
    pub fn new(cache: Cache) -> Self {
        Self { cache }
    }
}

impl Handler for ProfileEviction {
    fn handle<'a>(
        &'a self,
        _connection: &'a mut PgConnection,
        event: &'a Envelope,
        _attempt: u32,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            // Every `user.*` event's aggregate is the user, whatever its payload version.
            let Ok(user_id) = Uuid::parse_str(&event.aggregate_id) else {
                return Outcome::Reject(format!(
                    "aggregate id {:?} of a {} event is not a user id",
                    event.aggregate_id, event.event_type
                ));
            };
            // Dropping is idempotent, so a handler transaction that fails to commit and runs again is
            // harmless; with Redis unreachable the cache queues the invalidation and replays it.
            cached::forget(&self.cache, user_id).await;
            tracing::debug!(%user_id, event_type = %event.event_type, "cached profile dropped");
            Outcome::Success
        })
    }
}
