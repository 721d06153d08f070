//! The orders service's section of the settings (`[orders]`) and what the service makes of it.

use std::time::Duration;

use platform::config::{ConfigError, Section, Settings, check_sweeper};
use serde::Deserialize;
use skeleton::Basics;

/// `[orders]`, registered with the loader by the binary's service list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrdersSettings {
    pub port: u16,
    /// At least 1024, as every listener's body limit (checked with the rest by key name).
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

impl Section for OrdersSettings {
    const NAME: &'static str = crate::NAME;
    const DEFAULTS: &'static str = include_str!("defaults.toml");

    fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            platform::currency::is_active(&self.default_currency),
            "default_currency",
            "must be an active ISO 4217 code, such as EUR",
        );
        check(
            self.pending_ttl_secs >= 1,
            "pending_ttl_secs",
            "must be at least 1",
        );
        check_sweeper(check, self.sweeper_interval_ms, self.sweeper_batch);
        check(
            self.idempotency_ttl_secs >= 60,
            "idempotency_ttl_secs",
            "must be at least 60",
        );
    }
}

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
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let orders: OrdersSettings = settings.section()?;
        Ok(Self {
            basics: Basics::from_settings(settings, orders.port, orders.max_body_bytes),
            default_currency: orders.default_currency,
            pending_ttl: Duration::from_secs(orders.pending_ttl_secs),
            sweeper_interval: Duration::from_millis(orders.sweeper_interval_ms),
            sweeper_batch: orders.sweeper_batch,
            idempotency_ttl: Duration::from_secs(orders.idempotency_ttl_secs),
            proof_required_by_default: orders.proof_required_by_default,
        })
    }
}

#[cfg(test)]
mod tests {
    use platform::config::{ConfigSources, SectionSpec};

    use super::*;

    fn loaded(env: &[(&str, &str)]) -> Result<OrdersSettings, platform::config::ConfigError> {
        let sources = ConfigSources {
            file: None,
            config_dir: std::path::PathBuf::from("/nonexistent"),
            env: env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        };
        platform::config::load(&sources, &[SectionSpec::of::<OrdersSettings>()])?
            .settings
            .section()
    }

    #[test]
    fn the_default_currency_must_be_an_active_iso_4217_code() {
        for bad in ["ZZZ", "HRK", "eur"] {
            let Err(error) = loaded(&[("LOGICORE_ORDERS__DEFAULT_CURRENCY", bad)]) else {
                panic!("{bad} was accepted");
            };
            let keys: Vec<&str> = error.issues.iter().map(|i| i.key.as_str()).collect();
            assert_eq!(keys, ["orders.default_currency"], "{bad}");
        }
        let usd = loaded(&[("LOGICORE_ORDERS__DEFAULT_CURRENCY", "USD")]);
        assert_eq!(
            usd.map(|orders| orders.default_currency).ok().as_deref(),
            Some("USD")
        );
    }
}
