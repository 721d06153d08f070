//! The query-result cache: `platform::db::Db` extended with cache-aside for read-mostly queries (the
//! seed's `query(sql, params, { cache: true, cacheTTL })`). It lives here rather than in `platform::db`
//! because `cache` depends on `platform`.
//!
//! It is `Cache::get_or_set` with the database handed to the loader, so it inherits its guarantees:
//! concurrent misses for one key share one query, errors are returned and never cached, and an
//! invalidation after commit cannot be undone by a read that was already running (the load notes the
//! invalidation clock before it queries and stores only if none of its key and tags was invalidated since).

use std::future::Future;
use std::time::Duration;

use platform::db::Db;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Cache, Key, Tag};

/// Cache-aside for queries, on `platform::db::Db`.
///
/// ```ignore
/// use cache::{CachedQueries, Key, Tag};
///
/// let key = Key::query("inventory.warehouse_list", &json!([filter.codes, filter.active, after, limit]));
/// let rows: Vec<Warehouse> = db
///     .cached_query(&cache, &key, Duration::from_secs(60), &[Tag::table("inventory.warehouses")], |db| async move {
///         let query = sqlx::query_as::<_, Warehouse>(SQL).bind(after).fetch_all(db.pool());
///         db.timed("inventory.warehouse_list", query).await
///     })
///     .await?;
/// // every writer of the table, after its transaction commits:
/// cache.invalidate_tags(&[Tag::table("inventory.warehouses")]).await;
/// ```
pub trait CachedQueries {
    /// The cached result under `key`, or `query`'s, which is then cached for `ttl` under `tags`.
    ///
    /// `query` gets a clone of the handle (cheap: the pool is shared) and runs only on a miss; a hit
    /// touches neither the pool nor `db_query_duration`. Its error is returned as is and nothing is
    /// cached. Load an `Option` to cache "not found". A zero `ttl`, or a cache that is off, stores
    /// nothing.
    fn cached_query<'a, T, E, F, Fut>(
        &'a self,
        cache: &'a Cache,
        key: &'a Key,
        ttl: Duration,
        tags: &'a [Tag],
        query: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Send + 'a,
        F: FnOnce(Db) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a;
}

impl CachedQueries for Db {
    fn cached_query<'a, T, E, F, Fut>(
        &'a self,
        cache: &'a Cache,
        key: &'a Key,
        ttl: Duration,
        tags: &'a [Tag],
        query: F,
    ) -> impl Future<Output = Result<T, E>> + Send + 'a
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        E: Send + 'a,
        F: FnOnce(Db) -> Fut + Send + 'a,
        Fut: Future<Output = Result<T, E>> + Send + 'a,
    {
        cache.get_or_set(key, ttl, tags, move || query(self.clone()))
    }
}
