//! Changing an existing account: one transaction locks the row, applies the patch when it changes
//! anything, ends the sessions of a deactivated account and records the events; the cached profile goes
//! after the commit.

use messaging::Messaging;
use platform::db::{Db, Isolation};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::cached;
use crate::domain::UserStatus;
use crate::error::UsersError;
use crate::events;
use crate::models::User;
use crate::repo::{self, UserPatch};
use crate::state::AppState;
use crate::tokens;

/// Applies `patch` to the account `id` on behalf of `actor` (the admin making the change; `None` for the
/// user's own change). `None` when there is no such account. A patch that changes nothing writes nothing
/// and records no event (`UserPatch::changes`).
pub async fn apply_patch(
    state: &AppState,
    id: Uuid,
    patch: &UserPatch,
    actor: Option<Uuid>,
) -> Result<Option<User>, UsersError> {
    let db = state.db.clone();
    let messaging = state.messaging.clone();
    let patch = patch.clone();
    let updated = state
        .db
        .transaction(
            Isolation::ReadCommitted,
            repo::tx_body(move |connection| {
                Box::pin(apply_patch_in(
                    db.clone(),
                    messaging.clone(),
                    connection,
                    id,
                    patch.clone(),
                    actor,
                ))
            }),
        )
        .await?;
    // After the commit, so a deactivated user's next request is a 401 even with an access token still
    // valid, and a demoted one's a 403.
    cached::forget(&state.cache, id).await;
    Ok(updated)
}

/// The body of [`apply_patch`]'s transaction, also run inside `create-admin`'s own; it owns its inputs
/// (see `repo::tx_body`).
pub(crate) async fn apply_patch_in(
    db: Db,
    messaging: Messaging,
    connection: &mut PgConnection,
    id: Uuid,
    patch: UserPatch,
    actor: Option<Uuid>,
) -> Result<Option<User>, UsersError> {
    let Some(before) = repo::lock(&db, connection, id).await? else {
        return Ok(None);
    };
    let user = if patch.changes(&before) {
        let after = repo::update(&db, connection, id, &patch)
            .await?
            // The row is locked by this transaction: it cannot have gone in between.
            .ok_or(UsersError::NotFound)?;
        events::changed(&messaging, connection, &before, &after, actor).await?;
        after
    } else {
        before
    };
    // Also when nothing changed: deactivating an inactive account again still leaves it without sessions.
    if !user.is_active() {
        tokens::revoke_all_of_user(&db, connection, user.id).await?;
        if patch.status == Some(UserStatus::Inactive) {
            tracing::info!(user_id = %user.id, "user deactivated");
        }
    }
    Ok(Some(user))
}
