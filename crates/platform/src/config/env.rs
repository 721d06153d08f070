//! Environment variables: the seed's names as aliases of dotted keys, and the generic
//! `LOGICORE_<SECTION>__<KEY>` form for everything else.

use std::collections::{BTreeMap, HashMap};

use super::ConfigIssue;
use super::mask::mask_value;
use super::tree::{self, Source};

/// An environment variable that sets one configuration key.
#[derive(Debug, Clone, Copy)]
pub struct EnvAlias {
    pub var: &'static str,
    pub key: &'static str,
}

impl EnvAlias {
    pub const fn new(var: &'static str, key: &'static str) -> Self {
        Self { var, key }
    }
}

const fn alias(var: &'static str, key: &'static str) -> EnvAlias {
    EnvAlias::new(var, key)
}

/// The seed's variable names of the platform's sections, honoured exactly; a service's section lists its own
/// (`Section::ENV_ALIASES`). The seed named the first three services' upstreams itself; a later service's is
/// `LOGICORE_GATEWAY__UPSTREAMS__<NAME>`.
pub const ENV_ALIASES: &[EnvAlias] = &[
    alias("GATEWAY_PORT", "gateway.port"),
    alias("GATEWAY_JWT_SECRET", "auth.jwt_secret"),
    alias("JWT_SECRET", "auth.jwt_secret"),
    alias("GATEWAY_LOG_LEVEL", "gateway.log_level"),
    alias(
        "GATEWAY_CIRCUIT_BREAKER_TIMEOUT",
        "gateway.circuit_breaker.timeout_ms",
    ),
    alias(
        "GATEWAY_CIRCUIT_BREAKER_ERROR_THRESHOLD",
        "gateway.circuit_breaker.error_threshold_percent",
    ),
    alias(
        "GATEWAY_CIRCUIT_BREAKER_RESET_TIMEOUT",
        "gateway.circuit_breaker.reset_timeout_ms",
    ),
    alias(
        "GATEWAY_RATE_LIMIT_WINDOW_MS",
        "gateway.rate_limit.window_ms",
    ),
    alias(
        "GATEWAY_RATE_LIMIT_MAX_REQUESTS",
        "gateway.rate_limit.max_requests",
    ),
    alias("USER_SERVICE_URL", "gateway.upstreams.users"),
    alias("INVENTORY_SERVICE_URL", "gateway.upstreams.inventory"),
    alias("ORDER_SERVICE_URL", "gateway.upstreams.orders"),
    alias("SERVICE_NAME", "service.name"),
    alias("SERVICE_VERSION", "service.version"),
    alias("SERVICE_HOST", "service.host"),
    alias("PORT", "service.port"),
    alias("DB_HOST", "database.host"),
    alias("DB_PORT", "database.port"),
    alias("DB_NAME", "database.name"),
    alias("DB_USER", "database.user"),
    alias("DB_PASSWORD", "database.password"),
    alias("DB_POOL_MAX", "database.pool_max"),
    alias("DB_POOL_MIN", "database.pool_min"),
    alias("DATABASE_URL", "database.url"),
    alias("REDIS_HOST", "redis.host"),
    alias("REDIS_PORT", "redis.port"),
    alias("REDIS_KEY_PREFIX", "redis.key_prefix"),
    alias("REDIS_URL", "redis.url"),
    alias("REDIS_ENABLED", "redis.enabled"),
    alias("RABBITMQ_URL", "messaging.rabbitmq_url"),
    alias("CONSUL_HOST", "discovery.consul_host"),
    alias("CONSUL_PORT", "discovery.consul_port"),
    alias("CONSUL_HTTP_TOKEN", "discovery.consul_token"),
    alias("DISCOVERY_BACKEND", "discovery.backend"),
    alias("ETCD_ENDPOINTS", "discovery.etcd_endpoints"),
    alias("SERVICE_ADVERTISE_ADDRESS", "service.advertise_address"),
    alias("JAEGER_ENDPOINT", "tracing.otlp_endpoint"),
    alias("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing.otlp_endpoint"),
    alias("OTEL_EXPORTER_OTLP_PROTOCOL", "tracing.protocol"),
    alias("OTEL_SERVICE_NAME", "tracing.service_name"),
    alias("OTEL_TRACES_SAMPLER", "tracing.sampler"),
    alias("OTEL_TRACES_SAMPLER_ARG", "tracing.sampler_arg"),
    alias("OTEL_RESOURCE_ATTRIBUTES", "tracing.resource_attributes"),
    alias("LOG_LEVEL", "log.level"),
    alias("LOG_DIR", "log.dir"),
];

