//! The handles every handler shares, and who the caller is to this service.

use std::sync::Arc;

use messaging::Messaging;
use platform::auth::{AuthUser, JwtKeys, Role};
use platform::db::Db;
use platform::idempotency::Idempotency;
use platform::state::{HoldsKeys, Shared};
use uuid::Uuid;

use crate::config::Config;
use crate::metrics::OrderMetrics;

/// What every handler shares; cheap to clone.
pub type AppState = Shared<Handles>;

pub struct Handles {
    pub db: Db,
    /// Records the `order.*` and `shipment.*` events in the outbox of the transaction making the change.
    pub messaging: Messaging,
    pub keys: JwtKeys,
    pub idempotency: Idempotency,
    pub config: Arc<Config>,
    /// Counts what the committed changes did (orders created, statuses reached, …).
    pub metrics: OrderMetrics,
}

impl Handles {
    pub fn new(handles: &skeleton::Handles, config: &Config, metrics: OrderMetrics) -> AppState {
        let basics = &config.basics;
        Shared::new(Handles {
            db: handles.db.clone(),
            messaging: handles.messaging.clone(),
            keys: JwtKeys::with_revocations(&basics.auth, basics.revocation.set.clone()),
            idempotency: Idempotency::new(config.idempotency_ttl),
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
