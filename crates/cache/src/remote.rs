//! The Redis backend: a few multiplexed connections used round-robin, every command bounded by a short
//! timeout, a breaker that turns a dead Redis into instant misses until a background probe sees it
//! answer again, and optionally a near cache in front (`near.rs`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use crate::health::{Degraded, Pending};
use crate::near::{self, NearCache};
use crate::options::CacheOptions;
use crate::scripts;

/// How often the probe looks at a degraded Redis; also the longest a recovered Redis goes unused.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Generation keys must outlive any cache-aside load by far; an hour costs a few bytes per invalidation.
const GENERATION_TTL_SECS: u64 = 3600;
/// Invalidations kept for replay while Redis is unreachable; beyond this the whole namespace is dropped.
const MAX_PENDING: usize = 10_000;
/// Keys per SCAN step of `delete_pattern`.
const SCAN_COUNT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("redis is degraded; the cache is bypassed until it recovers")]
    Unavailable,
    #[error("redis did not answer in time")]
    Timeout,
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub(crate) struct RedisStore {
    conns: Vec<ConnectionManager>,
    next: AtomicUsize,
    prefix: String,
    timeout: Duration,
    set: Script,
    invalidate_keys: Script,
    invalidate_tags: Script,
    pub(crate) degraded: Arc<Degraded>,
    pub(crate) near: Option<Arc<NearCache>>,
    near_hits: Counter,
}

