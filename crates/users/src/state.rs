//! The handles every handler shares. Cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use cache::Cache;
use messaging::Messaging;
use platform::auth::{JwtKeys, Verifiers};
use platform::db::Db;
use platform::state::{HoldsKeys, Shared};

use crate::config::Config;
use crate::identities::LocalDirectory;
use crate::revoke::Revoker;
use crate::signing::Signer;

/// What every handler shares; cheap to clone.
pub type AppState = Shared<Handles>;

pub struct Handles {
    pub db: Db,
    /// Profiles and preferences (see `cached`).
    pub cache: Cache,
    /// Records the `user.*` events in the outbox of the transaction making the change (see `events`).
    pub messaging: Messaging,
    /// Verifies tokens: LogiCore's with its own keys, external ones registering their users here.
    pub keys: JwtKeys,
    /// Signs LogiCore's tokens and publishes their public keys.
    pub signer: Signer,
    /// Records revoked access tokens and makes them effective everywhere.
    pub revoker: Revoker,
    pub refresh_ttl: Duration,
    pub preferences_max_bytes: usize,
}

impl Handles {
    pub fn new(handles: &skeleton::Handles, config: &Config, signer: Signer) -> AppState {
        let basics = &config.basics;
        let verifiers = Verifiers {
            own_keys: Box::new(signer.clone()),
            directory: Arc::new(LocalDirectory::new(
                handles.db.clone(),
                handles.messaging.clone(),
            )),
        };
        Shared::new(Handles {
            db: handles.db.clone(),
            cache: handles.cache.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_verifiers(&basics.auth, basics.revocation.set.clone(), verifiers),
            signer,
            revoker: crate::revoker(config),
            refresh_ttl: Duration::from_secs(basics.auth.refresh_ttl_secs),
            preferences_max_bytes: config.preferences_max_bytes,
        })
    }
}

/// Lets the `AuthUser` extractor verify bearer tokens.
impl HoldsKeys for Handles {
    fn keys(&self) -> &JwtKeys {
        &self.keys
    }
}
