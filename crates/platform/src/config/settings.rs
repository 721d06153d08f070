//! The typed settings tree and the platform's sections. The gateway's section, with its own `validate`, is a
//! module beside this one; each service's section is declared by the service's crate ([`super::Section`]).
//! Rules that tie sections together stay in [`Settings::validate`]. Every section is `Clone + PartialEq` so a reloaded section can be compared with
//! the running one and swapped in as a whole.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, GatewaySettings, HttpSettings, Section};

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
    /// Connection limits of every listener (`[gateway.http]` may set the gateway's own).
    pub http: HttpSettings,
    pub log: LogSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub gateway: GatewaySettings,
    pub redis: RedisSettings,
    pub messaging: MessagingSettings,
    pub discovery: DiscoverySettings,
    pub tracing: TracingSettings,
    /// The services' sections registered with the loader, by name, as merged and validated; typed by
    /// [`Settings::section`].
    #[serde(skip)]
    pub sections: BTreeMap<String, toml::Table>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    pub name: String,
    pub version: String,
    /// Address every service binds to.
    pub host: String,
    /// The address registered with service discovery; empty: `host`, when that is not a wildcard.
    pub advertise_address: String,
    /// `PORT`: overrides the port of the one service a single-service command runs.
    pub port: Option<u16>,
    pub shutdown_grace_ms: u64,
    /// Dedicated single-threaded HTTP workers per service (`platform::http::serve_dedicated`); 0 serves
    /// on the process's shared runtime. The gateway has its own `gateway.http_workers`.
    pub http_workers: usize,
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
    /// Without Redis: how often every process reads the revocations recorded since its last read
    /// (the bound on how long a revoked token still passes).
    pub revocation_poll_ms: u64,
    /// With Redis, which pushes revocations at once: how often every process reads them again anyway,
    /// so a push missed during a Redis outage is caught up.
    pub revocation_resync_ms: u64,
    /// What the users service signs access tokens with: `ES256` or `RS256` (a private key only it holds;
    /// everyone else verifies with the public half from its JWKS), or `HS256` (the shared `jwt_secret`).
    pub signing_algorithm: SigningAlgorithm,
    /// Whether tokens signed with `jwt_secret` (HS256) are accepted: on in development, off in production
    /// unless set.
    pub accept_hs256: bool,
    /// A directory of PEM private keys named `<kid>.pem` (a mounted Kubernetes Secret); empty: keys are
    /// generated and kept in the users database.
    pub signing_key_dir: String,
    /// With `signing_key_dir`: the kid that signs; the directory's other keys are only published.
    pub signing_key_id: String,
    /// The users service's base URL, where the services fetch LogiCore's public keys
    /// (`/.well-known/jwks.json`) and register external identities; follows `users.port` unless set.
    pub users_url: String,
    /// A JWKS is fetched again after this long (in the background; known keys keep working meanwhile).
    pub jwks_cache_ttl_secs: u64,
    /// A token with an unknown `kid` makes at most one JWKS fetch per this interval, however many arrive.
    pub jwks_refresh_cooldown_ms: u64,
    /// How long a rotated-in key is published before it signs, so every verifier has it by then.
    pub key_publish_lead_secs: u64,
    /// Lifetime of the tokens `POST /oauth/token` gives machine clients.
    pub client_token_ttl_secs: u64,
    /// Identity providers whose access tokens are accepted (`[[auth.issuers]]`).
    pub issuers: Vec<ExternalIssuerSettings>,
}

impl AuthSettings {
    /// `[auth]` as `defaults.toml` has it, with `jwt_secret` (for tools and tests that need no loader).
    pub fn defaults_with_secret(jwt_secret: &str) -> Self {
        let mut auth: Self = toml::from_str::<toml::Table>(super::DEFAULTS)
            .ok()
            .and_then(|table| table.get("auth").cloned())
            .and_then(|auth| auth.try_into().ok())
            .unwrap_or_else(|| unreachable!("defaults.toml has a valid [auth] section"));
        auth.jwt_secret = Secret::new(jwt_secret);
        auth
    }
}

