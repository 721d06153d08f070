//! `[redis]` settings choose the backend, and bad values are refused at start-up.

use std::collections::HashMap;
use std::path::PathBuf;

use cache::Cache;
use platform::config::{ConfigSources, load};
use prometheus_client::registry::Registry;

fn load_with(env: &[(&str, &str)]) -> Result<platform::config::Settings, String> {
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.insert("LOGICORE_ENV".into(), "test".into());
    let sources = ConfigSources {
        file: None,
        config_dir: PathBuf::from("/nonexistent"),
        env: vars,
    };
    load(&sources, &[])
        .map(|l| l.settings)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn without_redis_enabled_the_cache_lives_in_process_memory() {
    let settings = testkit::settings(&[]);
    let cache = Cache::from_settings(&settings.redis, &mut Registry::default()).expect("cache");
    assert_eq!(cache.backend_name(), "memory");
}

#[tokio::test]
async fn redis_enabled_by_the_seed_variables_uses_redis() {
    let settings = testkit::settings(&[
        ("REDIS_ENABLED", "true"),
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", "6379"),
        ("REDIS_KEY_PREFIX", "lc-settings-test:"),
    ]);
    assert_eq!(settings.redis.connection_url(), "redis://127.0.0.1:6379/");
    let cache = Cache::from_settings(&settings.redis, &mut Registry::default()).expect("cache");
    assert_eq!(cache.backend_name(), "redis");

    let settings = testkit::settings(&[("REDIS_URL", "redis://cache.internal:6380/2")]);
    assert_eq!(
        settings.redis.connection_url(),
        "redis://cache.internal:6380/2",
        "a URL wins"
    );
}

#[test]
fn out_of_range_redis_settings_are_refused() {
    for (var, value, key) in [
        (
            "LOGICORE_REDIS__COMMAND_TIMEOUT_MS",
            "0",
            "redis.command_timeout_ms",
        ),
        ("LOGICORE_REDIS__POOL_SIZE", "0", "redis.pool_size"),
        (
            "LOGICORE_REDIS__COMPRESS_THRESHOLD_BYTES",
            "1",
            "redis.compress_threshold_bytes",
        ),
        ("REDIS_URL", "http://not-redis", "redis.url"),
    ] {
        let error = load_with(&[(var, value)]).expect_err(var);
        assert!(error.contains(key), "{var}={value}: {error}");
    }
    // 0 entries turns the in-process cache off; with Redis enabled it means nothing, so it is refused.
    assert!(load_with(&[("LOGICORE_REDIS__MEMORY_MAX_ENTRIES", "0")]).is_ok());
    let error = load_with(&[
        ("REDIS_ENABLED", "true"),
        ("LOGICORE_REDIS__MEMORY_MAX_ENTRIES", "0"),
    ])
    .expect_err("memory_max_entries");
    assert!(error.contains("redis.memory_max_entries"), "{error}");
    let error =
        load_with(&[("REDIS_ENABLED", "true"), ("REDIS_KEY_PREFIX", "")]).expect_err("prefix");
    assert!(error.contains("redis.key_prefix"), "{error}");
}
