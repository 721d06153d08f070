//! The limiter's typed configuration, cut out of `gateway.rate_limit` and `redis`.

use std::time::Duration;

use platform::auth::Role;
use platform::config::Settings;

use crate::error::GatewayError;

/// A limit and what it applies to; `route` and `role` of `None` match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRule {
    /// `METHOD[,METHOD] /path` pattern, as in `gateway.rbac`.
    pub route: Option<String>,
    pub role: Option<Role>,
    pub window: Duration,
    pub max_requests: u32,
    /// Requests allowed at once; 0 means `max_requests`.
    pub burst: u32,
}

/// What the Redis backend does when Redis cannot answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Admit: an outage of Redis must not take the API down.
    Open,
    /// Refuse with 429: the limit matters more than availability.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitBackend {
    /// Per gateway instance.
    Memory,
    /// Shared by every gateway instance using the same Redis and prefix.
    Redis {
        url: String,
        /// Put in front of every key, so deployments (and tests) sharing a Redis stay apart.
        key_prefix: String,
        connect_timeout: Duration,
        /// Longest wait for one decision before the fail mode applies.
        timeout: Duration,
        fail_mode: FailMode,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub default: LimitRule,
    /// First match wins over the default.
    pub overrides: Vec<LimitRule>,
    pub backend: RateLimitBackend,
}

impl RateLimitConfig {
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, GatewayError> {
        let rl = &settings.gateway.rate_limit;
        let overrides = rl
            .overrides
            .iter()
            .map(|o| {
                let role = if o.role.is_empty() {
                    None
                } else {
                    Some(o.role.parse::<Role>().map_err(|e| {
                        GatewayError::config("gateway.rate_limit.overrides", e.to_string())
                    })?)
                };
                Ok(LimitRule {
                    route: (!o.route.is_empty()).then(|| o.route.clone()),
                    role,
                    window: Duration::from_millis(o.window_ms),
                    max_requests: o.max_requests,
                    burst: o.burst,
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let backend = match rl.backend.as_str() {
            "redis" => RateLimitBackend::Redis {
                url: settings.redis.connection_url(),
                key_prefix: format!("{}ratelimit:", settings.redis.key_prefix),
                connect_timeout: settings.redis.connect_timeout(),
                timeout: Duration::from_millis(rl.redis_timeout_ms),
                fail_mode: if rl.fail_mode == "closed" {
                    FailMode::Closed
                } else {
                    FailMode::Open
                },
            },
            _ => RateLimitBackend::Memory,
        };
        Ok(Self {
            default: LimitRule {
                route: None,
                role: None,
                window: Duration::from_millis(rl.window_ms),
                max_requests: rl.max_requests,
                burst: rl.burst,
            },
            overrides,
            backend,
        })
    }
}
