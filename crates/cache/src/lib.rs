//! LogiCore's cache: one API over Redis or an in-process store.
//!
//! ```ignore
//! let user = cache
//!     .get_or_set(&Key::user(id), Duration::from_secs(300), &[Tag::user(id)], || async {
//!         repo.user(id).await
//!     })
//!     .await?;
//! // after the transaction that changed the user commits:
//! cache.invalidate_tags(&[Tag::user(id)]).await;
//! ```
//!
//! * Never stale after a write: call `invalidate_keys`/`invalidate_tags` after commit. A cache-aside load
//!   that raced the write cannot put its older value back: the load notes the invalidation clock before
//!   it reads the database and stores only if nothing it depends on was invalidated since (versioned
//!   generations; see `scripts.rs`). Unlike a tombstone this has no window to tune: a load slower than
//!   any tombstone TTL is still refused, and the key can be cached again right after the write.
//! * Degrade, don't fail: with Redis down every operation is a miss or a no-op within the command
//!   timeout (then at once, via a breaker), errors are counted, `/readyz` shows `degraded`, and a
//!   background probe re-enables Redis once it answers and the invalidations it missed are replayed.
//!
//! Query results (the seed's `query(…, { cache: true, cacheTTL })`): [`CachedQueries::cached_query`] on
//! `platform::db::Db` is `get_or_set` with the database handed to the query, keyed by [`Key::query`] and
//! tagged with [`Tag::table`] for each table it reads; every writer of those tables invalidates the tag
//! after it commits.
//!
//! ```ignore
//! use cache::CachedQueries as _;
//!
//! let key = Key::query("inventory.warehouse_list", &json!([filter.codes, filter.active, after, limit]));
//! let rows: Vec<Warehouse> = db
//!     .cached_query(&cache, &key, Duration::from_secs(60), &[Tag::table("inventory.warehouses")], |db| {
//!         async move { db.timed("inventory.warehouse_list", list_query.fetch_all(db.pool())).await }
//!     })
//!     .await?;
//! ```
//!
//! Caching off: `redis.memory_max_entries = 0` (with `redis.enabled = false`) builds [`Cache::off`]:
//! every read misses and goes to the database, nothing is stored, the call sites stay as they are.

mod cache;
mod codec;
mod flight;
mod health;
mod key;
mod memory;
mod near;
mod options;
mod query;
mod remote;
mod resp;
mod scripts;
mod stats;

pub use cache::Cache;
pub use codec::is_compressed;
pub use health::CacheCheck;
pub use key::{Key, Tag};
pub use options::{CacheError, CacheOptions};
pub use query::CachedQueries;
pub use stats::StatsSnapshot;
