//! The orders service's slice of the LogiCore settings, typed and passed in by the binary.

use std::num::NonZeroUsize;
use std::time::Duration;

use platform::config::{AuthSettings, DatabaseSettings, MessagingSettings, Settings};
use platform::revocation::RevocationOptions;

/// How long `/readyz` waits for a dependency before reporting it down.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the orders service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`service.host`).
    pub host: String,
    /// `orders.port`. A single-service command may override it with `service.port` (`PORT`).
    pub port: u16,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    /// The revoked tokens every check consults, and how this service keeps them current.
    pub revocation: RevocationOptions,
    /// The event transport and the outbox relay (`messaging.*`).
    pub messaging: MessagingSettings,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
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
    /// How long in-flight requests may run on after shutdown starts.
    pub shutdown_grace: Duration,
    /// Dedicated HTTP workers, or `None` for the shared runtime (`service.http_workers`).
    pub http_workers: Option<NonZeroUsize>,
    /// What each connection to the service may do (`[http]`).
    pub connection_limits: platform::http::ConnectionLimits,
    pub readiness_timeout: Duration,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Self {
        let orders = &settings.orders;
        Self {
            host: settings.service.host.clone(),
            port: orders.port,
            database: settings.database.clone(),
            auth: settings.auth.clone(),
            revocation: RevocationOptions::from_settings(settings),
            messaging: settings.messaging.clone(),
            max_body_bytes: orders.max_body_bytes,
            default_currency: orders.default_currency.clone(),
            pending_ttl: Duration::from_secs(orders.pending_ttl_secs),
            sweeper_interval: Duration::from_millis(orders.sweeper_interval_ms),
            sweeper_batch: orders.sweeper_batch,
            idempotency_ttl: Duration::from_secs(orders.idempotency_ttl_secs),
            proof_required_by_default: orders.proof_required_by_default,
            shutdown_grace: Duration::from_millis(settings.service.shutdown_grace_ms),
            http_workers: NonZeroUsize::new(settings.service.http_workers),
            connection_limits: platform::http::ConnectionLimits::from_settings(&settings.http),
            readiness_timeout: READINESS_TIMEOUT,
        }
    }
}
