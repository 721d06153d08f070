//! The inventory service's section (`[inventory]`): its settings and their rules.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InventorySettings {
    pub port: u16,
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
}

impl InventorySettings {
    /// Every rule of this section broken, reported through `check(ok, dotted key, rule)`.
    pub(super) fn validate(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let inv = self;
        check(
            inv.max_body_bytes >= 1024,
            "inventory.max_body_bytes",
            "must be at least 1024",
        );
        check(
            inv.import_max_bytes >= 1024,
            "inventory.import_max_bytes",
            "must be at least 1024",
        );
        check(
            (1..=50_000).contains(&inv.import_batch_rows),
            "inventory.import_batch_rows",
            "must be between 1 and 50000",
        );
        check(
            inv.reservation_ttl_secs >= 1
                && inv.reservation_ttl_secs <= inv.reservation_max_ttl_secs,
            "inventory.reservation_ttl_secs",
            "must be at least 1 and at most inventory.reservation_max_ttl_secs",
        );
        check(
            inv.sweeper_interval_ms >= 10,
            "inventory.sweeper_interval_ms",
            "must be at least 10",
        );
        check(
            (1..=10_000).contains(&inv.sweeper_batch),
            "inventory.sweeper_batch",
            "must be between 1 and 10000",
        );
    }
}
