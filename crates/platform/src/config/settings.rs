//! The typed settings tree. Every section is `Clone + PartialEq` so a reloaded section can be compared with
//! the running one and swapped in as a whole.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A secret string: it never prints, in `Debug` or anywhere else.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (a key, a connection).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub environment: String,
    pub service: ServiceSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub users: UsersSettings,
    pub inventory: InventorySettings,
    pub gateway: GatewaySettings,
    pub redis: RedisSettings,
    pub messaging: MessagingSettings,
    pub discovery: DiscoverySettings,
    pub tracing: TracingSettings,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    pub name: String,
    pub version: String,
    /// Address every service binds to.
    pub host: String,
    /// `PORT`: overrides the port of the one service a single-service command runs.
    pub port: Option<u16>,
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// An `EnvFilter` directive such as `info` or `info,sqlx=warn`.
    pub level: String,
    /// `json` (production) or `pretty` (a terminal).
    pub format: String,
    /// When set, logs also go to a daily rolling file in this directory.
    pub dir: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// A full URL; when set it wins over host/port/name/user/password.
    pub url: Secret,
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Secret,
    pub pool_max: u32,
    pub pool_min: u32,
    pub acquire_timeout_ms: u64,
    pub slow_query_ms: u64,
    pub create_if_missing: bool,
}

impl DatabaseSettings {
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    pub fn slow_query(&self) -> Duration {
        Duration::from_millis(self.slow_query_ms)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub jwt_secret: Secret,
    pub issuer: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
}

/// The development default of `auth.jwt_secret`; refused in production.
pub const DEVELOPMENT_JWT_SECRET: &str = "logicore-development-secret-do-not-use-in-production";
/// Shortest HS256 secret accepted in production (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersSettings {
    pub port: u16,
    pub max_body_bytes: usize,
    pub preferences_max_bytes: usize,
    /// A first admin created at start-up when no admin exists yet.
    pub admin_email: String,
    pub admin_password: Secret,
}

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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    pub port: u16,
    /// Overrides `log.level` when the gateway runs alone.
    pub log_level: String,
    pub request_timeout_ms: u64,
    pub max_body_bytes: usize,
    pub upstream_pool_idle_per_host: usize,
    pub readiness_timeout_ms: u64,
    /// `METHOD[,METHOD] /path` patterns reachable without a token.
    pub public_routes: Vec<String>,
    pub cors_allowed_origins: Vec<String>,
    pub upstreams: UpstreamSettings,
    pub circuit_breaker: CircuitBreakerSettings,
    pub rate_limit: RateLimitSettings,
    pub rbac: Vec<RbacRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    pub users: String,
    pub inventory: String,
    pub orders: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerSettings {
    pub timeout_ms: u64,
    pub error_threshold_percent: u8,
    pub reset_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub window_ms: u64,
    pub max_requests: u32,
}

/// One line of the gateway's route → roles table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RbacRule {
    /// `METHOD[,METHOD] /path/pattern`.
    pub route: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    pub rabbitmq_url: Secret,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    pub consul_host: String,
    pub consul_port: u16,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    pub otlp_endpoint: String,
}

const ENVIRONMENTS: &[&str] = &["development", "test", "staging", "production"];
const ROLES: &[&str] = &["admin", "manager", "dispatcher", "driver", "customer", "*"];
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*",
];

impl Settings {
    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// Every rule broken, as `(dotted key, rule)`.
    pub(super) fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut check = |ok: bool, key: &str, rule: &str| {
            if !ok {
                issues.push((key.to_owned(), rule.to_owned()));
            }
        };
        check(
            ENVIRONMENTS.contains(&self.environment.as_str()),
            "environment",
            "must be one of development, test, staging, production",
        );
        check(
            !self.service.name.trim().is_empty(),
            "service.name",
            "must not be empty",
        );
        check(
            self.service.host.parse::<std::net::IpAddr>().is_ok(),
            "service.host",
            "must be an IP address to bind to",
        );
        check(
            self.service.port != Some(0),
            "service.port",
            "must be 1-65535",
        );
        check(
            tracing_subscriber::EnvFilter::try_new(&self.log.level).is_ok(),
            "log.level",
            "must be a level (trace, debug, info, warn, error) or an EnvFilter directive",
        );
        check(
            self.gateway.log_level.is_empty()
                || tracing_subscriber::EnvFilter::try_new(&self.gateway.log_level).is_ok(),
            "gateway.log_level",
            "must be a level (trace, debug, info, warn, error) or an EnvFilter directive",
        );
        check(
            matches!(self.log.format.as_str(), "json" | "pretty"),
            "log.format",
            "must be json or pretty",
        );

