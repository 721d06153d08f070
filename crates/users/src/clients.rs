//! OAuth2 machine clients (RFC 6749 §4.4, client credentials): a warehouse system pushing stock, a carrier
//! posting tracking events. An admin creates a client with scopes ([`platform::auth::scopes`]); its secret
//! is shown once and kept only as a SHA-256 (it carries 256 random bits, so a slow hash would protect
//! nothing more). Rotating the secret refuses the old one at once; revoking the client also revokes every
//! token it holds, through the same revocations as a deactivated user's (its id is the tokens' `sub`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use platform::FieldError;
use platform::auth::scopes;
use platform::db::{Db, Isolation};
use platform::revocation::Revocation;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::UsersError;
use crate::repo;
use crate::state::AppState;

const NAME_MAX: usize = 100;
/// Prefix of every secret, so a leaked one is recognisable by secret scanners.
const SECRET_PREFIX: &str = "lcs_";

/// A client as the API shows it; never its secret.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct ClientView {
    /// The `client_id` of `POST /oauth/token`, and the `sub` of its tokens.
    pub id: Uuid,
    pub name: String,
    /// Each one of `inventory:read`, `inventory:write`, `orders:read`, `tracking:write`.
    pub scopes: Vec<String>,
    /// `active` or `revoked`.
    #[schema(example = "active")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub secret_rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A client with its secret: the answer to creating it or rotating its secret, the only time the secret
/// is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: ClientView,
    /// Send it with `client_id` to `POST /oauth/token`; it is not shown again.
    pub client_secret: String,
}

/// A validated new client.
pub struct NewClient {
    pub name: String,
    pub scopes: Vec<String>,
}

impl NewClient {
    pub fn parse(name: &str, requested: &[String]) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = name.trim();
        if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control)
        {
            errors.push(FieldError::new(
                "name",
                "INVALID_NAME",
                "must be 1-100 characters without control characters",
            ));
        }
        if requested.is_empty() {
            errors.push(FieldError::new(
                "scopes",
                "REQUIRED",
                "name at least one scope",
            ));
        }
        let mut scopes: Vec<String> = Vec::new();
        for (index, scope) in requested.iter().enumerate() {
            if scopes::find(scope).is_none() {
                errors.push(FieldError::new(
                    format!("scopes[{index}]"),
                    "UNKNOWN_SCOPE",
                    format!(
                        "must be one of {}",
                        scopes::SCOPES
                            .iter()
                            .map(|s| s.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            } else if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            name: name.to_owned(),
            scopes,
        })
    }
}

/// A fresh secret and its stored hash.
fn new_secret() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash_secret(&secret);
    (secret, hash)
}

fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The columns of a [`ClientView`], in SQL.
macro_rules! client_columns {
    () => {
        "id, name, scopes, status, created_at, secret_rotated_at, revoked_at"
    };
}

pub async fn create(
    db: &Db,
    client: NewClient,
    created_by: Uuid,
) -> Result<ClientWithSecret, UsersError> {
    let (secret, hash) = new_secret();
    let query = sqlx::query_as::<_, ClientView>(concat!(
        "INSERT INTO api_clients (id, name, scopes, secret_hash, created_by) VALUES ($1, $2, $3, $4, $5) ",
        "RETURNING ",
        client_columns!()
    ))
    .bind(Uuid::now_v7())
    .bind(&client.name)
    .bind(&client.scopes)
    .bind(&hash[..])
    .bind(created_by)
    .fetch_one(db.pool());
    let client = db.timed("api_clients.insert", query).await?;
    tracing::info!(client_id = %client.id, scopes = ?client.scopes, "API client created");
    Ok(ClientWithSecret {
        client,
        client_secret: secret,
    })
}

