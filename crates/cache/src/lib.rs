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

mod cache;
mod codec;
mod flight;
mod health;
mod key;
mod memory;
mod options;
mod remote;
mod scripts;
mod stats;

pub use cache::Cache;
pub use codec::is_compressed;
pub use health::CacheCheck;
pub use key::{Key, Tag};
pub use options::{CacheError, CacheOptions};
pub use stats::StatsSnapshot;
