//! The handles every handler shares, and who the caller is to this service.

use std::sync::Arc;

use axum::extract::FromRef;
use messaging::Messaging;
use platform::auth::{AuthUser, JwtKeys, Role};
use platform::db::Db;
use platform::idempotency::Idempotency;
use uuid::Uuid;

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
    /// Records the `order.*` and `shipment.*` events in the outbox of the transaction making the change.
    pub messaging: Messaging,
    pub keys: JwtKeys,
    pub idempotency: Idempotency,
    pub config: Arc<Config>,
}

impl AppState {
    pub fn new(handles: &skeleton::Handles, config: &Config) -> Self {
        let basics = &config.basics;
        Self(Arc::new(Handles {
            db: handles.db.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            idempotency: Idempotency::new(config.idempotency_ttl),
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

/// The caller as the orders rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// admin, manager, dispatcher: every order and shipment.
    Staff(Uuid),
    /// Only shipments assigned to them.
    Driver(Uuid),
    /// Only their own orders (and those orders' shipments).
    Customer(Uuid),
}

impl Caller {
    pub fn of(user: &AuthUser) -> Self {
        match user.role() {
            Role::Admin | Role::Manager | Role::Dispatcher => Caller::Staff(user.id()),
            Role::Driver => Caller::Driver(user.id()),
            Role::Customer => Caller::Customer(user.id()),
        }
    }

    pub fn id(self) -> Uuid {
        match self {
            Caller::Staff(id) | Caller::Driver(id) | Caller::Customer(id) => id,
        }
    }
}
