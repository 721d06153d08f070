//! The gateway's section (`[gateway]`): its settings and their rules.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::HttpSettings;
use super::settings::{ROLES, valid_route};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub port: u16,
    /// The admin listener (on `service.host`): metrics, the detailed readiness report and `/admin/*`.
    pub admin_port: u16,
    /// Overrides `log.level` when the gateway runs alone.
    pub log_level: String,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub upstream_pool_idle_per_host: usize,
    /// Threads that serve HTTP, each with its own single-threaded runtime and upstream connections;
    /// 0 is one per available core.
    pub http_workers: usize,
    pub readiness_timeout_ms: u64,
    /// How long an upstream's health probe is reused by `/readyz`, so a flood of probes of the gateway
    /// is not passed on to the services.
    pub readiness_cache_ms: u64,
    /// `METHOD[,METHOD] /path` patterns reachable without a token.
    /// `least_outstanding` or `round_robin`: how an upstream's instance is picked.
    pub load_balancing: String,
    pub public_routes: Vec<String>,
    pub cors_allowed_origins: Vec<String>,
    /// Each service's base URL by the name the gateway's route table uses, or a comma-separated list of them
    /// when it runs as several instances.
    pub upstreams: BTreeMap<String, String>,
    pub circuit_breaker: CircuitBreakerSettings,
    pub rate_limit: RateLimitSettings,
    pub retry: RetrySettings,
    pub outlier: OutlierSettings,
    /// The gateway's own connection limits; each 0 means "as `[http]`".
    pub http: HttpSettings,
    pub rbac: Vec<RbacRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSettings {
    pub timeout_ms: u64,
    pub error_threshold_percent: u8,
    pub reset_timeout_ms: u64,
    /// Calls the rolling window must hold before the error rate may open the breaker.
    pub volume_threshold: u32,
    pub rolling_window_ms: u64,
    pub rolling_window_buckets: u32,
    /// Trial calls admitted once the reset timeout has passed.
    pub half_open_max_calls: u32,
    /// Outcomes that count as failures, against the breaker and an instance's outlier health:
    /// `connect`, `timeout`, status codes (`503`) or classes (`5xx`).
    pub failure_on: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub window_ms: u64,
    pub max_requests: u32,
    /// Requests a client may send at once; 0 means `max_requests`.
    pub burst: u32,
    /// `memory` (per gateway instance) or `redis` (shared by every instance).
    pub backend: String,
    /// What the redis backend does when Redis cannot answer in time: `open` admits, `closed` refuses.
    pub fail_mode: String,
    /// Longest wait for Redis's answer before the fail mode decides.
    pub redis_timeout_ms: u64,
    /// First match wins; a request no override matches gets the limit above.
    pub overrides: Vec<RateLimitOverride>,
}

/// How the gateway repeats requests that are safe to repeat (idempotent methods, POSTs with an
/// `Idempotency-Key`) after a connect error, a reset or a 502/503, on another instance.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts per request including the first; 1 turns retries off.
    pub max_attempts: u32,
    /// Upper bound of the first backoff; it doubles with each retry (full jitter below it)…
    pub backoff_base_ms: u64,
    /// …up to this.
    pub backoff_max_ms: u64,
    /// Retries may add at most this percentage of the requests seen in the budget window…
    pub budget_percent: u32,
    /// …plus this many per window, so a quiet service can still be retried.
    pub budget_min_retries: u32,
    pub budget_window_ms: u64,
    /// Largest request body (with a `Content-Length`) kept so the request can be sent again.
    pub max_buffered_body_bytes: usize,
}

/// Passive health of an upstream's instances (Envoy's `consecutive_5xx` outlier detection).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OutlierSettings {
    /// Failures in a row (connect errors, timeouts, 5xx) that eject an instance from the rotation.
    pub consecutive_failures: u32,
    /// First ejection's length; the n-th ejection in a row lasts n times this…
    pub base_ejection_ms: u64,
    /// …up to this.
    pub max_ejection_ms: u64,
    /// Most of an upstream's instances (percent) ejected at once; one may always be, and the last
    /// healthy instance never is.
    pub max_ejection_percent: u32,
}

/// A different limit for a route pattern and/or a role (empty means any).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOverride {
    #[serde(default)]
    pub route: String,
    #[serde(default)]
    pub role: String,
    pub window_ms: u64,
    pub max_requests: u32,
    #[serde(default)]
    pub burst: u32,
}

/// One line of the gateway's route → roles table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RbacRule {
    /// `METHOD[,METHOD] /path/pattern`.
    pub route: String,
    pub roles: Vec<String>,
}