/// The algorithm LogiCore's own tokens are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlgorithm {
    ES256,
    RS256,
    HS256,
}

/// One trusted OpenID provider.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExternalIssuerSettings {
    /// Its `iss`, exactly; its discovery document is `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The `aud` values accepted (one must match).
    pub audiences: Vec<String>,
    /// Dotted path of the claim holding the caller's role names: `roles`, `groups`, `realm_access.roles`.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The provider's role names mapped to LogiCore's; unmapped names are ignored. Empty: names that are
    /// LogiCore roles count as themselves.
    #[serde(default)]
    pub role_map: BTreeMap<String, String>,
    /// The role of a caller none of whose names map; empty: such a caller is refused.
    #[serde(default)]
    pub default_role: String,
    /// The JWKS address, when the provider publishes no discovery document.
    #[serde(default)]
    pub jwks_url: String,
}

fn default_roles_claim() -> String {
    "roles".to_owned()
}

/// The development default of `auth.jwt_secret`; refused in production.
pub const DEVELOPMENT_JWT_SECRET: &str = "logicore-development-secret-do-not-use-in-production";
/// Shortest HS256 secret accepted in production (RFC 7518 §3.2: at least the hash size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Off: the cache lives in process memory (the default, so tests and a laptop need no Redis).
    pub enabled: bool,
    /// A full `redis://` / `rediss://` URL; when set it wins over host/port.
    pub url: Secret,
    pub host: String,
    pub port: u16,
    /// Put in front of every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// Longest wait for one command: a slow or dead Redis must not add latency to a request.
    pub command_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Multiplexed connections used round-robin.
    pub pool_size: usize,
    /// Serialized values at least this large are zstd-compressed.
    pub compress_threshold_bytes: usize,
    /// Bound of the in-process cache (entries). 0 (with `enabled` false) turns caching off: every read
    /// goes to the database and nothing is stored, an honest uncached baseline.
    pub memory_max_entries: u64,
    /// Bound of the near cache in front of Redis (entries), kept coherent by Redis's invalidation
    /// pushes; 0 turns it off and every read asks Redis.
    pub near_cache_max_entries: u64,
}

impl RedisSettings {
    /// The URL to connect to: `url` when set, otherwise one built from host and port.
    pub fn connection_url(&self) -> String {
        if self.url.is_empty() {
            format!("redis://{}:{}/", self.host, self.port)
        } else {
            self.url.expose().to_owned()
        }
    }

    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    pub rabbitmq_url: Secret,
    /// `auto` (RabbitMQ when `rabbitmq_url` is set, else PostgreSQL), `rabbitmq` or `postgres`.
    pub transport: String,
    /// Unacknowledged deliveries one consumer instance may hold.
    pub prefetch: u16,
    /// Attempts before a delivery is dead-lettered.
    pub max_attempts: u32,
    pub retry_delay_ms: u64,
    /// Polling interval of the outbox relay and PostgreSQL-transport consumers (besides LISTEN/NOTIFY).
    pub relay_poll_ms: u64,
    /// How long sent outbox rows and inbox entries are kept.
    pub retention_hours: u64,
    /// The topic exchange; consumer queues are named `<exchange>.<group>`, and the PostgreSQL transport's
    /// schema is the exchange with `.` → `_`. Deployments sharing one broker (or tests) keep apart by it.
    pub exchange: String,
    /// RabbitMQ `x-expires` on consumer queues, so queues of groups that are gone vanish; 0 keeps them.
    pub queue_expires_ms: u64,
    /// First wait before reconnecting to the broker (or retrying a failed poll); it doubles per failure
    /// in a row, with jitter…
    pub reconnect_min_ms: u64,
    /// …up to this, which bounds how long after the broker's return consumers resubscribe.
    pub reconnect_max_ms: u64,
}

impl MessagingSettings {
    pub fn retry_delay(&self) -> Duration {
        Duration::from_millis(self.retry_delay_ms)
    }