pub async fn list(db: &Db) -> Result<Vec<ClientView>, UsersError> {
    let query = sqlx::query_as::<_, ClientView>(concat!(
        "SELECT ",
        client_columns!(),
        " FROM api_clients ORDER BY created_at DESC, id DESC"
    ))
    .fetch_all(db.pool());
    Ok(db.timed("api_clients.list", query).await?)
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<ClientView>, UsersError> {
    let query = sqlx::query_as::<_, ClientView>(concat!(
        "SELECT ",
        client_columns!(),
        " FROM api_clients WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool());
    Ok(db.timed("api_clients.get", query).await?)
}

/// A new secret for an active client; the old one stops working at once.
pub async fn rotate_secret(db: &Db, id: Uuid) -> Result<Option<ClientWithSecret>, UsersError> {
    let (secret, hash) = new_secret();
    let query = sqlx::query_as::<_, ClientView>(concat!(
        "UPDATE api_clients SET secret_hash = $2, secret_rotated_at = now() ",
        "WHERE id = $1 AND status = 'active' RETURNING ",
        client_columns!()
    ))
    .bind(id)
    .bind(&hash[..])
    .fetch_optional(db.pool());
    let client = db.timed("api_clients.rotate", query).await?;
    Ok(client.map(|client| ClientWithSecret {
        client,
        client_secret: secret,
    }))
}

/// Revokes the client and, in the same transaction, every token it was given; announced after the
/// commit. `false` when there is no such client.
pub async fn revoke(state: &AppState, id: Uuid) -> Result<bool, UsersError> {
    let revocation = Revocation::user(id, state.signer.client_ttl());
    let db = state.db.clone();
    let revoker = state.revoker.clone();
    let found = state
        .db
        .transaction(
            Isolation::ReadCommitted,
            repo::tx_body(move |connection| {
                let (db, revoker) = (db.clone(), revoker.clone());
                Box::pin(async move {
                    let query = sqlx::query(
                        "UPDATE api_clients SET status = 'revoked', revoked_at = COALESCE(revoked_at, now()) \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .execute(&mut *connection);
                    let found = db.timed("api_clients.revoke", query).await?.rows_affected() == 1;
                    if found {
                        revoker.record(&db, connection, &revocation).await?;
                    }
                    Ok::<_, UsersError>(found)
                })
            }),
        )
        .await?;
    if found {
        state.revoker.announce(&[revocation]).await;
        tracing::info!(client_id = %id, "API client revoked");
    }
    Ok(found)
}

/// The client a `client_id` and `client_secret` authenticate: active, secret matching (compared in
/// constant time). `None` for anything else, without saying which part was wrong.
pub async fn authenticate(
    db: &Db,
    client_id: &str,
    secret: &str,
) -> Result<Option<ClientView>, UsersError> {
    let Ok(id) = Uuid::parse_str(client_id) else {
        return Ok(None);
    };
    let query = sqlx::query_as::<_, (Vec<u8>, String)>(
        "SELECT secret_hash, status FROM api_clients WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool());
    let Some((stored, status)) = db.timed("api_clients.authenticate", query).await? else {
        return Ok(None);
    };
    let presented = hash_secret(secret);
    let matches = stored.len() == presented.len()
        && stored
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !matches || status != "active" {
        return Ok(None);
    }
    get(db, id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_needs_a_clean_name_and_known_scopes() {
        let ok = NewClient::parse(
            " Warehouse sync ",
            &["inventory:write".into(), "inventory:write".into()],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(ok.name, "Warehouse sync");
        assert_eq!(ok.scopes, vec!["inventory:write".to_owned()]);
        let errors = NewClient::parse("a\u{0}b", &["admin".into()])
            .err()
            .unwrap_or_default();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["name", "scopes[0]"]);
        assert!(NewClient::parse("x", &[]).is_err());
    }

    #[test]
    fn secrets_are_random_prefixed_and_stored_hashed() {
        let (one, hash) = new_secret();
        let (two, _) = new_secret();
        assert_ne!(one, two);
        assert!(one.starts_with(SECRET_PREFIX));
        assert_eq!(hash, hash_secret(&one));
        assert_ne!(hash, hash_secret(&two));
    }
}
