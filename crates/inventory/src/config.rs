//! The inventory service's slice of the LogiCore settings, typed and passed in by the binary.

use std::time::Duration;

use platform::config::Settings;
use skeleton::Basics;

/// Everything the inventory service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener, database, transport, cache, limits and revocation, as every service has them.
    pub basics: Basics,
    /// Largest CSV import body accepted (413 above).
    pub import_max_bytes: u64,
    /// Rows applied per import transaction.
    pub import_batch_rows: usize,
    /// Hold time of a reservation that names no `ttl_seconds`.
    pub reservation_ttl: Duration,
    /// Longest hold a caller may ask for.
    pub reservation_max_ttl: Duration,
    /// How often the expiry sweeper runs.
    pub sweeper_interval: Duration,
    /// Expired reservations released per sweeper transaction.
    pub sweeper_batch: u32,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Self {
        let inventory = &settings.inventory;
        Self {
            basics: Basics::from_settings(settings, inventory.port, inventory.max_body_bytes),
            import_max_bytes: inventory.import_max_bytes,
            import_batch_rows: inventory.import_batch_rows,
            reservation_ttl: Duration::from_secs(inventory.reservation_ttl_secs),
            reservation_max_ttl: Duration::from_secs(inventory.reservation_max_ttl_secs),
            sweeper_interval: Duration::from_millis(inventory.sweeper_interval_ms),
            sweeper_batch: inventory.sweeper_batch,
        }
    }
}
