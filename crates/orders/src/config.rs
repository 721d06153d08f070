//! The orders service's slice of the LogiCore settings, typed and passed in by the binary.

use std::time::Duration;

use platform::config::Settings;
use skeleton::Basics;

/// Everything the orders service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener, database, transport, limits and revocation, as every service has them.
    pub basics: Basics,
    /// Currency of orders that name none.
    pub default_currency: String,
    /// A pending order that inventory neither confirmed nor rejected within this long expires.
    pub pending_ttl: Duration,
    pub sweeper_interval: Duration,
    pub sweeper_batch: u32,
    /// How long an `Idempotency-Key` and its stored response are kept.
    pub idempotency_ttl: Duration,
    /// Whether a new shipment needs a proof of delivery unless its request says otherwise.
    pub proof_required_by_default: bool,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Self {
        let orders = &settings.orders;
        Self {
            basics: Basics::from_settings(settings, orders.port, orders.max_body_bytes),
            default_currency: orders.default_currency.clone(),
            pending_ttl: Duration::from_secs(orders.pending_ttl_secs),
            sweeper_interval: Duration::from_millis(orders.sweeper_interval_ms),
            sweeper_batch: orders.sweeper_batch,
            idempotency_ttl: Duration::from_secs(orders.idempotency_ttl_secs),
            proof_required_by_default: orders.proof_required_by_default,
        }
    }
}
