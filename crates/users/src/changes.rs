//! Changing an existing account: one transaction locks the row, applies the patch when it changes
//! anything, ends the sessions of a deactivated account, records the events and the revocation of the
//! account's access tokens (deactivation, role change); after the commit the revocation is announced and
//! the cached profile goes.

use messaging::Messaging;
use platform::db::{Db, Isolation};
use platform::revocation::Revocation;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::cached;
use crate::domain::UserStatus;
use crate::error::UsersError;
use crate::events;
use crate::models::User;
use crate::repo::{self, UserPatch};
use crate::revoke::Revoker;
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
    let revoker = state.revoker.clone();
    let patch = patch.clone();
    let updated = state
        .db
        .transaction(
            Isolation::ReadCommitted,
            repo::tx_body(move |connection| {
                Box::pin(apply_patch_in(
                    db.clone(),
                    messaging.clone(),
                    revoker.clone(),
                    connection,
                    id,
                    patch.clone(),
                    actor,
                ))
            }),
        )
        .await?;
    let Some((user, revocation)) = updated else {
        return Ok(None);
    };
    // After the commit: from here on the user's old access tokens are refused everywhere (401).
    if let Some(revocation) = revocation {
        state.revoker.announce(&[revocation]).await;
    }
    // So the users service's own checks of the current account see the change at once too.
    cached::forget(&state.cache, id).await;
    Ok(Some(user))
}

/// The body of [`apply_patch`]'s transaction, also run inside `create-admin`'s own; it owns its inputs
/// (see `repo::tx_body`).
pub(crate) async fn apply_patch_in(
    db: Db,
    messaging: Messaging,
    revoker: Revoker,
    connection: &mut PgConnection,
    id: Uuid,
    patch: UserPatch,
    actor: Option<Uuid>,
) -> Result<Option<(User, Option<Revocation>)>, UsersError> {
    let Some(before) = repo::lock(&db, connection, id).await? else {
        return Ok(None);
    };
    let (user, revocation) = if patch.changes(&before) {
        let after = repo::update(&db, connection, id, &patch)
            .await?
            // The row is locked by this transaction: it cannot have gone in between.
            .ok_or(UsersError::NotFound)?;
        events::changed(&messaging, connection, &before, &after, actor).await?;
        let revocation = revoker.for_change(&before, &after);
        (after, revocation)
    } else {
        let revocation = revoker.for_change(&before, &before);
        (before, revocation)
    };
    // Also when nothing changed: deactivating an inactive account again still leaves it without sessions.
    if !user.is_active() {
        tokens::revoke_all_of_user(&db, connection, user.id).await?;
        if patch.status == Some(UserStatus::Inactive) {
            tracing::info!(user_id = %user.id, "user deactivated");
        }
    }
    if let Some(revocation) = &revocation {
        revoker.record(&db, connection, revocation).await?;
    }
    Ok(Some((user, revocation)))
}