    pub fn relay_poll(&self) -> Duration {
        Duration::from_millis(self.relay_poll_ms)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours.saturating_mul(3600))
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// `static`, `dns`, `etcd` or `consul` ([`crate::discovery`]).
    pub backend: String,
    /// Comma-separated `http://` URLs of the etcd cluster.
    pub etcd_endpoints: String,
    pub etcd_prefix: String,
    pub etcd_lease_ttl_s: u64,
    pub consul_host: String,
    pub consul_port: u16,
    pub consul_token: Secret,
    pub consul_check_interval_ms: u64,
    pub consul_deregister_critical_after_s: u64,
    /// `host:port` or an IP of the DNS server; empty: the system's resolver.
    pub dns_server: String,
    pub refresh_interval_ms: u64,
    pub deregister_delay_ms: u64,
}

/// The registry backends `discovery.backend` may name.
pub const DISCOVERY_BACKENDS: &[&str] = &["static", "dns", "etcd", "consul"];

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracingSettings {
    /// The OTLP collector (Jaeger ≥ 1.35, Tempo, an OpenTelemetry Collector); empty turns tracing off.
    pub otlp_endpoint: String,
    /// `grpc` or `http/protobuf`.
    pub protocol: String,
    /// One `service.name` for every service of the process; empty gives each service its own.
    pub service_name: String,
    /// One of `OTEL_TRACES_SAMPLER`'s names.
    pub sampler: String,
    /// The ratio of the ratio samplers, 0 to 1.
    pub sampler_arg: f64,
    /// `key=value,...` added to every span's resource.
    pub resource_attributes: String,
    /// Finished spans waiting for export; beyond it, spans are dropped and counted.
    pub queue_size: usize,
    pub max_batch_size: usize,
    /// Longest a finished span waits for its batch.
    pub batch_delay_ms: u64,
    /// Longest one export may take.
    pub export_timeout_ms: u64,
}

const ENVIRONMENTS: &[&str] = &["development", "test", "staging", "production"];
pub(super) const ROLES: &[&str] = &["admin", "manager", "dispatcher", "driver", "customer", "*"];
const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*",
];