        let db = &self.database;
        check(
            db.url.is_empty()
                || url::Url::parse(db.url.expose())
                    .is_ok_and(|u| u.scheme().starts_with("postgres")),
            "database.url",
            "must be a postgres:// URL",
        );
        check(db.port != 0, "database.port", "must be 1-65535");
        check(!db.name.is_empty(), "database.name", "must not be empty");
        check(
            (1..=1000).contains(&db.pool_max),
            "database.pool_max",
            "must be between 1 and 1000",
        );
        check(
            db.pool_min <= db.pool_max,
            "database.pool_min",
            "must not exceed database.pool_max",
        );
        check(
            db.acquire_timeout_ms > 0,
            "database.acquire_timeout_ms",
            "must be positive",
        );

        let auth = &self.auth;
        check(
            !auth.jwt_secret.is_empty(),
            "auth.jwt_secret",
            "must not be empty",
        );
        if self.is_production() {
            check(
                auth.jwt_secret.expose() != DEVELOPMENT_JWT_SECRET,
                "auth.jwt_secret",
                "the development default is refused in production; set GATEWAY_JWT_SECRET",
            );
            check(
                auth.jwt_secret.expose().len() >= MIN_JWT_SECRET_BYTES,
                "auth.jwt_secret",
                "must be at least 32 bytes in production",
            );
        }
        check(
            (60..=86_400).contains(&auth.access_ttl_secs),
            "auth.access_ttl_secs",
            "must be between 60 and 86400",
        );
        check(
            auth.refresh_ttl_secs > auth.access_ttl_secs,
            "auth.refresh_ttl_secs",
            "must exceed auth.access_ttl_secs",
        );
        check(!auth.issuer.is_empty(), "auth.issuer", "must not be empty");

        check(self.users.port != 0, "users.port", "must be 1-65535");
        check(
            self.users.max_body_bytes >= 1024,
            "users.max_body_bytes",
            "must be at least 1024",
        );
        check(
            self.users.admin_email.is_empty() == self.users.admin_password.is_empty(),
            "users.admin_password",
            "users.admin_email and users.admin_password must be set together",
        );

        let inv = &self.inventory;
        check(inv.port != 0, "inventory.port", "must be 1-65535");
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
            inv.reservation_ttl_secs >= 1 && inv.reservation_ttl_secs <= inv.reservation_max_ttl_secs,
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

        let gw = &self.gateway;
        check(gw.port != 0, "gateway.port", "must be 1-65535");
        check(
            gw.request_timeout_ms > 0,
            "gateway.request_timeout_ms",
            "must be positive",
        );
        check(
            gw.max_body_bytes >= 1024,
            "gateway.max_body_bytes",
            "must be at least 1024",
        );
        for (key, url) in [
            ("gateway.upstreams.users", &gw.upstreams.users),
            ("gateway.upstreams.inventory", &gw.upstreams.inventory),
            ("gateway.upstreams.orders", &gw.upstreams.orders),
        ] {
            check(
                url::Url::parse(url).is_ok_and(|u| u.scheme() == "http" && u.host().is_some()),
                key,
                "must be an http:// URL with a host",
            );
        }
        check(
            gw.circuit_breaker.timeout_ms > 0,
            "gateway.circuit_breaker.timeout_ms",
            "must be positive",
        );
        check(
            (1..=100).contains(&gw.circuit_breaker.error_threshold_percent),
            "gateway.circuit_breaker.error_threshold_percent",
            "must be between 1 and 100",
        );
        check(
            gw.circuit_breaker.reset_timeout_ms > 0,
            "gateway.circuit_breaker.reset_timeout_ms",
            "must be positive",
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
        check(self.redis.port != 0, "redis.port", "must be 1-65535");
        check(
            self.messaging.rabbitmq_url.is_empty()
                || url::Url::parse(self.messaging.rabbitmq_url.expose())
                    .is_ok_and(|u| matches!(u.scheme(), "amqp" | "amqps")),
            "messaging.rabbitmq_url",
            "must be an amqp:// or amqps:// URL",
        );
        check(
            self.tracing.otlp_endpoint.is_empty()
                || url::Url::parse(&self.tracing.otlp_endpoint).is_ok(),
            "tracing.otlp_endpoint",
            "must be a URL",
        );
        issues
    }
}

fn valid_route(route: &str) -> bool {
    match route.split_once(' ') {
        Some((methods, path)) => {
            path.starts_with('/')
                && !path.contains(' ')
                && methods.split(',').all(|m| METHODS.contains(&m))
        }
        None => false,
    }
}
