//! The inventory service's slice of the LogiCore settings, typed and passed in by the binary.

use std::num::NonZeroUsize;
use std::time::Duration;

use platform::config::{
    AuthSettings, DatabaseSettings, MessagingSettings, RedisSettings, Settings,
};
use platform::revocation::RevocationOptions;

/// How long `/readyz` waits for PostgreSQL before reporting it down. Probes run every few seconds, so an
/// answer slower than this is as bad as none.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the inventory service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`service.host`).
    pub host: String,
    /// `inventory.port`. A single-service command may override it with `service.port` (`PORT`).
    pub port: u16,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    /// The revoked tokens every check consults, and how this service keeps them current.
    pub revocation: RevocationOptions,
    /// The product and availability cache: Redis when `redis.enabled`, in process memory otherwise.
    pub redis: RedisSettings,
    /// The event transport and the outbox relay (`messaging.*`).
    pub messaging: MessagingSettings,
    /// Largest JSON request body accepted (413 above).
    pub max_body_bytes: usize,
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
        let inventory = &settings.inventory;
        Self {
            host: settings.service.host.clone(),
            port: inventory.port,
            database: settings.database.clone(),
            auth: settings.auth.clone(),
            revocation: RevocationOptions::from_settings(settings),
            redis: settings.redis.clone(),
            messaging: settings.messaging.clone(),
            max_body_bytes: inventory.max_body_bytes,
            import_max_bytes: inventory.import_max_bytes,
            import_batch_rows: inventory.import_batch_rows,
            reservation_ttl: Duration::from_secs(inventory.reservation_ttl_secs),
            reservation_max_ttl: Duration::from_secs(inventory.reservation_max_ttl_secs),
            sweeper_interval: Duration::from_millis(inventory.sweeper_interval_ms),
            sweeper_batch: inventory.sweeper_batch,
            shutdown_grace: Duration::from_millis(settings.service.shutdown_grace_ms),
            http_workers: NonZeroUsize::new(settings.service.http_workers),
            connection_limits: platform::http::ConnectionLimits::from_settings(&settings.http),
            readiness_timeout: READINESS_TIMEOUT,
        }
    }
}
