//! How a cache is built: its tuning and the errors building it can return.

use std::time::Duration;

use platform::config::RedisSettings;

/// Why a cache could not be built. Only configuration mistakes: an unreachable Redis is not an error
/// (the cache starts degraded and recovers by itself).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("invalid redis configuration: {0}")]
    Config(#[from] redis::RedisError),
    #[error("the cache must be built inside a Tokio runtime")]
    NoRuntime,
}

/// Tuning shared by both backends; `from_settings` maps the `[redis]` section onto it.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    pub key_prefix: String,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_size: usize,
    pub compress_threshold: usize,
    pub max_entries: u64,
    /// Bound of the near cache in front of Redis (entries); 0 turns it off.
    pub near_max_entries: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            key_prefix: "logicore:".to_owned(),
            command_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_millis(250),
            pool_size: 2,
            compress_threshold: 1024,
            max_entries: 100_000,
            near_max_entries: 10_000,
        }
    }
}

impl CacheOptions {
    pub fn from_settings(settings: &RedisSettings) -> Self {
        Self {
            key_prefix: settings.key_prefix.clone(),
            command_timeout: settings.command_timeout(),
            connect_timeout: settings.connect_timeout(),
            pool_size: settings.pool_size,
            compress_threshold: settings.compress_threshold_bytes,
            max_entries: settings.memory_max_entries,
            near_max_entries: settings.near_cache_max_entries,
        }
    }
}
