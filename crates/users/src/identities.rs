//! Users of external identity providers, made LogiCore users just in time: the first verified token of an
//! `(issuer, sub)` creates a user (with its `user.created` event) and links it, so orders and shipments
//! keep working by user id, and an admin deactivating that user refuses its tokens like anyone's.
//!
//! The email is the token's when it has one that no other account uses; otherwise a stable placeholder
//! under the reserved `.invalid` domain (RFC 2606). An external user is never linked to an existing account
//! by email: a provider that does not verify emails would otherwise hand that account to anyone. Its
//! password hash is one nobody knows, so it cannot sign in with a password.

use messaging::Messaging;
use platform::auth::TokenError;
use platform::auth::external::{Admission, Directory, ExternalIdentity};
use platform::db::{Db, Isolation};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{Email, FullName, UserStatus};
use crate::error::UsersError;
use crate::events;
use crate::passwords;
use crate::repo::{self, NewUser};

/// The users service's own directory: answers from its database.
pub struct LocalDirectory {
    db: Db,
    messaging: Messaging,
}

impl LocalDirectory {
    pub fn new(db: Db, messaging: Messaging) -> Self {
        Self { db, messaging }
    }

    async fn admit_identity(&self, identity: &ExternalIdentity) -> Result<Uuid, UsersError> {
        if let Some((user_id, status)) = linked(&self.db, identity).await? {
            return active(user_id, status);
        }
        let db = self.db.clone();
        let messaging = self.messaging.clone();
        let identity_owned = identity.clone();
        let created = self
            .db
            .transaction(
                Isolation::ReadCommitted,
                repo::tx_body(move |connection| {
                    let (db, messaging, identity) =
                        (db.clone(), messaging.clone(), identity_owned.clone());
                    Box::pin(async move { create(&db, &messaging, connection, &identity).await })
                }),
            )
            .await;
        match created {
            Ok(user_id) => {
                tracing::info!(user_id = %user_id, issuer = %identity.issuer, "external user created");
                Ok(user_id)
            }
            // A concurrent first sight of the same identity won the race; its user is the one.
            Err(UsersError::Conflict(_)) => {
                let (user_id, status) = linked(&self.db, identity)
                    .await?
                    .ok_or_else(|| UsersError::Conflict("external_identities_pkey".into()))?;
                active(user_id, status)
            }
            Err(other) => Err(other),
        }
    }
}

impl Directory for LocalDirectory {
    fn admit<'a>(&'a self, identity: &'a ExternalIdentity, _token: &'a str) -> Admission<'a> {
        Box::pin(async move {
            self.admit_identity(identity)
                .await
                .map_err(|error| match error {
                    UsersError::InactiveCaller => TokenError::Revoked,
                    other => TokenError::Unavailable(other.to_string()),
                })
        })
    }
}

fn active(user_id: Uuid, status: UserStatus) -> Result<Uuid, UsersError> {
    match status {
        UserStatus::Active => Ok(user_id),
        UserStatus::Inactive => Err(UsersError::InactiveCaller),
    }
}

/// The user linked to the identity, with its status.
async fn linked(
    db: &Db,
    identity: &ExternalIdentity,
) -> Result<Option<(Uuid, UserStatus)>, UsersError> {
    let query = sqlx::query_as::<_, (Uuid, String)>(
        "SELECT u.id, u.status FROM external_identities e JOIN users u ON u.id = e.user_id \
         WHERE e.issuer = $1 AND e.subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .fetch_optional(db.pool());
    let row = db.timed("external_identities.find", query).await?;
    Ok(row.map(|(id, status)| {
        (
            id,
            UserStatus::parse(&status).unwrap_or(UserStatus::Inactive),
        )
    }))
}

/// Creates and links the user. When a concurrent first sight linked the identity first, fails with a
/// conflict, which rolls back the user made here; the caller then reads the winner's.
async fn create(
    db: &Db,
    messaging: &Messaging,
    connection: &mut PgConnection,
    identity: &ExternalIdentity,
) -> Result<Uuid, UsersError> {
    let placeholder = || {
        let id = Uuid::new_v4().simple().to_string();
        Email::parse(&format!("external-{id}@identity.invalid"))
            .map_err(|error| UsersError::Validation(vec![error]))
    };
    let email = identity
        .email
        .as_deref()
        .and_then(|email| Email::parse(email).ok());
    let full_name = FullName::parse(&identity.subject)
        .or_else(|_| FullName::parse("External user"))
        .map_err(|error| UsersError::Validation(vec![error]))?;
    let mut new_user = NewUser {
        email: match email {
            Some(email) => email,
            None => placeholder()?,
        },
        full_name,
        phone: None,
        role: identity.role,
        password_hash: passwords::UNUSABLE_HASH.to_owned(),
    };
    let user = match repo::insert_if_absent(db, connection, &new_user).await? {
        Some(user) => user,
        None => {
            // The email belongs to another account: never link to it.
            new_user.email = placeholder()?;
            repo::insert(db, connection, &new_user).await?
        }
    };
    let linked = sqlx::query(
        "INSERT INTO external_identities (issuer, subject, user_id) VALUES ($1, $2, $3) \
         ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .bind(user.id)
    .execute(&mut *connection);
    if db
        .timed("external_identities.insert", linked)
        .await?
        .rows_affected()
        == 0
    {
        return Err(UsersError::Conflict("external_identities_pkey".into()));
    }
    events::created(messaging, connection, &user).await?;
    Ok(user.id)
}
