//! Cache-aside reads of profiles and preferences, and the invalidation every write calls after it commits.
//!
//! Both entries of a user carry `Tag::user(id)`, so one `forget` drops them together. "Not found" is
//! cached as well: user ids are generated at insert, so no id can be read before its row exists.

use std::time::Duration;

use cache::{Cache, Key, Tag};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::UsersError;
use crate::models::UserView;
use crate::repo;
use crate::state::AppState;

/// Long, because every write invalidates at once; the TTL only bounds what a write made by another
/// process sharing no cache (e.g. `create-admin` with the in-memory backend) can leave behind.
pub const PROFILE_TTL: Duration = Duration::from_secs(300);

/// The profile as the API shows it (never the password hash: cached values may sit in Redis).
pub async fn profile(state: &AppState, id: Uuid) -> Result<Option<UserView>, UsersError> {
    state
        .cache
        .get_or_set(&Key::user(id), PROFILE_TTL, &[Tag::user(id)], || async {
            Ok(repo::find_by_id(&state.db, id).await?.map(UserView::from))
        })
        .await
}

pub async fn preferences(
    state: &AppState,
    id: Uuid,
) -> Result<Option<Map<String, Value>>, UsersError> {
    state
        .cache
        .get_or_set(
            &Key::user_preferences(id),
            PROFILE_TTL,
            &[Tag::user(id)],
            || repo::preferences(&state.db, id),
        )
        .await
}

/// Drops everything cached about the user. Call it after the transaction that changed the user commits.
pub async fn forget(cache: &Cache, id: Uuid) {
    cache.invalidate_tags(&[Tag::user(id)]).await;
}
