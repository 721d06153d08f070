//! Refresh tokens: opaque random strings stored only as SHA-256 hashes, rotated on every use. All tokens
//! descended from one login form a family; presenting a spent token means it was copied, so the whole
//! family (including the newest token, possibly held by the attacker) is revoked.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use platform::db::{Db, Isolation};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::error::UsersError;
use crate::models::{User, user_columns};
use crate::repo::tx_body;

/// A freshly minted refresh token: the text goes to the client, the hash to the database.
pub struct RefreshToken {
    pub token: String,
    pub hash: [u8; 32],
}

impl RefreshToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash_token(&token);
        Self { token, hash }
    }
}

/// A token's lookup key. A fast hash is enough: the token carries 256 bits of entropy, so there is
/// nothing to brute-force that a slow hash would protect.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Stores a new token of `family_id` for `user_id`.
pub async fn insert(
    db: &Db,
    connection: &mut PgConnection,
    user_id: Uuid,
    family_id: Uuid,
    token: &RefreshToken,
    ttl: Duration,
) -> Result<(), UsersError> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let expires_at = Utc::now()
        .checked_add_signed(ttl)
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    let query = sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, user_id, token_hash, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(Uuid::now_v7())
    .bind(family_id)
    .bind(user_id)
    .bind(&token.hash[..])
    .bind(expires_at)
    .execute(&mut *connection);
    db.timed("refresh_tokens.insert", query).await?;
    Ok(())
}

async fn revoke_family(
    db: &Db,
    connection: &mut PgConnection,
    family_id: Uuid,
) -> Result<(), UsersError> {
    let query = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family_id)
    .execute(&mut *connection);
    db.timed("refresh_tokens.revoke_family", query).await?;
    Ok(())
}

/// Revokes every refresh token of a user, e.g. when the account is deactivated.
pub async fn revoke_all_of_user(
    db: &Db,
    connection: &mut PgConnection,
    user_id: Uuid,
) -> Result<(), UsersError> {
    let query = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .execute(&mut *connection);
    db.timed("refresh_tokens.revoke_user", query).await?;
    Ok(())
}

/// Logout: revokes the family of `presented` if it belongs to `user_id`; anything else is a no-op, so
/// logout is idempotent and reveals nothing about other users' tokens.
pub async fn revoke_family_of(db: &Db, user_id: Uuid, presented: &str) -> Result<(), UsersError> {
    let query = sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND family_id = \
         (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)",
    )
    .bind(&hash_token(presented)[..])
    .bind(user_id)
    .execute(db.pool());
    db.timed("refresh_tokens.logout", query).await?;
    Ok(())
}

enum Rotation {
    Rotated(Box<User>, RefreshToken),
    Reused,
    Invalid,
}

/// Spends `presented` and returns its user with a new token of the same family. A spent token revokes
/// its family (`REFRESH_TOKEN_REUSED`); an unknown, expired or revoked one, or one whose account is
/// inactive, is `INVALID_REFRESH_TOKEN`.
pub async fn rotate(
    db: &Db,
    presented: &str,
    ttl: Duration,
) -> Result<(User, RefreshToken), UsersError> {
    let presented_hash = hash_token(presented);
    // A revocation must be committed even though the caller gets an error, so the transaction reports
    // the outcome as a value and the error is raised only after the commit.
    let owned_db = db.clone();
    let outcome = db
        .transaction(
            Isolation::ReadCommitted,
            tx_body(move |connection| {
                Box::pin(rotate_in(owned_db.clone(), connection, presented_hash, ttl))
            }),
        )
        .await?;
    match outcome {
        Rotation::Rotated(user, next) => Ok((*user, next)),
        Rotation::Reused => Err(UsersError::RefreshTokenReused),
        Rotation::Invalid => Err(UsersError::InvalidRefreshToken),
    }
}

/// The body of [`rotate`]'s transaction; it owns its inputs (see `repo::tx_body`).
async fn rotate_in(
    db: Db,
    connection: &mut PgConnection,
    presented_hash: [u8; 32],
    ttl: Duration,
) -> Result<Rotation, UsersError> {
    // FOR UPDATE: two concurrent refreshes with one token serialise here, and the second one sees the
    // token spent.
    let query = sqlx::query(
        "SELECT id, family_id, user_id, spent_at IS NOT NULL AS spent, \
         revoked_at IS NOT NULL OR expires_at <= now() AS dead \
         FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
    )
    .bind(&presented_hash[..])
    .fetch_optional(&mut *connection);
    let Some(row) = db.timed("refresh_tokens.lock", query).await? else {
        return Ok(Rotation::Invalid);
    };
    let token_id: Uuid = row.try_get("id")?;
    let family_id: Uuid = row.try_get("family_id")?;
    let user_id: Uuid = row.try_get("user_id")?;
    if row.try_get::<bool, _>("spent")? {
        tracing::warn!(%user_id, %family_id, "spent refresh token presented, revoking its family");
        revoke_family(&db, connection, family_id).await?;
        return Ok(Rotation::Reused);
    }
    if row.try_get::<bool, _>("dead")? {
        revoke_family(&db, connection, family_id).await?;
        return Ok(Rotation::Invalid);
    }
    const USER_SQL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    let query = sqlx::query_as::<_, User>(USER_SQL)
        .bind(user_id)
        .fetch_one(&mut *connection);
    let user = db.timed("users.find_by_id", query).await?;
    if !user.is_active() {
        revoke_family(&db, connection, family_id).await?;
        return Ok(Rotation::Invalid);
    }
    let query = sqlx::query("UPDATE refresh_tokens SET spent_at = now() WHERE id = $1")
        .bind(token_id)
        .execute(&mut *connection);
    db.timed("refresh_tokens.spend", query).await?;
    let next = RefreshToken::generate();
    insert(&db, connection, user_id, family_id, &next, ttl).await?;
    Ok(Rotation::Rotated(Box::new(user), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_unique_url_safe_and_hashed() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 43);
        assert!(
            a.token
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(a.hash, hash_token(&a.token));
    }
}
