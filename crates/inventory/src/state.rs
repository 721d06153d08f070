//! The handles every handler shares.

use std::sync::Arc;

use axum::extract::FromRef;
use cache::Cache;
use messaging::Messaging;
use platform::auth::JwtKeys;
use platform::db::Db;

use crate::config::Config;

/// Cheap to clone.
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
    /// Product lookups and availability (see `caching`).
    pub cache: Cache,
    /// Records the `inventory.*` events of every change in its transaction.
    pub messaging: Messaging,
    pub keys: JwtKeys,
    pub config: Arc<Config>,
}

impl AppState {
    pub fn new(handles: &skeleton::Handles, config: &Config) -> Self {
        let basics = &config.basics;
        Self(Arc::new(Handles {
            db: handles.db.clone(),
            cache: handles.cache.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            config: Arc::new(config.clone()),
        }))
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl FromRef<AppState> for JwtKeys {
    fn from_ref(state: &AppState) -> Self {
        state.keys.clone()
    }
}
