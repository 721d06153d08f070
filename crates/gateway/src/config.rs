//! The gateway's typed configuration, cut out of the platform settings once at start-up so the rest of the
//! crate never reads the settings tree (or the environment) again.

use std::num::NonZeroUsize;
use std::time::Duration;

use platform::breaker::{BreakerConfig, FailureKinds};
use platform::config::{AuthSettings, DiscoverySettings, RbacRule, Settings};
use platform::http::ConnectionLimits;
use platform::revocation::RevocationOptions;

use crate::error::GatewayError;
use crate::ratelimit::RateLimitConfig;
use crate::upstream::{Balancing, OutlierConfig, RetryConfig, Upstream};

#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// The admin listener's port (on `host`): metrics, the detailed readiness report, `/admin/*`.
    pub admin_port: u16,
    pub auth: AuthSettings,
    /// The revoked tokens the access check consults, and how the gateway keeps them current (pushes through
    /// Redis, and polls of the users service's `/internal/revocations`).
    pub revocation: RevocationOptions,
    /// The upstreams as configured: the instances themselves with the `static` backend, the names to
    /// resolve with `dns`; with `etcd` and `consul` the registry gives the instances.
    pub upstreams: Vec<Upstream>,
    /// Where the upstreams' instances come from (`[discovery]`).
    pub discovery: DiscoverySettings,
    /// How an upstream's instance is picked.
    pub load_balancing: Balancing,
    /// Deadline for an upstream's response head; past it the caller gets 504.
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub pool_idle_per_host: usize,
    /// Threads serving HTTP ([`platform::http::serve_dedicated`]), each with its own upstream pool.
    pub http_workers: NonZeroUsize,
    /// What each client connection may do, on both proxy paths (`[http]` with `[gateway.http]` over it).
    pub connection_limits: ConnectionLimits,
    /// `METHOD[,METHOD] /path` patterns reachable without a token.
    pub public_routes: Vec<String>,
    pub rbac: Vec<RbacRule>,
    /// Origins allowed to call from a browser; empty means no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    pub readiness_timeout: Duration,
    /// How long an upstream's health probe result is reused by `/readyz`.
    pub readiness_cache: Duration,
    pub shutdown_grace: Duration,
    /// One breaker per upstream with these settings; its timeout also caps `request_timeout`.
    pub circuit_breaker: BreakerConfig,
    /// Which upstream outcomes count against the breaker.
    pub breaker_failures: FailureKinds,
    pub rate_limit: RateLimitConfig,
    /// Retries of requests that are safe to repeat (`[gateway.retry]`).
    pub retry: RetryConfig,
    /// When an instance is ejected from its upstream's rotation (`[gateway.outlier]`).
    pub outlier: OutlierConfig,
}

impl Config {
    /// The gateway's part of the settings. Whether the route table and the upstreams agree is checked
    /// when the gateway is built.
    ///
    /// `port` is `gateway.port`; `PORT` (`service.port`) is left to the binary, which knows whether the
    /// gateway is the one service it runs.
    pub fn from_settings(settings: &Settings) -> Result<Self, GatewayError> {
        let gateway = &settings.gateway;
        let mut upstreams = gateway
            .upstreams
            .iter()
            .map(|(name, urls)| Upstream::new(name, urls))
            .collect::<Result<Vec<_>, _>>()?;
        // In the order the route table first names them, as the admin view and readiness report list them.
        upstreams.sort_by_key(|upstream| {
            crate::routes::ROUTE_TABLE
                .iter()
                .position(|route| route.upstream == upstream.name)
        });
        Ok(Self {
            host: settings.service.host.clone(),
            port: gateway.port,
            admin_port: gateway.admin_port,
            auth: settings.auth.clone(),
            revocation: RevocationOptions::from_settings(settings),
            upstreams,
            discovery: settings.discovery.clone(),
            load_balancing: Balancing::from_name(&gateway.load_balancing).ok_or_else(|| {
                GatewayError::config(
                    "gateway.load_balancing",
                    "must be least_outstanding or round_robin",
                )
            })?,
            request_timeout: Duration::from_millis(gateway.request_timeout_ms),
            max_body_bytes: gateway.max_body_bytes,
            pool_idle_per_host: gateway.upstream_pool_idle_per_host,
            http_workers: platform::http::worker_count(gateway.http_workers),
            connection_limits: ConnectionLimits::from_settings(
                &settings.http.overridden_by(&gateway.http),
            ),
            public_routes: gateway.public_routes.clone(),
            rbac: gateway.rbac.clone(),
            cors_allowed_origins: gateway.cors_allowed_origins.clone(),
            readiness_timeout: Duration::from_millis(gateway.readiness_timeout_ms),
            readiness_cache: Duration::from_millis(gateway.readiness_cache_ms),
            shutdown_grace: Duration::from_millis(settings.service.shutdown_grace_ms),
            circuit_breaker: breaker_config(settings),
            breaker_failures: FailureKinds::from_names(&gateway.circuit_breaker.failure_on)
                .map_err(|e| GatewayError::config("gateway.circuit_breaker.failure_on", e))?,
            rate_limit: RateLimitConfig::from_settings(settings)?,
            retry: retry_config(settings),
            outlier: outlier_config(settings),
        })
    }
}

fn retry_config(settings: &Settings) -> RetryConfig {
    let retry = &settings.gateway.retry;
    RetryConfig {
        max_retries: retry.max_attempts.saturating_sub(1),
        backoff_base: Duration::from_millis(retry.backoff_base_ms),
        backoff_max: Duration::from_millis(retry.backoff_max_ms),
        budget_ratio: f64::from(retry.budget_percent) / 100.0,
        budget_min_retries: retry.budget_min_retries,
        budget_window: Duration::from_millis(retry.budget_window_ms),
        max_buffered_body_bytes: retry.max_buffered_body_bytes,
    }
}

fn outlier_config(settings: &Settings) -> OutlierConfig {
    let outlier = &settings.gateway.outlier;
    OutlierConfig {
        consecutive_failures: outlier.consecutive_failures,
        base_ejection: Duration::from_millis(outlier.base_ejection_ms),
        max_ejection: Duration::from_millis(outlier.max_ejection_ms),
        max_ejection_percent: outlier.max_ejection_percent,
    }
}

fn breaker_config(settings: &Settings) -> BreakerConfig {
    let cb = &settings.gateway.circuit_breaker;
    BreakerConfig {
        timeout: Duration::from_millis(cb.timeout_ms),
        error_threshold_percent: cb.error_threshold_percent,
        volume_threshold: cb.volume_threshold,
        rolling_window: Duration::from_millis(cb.rolling_window_ms),
        buckets: cb.rolling_window_buckets,
        reset_timeout: Duration::from_millis(cb.reset_timeout_ms),
        half_open_max_calls: cb.half_open_max_calls,
    }
}
