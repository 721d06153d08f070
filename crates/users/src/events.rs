//! The `user.*` events, recorded in the outbox inside the transaction that makes the change they describe:
//! an event exists exactly when its change committed, never for a rolled-back write, and the relay delivers
//! it afterwards.

use messaging::events::{UserCreated, UserDeactivated, UserRoleChanged, UserUpdated};
use messaging::{Envelope, EventPayload, Messaging};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::UserStatus;
use crate::error::UsersError;
use crate::models::User;

/// Records `user.created` for an account inserted in this transaction.
pub async fn created(
    messaging: &Messaging,
    connection: &mut PgConnection,
    user: &User,
) -> Result<(), UsersError> {
    let payload = UserCreated {
        user_id: user.id,
        email: user.email.clone(),
        full_name: user.full_name.clone(),
        phone: user.phone.clone(),
        role: user.role.as_str().to_owned(),
    };
    let envelope = envelope(messaging, user.id, &payload)?;
    messaging.publish_in_tx(connection, &envelope).await?;
    Ok(())
}

/// Records what the change from `before` to `after` (made in this transaction) means: `user.updated` with
/// the new profile when any profile field changed, then `user.role_changed` when the role did and
/// `user.deactivated` when an active account became inactive. Nothing when no profile field changed (a
/// password-only change is not part of the profile). `actor` is the admin who made the change, if any.
pub async fn changed(
    messaging: &Messaging,
    connection: &mut PgConnection,
    before: &User,
    after: &User,
    actor: Option<Uuid>,
) -> Result<(), UsersError> {
    let profile_changed = before.email != after.email
        || before.full_name != after.full_name
        || before.phone != after.phone
        || before.role != after.role
        || before.status != after.status;
    if !profile_changed {
        return Ok(());
    }
    let mut envelopes = vec![envelope(
        messaging,
        after.id,
        &UserUpdated {
            user_id: after.id,
            email: after.email.clone(),
            full_name: after.full_name.clone(),
            phone: after.phone.clone(),
            role: after.role.as_str().to_owned(),
            status: after.status.as_str().to_owned(),
            updated_at: after.updated_at,
        },
    )?];
    if before.role != after.role {
        envelopes.push(envelope(
            messaging,
            after.id,
            &UserRoleChanged {
                user_id: after.id,
                old_role: before.role.as_str().to_owned(),
                new_role: after.role.as_str().to_owned(),
                changed_by: actor,
            },
        )?);
    }
    if before.status == UserStatus::Active && after.status == UserStatus::Inactive {
        envelopes.push(envelope(
            messaging,
            after.id,
            &UserDeactivated {
                user_id: after.id,
                deactivated_by: actor,
            },
        )?);
    }
    messaging.publish_all_in_tx(connection, &envelopes).await?;
    Ok(())
}

/// A root event about `user_id`, tied to the HTTP request being handled when there is one. Request ids are
/// UUIDs unless the caller sent its own `x-request-id` in another form; such an id cannot be a correlation
/// id, so the event then starts its own flow (the default).
fn envelope<P: EventPayload>(
    messaging: &Messaging,
    user_id: Uuid,
    payload: &P,
) -> Result<Envelope, UsersError> {
    let envelope = messaging.event(P::TYPE, user_id, payload)?;
    let request = platform::request_id::current().and_then(|id| Uuid::parse_str(&id).ok());
    Ok(match request {
        Some(request) => envelope.with_correlation(request),
        None => envelope,
    })
}
