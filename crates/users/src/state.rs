//! The handles every handler shares. Cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use cache::Cache;
use messaging::Messaging;
use platform::auth::JwtKeys;
use platform::db::Db;

use crate::config::Config;
use crate::revoke::Revoker;

/// What every handler shares, behind one `Arc`: axum clones the state for every request, and one
/// reference count is much cheaper than one per handle (these hold a few dozen `Arc`s and a `String`,
/// whose counters every request bounced between cores).
#[derive(Clone)]
pub struct AppState(Arc<Handles>);

impl std::ops::Deref for AppState {
    type Target = Handles;

    fn deref(&self) -> &Handles {
        &self.0
    }
}

pub struct Handles {
    pub db: Db,
    /// Profiles and preferences (see `cached`).
    pub cache: Cache,
    /// Records the `user.*` events in the outbox of the transaction making the change (see `events`).
    pub messaging: Messaging,
    pub keys: JwtKeys,
    /// Records revoked access tokens and makes them effective everywhere.
    pub revoker: Revoker,
    pub refresh_ttl: Duration,
    pub preferences_max_bytes: usize,
}

impl AppState {
    pub fn new(handles: &skeleton::Handles, config: &Config) -> Self {
        let basics = &config.basics;
        Self(Arc::new(Handles {
            db: handles.db.clone(),
            cache: handles.cache.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            revoker: crate::revoker(config),
            refresh_ttl: Duration::from_secs(basics.auth.refresh_ttl_secs),
            preferences_max_bytes: config.preferences_max_bytes,
        }))
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}