impl RedisStore {
    pub fn connect(
        url: &str,
        options: &CacheOptions,
        near_hits: Counter,
    ) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        // One attempt per reconnect: the probe below retries on its own schedule, and a request never
        // waits for a backoff loop.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_response_timeout(Some(options.command_timeout))
            .set_connection_timeout(Some(options.connect_timeout));
        let conns = (0..options.pool_size.max(1))
            .map(|_| ConnectionManager::new_lazy_with_config(client.clone(), config.clone()))
            .collect::<RedisResult<Vec<_>>>()?;
        let prefix = options.key_prefix.clone();
        let near = (options.near_max_entries > 0)
            .then(|| near_target(client.get_connection_info(), &prefix, options))
            .flatten()
            .map(|target| {
                let near = Arc::new(NearCache::new(options.near_max_entries));
                tokio::spawn(near::track(Arc::downgrade(&near), target));
                near
            });
        let store = Arc::new(Self {
            conns,
            next: AtomicUsize::new(0),
            prefix,
            timeout: options.command_timeout,
            set: Script::new(scripts::SET),
            invalidate_keys: Script::new(&scripts::invalidate_keys()),
            invalidate_tags: Script::new(&scripts::invalidate_tags()),
            degraded: Arc::new(Degraded::default()),
            near,
            near_hits,
        });
        tokio::spawn(probe(Arc::downgrade(&store)));
        Ok(store)
    }

    fn conn(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    fn value_key(&self, key: &str) -> String {
        format!("{}c:{key}", self.prefix)
    }

    fn gen_key(&self, key: &str) -> String {
        format!("{}g:{key}", self.prefix)
    }

    fn tag_set(&self, tag: &str) -> String {
        format!("{}t:{tag}", self.prefix)
    }

    fn tag_gen(&self, tag: &str) -> String {
        format!("{}tg:{tag}", self.prefix)
    }

    fn clock(&self) -> String {
        format!("{}clock", self.prefix)
    }

    /// Runs one command under the timeout, failing at once while degraded.
    async fn run<T>(&self, command: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        if self.degraded.is_down() {
            return Err(StoreError::Unavailable);
        }
        self.run_now(command).await
    }

    /// Like `run` but also while degraded (the probe and the replay use it).
    async fn run_now<T>(
        &self,
        command: impl Future<Output = RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, command).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    self.degraded.mark_down(&e.to_string());
                }
                Err(StoreError::Redis(e))
            }
            Err(_) => {
                self.degraded
                    .mark_down("no answer within the command timeout");
                Err(StoreError::Timeout)
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let Some(near) = &self.near else {
            let mut conn = self.conn();
            let cmd = redis::cmd("GET").arg(self.value_key(key)).clone();
            let value: Option<Vec<u8>> = self.run(cmd.query_async(&mut conn)).await?;
            return Ok(value.map(Bytes::from));
        };
        // Degraded: invalidations may be waiting to reach Redis, so copies are not served either.
        if !self.degraded.is_down()
            && let Some(bytes) = near.get(key)
        {
            self.near_hits.inc();
            return Ok(Some(bytes));
        }
        let ticket = near.ticket(key);
        let value_key = self.value_key(key);
        let read = redis::pipe()
            .cmd("GET")
            .arg(&value_key)
            .cmd("PTTL")
            .arg(&value_key)
            .clone();
        let mut conn = self.conn();
        let (value, ttl_ms): (Option<Vec<u8>>, i64) = self.run(read.query_async(&mut conn)).await?;
        let value = value.map(Bytes::from);
        if let (Some(ticket), Some(bytes), Ok(ttl_ms @ 1..)) =
            (ticket, &value, u64::try_from(ttl_ms))
        {
            near.fill(&ticket, key, bytes.clone(), Duration::from_millis(ttl_ms));
        }
        Ok(value)
    }

    /// Drops this process's copies of keys it just changed in Redis (their pushes arrive later).
    fn forget_near<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if let Some(near) = &self.near {
            near.forget(keys);
        }
    }

    pub async fn mget(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.value_key(key));
        }
        let values: Vec<Option<Vec<u8>>> = self.run(cmd.query_async(&mut conn)).await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }

    /// The clock value a cache-aside load compares generations with (0 while Redis holds none).
    pub async fn snapshot(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let cmd = redis::cmd("GET").arg(self.clock()).clone();
        let clock: Option<u64> = self.run(cmd.query_async(&mut conn)).await?;
        Ok(clock.unwrap_or(0))
    }

    pub async fn set(
        &self,
        key: &str,
        bytes: &[u8],
        ttl: Duration,
        tags: &[String],
        snapshot: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut invocation = self.set.prepare_invoke();
        invocation.key(self.value_key(key)).key(self.gen_key(key));
        for tag in tags {
            invocation.key(self.tag_set(tag)).key(self.tag_gen(tag));
        }
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let overwrites = snapshot.is_none();
        let snapshot = snapshot.map(|s| s.to_string()).unwrap_or_default();
        invocation.arg(bytes).arg(ttl_ms).arg(snapshot);
        let mut conn = self.conn();
        let stored: i64 = self.run(invocation.invoke_async(&mut conn)).await?;
        if stored == 1 {
            self.forget_near([key]);
            // A cache-aside fill (with a snapshot) replaces nothing another instance may hold a copy
            // of; a plain set may overwrite one.
            if overwrites {
                self.barrier(&mut conn).await;
            }
        }
        Ok(stored == 1)
    }

    pub async fn invalidate_keys(&self, keys: &[String]) -> Result<u64, StoreError> {
        if self.degraded.is_down() {
            self.queue(keys, &[]);
            return Err(StoreError::Unavailable);
        }
        self.invalidate_keys_now(keys)
            .await
            .inspect_err(|_| self.queue(keys, &[]))
    }

    async fn invalidate_keys_now(&self, keys: &[String]) -> Result<u64, StoreError> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.invalidate_keys.prepare_invoke();
        invocation.key(self.clock());
        for key in keys {
            invocation.key(self.value_key(key)).key(self.gen_key(key));
        }
        invocation.arg(GENERATION_TTL_SECS);
        let mut conn = self.conn();
        let removed = self.run_now(invocation.invoke_async(&mut conn)).await;
        // Also on failure: the copies must go now, and the queued replay reaches Redis later.
        self.forget_near(keys.iter().map(String::as_str));
        if removed.is_ok() {
            self.barrier(&mut conn).await;
        }
        removed
    }

    pub async fn invalidate_tags(&self, tags: &[String]) -> Result<u64, StoreError> {
        if self.degraded.is_down() {
            self.queue(&[], tags);
            return Err(StoreError::Unavailable);
        }
        self.invalidate_tags_now(tags)
            .await
            .inspect_err(|_| self.queue(&[], tags))
    }

    async fn invalidate_tags_now(&self, tags: &[String]) -> Result<u64, StoreError> {
        if tags.is_empty() {
            return Ok(0);
        }
        let mut invocation = self.invalidate_tags.prepare_invoke();
        invocation.key(self.clock());
        for tag in tags {
            invocation.key(self.tag_set(tag)).key(self.tag_gen(tag));
        }
        invocation.arg(GENERATION_TTL_SECS);
        let mut conn = self.conn();
        // The script names the values it dropped, so this process drops its copies before it returns.
        let (removed, members): (u64, Vec<String>) =
            self.run_now(invocation.invoke_async(&mut conn)).await?;
        let value_prefix = self.value_key("");
        self.forget_near(members.iter().filter_map(|m| m.strip_prefix(&value_prefix)));
        self.barrier(&mut conn).await;
        Ok(removed)
    }

    /// Returns once every other instance's near cache has the pushes of the change this connection just
    /// made in its socket. Redis queues the pushes of a command's changes and flushes every pending
    /// reply and push before it reads again (`beforeSleep`: `trackingBroadcastInvalidationMessages`, then
    /// `handleClientsWithPendingWrites`), and a PING sent after the command's reply is read in a later
    /// pass, so its PONG comes after the pushes were written. Without this, an instance asked right
    /// after the writer returned could still serve its copy for the microseconds between the two writes.
    /// A failed PING only marks Redis down like any other command; the change itself was applied.
    async fn barrier(&self, conn: &mut ConnectionManager) {
        let pong: Result<String, _> = self.run_now(redis::cmd("PING").query_async(conn)).await;
        if let Err(e) = pong {
            tracing::debug!(error = %e, "cache: the barrier after a change got no answer");
        }
    }

    fn queue(&self, keys: &[String], tags: &[String]) {
        self.degraded.queue(|pending: &mut Pending| {
            pending.keys.extend_from_slice(keys);
            pending.tags.extend_from_slice(tags);
            if pending.keys.len() + pending.tags.len() > MAX_PENDING {
                *pending = Pending {
                    overflow: true,
                    ..Pending::default()
                };
            }
        });
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let cmd = redis::cmd("EXISTS").arg(self.value_key(key)).clone();
        let n: i64 = self.run(cmd.query_async(&mut conn)).await?;
        Ok(n > 0)
    }

    pub async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let cmd = redis::cmd("PEXPIRE")
            .arg(self.value_key(key))
            .arg(ttl_ms)
            .clone();
        let n: i64 = self.run(cmd.query_async(&mut conn)).await?;
        self.forget_near([key]);
        Ok(n == 1)
    }

    pub async fn ttl(&self, key: &str) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.conn();
        let cmd = redis::cmd("PTTL").arg(self.value_key(key)).clone();
        let ms: i64 = self.run(cmd.query_async(&mut conn)).await?;
        Ok(u64::try_from(ms).ok().map(Duration::from_millis))
    }

    /// SCANs (never KEYS, which blocks Redis) for values matching the glob and invalidates them in
    /// batches. Returns how many were deleted.
    pub async fn delete_pattern(&self, pattern: &str) -> Result<u64, StoreError> {
        if self.degraded.is_down() {
            return Err(StoreError::Unavailable);
        }
        self.delete_pattern_now(pattern).await
    }

    async fn delete_pattern_now(&self, pattern: &str) -> Result<u64, StoreError> {
        let value_prefix = format!("{}c:", self.prefix);
        let matcher = format!("{}{pattern}", escape_glob(&value_prefix));
        let mut cursor: u64 = 0;
        let mut deleted = 0;
        loop {
            let mut conn = self.conn();
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&matcher)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .clone();
            let (next, found): (u64, Vec<String>) =
                self.run_now(cmd.query_async(&mut conn)).await?;
            let keys: Vec<String> = found
                .iter()
                .filter_map(|full| full.strip_prefix(&value_prefix).map(str::to_owned))
                .collect();
            deleted += self.invalidate_keys_now(&keys).await?;
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        for conn in &self.conns {
            let mut conn = conn.clone();
            let _: String = self
                .run_now(redis::cmd("PING").query_async(&mut conn))
                .await?;
        }
        Ok(())
    }

    /// Pings, replays the invalidations that failed, and only then lets requests use Redis again.
    async fn recover(&self) -> Result<(), StoreError> {
        self.ping().await?;
        loop {
            let pending = self.degraded.take_pending();
            let replay = async {
                if pending.overflow {
                    // Too many were lost to replay one by one: drop every value of this namespace.
                    self.delete_pattern_now("*").await?;
                }
                self.invalidate_tags_now(&pending.tags).await?;
                self.invalidate_keys_now(&pending.keys).await
            };
            if let Err(e) = replay.await {
                self.degraded.queue(|p: &mut Pending| {
                    p.keys.extend(pending.keys);
                    p.tags.extend(pending.tags);
                    p.overflow |= pending.overflow;
                });
                return Err(e);
            }
            // Copies may predate invalidations that failed while degraded (a tag's members are only
            // known to Redis): start the near cache from empty before reads use Redis again.
            if let Some(near) = &self.near {
                near.flush();
            }
            if self.degraded.mark_up_if_nothing_pending() {
                tracing::info!(prefix = %self.prefix, "cache: redis is back, cache re-enabled");
                return Ok(());
            }
        }
    }
}

/// The background task that brings a degraded Redis back into use; ends when the cache is dropped.
async fn probe(store: Weak<RedisStore>) {
    // The first pass warms the connections, so the first request does not pay for the connect.
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        if first {
            first = false;
            let _ = store.ping().await;
        } else if store.degraded.is_down()
            && let Err(e) = store.recover().await
        {
            tracing::debug!(error = %e, "cache: redis still unavailable");
        }
    }
}

fn escape_glob(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Where the near cache's tracking link connects: plain TCP only (a TLS or Unix-socket Redis gets no near
/// cache, and says so once).
fn near_target(
    info: &redis::ConnectionInfo,
    prefix: &str,
    options: &CacheOptions,
) -> Option<near::Target> {
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        tracing::warn!("cache: the near cache needs a plain TCP redis; it stays off");
        return None;
    };
    Some(near::Target {
        host: host.clone(),
        port: *port,
        username: info.redis_settings().username().map(str::to_owned),
        password: info.redis_settings().password().map(str::to_owned),
        value_prefix: format!("{prefix}c:"),
        connect_timeout: options.connect_timeout,
    })
}
