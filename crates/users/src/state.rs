//! The handles every handler shares. Cheap to clone.

use std::time::Duration;

use axum::extract::FromRef;
use cache::Cache;
use messaging::Messaging;
use platform::auth::JwtKeys;
use platform::db::Db;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// Profiles and preferences (see `cached`).
    pub cache: Cache,
    /// Records the `user.*` events in the outbox of the transaction making the change (see `events`).
    pub messaging: Messaging,
    pub keys: JwtKeys,
    pub refresh_ttl: Duration,
    pub preferences_max_bytes: usize,
}

impl AppState {
    pub fn new(db: Db, cache: Cache, messaging: Messaging, config: &Config) -> Self {
        Self {
            db,
            cache,
            messaging,
            keys: JwtKeys::new(&config.auth),
            refresh_ttl: Duration::from_secs(config.auth.refresh_ttl_secs),
            preferences_max_bytes: config.preferences_max_bytes,
        }
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}