impl Settings {
    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// A service's section, typed: as loaded when it was registered with the loader, else its defaults
    /// (settings a test built for another purpose). Fails only on a section that breaks its own rules.
    pub fn section<S: Section>(&self) -> Result<S, ConfigError> {
        super::section::section::<S>(&self.sections)
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
            valid_log_filter(&self.log.level),
            "log.level",
            LOG_FILTER_RULE,
        );
        check(
            self.gateway.log_level.is_empty() || valid_log_filter(&self.gateway.log_level),
            "gateway.log_level",
            LOG_FILTER_RULE,
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

        let auth = &self.auth;
        let uses_secret = auth.accept_hs256 || auth.signing_algorithm == SigningAlgorithm::HS256;
        check(
            !uses_secret || !auth.jwt_secret.is_empty(),
            "auth.jwt_secret",
            "must not be empty while HS256 tokens are signed or accepted",
        );
        check(
            auth.signing_algorithm != SigningAlgorithm::HS256 || auth.accept_hs256,
            "auth.accept_hs256",
            "must be true when auth.signing_algorithm is HS256",
        );
        if self.is_production() && uses_secret {
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
        check(
            (10..=1_000).contains(&auth.revocation_poll_ms),
            "auth.revocation_poll_ms",
            "must be between 10 and 1000 (revocation must bite within a second)",
        );
        check(
            (100..=60_000).contains(&auth.revocation_resync_ms),
            "auth.revocation_resync_ms",
            "must be between 100 and 60000",
        );
        check(
            auth.signing_key_id.is_empty() || !auth.signing_key_dir.is_empty(),
            "auth.signing_key_id",
            "needs auth.signing_key_dir",
        );
        check(
            auth.users_url.starts_with("http://") || auth.users_url.starts_with("https://"),
            "auth.users_url",
            "must be an http:// or https:// URL",
        );
        check(
            (1..=86_400).contains(&auth.jwks_cache_ttl_secs),
            "auth.jwks_cache_ttl_secs",
            "must be between 1 and 86400",
        );
        check(
            (10..=600_000).contains(&auth.jwks_refresh_cooldown_ms),
            "auth.jwks_refresh_cooldown_ms",
            "must be between 10 and 600000",
        );
        check(
            auth.key_publish_lead_secs <= 86_400,
            "auth.key_publish_lead_secs",
            "must be at most 86400",
        );
        check(
            (10..=auth.access_ttl_secs).contains(&auth.client_token_ttl_secs),
            "auth.client_token_ttl_secs",
            "must be between 10 and auth.access_ttl_secs",
        );
        for (index, issuer) in auth.issuers.iter().enumerate() {
            let key = |name: &str| format!("auth.issuers[{index}].{name}");
            check(
                (issuer.issuer.starts_with("https://") || issuer.issuer.starts_with("http://"))
                    && issuer.issuer != auth.issuer,
                &key("issuer"),
                "must be an http(s) URL other than auth.issuer",
            );
            check(
                !issuer.audiences.is_empty() && issuer.audiences.iter().all(|a| !a.is_empty()),
                &key("audiences"),
                "must name at least one audience",
            );
            check(
                !issuer.roles_claim.is_empty()
                    && issuer.roles_claim.split('.').all(|part| !part.is_empty()),
                &key("roles_claim"),
                "must be a dotted claim path such as realm_access.roles",
            );
            check(
                issuer
                    .role_map
                    .values()
                    .all(|role| crate::auth::Role::from_str(role).is_ok()),
                &key("role_map"),
                "every value must be a LogiCore role (admin, manager, dispatcher, driver, customer)",
            );
            check(
                issuer.default_role.is_empty()
                    || crate::auth::Role::from_str(&issuer.default_role).is_ok(),
                &key("default_role"),
                "must be empty or a LogiCore role",
            );
        }

        self.gateway.validate(&mut check);
        // The service must answer (503 after waiting for a connection) before the gateway gives up on it;
        // if the gateway's deadline ran out first, callers would get 504 instead of the service's answer.
        check(
            self.database.acquire_timeout_ms
                < self
                    .gateway
                    .circuit_breaker
                    .timeout_ms
                    .min(self.gateway.request_timeout_ms),
            "database.acquire_timeout_ms",
            "must be less than gateway.circuit_breaker.timeout_ms and gateway.request_timeout_ms",
        );
        let redis = &self.redis;
        check(
            redis.url.is_empty()
                || url::Url::parse(redis.url.expose())
                    .is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss") && u.host().is_some()),
            "redis.url",
            "must be a redis:// or rediss:// URL with a host",
        );
        check(
            !redis.enabled || !redis.key_prefix.is_empty(),
            "redis.key_prefix",
            "must not be empty when redis.enabled is true",
        );
        check(
            (1..=1000).contains(&redis.command_timeout_ms),
            "redis.command_timeout_ms",
            "must be between 1 and 1000",
        );
        check(
            (1..=10_000).contains(&redis.connect_timeout_ms),
            "redis.connect_timeout_ms",
            "must be between 1 and 10000",
        );
        check(
            (1..=64).contains(&redis.pool_size),
            "redis.pool_size",
            "must be between 1 and 64",
        );
        check(
            redis.compress_threshold_bytes >= 64,
            "redis.compress_threshold_bytes",
            "must be at least 64",
        );
        check(
            redis.near_cache_max_entries <= 10_000_000,
            "redis.near_cache_max_entries",
            "must be at most 10000000 (0 turns the near cache off)",
        );
        check(
            !redis.enabled || redis.memory_max_entries >= 1,
            "redis.memory_max_entries",
            "must be at least 1 when redis.enabled is true (0 turns caching off)",
        );
        check(
            self.messaging.rabbitmq_url.is_empty()
                || url::Url::parse(self.messaging.rabbitmq_url.expose())
                    .is_ok_and(|u| matches!(u.scheme(), "amqp" | "amqps")),
            "messaging.rabbitmq_url",
            "must be an amqp:// or amqps:// URL",
        );
        let mq = &self.messaging;
        check(
            matches!(mq.transport.as_str(), "auto" | "rabbitmq" | "postgres"),
            "messaging.transport",
            "must be auto, rabbitmq or postgres",
        );
        check(
            mq.transport != "rabbitmq" || !mq.rabbitmq_url.is_empty(),
            "messaging.transport",
            "rabbitmq needs messaging.rabbitmq_url (RABBITMQ_URL)",
        );
        check(
            mq.prefetch >= 1,
            "messaging.prefetch",
            "must be between 1 and 65535",
        );
        check(
            (1..=100).contains(&mq.max_attempts),
            "messaging.max_attempts",
            "must be between 1 and 100",
        );
        check(
            (1..=86_400_000).contains(&mq.retry_delay_ms),
            "messaging.retry_delay_ms",
            "must be between 1 and 86400000 (a day)",
        );
        check(
            (10..=60_000).contains(&mq.relay_poll_ms),
            "messaging.relay_poll_ms",
            "must be between 10 and 60000",
        );
        check(
            (1..=60_000).contains(&mq.reconnect_min_ms),
            "messaging.reconnect_min_ms",
            "must be between 1 and 60000",
        );
        check(
            (mq.reconnect_min_ms..=300_000).contains(&mq.reconnect_max_ms),
            "messaging.reconnect_max_ms",
            "must be between messaging.reconnect_min_ms and 300000",
        );
        check(
            (1..=8_760).contains(&mq.retention_hours),
            "messaging.retention_hours",
            "must be between 1 and 8760 (a year)",
        );
        check(
            (1..=100).contains(&mq.exchange.len())
                && mq.exchange.starts_with(|c: char| c.is_ascii_lowercase())
                && mq.exchange.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_')
                }),
            "messaging.exchange",
            "must be 1 to 100 lowercase letters, digits, `.` or `_`, starting with a letter",
        );
        check(
            mq.queue_expires_ms == 0
                || (1_000..=u64::from(u32::MAX)).contains(&mq.queue_expires_ms),
            "messaging.queue_expires_ms",
            "must be 0 (never) or between 1000 and 4294967295",
        );
        self.validate_discovery(&mut check);
        let tracing = &self.tracing;
        check(
            tracing.otlp_endpoint.is_empty()
                || url::Url::parse(&tracing.otlp_endpoint)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()),
            "tracing.otlp_endpoint",
            "must be an http:// or https:// URL with a host",
        );
        check(
            matches!(tracing.protocol.as_str(), "grpc" | "http/protobuf"),
            "tracing.protocol",
            "must be grpc or http/protobuf",
        );
        check(
            crate::telemetry::traces::SAMPLERS.contains(&tracing.sampler.as_str()),
            "tracing.sampler",
            "must be parentbased_traceidratio, parentbased_always_on, parentbased_always_off, \
             traceidratio, always_on or always_off",
        );
        check(
            (0.0..=1.0).contains(&tracing.sampler_arg),
            "tracing.sampler_arg",
            "must be between 0 and 1",
        );
        check(
            crate::telemetry::traces::parse_resource_attributes(&tracing.resource_attributes)
                .is_ok(),
            "tracing.resource_attributes",
            "must be key=value pairs separated by commas",
        );
        check(
            (1..=1_000_000).contains(&tracing.queue_size),
            "tracing.queue_size",
            "must be between 1 and 1000000",
        );
        check(
            (1..=tracing.queue_size).contains(&tracing.max_batch_size),
            "tracing.max_batch_size",
            "must be between 1 and tracing.queue_size",
        );
        check(
            (1..=60_000).contains(&tracing.batch_delay_ms),
            "tracing.batch_delay_ms",
            "must be between 1 and 60000",
        );
        issues.extend(self.http.issues("http"));
        issues.extend(self.gateway.http.override_issues(&self.http));
        issues
    }
}

