//! The handles every handler shares.

use std::sync::Arc;

use cache::Cache;
use messaging::Messaging;
use platform::auth::JwtKeys;
use platform::db::Db;
use platform::state::{HoldsKeys, Shared};

use crate::config::Config;

/// What every handler shares; cheap to clone.
pub type AppState = Shared<Handles>;

pub struct Handles {
    pub db: Db,
    /// Product lookups and availability (see `caching`).
    pub cache: Cache,
    /// Records the `inventory.*` events of every change in its transaction.
    pub messaging: Messaging,
    pub keys: JwtKeys,
    pub config: Arc<Config>,
}

impl Handles {
    pub fn new(handles: &skeleton::Handles, config: &Config) -> AppState {
        let basics = &config.basics;
        Shared::new(Handles {
            db: handles.db.clone(),
            cache: handles.cache.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            config: Arc::new(config.clone()),
        })
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl HoldsKeys for Handles {
    fn keys(&self) -> &JwtKeys {
        &self.keys
    }
}
