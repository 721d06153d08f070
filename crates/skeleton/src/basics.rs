//! The settings every service has, read once from the layered configuration.

use std::num::NonZeroUsize;
use std::time::Duration;

use platform::config::{
    AuthSettings, DatabaseSettings, DiscoverySettings, MessagingSettings, RedisSettings, Settings,
};
use platform::http::ConnectionLimits;
use platform::revocation::RevocationOptions;

/// How long `/readyz` waits for a dependency before reporting it down. Probes run every few seconds, so an
/// answer slower than this is as bad as none.
const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// The listener, connections and limits of one service; its own settings live beside it in its `Config`.
#[derive(Debug, Clone)]
pub struct Basics {
    /// Address to bind (`service.host`).
    pub host: String,
    /// The service's port (`<service>.port`); a single-service command may override it with `service.port`
    /// (`PORT`).
    pub port: u16,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    /// The revoked tokens every check consults, and how this service keeps them current.
    pub revocation: RevocationOptions,
    /// The cache: Redis when `redis.enabled`, in process memory otherwise (for services that use one).
    pub redis: RedisSettings,
    /// The event transport and the outbox relay (`messaging.*`).
    pub messaging: MessagingSettings,
    /// Largest JSON request body accepted (413 above).
    pub max_body_bytes: usize,
    /// How long in-flight requests may run on after shutdown starts.
    pub shutdown_grace: Duration,
    /// Dedicated HTTP workers, or `None` for the shared runtime (`service.http_workers`).
    pub http_workers: Option<NonZeroUsize>,
    /// What each connection to the service may do (`[http]`).
    pub connection_limits: ConnectionLimits,
    pub readiness_timeout: Duration,
    /// Where the service registers once ready (`[discovery]`).
    pub discovery: DiscoverySettings,
    /// The address registered for others to call (`service.advertise_address`, else `service.host`);
    /// `None` when that is a wildcard.
    pub advertise_address: Option<String>,
    /// The build's version (`service.version`), registered with the instance.
    pub version: String,
}

impl Basics {
    /// The shared sections of `settings`, with the service's own `port` and body limit.
    pub fn from_settings(settings: &Settings, port: u16, max_body_bytes: usize) -> Self {
        Self {
            host: settings.service.host.clone(),
            port,
            database: settings.database.clone(),
            auth: settings.auth.clone(),
            revocation: RevocationOptions::from_settings(settings),
            redis: settings.redis.clone(),
            messaging: settings.messaging.clone(),
            max_body_bytes,
            shutdown_grace: Duration::from_millis(settings.service.shutdown_grace_ms),
            http_workers: NonZeroUsize::new(settings.service.http_workers),
            connection_limits: ConnectionLimits::from_settings(&settings.http),
            readiness_timeout: READINESS_TIMEOUT,
            discovery: settings.discovery.clone(),
            advertise_address: platform::discovery::advertised_address(settings),
            version: settings.service.version.clone(),
        }
    }
}
