//! The inventory service's section of the settings (`[inventory]`) and what the service makes of it.

use std::time::Duration;

use platform::config::{ConfigError, Section, Settings, check_sweeper};
use serde::Deserialize;
use skeleton::Basics;

/// `[inventory]`, registered with the loader by the binary's service list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventorySettings {
    pub port: u16,
    /// At least 1024, as every listener's body limit (checked with the rest by key name).
    pub max_body_bytes: usize,
    /// Largest CSV body `POST /api/v1/inventory/import` accepts (413 above).
    pub import_max_bytes: u64,
    /// Rows applied per import transaction.
    pub import_batch_rows: usize,
    /// Hold time of a reservation that names no `ttl_seconds`.
    pub reservation_ttl_secs: u64,
    /// Longest `ttl_seconds` a caller may ask for.
    pub reservation_max_ttl_secs: u64,
    /// How often the sweeper looks for expired holds.
    pub sweeper_interval_ms: u64,
    /// Expired reservations released per sweeper transaction.
    pub sweeper_batch: u32,
    /// How often the `inventory_stock_below_reorder_point` gauge is read from the database.
    pub stock_gauge_interval_ms: u64,
}

impl Section for InventorySettings {
    const NAME: &'static str = crate::NAME;
    const DEFAULTS: &'static str = include_str!("defaults.toml");

    fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            self.import_max_bytes >= 1024,
            "import_max_bytes",
            "must be at least 1024",
        );
        check(
            (1..=50_000).contains(&self.import_batch_rows),
            "import_batch_rows",
            "must be between 1 and 50000",
        );
        check(
            self.reservation_ttl_secs >= 1
                && self.reservation_ttl_secs <= self.reservation_max_ttl_secs,
            "reservation_ttl_secs",
            "must be at least 1 and at most inventory.reservation_max_ttl_secs",
        );
        check_sweeper(check, self.sweeper_interval_ms, self.sweeper_batch);
        check(
            self.stock_gauge_interval_ms >= 100,
            "stock_gauge_interval_ms",
            "must be at least 100",
        );
    }
}

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
    /// How often the low-stock gauge is read from the database.
    pub stock_gauge_interval: Duration,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let inventory: InventorySettings = settings.section()?;
        Ok(Self {
            basics: Basics::from_settings(settings, inventory.port, inventory.max_body_bytes),
            import_max_bytes: inventory.import_max_bytes,
            import_batch_rows: inventory.import_batch_rows,
            reservation_ttl: Duration::from_secs(inventory.reservation_ttl_secs),
            reservation_max_ttl: Duration::from_secs(inventory.reservation_max_ttl_secs),
            sweeper_interval: Duration::from_millis(inventory.sweeper_interval_ms),
            sweeper_batch: inventory.sweeper_batch,
            stock_gauge_interval: Duration::from_millis(inventory.stock_gauge_interval_ms),
        })
    }
}
