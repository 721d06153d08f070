//! The handles every handler shares.

use std::sync::Arc;

use cache::Cache;
use messaging::Messaging;
use platform::auth::JwtKeys;
use platform::db::Db;
use platform::state::{HoldsKeys, Shared};

use crate::config::Config;
use crate::metrics::InventoryMetrics;

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
    /// Reservations, shortages and import rows, counted once their change committed.
    pub metrics: InventoryMetrics,
}

impl Handles {
    pub fn new(
        handles: &skeleton::Handles,
        config: &Config,
        metrics: InventoryMetrics,
    ) -> AppState {
        let basics = &config.basics;
        Shared::new(Handles {
            db: handles.db.clone(),
            cache: handles.cache.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            config: Arc::new(config.clone()),
            metrics,
        })
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl HoldsKeys for Handles {
    fn keys(&self) -> &JwtKeys {
        &self.keys
    }
}