impl GatewaySettings {
    /// Every rule of this section broken, reported through `check(ok, dotted key, rule)`.
    pub(super) fn validate(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let gw = self;
        check(
            gw.readiness_cache_ms <= 60_000,
            "gateway.readiness_cache_ms",
            "must be between 0 and 60000",
        );
        for (name, url) in &gw.upstreams {
            let key = format!("gateway.upstreams.{name}");
            // A comma-separated list names several instances of one service (the gateway balances
            // between them); every entry must be a URL on its own.
            check(
                url.split(',').all(|entry| {
                    url::Url::parse(entry.trim())
                        .is_ok_and(|u| u.scheme() == "http" && u.host().is_some())
                }),
                &key,
                "must be an http:// URL with a host, or a comma-separated list of them",
            );
        }
        check(
            (1..=100).contains(&gw.circuit_breaker.error_threshold_percent),
            "gateway.circuit_breaker.error_threshold_percent",
            "must be between 1 and 100",
        );
        check(
            gw.rate_limit.window_ms > 0,
            "gateway.rate_limit.window_ms",
            "must be positive",
        );
        check(
            gw.rate_limit.max_requests > 0,
            "gateway.rate_limit.max_requests",
            "must be positive",
        );
        let cb = &gw.circuit_breaker;
        check(
            (10..=3_600_000).contains(&cb.rolling_window_ms),
            "gateway.circuit_breaker.rolling_window_ms",
            "must be between 10 and 3600000",
        );
        check(
            (1..=1000).contains(&cb.rolling_window_buckets),
            "gateway.circuit_breaker.rolling_window_buckets",
            "must be between 1 and 1000",
        );
        check(
            cb.half_open_max_calls >= 1,
            "gateway.circuit_breaker.half_open_max_calls",
            "must be at least 1",
        );
        let failure_on = crate::breaker::FailureKinds::from_names(&cb.failure_on).err();
        check(
            failure_on.is_none(),
            "gateway.circuit_breaker.failure_on",
            failure_on.as_deref().unwrap_or_default(),
        );
        let retry = &gw.retry;
        check(
            (1..=10).contains(&retry.max_attempts),
            "gateway.retry.max_attempts",
            "must be between 1 and 10",
        );
        check(
            (1..=60_000).contains(&retry.backoff_base_ms),
            "gateway.retry.backoff_base_ms",
            "must be between 1 and 60000",
        );
        check(
            (retry.backoff_base_ms..=60_000).contains(&retry.backoff_max_ms),
            "gateway.retry.backoff_max_ms",
            "must be between gateway.retry.backoff_base_ms and 60000",
        );
        check(
            retry.budget_min_retries <= 1_000_000,
            "gateway.retry.budget_min_retries",
            "must be between 0 and 1000000",
        );
        check(
            (100..=3_600_000).contains(&retry.budget_window_ms),
            "gateway.retry.budget_window_ms",
            "must be between 100 and 3600000",
        );
        check(
            retry.max_buffered_body_bytes <= gw.max_body_bytes,
            "gateway.retry.max_buffered_body_bytes",
            "must not exceed gateway.max_body_bytes",
        );
        let outlier = &gw.outlier;
        check(
            outlier.consecutive_failures >= 1,
            "gateway.outlier.consecutive_failures",
            "must be at least 1",
        );
        check(
            (1..=86_400_000).contains(&outlier.base_ejection_ms),
            "gateway.outlier.base_ejection_ms",
            "must be between 1 and 86400000 (a day)",
        );
        check(
            (outlier.base_ejection_ms..=86_400_000).contains(&outlier.max_ejection_ms),
            "gateway.outlier.max_ejection_ms",
            "must be between gateway.outlier.base_ejection_ms and 86400000 (a day)",
        );
        check(
            outlier.max_ejection_percent <= 100,
            "gateway.outlier.max_ejection_percent",
            "must be between 0 and 100",
        );
        let rl = &gw.rate_limit;
        check(
            matches!(rl.backend.as_str(), "memory" | "redis"),
            "gateway.rate_limit.backend",
            "must be memory or redis",
        );
        check(
            matches!(rl.fail_mode.as_str(), "open" | "closed"),
            "gateway.rate_limit.fail_mode",
            "must be open or closed",
        );
        check(
            (1..=1000).contains(&rl.redis_timeout_ms),
            "gateway.rate_limit.redis_timeout_ms",
            "must be between 1 and 1000",
        );
        for o in &rl.overrides {
            check(
                o.route.is_empty() || valid_route(&o.route),
                "gateway.rate_limit.overrides",
                "route must be empty or `METHOD[,METHOD] /path`",
            );
            check(
                o.role.is_empty() || (o.role != "*" && ROLES.contains(&o.role.as_str())),
                "gateway.rate_limit.overrides",
                "role must be empty or one of admin, manager, dispatcher, driver, customer",
            );
            check(
                o.window_ms > 0 && o.max_requests > 0,
                "gateway.rate_limit.overrides",
                "window_ms and max_requests must be positive",
            );
        }
        for route in &gw.public_routes {
            check(
                valid_route(route),
                "gateway.public_routes",
                "each entry must be `METHOD[,METHOD] /path`",
            );
        }
        for rule in &gw.rbac {
            check(
                valid_route(&rule.route),
                "gateway.rbac",
                "route must be `METHOD[,METHOD] /path`",
            );
            check(
                !rule.roles.is_empty() && rule.roles.iter().all(|r| ROLES.contains(&r.as_str())),
                "gateway.rbac",
                "roles must be a non-empty list of admin, manager, dispatcher, driver, customer or *",
            );
        }
    }
}
