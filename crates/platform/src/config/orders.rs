//! The orders service's section (`[orders]`): its settings and their rules.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrdersSettings {
    pub port: u16,
    pub max_body_bytes: usize,
    /// ISO 4217 code of orders that name no `currency`.
    pub default_currency: String,
    /// A pending order not confirmed or rejected within this long expires.
    pub pending_ttl_secs: u64,
    /// How often the sweeper looks for lapsed pending orders.
    pub sweeper_interval_ms: u64,
    /// Lapsed orders expired per sweeper transaction.
    pub sweeper_batch: u32,
    /// How long an `Idempotency-Key` and its stored response are kept.
    pub idempotency_ttl_secs: u64,
    /// Whether shipments need a proof of delivery before `delivered`, unless the request says otherwise.
    pub proof_required_by_default: bool,
}

impl OrdersSettings {
    /// Every rule of this section broken, reported through `check(ok, dotted key, rule)`.
    pub(super) fn validate(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let orders = self;
        check(
            orders.max_body_bytes >= 1024,
            "orders.max_body_bytes",
            "must be at least 1024",
        );
        check(
            crate::currency::is_active(&orders.default_currency),
            "orders.default_currency",
            "must be an active ISO 4217 code, such as EUR",
        );
        check(
            orders.pending_ttl_secs >= 1,
            "orders.pending_ttl_secs",
            "must be at least 1",
        );
        check(
            orders.sweeper_interval_ms >= 10,
            "orders.sweeper_interval_ms",
            "must be at least 10",
        );
        check(
            (1..=10_000).contains(&orders.sweeper_batch),
            "orders.sweeper_batch",
            "must be between 1 and 10000",
        );
        check(
            orders.idempotency_ttl_secs >= 60,
            "orders.idempotency_ttl_secs",
            "must be at least 60",
        );
    }
}