impl Settings {
    fn validate_discovery(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let discovery = &self.discovery;
        check(
            DISCOVERY_BACKENDS.contains(&discovery.backend.as_str()),
            "discovery.backend",
            "must be static, dns, etcd or consul",
        );
        if discovery.backend == "etcd" {
            check(
                discovery.etcd_endpoints.split(',').all(|endpoint| {
                    url::Url::parse(endpoint.trim())
                        .is_ok_and(|u| u.scheme() == "http" && u.host().is_some())
                }),
                "discovery.etcd_endpoints",
                "must be a comma-separated list of http:// URLs with a host",
            );
        }
        check(
            discovery.etcd_prefix.starts_with('/')
                && discovery.etcd_prefix.ends_with('/')
                && !discovery.etcd_prefix.chars().any(char::is_control),
            "discovery.etcd_prefix",
            "must start and end with /",
        );
        // etcd rounds a shorter lease up to its minimum (1.5 election timeouts, 2 s by default).
        check(
            (2..=300).contains(&discovery.etcd_lease_ttl_s),
            "discovery.etcd_lease_ttl_s",
            "must be between 2 and 300",
        );
        if discovery.backend == "consul" {
            check(
                !discovery.consul_host.trim().is_empty(),
                "discovery.consul_host",
                "must name the Consul agent (CONSUL_HOST) when discovery.backend is consul",
            );
        }
        check(
            (100..=600_000).contains(&discovery.consul_check_interval_ms),
            "discovery.consul_check_interval_ms",
            "must be between 100 and 600000",
        );
        check(
            (60..=86_400).contains(&discovery.consul_deregister_critical_after_s),
            "discovery.consul_deregister_critical_after_s",
            "must be between 60 (Consul's minimum) and 86400",
        );
        check(
            discovery.dns_server.is_empty()
                || crate::discovery::dns::server_address(&discovery.dns_server).is_some(),
            "discovery.dns_server",
            "must be an IP address or IP:port",
        );
        check(
            (100..=600_000).contains(&discovery.refresh_interval_ms),
            "discovery.refresh_interval_ms",
            "must be between 100 and 600000",
        );
        check(
            discovery.deregister_delay_ms <= 600_000,
            "discovery.deregister_delay_ms",
            "must be at most 600000",
        );
        let advertise = &self.service.advertise_address;
        check(
            advertise.is_empty()
                || match advertise.parse::<std::net::IpAddr>() {
                    Ok(ip) => !ip.is_unspecified(),
                    Err(_) => {
                        advertise.len() <= 253
                            && advertise.split('.').all(|label| {
                                !label.is_empty()
                                    && label.len() <= 63
                                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                            })
                    }
                },
            "service.advertise_address",
            "must be an IP address others can reach or a host name",
        );
        let registers = matches!(discovery.backend.as_str(), "etcd" | "consul");
        check(
            !registers
                || !advertise.is_empty()
                || self
                    .service
                    .host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| !ip.is_unspecified()),
            "service.advertise_address",
            "must be set when service.host is a wildcard: it is the address registered for others to call",
        );
        check(
            matches!(
                self.gateway.load_balancing.as_str(),
                "least_outstanding" | "round_robin"
            ),
            "gateway.load_balancing",
            "must be least_outstanding or round_robin",
        );
    }
}

const LOG_FILTER_RULE: &str = "must be a level (off, error, warn, info, debug, trace) or a comma-separated \
     list of levels and target=level directives";

/// A log filter in `EnvFilter` syntax in which every bare word is a level. `EnvFilter` itself reads a bare
/// word such as `loud` as a target name and then logs nothing else, so a typo would silence every log.
pub fn valid_log_filter(filter: &str) -> bool {
    let mut directives = filter.split(',').map(str::trim).filter(|d| !d.is_empty());
    let mut any = false;
    let all_valid = directives.all(|directive| {
        any = true;
        if directive.contains('=') || directive.contains('[') {
            directive
                .parse::<tracing_subscriber::filter::Directive>()
                .is_ok()
        } else {
            directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_ok()
        }
    });
    any && all_valid
}

pub(super) fn valid_route(route: &str) -> bool {
    match route.split_once(' ') {
        Some((methods, path)) => {
            path.starts_with('/')
                && !path.contains(' ')
                && methods.split(',').all(|m| METHODS.contains(&m))
        }
        None => false,
    }
}
