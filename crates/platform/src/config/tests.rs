use std::collections::HashMap;
use std::io::Write;

use serde::Deserialize;

use super::*;

/// A service's section as a service's crate declares one: a listener port, a bounded number and a secret
/// with an alias of its own.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct DepotSettings {
    port: u16,
    batch: u32,
    api_key: Secret,
}

impl Section for DepotSettings {
    const NAME: &'static str = "depot";
    const DEFAULTS: &'static str = "port = 4001\nbatch = 500\napi_key = \"\"\n";
    const ENV_ALIASES: &'static [EnvAlias] = &[EnvAlias::new("DEPOT_API_KEY", "depot.api_key")];

    fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            (1..=10_000).contains(&self.batch),
            "batch",
            "must be between 1 and 10000",
        );
    }
}

/// A second service, so clashes between services can be seen.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetSettings {
    port: u16,
}

impl Section for FleetSettings {
    const NAME: &'static str = "fleet";
    const DEFAULTS: &'static str = "port = 8000\n";

    fn validate(&self, _check: &mut dyn FnMut(bool, &str, &str)) {}
}

const SECTIONS: &[SectionSpec] = &[
    SectionSpec::of::<DepotSettings>(),
    SectionSpec::of::<FleetSettings>(),
];

fn sources(env: &[(&str, &str)]) -> ConfigSources {
    ConfigSources {
        file: None,
        config_dir: PathBuf::from("/nonexistent"),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn load_ok(sources: &ConfigSources) -> LoadedConfig {
    load(sources, SECTIONS).unwrap_or_else(|e| panic!("{e}"))
}

fn issues(sources: &ConfigSources) -> Vec<ConfigIssue> {
    match load(sources, SECTIONS) {
        Ok(_) => panic!("configuration unexpectedly valid"),
        Err(e) => e.issues,
    }
}

fn temp_file(contents: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(contents)
}

/// A file removed when dropped, without a tempfile dependency.
mod tempfile_path {
    use std::path::PathBuf;

    pub struct TempPath(pub PathBuf);

    impl TempPath {
        pub fn with(contents: &str) -> Self {
            let path =
                std::env::temp_dir().join(format!("logicore-config-{}.toml", uuid::Uuid::new_v4()));
            let mut file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
            super::Write::write_all(&mut file, contents.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            Self(path)
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn defaults_alone_are_valid_and_point_at_local_postgres() {
    let loaded = load_ok(&sources(&[]));
    let settings = &loaded.settings;
    assert_eq!(settings.gateway.port, 8080);
    assert_eq!(
        settings
            .section::<DepotSettings>()
            .map(|depot| depot.port)
            .ok(),
        Some(4001)
    );
    assert_eq!(settings.database.host, "127.0.0.1");
    assert_eq!(settings.database.name, "logicore");
    assert_eq!(loaded.source_of("gateway.port"), Some(Source::Default));
}

#[test]
fn every_seed_variable_name_sets_its_key() {
    let env = [
        ("GATEWAY_PORT", "9090"),
        (
            "GATEWAY_JWT_SECRET",
            "a-very-long-secret-value-of-32-bytes!!",
        ),
        ("GATEWAY_LOG_LEVEL", "debug"),
        ("GATEWAY_CIRCUIT_BREAKER_TIMEOUT", "4500"),
        ("GATEWAY_CIRCUIT_BREAKER_ERROR_THRESHOLD", "40"),
        ("GATEWAY_CIRCUIT_BREAKER_RESET_TIMEOUT", "20000"),
        ("GATEWAY_RATE_LIMIT_WINDOW_MS", "60000"),
        ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "500"),
        ("USER_SERVICE_URL", "http://users.internal:4001"),
        ("INVENTORY_SERVICE_URL", "http://inventory.internal:8000"),
        ("ORDER_SERVICE_URL", "http://orders.internal:4003"),
        ("SERVICE_NAME", "edge"),
        ("SERVICE_VERSION", "2.0.0"),
        ("SERVICE_HOST", "0.0.0.0"),
        ("SERVICE_ADVERTISE_ADDRESS", "10.0.0.5"),
        ("PORT", "7000"),
        ("DB_HOST", "db.internal"),
        ("DB_PORT", "6543"),
        ("DB_NAME", "lc"),
        ("DB_USER", "app"),
        ("DB_PASSWORD", "pw"),
        ("DB_POOL_MAX", "30"),
        ("DB_POOL_MIN", "5"),
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_PORT", "6380"),
        ("REDIS_KEY_PREFIX", "lc:"),
        ("RABBITMQ_URL", "amqp://guest:guest@mq:5672/%2f"),
        ("CONSUL_HOST", "consul.internal"),
        ("CONSUL_PORT", "8501"),
        ("JAEGER_ENDPOINT", "http://jaeger:4318"),
        ("LOG_LEVEL", "warn"),
        ("DATABASE_URL", "postgres://app:pw@db.internal:6543/lc"),
    ];
    let loaded = load_ok(&sources(&env));
    let s = &loaded.settings;
    assert_eq!(s.gateway.port, 9090);
    assert_eq!(
        s.auth.jwt_secret.expose(),
        "a-very-long-secret-value-of-32-bytes!!"
    );
    assert_eq!(s.gateway.log_level, "debug");
    assert_eq!(s.gateway.circuit_breaker.timeout_ms, 4500);
    assert_eq!(s.gateway.circuit_breaker.error_threshold_percent, 40);
    assert_eq!(s.gateway.circuit_breaker.reset_timeout_ms, 20000);
    assert_eq!(s.gateway.rate_limit.window_ms, 60000);
    assert_eq!(s.gateway.rate_limit.max_requests, 500);
    assert_eq!(s.gateway.upstreams["users"], "http://users.internal:4001");
    assert_eq!(
        s.gateway.upstreams["inventory"],
        "http://inventory.internal:8000"
    );
    assert_eq!(s.gateway.upstreams["orders"], "http://orders.internal:4003");
    assert_eq!(s.service.name, "edge");
    assert_eq!(s.service.version, "2.0.0");
    assert_eq!(s.service.host, "0.0.0.0");
    assert_eq!(s.service.port, Some(7000));
    assert_eq!(s.database.host, "db.internal");
    assert_eq!(s.database.port, 6543);
    assert_eq!(s.database.name, "lc");
    assert_eq!(s.database.user, "app");
    assert_eq!(s.database.password.expose(), "pw");
    assert_eq!(s.database.pool_max, 30);
    assert_eq!(s.database.pool_min, 5);
    assert_eq!(s.redis.host, "cache.internal");
    assert_eq!(s.redis.port, 6380);
    assert_eq!(s.redis.key_prefix, "lc:");
    assert_eq!(
        s.messaging.rabbitmq_url.expose(),
        "amqp://guest:guest@mq:5672/%2f"
    );
    assert_eq!(s.discovery.consul_host, "consul.internal");
    assert_eq!(s.discovery.consul_port, 8501);
    assert_eq!(s.discovery.backend, "consul");
    assert_eq!(s.service.advertise_address, "10.0.0.5");
    assert_eq!(s.tracing.otlp_endpoint, "http://jaeger:4318");
    assert_eq!(s.log.level, "warn");
    assert_eq!(
        s.database.url.expose(),
        "postgres://app:pw@db.internal:6543/lc"
    );
    assert_eq!(
        loaded.source_of("database.pool_max"),
        Some(Source::Env("DB_POOL_MAX".into()))
    );
}

#[test]
fn environment_beats_file_which_beats_per_environment_file_which_beats_defaults() {
    let dir = std::env::temp_dir().join(format!("logicore-config-dir-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("staging.toml"),
        "[database]\npool_max = 11\npool_min = 2\n[depot]\nport = 5001\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = temp_file("[database]\npool_max = 12\n[gateway]\nport = 8181\n");
    let mut src = sources(&[("LOGICORE_ENV", "staging"), ("DB_POOL_MAX", "13")]);
    src.config_dir = dir.clone();
    src.file = Some(file.0.clone());
    let loaded = load_ok(&src);
    let s = &loaded.settings;
    assert_eq!(s.environment, "staging");
    assert_eq!(s.database.pool_max, 13, "env wins");
    assert_eq!(s.gateway.port, 8181, "explicit file beats defaults");
    assert_eq!(
        s.section::<DepotSettings>().map(|depot| depot.port).ok(),
        Some(5001),
        "per-environment file beats defaults"
    );
    assert_eq!(s.database.pool_min, 2);
    assert_eq!(
        loaded.source_of("gateway.port"),
        Some(Source::File(file.0.clone()))
    );
    assert_eq!(
        loaded.source_of("depot.port"),
        Some(Source::File(dir.join("staging.toml")))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn logicore_config_names_the_file_when_no_flag_is_given() {
    let file = temp_file("[depot]\nport = 4101\n");
    let path = file.0.display().to_string();
    let loaded = load_ok(&sources(&[("LOGICORE_CONFIG", &path)]));
    assert_eq!(
        loaded.source_of("depot.port"),
        Some(Source::File(file.0.clone()))
    );
}

#[test]
fn generic_variables_reach_any_key_and_unknown_ones_are_errors() {
    let loaded = load_ok(&sources(&[("LOGICORE_DATABASE__SLOW_QUERY_MS", "50")]));
    assert_eq!(loaded.settings.database.slow_query_ms, 50);
    let found = issues(&sources(&[("LOGICORE_DATABASE__POOL_MAXX", "5")]));
    assert_eq!(found[0].key, "database.pool_maxx");
    assert_eq!(found[0].rule, "unknown configuration key");
}

#[test]
fn every_bad_key_is_reported_with_its_rule_and_value() {
    let found = issues(&sources(&[
        ("DB_POOL_MAX", "0"),
        ("GATEWAY_CIRCUIT_BREAKER_ERROR_THRESHOLD", "150"),
        ("USER_SERVICE_URL", "not a url"),
        ("LOG_LEVEL", "loud=="),
    ]));
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    for expected in [
        "database.pool_max",
        "gateway.circuit_breaker.error_threshold_percent",
        "gateway.upstreams.users",
        "log.level",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let pool = found
        .iter()
        .find(|i| i.key == "database.pool_max")
        .unwrap_or_else(|| panic!("pool_max"));
    assert_eq!(pool.value, "0");
    assert_eq!(pool.source, "env DB_POOL_MAX");
    assert!(pool.rule.contains("between 1 and 1000"));
}

#[test]
fn values_of_the_wrong_type_are_reported_before_typing() {
    let found = issues(&sources(&[("DB_PORT", "five"), ("GATEWAY_PORT", "x")]));
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["database.port", "gateway.port"]);
    assert!(found.iter().all(|i| i.rule == "must be an integer"));
}

#[test]
fn a_typo_in_a_file_is_rejected_with_its_key() {
    let file = temp_file("[gateway]\nprot = 1\n");
    let mut src = sources(&[]);
    src.file = Some(file.0.clone());
    let found = issues(&src);
    assert!(
        found[0].rule.contains("unknown field `prot`"),
        "{:?}",
        found[0]
    );
    assert_eq!(found[0].key, "gateway.prot");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let mut src = sources(&[]);
    src.file = Some(PathBuf::from("/nonexistent/logicore.toml"));
    assert_eq!(issues(&src)[0].key, "--config");
}

#[test]
fn production_needs_no_secret_but_refuses_the_development_or_a_short_one_once_hs256_is_on() {
    let production = load(&sources(&[("LOGICORE_ENV", "production")]), SECTIONS)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !production.settings.auth.accept_hs256,
        "HS256 is off in production unless asked for"
    );
    let found = issues(&sources(&[
        ("LOGICORE_ENV", "production"),
        ("LOGICORE_AUTH__ACCEPT_HS256", "true"),
    ]));
    assert!(
        found
            .iter()
            .any(|i| i.key == "auth.jwt_secret" && i.rule.contains("development default"))
    );
    let found = issues(&sources(&[
        ("LOGICORE_ENV", "production"),
        ("LOGICORE_AUTH__ACCEPT_HS256", "true"),
        ("JWT_SECRET", "short"),
    ]));
    let issue = found
        .iter()
        .find(|i| i.key == "auth.jwt_secret")
        .unwrap_or_else(|| panic!("no issue"));
    assert!(issue.rule.contains("at least 32 bytes"));
    assert_eq!(
        issue.value, "\"********\"",
        "the secret is masked in the report"
    );
    let ok = sources(&[
        ("LOGICORE_ENV", "production"),
        ("LOGICORE_AUTH__ACCEPT_HS256", "true"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ]);
    assert!(load(&ok, SECTIONS).is_ok());
    let hs256_signing_needs_acceptance = issues(&sources(&[
        ("LOGICORE_ENV", "production"),
        ("LOGICORE_AUTH__SIGNING_ALGORITHM", "HS256"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ]));
    assert!(
        hs256_signing_needs_acceptance
            .iter()
            .any(|i| i.key == "auth.accept_hs256")
    );
}

#[test]
fn external_issuers_come_from_a_json_environment_variable_and_are_checked() {
    let issuers = r#"[{"issuer": "https://idp.example/realms/x", "audiences": ["logicore"],
        "roles_claim": "realm_access.roles", "role_map": {"wh": "manager"}}]"#;
    let settings = load(&sources(&[("LOGICORE_AUTH__ISSUERS", issuers)]), SECTIONS)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.settings.auth.issuers.len(), 1);
    assert_eq!(
        settings.settings.auth.issuers[0].roles_claim,
        "realm_access.roles"
    );
    let bad = r#"[{"issuer": "idp", "audiences": [], "role_map": {"wh": "wizard"}}]"#;
    let found = issues(&sources(&[("LOGICORE_AUTH__ISSUERS", bad)]));
    for key in [
        "auth.issuers[0].issuer",
        "auth.issuers[0].audiences",
        "auth.issuers[0].role_map",
    ] {
        assert!(found.iter().any(|i| i.key == key), "{key}: {found:?}");
    }
}

#[test]
fn two_aliases_with_different_values_are_a_conflict() {
    let found = issues(&sources(&[
        ("JWT_SECRET", "aaaaaaaa"),
        ("GATEWAY_JWT_SECRET", "bbbbbbbb"),
    ]));
    assert_eq!(found[0].key, "auth.jwt_secret");
    assert!(found[0].rule.contains("different values"));
    assert!(
        !found[0].to_string().contains("aaaa"),
        "secret leaked: {}",
        found[0]
    );
}

#[test]
fn the_rendered_config_masks_secrets_and_names_sources() {
    let loaded = load_ok(&sources(&[
        ("DB_PASSWORD", "hunter2-password"),
        ("DATABASE_URL", "postgres://app:hunter2-url@db/lc"),
        ("JWT_SECRET", "jwt-secret-value-that-is-long-enough"),
        ("RABBITMQ_URL", "amqp://guest:rabbit-pass@mq:5672/%2f"),
    ]));
    let text = loaded.render();
    for secret in [
        "hunter2-password",
        "hunter2-url",
        "jwt-secret-value",
        "rabbit-pass",
    ] {
        assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
    }
    assert!(
        text.contains("database.password = \"********\"  # env DB_PASSWORD"),
        "{text}"
    );
    assert!(
        text.contains("database.url = \"postgres://app:********@db/lc\"  # env DATABASE_URL"),
        "{text}"
    );
    assert!(text.contains("gateway.port = 8080  # default"), "{text}");
    let debug = format!("{:?}", loaded.settings);
    assert!(!debug.contains("hunter2"), "Debug leaked a secret");
}

#[test]
fn list_values_come_from_comma_separated_variables() {
    let loaded = load_ok(&sources(&[(
        "LOGICORE_GATEWAY__CORS_ALLOWED_ORIGINS",
        "https://a.example, https://b.example",
    )]));
    assert_eq!(
        loaded.settings.gateway.cors_allowed_origins,
        ["https://a.example", "https://b.example"]
    );
}

#[test]
fn the_process_environment_is_only_read_when_asked() {
    let env: HashMap<String, String> = HashMap::new();
    let src = ConfigSources {
        env,
        ..sources(&[])
    };
    assert_eq!(load_ok(&src).settings.gateway.port, 8080);
}

#[test]
fn a_service_url_may_list_several_instances_but_each_must_be_a_url() {
    let loaded = load_ok(&sources(&[(
        "USER_SERVICE_URL",
        "http://users-1.internal:4001,http://users-2.internal:4001",
    )]));
    assert_eq!(
        loaded.settings.gateway.upstreams["users"],
        "http://users-1.internal:4001,http://users-2.internal:4001"
    );
    let found = issues(&sources(&[(
        "USER_SERVICE_URL",
        "http://users-1.internal:4001,nope",
    )]));
    assert!(
        found.iter().any(|i| i.key == "gateway.upstreams.users"),
        "{found:?}"
    );
}

#[test]
fn gateway_retry_and_outlier_settings_come_from_generic_variables() {
    let s = load_ok(&sources(&[
        ("LOGICORE_GATEWAY__RETRY__MAX_ATTEMPTS", "1"),
        ("LOGICORE_GATEWAY__RETRY__BUDGET_PERCENT", "5"),
        ("LOGICORE_GATEWAY__OUTLIER__CONSECUTIVE_FAILURES", "2"),
        ("LOGICORE_GATEWAY__OUTLIER__MAX_EJECTION_PERCENT", "50"),
    ]))
    .settings;
    assert_eq!(s.gateway.retry.max_attempts, 1);
    assert_eq!(s.gateway.retry.budget_percent, 5);
    assert_eq!(
        s.gateway.retry.backoff_base_ms, 5,
        "untouched keys keep defaults"
    );
    assert_eq!(s.gateway.outlier.consecutive_failures, 2);
    assert_eq!(s.gateway.outlier.max_ejection_percent, 50);
}

#[test]
fn every_bad_retry_and_outlier_key_is_named() {
    let found = issues(&sources(&[
        ("LOGICORE_GATEWAY__RETRY__MAX_ATTEMPTS", "0"),
        ("LOGICORE_GATEWAY__RETRY__BACKOFF_BASE_MS", "50"),
        ("LOGICORE_GATEWAY__RETRY__BACKOFF_MAX_MS", "10"),
        ("LOGICORE_GATEWAY__RETRY__BUDGET_PERCENT", "101"),
        ("LOGICORE_GATEWAY__RETRY__BUDGET_WINDOW_MS", "0"),
        (
            "LOGICORE_GATEWAY__RETRY__MAX_BUFFERED_BODY_BYTES",
            "99999999",
        ),
        ("LOGICORE_GATEWAY__OUTLIER__CONSECUTIVE_FAILURES", "0"),
        ("LOGICORE_GATEWAY__OUTLIER__BASE_EJECTION_MS", "0"),
        ("LOGICORE_GATEWAY__OUTLIER__MAX_EJECTION_PERCENT", "101"),
    ]));
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    for expected in [
        "gateway.retry.max_attempts",
        "gateway.retry.backoff_max_ms",
        "gateway.retry.budget_percent",
        "gateway.retry.budget_window_ms",
        "gateway.retry.max_buffered_body_bytes",
        "gateway.outlier.consecutive_failures",
        "gateway.outlier.base_ejection_ms",
        "gateway.outlier.max_ejection_percent",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    let attempts = found
        .iter()
        .find(|i| i.key == "gateway.retry.max_attempts")
        .unwrap_or_else(|| panic!("max_attempts"));
    assert_eq!(attempts.source, "env LOGICORE_GATEWAY__RETRY__MAX_ATTEMPTS");
}

#[test]
fn type_errors_and_rule_violations_are_all_reported_in_one_run() {
    let file = temp_file(
        "[gateway]\nprot = 1\nrequest_timeout_ms = \"soon\"\n[database]\npool_max = 2000\n",
    );
    let mut src = sources(&[("GATEWAY_PORT", "http"), ("DB_PORT", "five")]);
    src.file = Some(file.0.clone());
    let found = issues(&src);
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    for expected in [
        "gateway.port",
        "database.port",
        "gateway.prot",
        "gateway.request_timeout_ms",
        "database.pool_max",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    assert_eq!(keys.len(), 5, "each key once: {found:?}");
    let timeout = &found[keys
        .iter()
        .position(|k| *k == "gateway.request_timeout_ms")
        .unwrap_or(0)];
    assert_eq!(timeout.rule, "must be a whole number, not a string");
}

#[test]
fn a_bare_word_that_is_not_a_level_is_refused_as_a_log_level() {
    for bad in ["loud", "info,loud", ""] {
        let found = issues(&sources(&[("LOG_LEVEL", bad)]));
        assert_eq!(found[0].key, "log.level", "{bad:?}: {found:?}");
    }
    let found = issues(&sources(&[("GATEWAY_LOG_LEVEL", "verbose")]));
    assert_eq!(found[0].key, "gateway.log_level");
    for good in [
        "warn",
        "INFO",
        "info,sqlx=warn",
        "off",
        "logicore[request]=debug",
    ] {
        let loaded = load_ok(&sources(&[("LOG_LEVEL", good)]));
        assert_eq!(loaded.settings.log.level, good);
    }
}

#[test]
fn ports_timeouts_and_percentages_are_range_checked_in_every_section() {
    let found = issues(&sources(&[
        ("LOGICORE_DEPOT__PORT", "70000"),
        ("DB_PORT", "0"),
        ("PORT", "65536"),
        ("LOGICORE_REDIS__COMMAND_TIMEOUT_MS", "0"),
        ("LOGICORE_GATEWAY__READINESS_TIMEOUT_MS", "0"),
        ("LOGICORE_GATEWAY__OUTLIER__MAX_EJECTION_PERCENT", "101"),
        ("LOGICORE_DEPOT__BATCH", "-3"),
    ]));
    let rule_of = |key: &str| {
        found
            .iter()
            .find(|i| i.key == key)
            .map(|i| i.rule.clone())
            .unwrap_or_else(|| panic!("{key} missing from {found:?}"))
    };
    assert_eq!(rule_of("depot.port"), "must be between 1 and 65535");
    assert_eq!(rule_of("database.port"), "must be between 1 and 65535");
    assert_eq!(rule_of("service.port"), "must be between 1 and 65535");
    assert_eq!(rule_of("redis.command_timeout_ms"), "must be positive");
    assert_eq!(rule_of("gateway.readiness_timeout_ms"), "must be positive");
    assert_eq!(
        rule_of("gateway.outlier.max_ejection_percent"),
        "must be between 0 and 100"
    );
    assert_eq!(rule_of("depot.batch"), "must not be negative");
    let depot = found.iter().find(|i| i.key == "depot.port");
    assert_eq!(depot.map(|i| i.value.as_str()), Some("70000"));
}

#[test]
fn two_services_on_one_port_are_a_clash_naming_both_keys() {
    let found = issues(&sources(&[
        ("LOGICORE_FLEET__PORT", "8080"),
        ("LOGICORE_GATEWAY__ADMIN_PORT", "4001"),
    ]));
    let rules: Vec<String> = found
        .iter()
        .map(|i| format!("{}: {}", i.key, i.rule))
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(
        rules
            .iter()
            .any(|r| r.contains("gateway.admin_port") && r.contains("depot.port")),
        "{rules:?}"
    );
    assert!(
        rules
            .iter()
            .any(|r| r.contains("fleet.port") && r.contains("gateway.port")),
        "{rules:?}"
    );
    // Servers LogiCore connects to may share a number with a listener.
    load_ok(&sources(&[("DB_PORT", "8080"), ("REDIS_PORT", "4001")]));
}

#[test]
fn moving_a_service_port_moves_the_gateway_upstream_unless_it_was_set() {
    let loaded = load_ok(&sources(&[
        ("LOGICORE_DEPOT__PORT", "5101"),
        ("LOGICORE_FLEET__PORT", "5103"),
        (
            "LOGICORE_GATEWAY__UPSTREAMS__FLEET",
            "http://fleet.internal:4003",
        ),
    ]));
    let upstreams = &loaded.settings.gateway.upstreams;
    assert_eq!(
        upstreams.keys().collect::<Vec<_>>(),
        ["depot", "fleet"],
        "one upstream per registered service"
    );
    assert_eq!(upstreams["depot"], "http://127.0.0.1:5101");
    assert_eq!(upstreams["fleet"], "http://fleet.internal:4003");
    assert_eq!(
        loaded
            .settings
            .section::<FleetSettings>()
            .map(|fleet| fleet.port)
            .ok(),
        Some(5103),
        "a set upstream does not stop the service's own port from moving"
    );
    assert_eq!(
        loaded.source_of("gateway.upstreams.depot"),
        Some(Source::Derived("service.host and depot.port".into()))
    );
    let wildcard = load_ok(&sources(&[("SERVICE_HOST", "0.0.0.0")]));
    assert_eq!(
        wildcard.settings.gateway.upstreams["depot"], "http://127.0.0.1:4001",
        "a wildcard bind is reached on loopback"
    );
}

#[test]
fn naming_a_redis_server_turns_redis_on_unless_disabled_explicitly() {
    assert!(!load_ok(&sources(&[])).settings.redis.enabled);
    for var in [
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_URL", "redis://cache:6379/"),
    ] {
        let loaded = load_ok(&sources(&[var]));
        assert!(loaded.settings.redis.enabled, "{var:?}");
    }
    let off = load_ok(&sources(&[
        ("REDIS_HOST", "cache.internal"),
        ("REDIS_ENABLED", "false"),
    ]));
    assert!(!off.settings.redis.enabled);
    let file = temp_file("[redis]\nurl = \"redis://cache:6379/\"\n");
    let mut src = sources(&[]);
    src.file = Some(file.0.clone());
    assert!(load_ok(&src).settings.redis.enabled);
}

#[test]
fn the_default_rate_limit_is_100_requests_per_minute() {
    let limit = load_ok(&sources(&[])).settings.gateway.rate_limit;
    assert_eq!((limit.max_requests, limit.window_ms), (100, 60_000));
}

#[test]
fn a_pool_wait_as_long_as_the_gateways_deadline_is_refused() {
    let found = issues(&sources(&[
        ("LOGICORE_DATABASE__ACQUIRE_TIMEOUT_MS", "3000"),
        ("LOGICORE_GATEWAY__CIRCUIT_BREAKER__TIMEOUT_MS", "3000"),
    ]));
    assert!(
        found.iter().any(|i| i.key == "database.acquire_timeout_ms"),
        "{found:?}"
    );
}

#[test]
fn breaker_failure_kinds_and_reconnect_bounds_are_checked() {
    let found = issues(&sources(&[
        (
            "LOGICORE_GATEWAY__CIRCUIT_BREAKER__FAILURE_ON",
            "connect,reset",
        ),
        ("LOGICORE_MESSAGING__RECONNECT_MIN_MS", "500"),
        ("LOGICORE_MESSAGING__RECONNECT_MAX_MS", "100"),
    ]));
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert!(
        keys.contains(&"gateway.circuit_breaker.failure_on"),
        "{found:?}"
    );
    assert!(keys.contains(&"messaging.reconnect_max_ms"), "{found:?}");
    let loaded = load_ok(&sources(&[(
        "LOGICORE_GATEWAY__CIRCUIT_BREAKER__FAILURE_ON",
        "connect, timeout, 5xx, 429",
    )]));
    assert_eq!(
        loaded.settings.gateway.circuit_breaker.failure_on,
        ["connect", "timeout", "5xx", "429"]
    );
}

#[test]
fn a_services_section_is_set_like_the_platforms_and_checked_with_them() {
    let file = temp_file("[depot]\nbatch = 20\n");
    let mut src = sources(&[("DEPOT_API_KEY", "depot-key-value")]);
    src.file = Some(file.0.clone());
    let loaded = load_ok(&src);
    let depot: DepotSettings = loaded.settings.section().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        depot,
        DepotSettings {
            port: 4001,
            batch: 20,
            api_key: Secret::new("depot-key-value"),
        }
    );
    let text = loaded.render();
    assert!(text.contains("depot.batch = 20  # file"), "{text}");
    assert!(
        text.contains("depot.api_key = \"********\"  # env DEPOT_API_KEY"),
        "{text}"
    );

    let found = issues(&sources(&[
        ("LOGICORE_DEPOT__BATCH", "0"),
        ("LOGICORE_FLEET__PORT", "many"),
        ("LOGICORE_FLEET__PROT", "1"),
    ]));
    let keys: Vec<&str> = found.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["fleet.prot", "fleet.port", "depot.batch"],
        "{found:?}"
    );
    assert_eq!(found[2].rule, "must be between 1 and 10000");
    assert_eq!(found[2].source, "env LOGICORE_DEPOT__BATCH");
}

#[test]
fn a_section_no_service_registered_is_refused_and_its_type_gets_its_defaults() {
    let file = temp_file("[depot]\nport = 4101\n");
    let mut src = sources(&[]);
    src.file = Some(file.0.clone());
    let Err(error) = load(&src, &[]) else {
        panic!("an unregistered section was accepted");
    };
    assert_eq!(error.issues[0].key, "depot");
    assert!(
        error.issues[0]
            .rule
            .starts_with("unknown section; the sections are auth, database,"),
        "{error}"
    );
    assert_eq!(
        error.issues[0].source,
        Source::File(file.0.clone()).to_string()
    );

    let bare = load(&sources(&[]), &[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(bare.settings.gateway.upstreams.is_empty());
    let depot: DepotSettings = bare.settings.section().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((depot.port, depot.batch), (4001, 500));
}

#[test]
fn a_section_named_like_one_of_the_platforms_is_refused() {
    #[derive(Debug, Deserialize)]
    struct Imposter {}
    impl Section for Imposter {
        const NAME: &'static str = "database";
        const DEFAULTS: &'static str = "";
        fn validate(&self, _check: &mut dyn FnMut(bool, &str, &str)) {}
    }
    let Err(error) = load(&sources(&[]), &[SectionSpec::of::<Imposter>()]) else {
        panic!("a section shadowed the platform's");
    };
    assert_eq!(error.issues[0].key, "database");
}

#[test]
fn naming_a_consul_agent_selects_consul_unless_a_backend_is_named() {
    let loaded = load_ok(&sources(&[("CONSUL_HOST", "consul.internal")]));
    assert_eq!(loaded.settings.discovery.backend, "consul");
    assert_eq!(
        loaded.source_of("discovery.backend"),
        Some(Source::Derived("discovery.consul_host being set".into()))
    );
    let named = load_ok(&sources(&[
        ("CONSUL_HOST", "consul.internal"),
        ("DISCOVERY_BACKEND", "dns"),
    ]));
    assert_eq!(named.settings.discovery.backend, "dns");
    let token = load_ok(&sources(&[("CONSUL_HTTP_TOKEN", "acl-secret")]));
    assert_eq!(token.settings.discovery.consul_token.expose(), "acl-secret");
    assert!(!token.render().contains("acl-secret"));
}

#[test]
fn a_registering_backend_needs_an_address_others_can_call() {
    let wildcard = issues(&sources(&[
        ("DISCOVERY_BACKEND", "etcd"),
        ("SERVICE_HOST", "0.0.0.0"),
    ]));
    assert!(
        wildcard
            .iter()
            .any(|i| i.key == "service.advertise_address" && i.rule.contains("wildcard")),
        "{wildcard:?}"
    );
    load_ok(&sources(&[
        ("DISCOVERY_BACKEND", "etcd"),
        ("SERVICE_HOST", "0.0.0.0"),
        ("SERVICE_ADVERTISE_ADDRESS", "10.1.2.3"),
    ]));
    // DNS and static register nothing, so a wildcard bind is fine with them.
    load_ok(&sources(&[("SERVICE_HOST", "0.0.0.0")]));
}

#[test]
fn bad_discovery_settings_are_each_named() {
    let found = issues(&sources(&[
        ("DISCOVERY_BACKEND", "zookeeper"),
        ("SERVICE_ADVERTISE_ADDRESS", "0.0.0.0"),
        ("LOGICORE_DISCOVERY__ETCD_LEASE_TTL_S", "1"),
        ("LOGICORE_DISCOVERY__DNS_SERVER", "dns.internal"),
        ("LOGICORE_GATEWAY__LOAD_BALANCING", "random"),
    ]));
    for key in [
        "discovery.backend",
        "service.advertise_address",
        "discovery.etcd_lease_ttl_s",
        "discovery.dns_server",
        "gateway.load_balancing",
    ] {
        assert!(found.iter().any(|i| i.key == key), "{key}: {found:?}");
    }
    let etcd = issues(&sources(&[
        ("DISCOVERY_BACKEND", "etcd"),
        ("ETCD_ENDPOINTS", "http://etcd-0:2379,etcd-1:2379"),
    ]));
    assert!(
        etcd.iter().any(|i| i.key == "discovery.etcd_endpoints"),
        "{etcd:?}"
    );
    let consul = issues(&sources(&[("DISCOVERY_BACKEND", "consul")]));
    assert!(
        consul.iter().any(|i| i.key == "discovery.consul_host"),
        "{consul:?}"
    );
}
