//! The shared backend: one Lua script per decision (GCRA, atomically read and written in Redis, on
//! Redis's own clock so gateway instances need no clock agreement). Redis being slow or gone is decided
//! by the fail mode within `timeout`; reconnecting happens in the background, never on a request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::gcra::{Quota, Verdict};

/// Mirrors `gcra::decide`; returns {allowed, remaining or retry-after µs, reset µs}.
const SCRIPT: &str = r"
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + emission
local ahead = new_tat - now
if ahead > tolerance then
  return {0, ahead - tolerance, tat - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000) + 1)
return {1, math.floor((tolerance - ahead) / emission), ahead}
";

/// Pause before a background reconnection attempt.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

async fn establish(
    client: redis::Client,
    config: ConnectionManagerConfig,
) -> Option<ConnectionManager> {
    match ConnectionManager::new_with_config(client, config).await {
        Ok(manager) => Some(manager),
        Err(e) => {
            tracing::warn!(error = %e, "rate limiter cannot reach redis; its fail mode applies");
            None
        }
    }
}

/// Why Redis gave no verdict.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisLimitError {
    #[error("not connected to redis")]
    NotConnected,
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis failed: {0}")]
    Redis(#[from] redis::RedisError),
}

pub(crate) struct RedisStore {
    client: redis::Client,
    prefix: String,
    connect_timeout: Duration,
    timeout: Duration,
    script: redis::Script,
    connection: Arc<RwLock<Option<ConnectionManager>>>,
    connecting: Arc<AtomicBool>,
}

impl RedisStore {
    pub(crate) fn new(
        url: &str,
        prefix: String,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(url)?,
            prefix,
            connect_timeout,
            timeout,
            script: redis::Script::new(SCRIPT),
            connection: Arc::new(RwLock::new(None)),
            connecting: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Connects once, waiting at most the connect timeout; on failure requests get the fail mode and
    /// reconnecting moves to the background.
    pub(crate) async fn connect(&self) {
        if let Some(manager) = establish(self.client.clone(), self.manager_config()).await {
            *self.connection.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
        }
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
    }

    /// Starts one background connection attempt unless one is already running.
    fn connect_in_background(&self) {
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let (client, config, slot, connecting) = (
            self.client.clone(),
            self.manager_config(),
            self.connection.clone(),
            self.connecting.clone(),
        );
        tokio::spawn(async move {
            // Spaced out so a dead Redis is not hammered by every request's miss.
            tokio::time::sleep(RECONNECT_PAUSE).await;
            if let Some(manager) = establish(client, config).await {
                *slot.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
            }
            connecting.store(false, Ordering::Release);
        });
    }

    pub(crate) async fn check(&self, key: &str, quota: Quota) -> Result<Verdict, RedisLimitError> {
        let connection = self
            .connection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(mut connection) = connection else {
            self.connect_in_background();
            return Err(RedisLimitError::NotConnected);
        };
        let tolerance = quota.emission.saturating_mul(u64::from(quota.capacity));
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(quota.emission).arg(tolerance);
        let call = invocation.invoke_async::<(u8, u64, u64)>(&mut connection);
        let (allowed, second, reset_us) = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RedisLimitError::Timeout(self.timeout))??;
        Ok(if allowed == 1 {
            Verdict {
                allowed: true,
                remaining: second,
                reset_us,
                retry_after_us: 0,
            }
        } else {
            Verdict {
                allowed: false,
                remaining: 0,
                reset_us,
                retry_after_us: second,
            }
        })
    }
}
