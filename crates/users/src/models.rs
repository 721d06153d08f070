//! The account as stored, and the shapes the API returns.

use chrono::{DateTime, Utc};
use platform::auth::Role;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::UserStatus;

/// The columns every account query selects, in [`User`]'s order.
macro_rules! user_columns {
    () => {
        "id, email, full_name, phone, role, status, password_hash, created_at, updated_at"
    };
}
pub(crate) use user_columns;

/// An account row. Holds the password hash, so it never leaves the service: responses use [`UserView`].
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl User {
    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }
}

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: message.into(),
    }
}

impl<'r> FromRow<'r, PgRow> for User {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        let status: String = row.try_get("status")?;
        Ok(Self {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
            full_name: row.try_get("full_name")?,
            phone: row.try_get("phone")?,
            role: role.parse().map_err(|e| decode_error("role", e))?,
            status: UserStatus::parse(&status)
                .ok_or_else(|| decode_error("status", format!("unknown status {status:?}")))?,
            password_hash: row.try_get("password_hash")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// A user's profile as the API shows it, and as it is cached (Deserialize is for the cache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    /// Normalised: trimmed and lowercased.
    pub email: String,
    pub full_name: String,
    /// E.164, e.g. `+442079460958`.
    pub phone: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserView {
    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            full_name: user.full_name,
            phone: user.phone,
            role: user.role,
            status: user.status,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// A new session: a short-lived access token and the refresh token that renews it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenResponse {
    pub user: UserView,
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Opaque; exchange it once at `/api/v1/auth/refresh`.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// An OpenID Connect ID token (a JWT signed like the access token, `aud` `logicore`) describing the
    /// user; absent when tokens are signed with HS256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
