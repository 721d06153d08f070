//! The users service's slice of the LogiCore settings, typed and passed in by the binary.

use std::num::NonZeroUsize;
use std::time::Duration;

use platform::config::{
    AuthSettings, DatabaseSettings, MessagingSettings, RedisSettings, Secret, Settings,
};
use platform::revocation::RevocationOptions;

/// How long `/readyz` waits for PostgreSQL before reporting it down. Probes run every few seconds, so
/// an answer slower than this is as bad as none.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the users service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`service.host`).
    pub host: String,
    /// `users.port`. A single-service command may override it with `service.port` (`PORT`).
    pub port: u16,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    /// The revoked tokens every check consults; this service records them and keeps its set current.
    pub revocation: RevocationOptions,
    /// The profile cache: Redis when `redis.enabled`, in process memory otherwise.
    pub redis: RedisSettings,
    /// The event transport and the outbox relay (`messaging.*`).
    pub messaging: MessagingSettings,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest serialized preferences object accepted (413 above).
    pub preferences_max_bytes: usize,
    /// A first admin created at start-up when no admin exists yet; empty to skip.
    pub admin_email: String,
    pub admin_password: Secret,
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
        let users = &settings.users;
        Self {
            host: settings.service.host.clone(),
            port: users.port,
            database: settings.database.clone(),
            auth: settings.auth.clone(),
            revocation: RevocationOptions::from_settings(settings),
            redis: settings.redis.clone(),
            messaging: settings.messaging.clone(),
            max_body_bytes: users.max_body_bytes,
            preferences_max_bytes: users.preferences_max_bytes,
            admin_email: users.admin_email.clone(),
            admin_password: users.admin_password.clone(),
            shutdown_grace: Duration::from_millis(settings.service.shutdown_grace_ms),
            http_workers: NonZeroUsize::new(settings.service.http_workers),
            connection_limits: platform::http::ConnectionLimits::from_settings(&settings.http),
            readiness_timeout: READINESS_TIMEOUT,
        }
    }
}
