//! Revoked access tokens: deactivation, a role change or a logout must stop a token at once, everywhere,
//! although a token is verified locally (no call to the users service per request).
//!
//! A process keeps a [`Revocations`] set that every token check consults ([`crate::auth::JwtKeys`]). The users
//! service records each revocation in its `revocations` table in the transaction of the change, then
//! [`Announcer::announce`]s it: into its own set at once, and on a Redis channel when Redis is on. Every other
//! process keeps its set current with a `feed`: the Redis channel for pushes (milliseconds) plus a poll of
//! the table (services) or of the users service's `/internal/revocations` (the gateway), every
//! `auth.revocation_poll_ms` without Redis and every `auth.revocation_resync_ms` with it, so a missed push
//! heals. `logicore all` hands every service of the process one set, fed by its users service.
//!
//! Rule, in whole seconds because `iat` is: revoking a user refuses every token of theirs with `iat` at or
//! before the second of the revocation, so a token issued in that same second, just before the change,
//! cannot survive it. A token the users service issues afterwards carries `iat` one second past the
//! revocation (at most a second ahead of the clock, within the verification leeway), so signing in again
//! works at once.

mod feed;
pub mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Claims, LEEWAY_SECS, now_secs};
use crate::config::{RedisSettings, Settings};

pub use feed::{Announcer, Source, TableFeed, UsersFeed, spawn_feed};

/// One revocation, as stored, pushed and served by the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// Every token of `user_id` with `iat <= issued_up_to` (Unix seconds) is refused.
    User {
        user_id: Uuid,
        issued_up_to: i64,
        /// When every such token has expired and the entry can go (Unix seconds).
        keep_until: i64,
    },
    /// The one token with this `jti` is refused (a logout).
    Token { jti: Uuid, keep_until: i64 },
}

impl Revocation {
    /// Revokes every token the user holds now. `access_ttl` bounds how long those tokens live.
    pub fn user(user_id: Uuid, access_ttl: Duration) -> Self {
        let now = now_secs();
        Self::User {
            user_id,
            issued_up_to: now,
            keep_until: now + access_ttl.as_secs() as i64 + LEEWAY_SECS as i64,
        }
    }

    /// Revokes the token with these claims.
    pub fn token(claims: &Claims) -> Self {
        Self::Token {
            jti: claims.jti,
            keep_until: claims.exp + LEEWAY_SECS as i64,
        }
    }

    pub fn keep_until(&self) -> i64 {
        match *self {
            Self::User { keep_until, .. } | Self::Token { keep_until, .. } => keep_until,
        }
    }
}

/// How often expired entries are dropped, at most.
const SWEEP_EVERY_SECS: i64 = 10;

/// The revocations a process knows of. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct Revocations(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// False while the set is empty, so the common case costs every token check one atomic load.
    any: AtomicBool,
    entries: RwLock<Entries>,
}

#[derive(Default)]
struct Entries {
    /// User id → (`issued_up_to`, `keep_until`); the latest revocation wins.
    users: HashMap<Uuid, (i64, i64)>,
    /// `jti` → `keep_until`.
    tokens: HashMap<Uuid, i64>,
    swept_at: i64,
}

impl Entries {
    fn sweep(&mut self, now: i64) {
        self.users.retain(|_, (_, keep_until)| *keep_until >= now);
        self.tokens.retain(|_, keep_until| *keep_until >= now);
        self.swept_at = now;
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.0.entries.read().unwrap_or_else(|e| e.into_inner());
        f.debug_struct("Revocations")
            .field("users", &entries.users.len())
            .field("tokens", &entries.tokens.len())
            .finish()
    }
}

impl Revocations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds revocations; applying one twice, or an older one after a newer, changes nothing.
    pub fn apply(&self, revocations: impl IntoIterator<Item = Revocation>) {
        let now = now_secs();
        let mut entries = self.0.entries.write().unwrap_or_else(|e| e.into_inner());
        for revocation in revocations {
            if revocation.keep_until() < now {
                continue;
            }
            match revocation {
                Revocation::User {
                    user_id,
                    issued_up_to,
                    keep_until,
                } => {
                    let entry = entries.users.entry(user_id).or_insert((i64::MIN, 0));
                    *entry = (entry.0.max(issued_up_to), entry.1.max(keep_until));
                }
                Revocation::Token { jti, keep_until } => {
                    let entry = entries.tokens.entry(jti).or_insert(0);
                    *entry = (*entry).max(keep_until);
                }
            }
        }
        if now - entries.swept_at >= SWEEP_EVERY_SECS {
            entries.sweep(now);
        }
        self.0.any.store(
            !(entries.users.is_empty() && entries.tokens.is_empty()),
            Ordering::Release,
        );
    }

    /// Whether a token with these (verified) claims has been revoked.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        if !self.0.any.load(Ordering::Acquire) {
            return false;
        }
        let entries = self.0.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.tokens.contains_key(&claims.jti)
            || entries
                .users
                .get(&claims.sub)
                .is_some_and(|(issued_up_to, _)| claims.iat <= *issued_up_to)
    }

    /// The `iat` for a token issued to `user_id` at `now`: past any revocation of the user, so a token issued
    /// in the second of a revocation, after it, is not refused by it.
    pub fn first_valid_iat(&self, user_id: Uuid, now: i64) -> i64 {
        if !self.0.any.load(Ordering::Acquire) {
            return now;
        }
        let entries = self.0.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .users
            .get(&user_id)
            .map_or(now, |(issued_up_to, _)| now.max(issued_up_to + 1))
    }
}

/// How one service keeps its set of revocations current.
#[derive(Debug, Clone)]
pub struct RevocationOptions {
    /// The set every token check of the service consults.
    pub set: Revocations,
    /// Whether the service feeds `set` itself. `logicore all` gives every service one set, which its users
    /// service feeds, and turns this off for the others.
    pub feed: bool,
    /// Pushes through Redis (`redis.enabled`).
    pub redis: Option<RedisSettings>,
    /// How often the source of truth is polled: `auth.revocation_poll_ms` without Redis,
    /// `auth.revocation_resync_ms` with it.
    pub poll_interval: Duration,
}

impl RevocationOptions {
    /// A set of its own, fed by the service.
    pub fn from_settings(settings: &Settings) -> Self {
        let redis = settings.redis.enabled.then(|| settings.redis.clone());
        let poll_ms = if redis.is_some() {
            settings.auth.revocation_resync_ms
        } else {
            settings.auth.revocation_poll_ms
        };
        Self {
            set: Revocations::new(),
            feed: true,
            redis,
            poll_interval: Duration::from_millis(poll_ms),
        }
    }

    /// These options for a service that shares `set` with the process's users service, which feeds it.
    pub fn fed_by_users_service(&self, set: &Revocations) -> Self {
        Self {
            set: set.clone(),
            feed: false,
            ..self.clone()
        }
    }
}

/// The Redis channel revocations are pushed on.
pub(crate) fn channel(redis: &RedisSettings) -> String {
    format!("{}revocations", redis.key_prefix)
}

#[cfg(test)]
mod tests;
