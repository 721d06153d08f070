//! The `Cache` handle: typed operations over a byte-level backend, with stats and single-flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use platform::config::RedisSettings;
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Codec;
use crate::flight::{Flights, Role};
use crate::health::CacheCheck;
use crate::key::{Key, Tag};
use crate::memory::MemoryStore;
use crate::options::{CacheError, CacheOptions};
use crate::remote::{RedisStore, StoreError};
use crate::stats::{Stats, StatsSnapshot};

enum Backend {
    Memory(MemoryStore),
    Redis(Arc<RedisStore>),
    /// Caching turned off: every read misses, nothing is stored, loaders always run.
    Off,
}

struct Inner {
    backend: Backend,
    codec: Codec,
    stats: Stats,
    flights: Flights,
}

/// A cheap-to-clone handle to one cache. Every operation is infallible from the caller's side: a backend
/// failure is logged, counted in `cache_errors_total`, and behaves as a miss (reads) or a no-op (writes).
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

fn strings<T: AsRef<str>>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| i.as_ref().to_owned()).collect()
}

impl Cache {
    /// Redis when `redis.enabled`, otherwise the in-process store, or no cache at all when
    /// `redis.memory_max_entries` is 0. Needs a Tokio runtime (Redis runs a background probe); stats are
    /// registered in `registry`.
    pub fn from_settings(
        settings: &RedisSettings,
        registry: &mut Registry,
    ) -> Result<Self, CacheError> {
        let options = CacheOptions::from_settings(settings);
        if settings.enabled {
            Self::redis(&settings.connection_url(), &options, registry)
        } else {
            Ok(Self::memory(&options, registry))
        }
    }

    /// The in-process store, bounded to `options.max_entries`; with a bound of 0, [`Cache::off`].
    pub fn memory(options: &CacheOptions, registry: &mut Registry) -> Self {
        let backend = if options.max_entries == 0 {
            Backend::Off
        } else {
            Backend::Memory(MemoryStore::new(options.max_entries))
        };
        Self::with_backend(backend, options, registry)
    }

    /// No cache: every read misses (and is counted as a miss), nothing is stored, invalidations are
    /// no-ops, and `get_or_set` runs its loader every time, without single-flight. The uncached baseline
    /// of a benchmark, or a way to rule the cache out while debugging, with the call sites unchanged.
    pub fn off(registry: &mut Registry) -> Self {
        Self::with_backend(Backend::Off, &CacheOptions::default(), registry)
    }

    /// Connects lazily: a Redis that is down now makes a degraded cache, not an error.
    pub fn redis(
        url: &str,
        options: &CacheOptions,
        registry: &mut Registry,
    ) -> Result<Self, CacheError> {
        tokio::runtime::Handle::try_current().map_err(|_| CacheError::NoRuntime)?;
        let stats = Stats::register(registry);
        let store = RedisStore::connect(url, options, stats.near_hits.clone())?;
        Ok(Self::with_stats(Backend::Redis(store), options, stats))
    }

    fn with_backend(backend: Backend, options: &CacheOptions, registry: &mut Registry) -> Self {
        Self::with_stats(backend, options, Stats::register(registry))
    }