/// Keys without a default whose values are numbers.
const INTEGER_KEYS_WITHOUT_DEFAULT: &[&str] = &["service.port"];

const GENERIC_PREFIX: &str = "LOGICORE_";
const SECTION_SEPARATOR: &str = "__";

/// Applies every recognised variable to the tree. Two variables setting one key to different values is an
/// error rather than a silent precedence rule, so a deployment cannot run with a surprise value.
pub(super) fn apply(
    tree: &mut toml::Table,
    origin: &mut BTreeMap<String, Source>,
    env: &HashMap<String, String>,
    aliases: impl Iterator<Item = &'static EnvAlias>,
    issues: &mut Vec<ConfigIssue>,
) {
    let mut assignments: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for alias in aliases {
        if let Some(value) = env.get(alias.var) {
            assignments
                .entry(alias.key.to_owned())
                .or_default()
                .push((alias.var.to_owned(), value.clone()));
        }
    }
    let mut generic: Vec<(&String, &String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(GENERIC_PREFIX) && name.contains(SECTION_SEPARATOR))
        .collect();
    generic.sort();
    for (name, value) in generic {
        let key = name[GENERIC_PREFIX.len()..]
            .split(SECTION_SEPARATOR)
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        if tree::get(tree, &key).is_none() && !INTEGER_KEYS_WITHOUT_DEFAULT.contains(&key.as_str())
        {
            issues.push(ConfigIssue {
                key: key.clone(),
                rule: "unknown configuration key".into(),
                value: mask_value(&key, &toml::Value::String(value.clone())),
                source: Source::Env(name.clone()).to_string(),
            });
            continue;
        }
        assignments
            .entry(key)
            .or_default()
            .push((name.clone(), value.clone()));
    }

    for (key, sets) in assignments {
        let (first_var, first_value) = &sets[0];
        if let Some((other_var, _)) = sets.iter().find(|(_, value)| value != first_value) {
            issues.push(ConfigIssue {
                key: key.clone(),
                rule: format!("set to different values by {first_var} and {other_var}"),
                value: mask_value(&key, &toml::Value::String(first_value.clone())),
                source: Source::Env(first_var.clone()).to_string(),
            });
            continue;
        }
        match typed(tree::get(tree, &key), &key, first_value) {
            Ok(value) => {
                tree::set(tree, &key, value);
                origin.insert(key, Source::Env(first_var.clone()));
            }
            Err(rule) => issues.push(ConfigIssue {
                value: mask_value(&key, &toml::Value::String(first_value.clone())),
                key,
                rule,
                source: Source::Env(first_var.clone()).to_string(),
            }),
        }
    }
}

/// Converts an environment string to the type of the key's default value.
fn typed(default: Option<&toml::Value>, key: &str, raw: &str) -> Result<toml::Value, String> {
    let raw = raw.trim();
    let integer = || {
        raw.parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| "must be an integer".to_owned())
    };
    match default {
        Some(toml::Value::Integer(_)) => integer(),
        None if INTEGER_KEYS_WITHOUT_DEFAULT.contains(&key) => integer(),
        Some(toml::Value::Boolean(_)) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err("must be a boolean (true/false)".to_owned()),
        },
        Some(toml::Value::Float(_)) => raw
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| "must be a number".to_owned()),
        // A JSON array sets a list of tables (`LOGICORE_AUTH__ISSUERS='[{"issuer": …}]'`), which a comma list cannot.
        Some(toml::Value::Array(_)) if raw.starts_with('[') => {
            serde_json::from_str::<serde_json::Value>(raw)
                .map_err(|e| format!("must be a JSON array: {e}"))
                .and_then(|json| {
                    toml::Value::try_from(json).map_err(|e| format!("must be a JSON array: {e}"))
                })
        }
        Some(toml::Value::Array(_)) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        )),
        Some(toml::Value::Table(_)) => Err("is a section; set its keys instead".to_owned()),
        _ => Ok(toml::Value::String(raw.to_owned())),
    }
}