    fn with_stats(backend: Backend, options: &CacheOptions, stats: Stats) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                codec: Codec {
                    compress_threshold: options.compress_threshold,
                },
                stats,
                flights: Flights::default(),
            }),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
            Backend::Off => "off",
        }
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.inner.stats.snapshot()
    }

    /// For `platform::health::Readiness`: `Box::new(cache.health_check())`.
    pub fn health_check(&self) -> CacheCheck {
        CacheCheck(self.clone())
    }

    pub(crate) fn redis_store(&self) -> Option<&RedisStore> {
        match &self.inner.backend {
            Backend::Redis(store) => Some(store),
            Backend::Memory(_) | Backend::Off => None,
        }
    }

    /// Counts a failure and turns it into the fallback value.
    fn failed<T>(&self, op: &'static str, error: &dyn std::fmt::Display, fallback: T) -> T {
        self.inner.stats.errors.inc();
        tracing::debug!(op, error = %error, "cache: operation failed, carrying on without the cache");
        fallback
    }

    async fn get_bytes(&self, key: &Key) -> Result<Option<Bytes>, StoreError> {
        match &self.inner.backend {
            Backend::Memory(m) => Ok(m.get(key.as_str())),
            Backend::Redis(r) => r.get(key.as_str()).await,
            Backend::Off => Ok(None),
        }
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        match self.inner.codec.decode(bytes) {
            Ok(value) => Some(value),
            // E.g. a value written by a release with an incompatible type: a miss, then overwritten.
            Err(e) => self.failed("decode", &e, None),
        }
    }

    fn count_read(&self, hit: bool) {
        if hit {
            self.inner.stats.hits.inc();
        } else {
            self.inner.stats.misses.inc();
        }
    }

    /// The cached value of `key`. Inside a traced span this is a client span of its own, `cache get`,
    /// saying whether it was a hit.
    pub async fn get<T: DeserializeOwned>(&self, key: &Key) -> Option<T> {
        let span = self.span("cache get");
        let read = async {
            match self.get_bytes(key).await {
                Ok(bytes) => bytes.and_then(|b| self.decode(&b)),
                Err(e) => self.failed("get", &e, None),
            }
        };
        let value = match &span {
            Some(span) => tracing::Instrument::instrument(read, span.clone()).await,
            None => read.await,
        };
        if let Some(span) = &span {
            span.record("cache.hit", value.is_some());
        }
        self.count_read(value.is_some());
        value
    }

    /// A client span for one cache operation, when the caller's work is traced.
    fn span(&self, name: &'static str) -> Option<tracing::Span> {
        if !platform::telemetry::traces::in_traced_span() {
            return None;
        }
        let backend = self.backend_name();
        Some(tracing::info_span!(
            "cache",
            otel.name = name,
            otel.kind = "client",
            db.system.name = if backend == "redis" {
                "redis"
            } else {
                "memory"
            },
            cache.backend = backend,
            cache.hit = tracing::field::Empty,
        ))
    }

    pub async fn mget<T: DeserializeOwned>(&self, keys: &[Key]) -> Vec<Option<T>> {
        let found = match &self.inner.backend {
            Backend::Memory(m) => Ok(keys.iter().map(|k| m.get(k.as_str())).collect()),
            Backend::Redis(r) => r.mget(&strings(keys)).await,
            Backend::Off => Ok(vec![None; keys.len()]),
        };
        let found = found.unwrap_or_else(|e| self.failed("mget", &e, vec![None; keys.len()]));
        found
            .into_iter()
            .map(|bytes| {
                let value = bytes.and_then(|b| self.decode(&b));
                self.count_read(value.is_some());
                value
            })
            .collect()
    }

    /// Stores `value` unconditionally (use it with a value known to be current, e.g. just committed).
    /// Returns whether it was stored; a zero TTL stores nothing.
    pub async fn set<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        ttl: Duration,
        tags: &[Tag],
    ) -> bool {
        self.store(key, value, ttl, tags, None).await
    }

    async fn store<T: Serialize>(
        &self,
        key: &Key,
        value: &T,
        ttl: Duration,
        tags: &[Tag],
        snapshot: Option<u64>,
    ) -> bool {
        if ttl.is_zero() || matches!(self.inner.backend, Backend::Off) {
            return false;
        }
        let bytes = match self.inner.codec.encode(value).await {
            Ok(bytes) => bytes,
            Err(e) => return self.failed("encode", &e, false),
        };
        let tags = strings(tags);
        let stored = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.set(key.as_str(), Bytes::from(bytes), ttl, &tags, snapshot)),
            Backend::Redis(r) => r.set(key.as_str(), &bytes, ttl, &tags, snapshot).await,
            Backend::Off => Ok(false),
        };
        match stored {
            Ok(true) => {
                self.inner.stats.sets.inc();
                true
            }
            Ok(false) => false,
            Err(e) => self.failed("set", &e, false),
        }
    }

    /// Stores every entry with the same TTL and tags; returns how many were stored.
    pub async fn mset<T: Serialize>(
        &self,
        entries: &[(Key, T)],
        ttl: Duration,
        tags: &[Tag],
    ) -> usize {
        let stored = futures::future::join_all(
            entries
                .iter()
                .map(|(key, value)| self.store(key, value, ttl, tags, None)),
        )
        .await;
        stored.into_iter().filter(|&s| s).count()
    }

    /// Invalidates one key (see `invalidate_keys`); returns whether it was cached.
    pub async fn delete(&self, key: &Key) -> bool {
        self.invalidate_keys(std::slice::from_ref(key)).await > 0
    }

    /// Removes the keys and stops any load that started before this call from storing its value. Call it
    /// after the writing transaction commits. With Redis unreachable the invalidation is queued, and the
    /// cache is bypassed until it has been replayed. Returns how many values were removed.
    pub async fn invalidate_keys(&self, keys: &[Key]) -> u64 {
        let removed = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.invalidate_keys(&strings(keys))),
            Backend::Redis(r) => r.invalidate_keys(&strings(keys)).await,
            Backend::Off => Ok(0),
        };
        let removed = removed.unwrap_or_else(|e| self.failed("invalidate_keys", &e, 0));
        self.inner.stats.deletes.inc_by(removed);
        removed
    }

    /// Like `invalidate_keys` for every key stored with one of the tags.
    pub async fn invalidate_tags(&self, tags: &[Tag]) -> u64 {
        let removed = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.invalidate_tags(&strings(tags))),
            Backend::Redis(r) => r.invalidate_tags(&strings(tags)).await,
            Backend::Off => Ok(0),
        };
        let removed = removed.unwrap_or_else(|e| self.failed("invalidate_tags", &e, 0));
        self.inner.stats.deletes.inc_by(removed);
        removed
    }

    /// Invalidates every key matching a glob (`*`, `?`, `\` escapes), e.g. `product:sku:*`. Redis walks
    /// the keyspace with SCAN, so this is for maintenance, not for a request path.
    pub async fn delete_pattern(&self, pattern: &str) -> u64 {
        let removed = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.delete_pattern(pattern)),
            Backend::Redis(r) => r.delete_pattern(pattern).await,
            Backend::Off => Ok(0),
        };
        let removed = removed.unwrap_or_else(|e| self.failed("delete_pattern", &e, 0));
        self.inner.stats.deletes.inc_by(removed);
        removed
    }

    pub async fn exists(&self, key: &Key) -> bool {
        let found = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.exists(key.as_str())),
            Backend::Redis(r) => r.exists(key.as_str()).await,
            Backend::Off => Ok(false),
        };
        found.unwrap_or_else(|e| self.failed("exists", &e, false))
    }

    /// Gives a cached key a new TTL; false when it is not cached.
    pub async fn expire(&self, key: &Key, ttl: Duration) -> bool {
        let done = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.expire(key.as_str(), ttl)),
            Backend::Redis(r) => r.expire(key.as_str(), ttl).await,
            Backend::Off => Ok(false),
        };
        done.unwrap_or_else(|e| self.failed("expire", &e, false))
    }

    /// The time a cached key has left; `None` when it is not cached.
    pub async fn ttl(&self, key: &Key) -> Option<Duration> {
        let left = match &self.inner.backend {
            Backend::Memory(m) => Ok(m.ttl(key.as_str())),
            Backend::Redis(r) => r.ttl(key.as_str()).await,
            Backend::Off => Ok(None),
        };
        left.unwrap_or_else(|e| self.failed("ttl", &e, None))
    }

    async fn snapshot(&self) -> Option<u64> {
        match &self.inner.backend {
            Backend::Memory(m) => Some(m.snapshot()),
            Backend::Redis(r) => r.snapshot().await.ok(),
            Backend::Off => None,
        }
    }

    /// Cache-aside: the cached value, or `loader`'s, which is then cached with `ttl` and `tags`.
    ///
    /// Concurrent misses for one key in this process share one `loader` call. The loader's errors are
    /// returned and never cached; waiters of a failed load then load for themselves, one at a time. To
    /// cache "not found", load an `Option`.
    pub async fn get_or_set<T, E, F, Fut>(
        &self,
        key: &Key,
        ttl: Duration,
        tags: &[Tag],
        loader: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if matches!(self.inner.backend, Backend::Off) {
            self.count_read(false);
            return loader().await;
        }
        if let Some(value) = self.get(key).await {
            return Ok(value);
        }
        loop {
            match self.inner.flights.join(key.as_str()) {
                Role::Follower(waiting) => {
                    if let Some(value) = Flights::wait(waiting).await
                        && let Some(value) = value.downcast_ref::<T>()
                    {
                        return Ok(value.clone());
                    }
                }
                Role::Leader(guard) => {
                    // Snapshot before the database read; re-read in case the previous flight for this
                    // key finished between our miss and our lead.
                    let (snapshot, again) = tokio::join!(self.snapshot(), self.get_bytes(key));
                    if let Some(value) = again.ok().flatten().and_then(|b| self.decode::<T>(&b)) {
                        guard.finish(Arc::new(value.clone()));
                        return Ok(value);
                    }
                    let value = loader().await?;
                    // No snapshot (Redis unreachable): do not store, we could not prove it current.
                    if snapshot.is_some() {
                        self.store(key, &value, ttl, tags, snapshot).await;
                    }
                    guard.finish(Arc::new(value.clone()));
                    return Ok(value);
                }
            }
        }
    }

    /// The stored bytes of a key (flag byte included), for diagnostics and tests.
    #[doc(hidden)]
    pub async fn raw(&self, key: &Key) -> Option<Bytes> {
        self.get_bytes(key).await.ok().flatten()
    }
}
