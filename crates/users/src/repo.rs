//! Account queries. Every query is timed under a stable name for the `db_query_duration` metric.

use platform::auth::Role;
use platform::db::Db;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::domain::{Email, FullName, Phone, UserStatus};
use crate::error::UsersError;
use crate::models::{User, user_columns};

/// An account about to be created; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub full_name: FullName,
    pub phone: Option<Phone>,
    pub role: Role,
    pub password_hash: String,
}

/// Fields to change; `None` leaves a field as it is, `phone: Some(None)` clears the phone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub full_name: Option<FullName>,
    pub phone: Option<Option<Phone>>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

impl UserPatch {
    /// Whether applying the patch to `user` would change anything. A patch that would not is not applied:
    /// the row (and its `updated_at`) stays as it is and no event is recorded.
    pub fn changes(&self, user: &User) -> bool {
        let differs = |new: Option<&str>, old: &str| new.is_some_and(|new| new != old);
        differs(
            self.full_name.as_ref().map(FullName::as_str),
            &user.full_name,
        ) || self
            .phone
            .as_ref()
            .is_some_and(|phone| phone.as_ref().map(Phone::as_str) != user.phone.as_deref())
            || self.role.is_some_and(|role| role != user.role)
            || self.status.is_some_and(|status| status != user.status)
    }
}

/// Filters of the admin list; an empty list matches everything.
#[derive(Debug, Default)]
pub struct UserFilter {
    pub roles: Vec<Role>,
    pub statuses: Vec<UserStatus>,
    /// Lowercased substring of the email or the full name.
    pub q: Option<String>,
}

/// The future of one run of a transaction body.
pub use platform::db::tx_body;

/// Creates the account inside the caller's transaction; a taken email is `UsersError::EmailTaken`.
pub async fn insert(
    db: &Db,
    connection: &mut PgConnection,
    user: &NewUser,
) -> Result<User, UsersError> {
    const SQL: &str = concat!(
        "INSERT INTO users (id, email, full_name, phone, role, password_hash) ",
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
        user_columns!()
    );
    let query = bind_new_user(sqlx::query_as::<_, User>(SQL), user).fetch_one(&mut *connection);
    Ok(db.timed("users.insert", query).await?)
}

/// Creates the account unless its email is taken (`None` then). Waits for a concurrent insert of the same
/// email to commit or roll back, so `None` means the row exists and [`lock_by_email`] will find it.
pub async fn insert_if_absent(
    db: &Db,
    connection: &mut PgConnection,
    user: &NewUser,
) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!(
        "INSERT INTO users (id, email, full_name, phone, role, password_hash) ",
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING RETURNING ",
        user_columns!()
    );
    let query =
        bind_new_user(sqlx::query_as::<_, User>(SQL), user).fetch_optional(&mut *connection);
    Ok(db.timed("users.insert_if_absent", query).await?)
}

type UserQuery<'q> = sqlx::query::QueryAs<'q, sqlx::Postgres, User, sqlx::postgres::PgArguments>;

fn bind_new_user<'q>(query: UserQuery<'q>, user: &'q NewUser) -> UserQuery<'q> {
    query
        .bind(Uuid::now_v7())
        .bind(user.email.as_str())
        .bind(user.full_name.as_str())
        .bind(user.phone.as_ref().map(Phone::as_str))
        .bind(user.role.as_str())
        .bind(&user.password_hash)
}

/// The account, locked until the caller's transaction ends, so the change made next and the events
/// recorded from the difference see no concurrent write in between.
pub async fn lock(
    db: &Db,
    connection: &mut PgConnection,
    id: Uuid,
) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE id = $1 FOR UPDATE"
    );
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(id)
        .fetch_optional(&mut *connection);
    Ok(db.timed("users.lock", query).await?)
}

/// [`lock`] by email.
pub async fn lock_by_email(
    db: &Db,
    connection: &mut PgConnection,
    email: &Email,
) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE email = $1 FOR UPDATE"
    );
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(email.as_str())
        .fetch_optional(&mut *connection);
    Ok(db.timed("users.lock_by_email", query).await?)
}

/// Replaces the account's password hash, inside the caller's transaction.
pub async fn set_password_hash(
    db: &Db,
    connection: &mut PgConnection,
    id: Uuid,
    password_hash: &str,
) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 RETURNING ",
        user_columns!()
    );
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(id)
        .bind(password_hash)
        .fetch_optional(&mut *connection);
    Ok(db.timed("users.set_password_hash", query).await?)
}

pub async fn admin_exists(db: &Db) -> Result<bool, UsersError> {
    let query = sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND status = 'active')",
    )
    .fetch_one(db.pool());
    Ok(db.timed("users.admin_exists", query).await?)
}

pub async fn find_by_id(db: &Db, id: Uuid) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(id)
        .fetch_optional(db.pool());
    Ok(db.timed("users.find_by_id", query).await?)
}

pub async fn find_by_email(db: &Db, email: &Email) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(email.as_str())
        .fetch_optional(db.pool());
    Ok(db.timed("users.find_by_email", query).await?)
}

/// Applies `patch` inside the caller's transaction; `None` when there is no such user.
pub async fn update(
    db: &Db,
    connection: &mut PgConnection,
    id: Uuid,
    patch: &UserPatch,
) -> Result<Option<User>, UsersError> {
    const SQL: &str = concat!(
        "UPDATE users SET full_name = COALESCE($2, full_name), ",
        "phone = CASE WHEN $3 THEN $4 ELSE phone END, ",
        "role = COALESCE($5, role), status = COALESCE($6, status), updated_at = now() ",
        "WHERE id = $1 RETURNING ",
        user_columns!()
    );
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(id)
        .bind(patch.full_name.as_ref().map(FullName::as_str))
        .bind(patch.phone.is_some())
        .bind(
            patch
                .phone
                .as_ref()
                .and_then(|p| p.as_ref().map(Phone::as_str)),
        )
        .bind(patch.role.map(Role::as_str))
        .bind(patch.status.map(UserStatus::as_str))
        .fetch_optional(&mut *connection);
    Ok(db.timed("users.update", query).await?)
}

pub async fn preferences(db: &Db, id: Uuid) -> Result<Option<Map<String, Value>>, UsersError> {
    let query = sqlx::query_scalar::<_, Json<Map<String, Value>>>(
        "SELECT preferences FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(db.pool());
    let found = db.timed("users.preferences", query).await?;
    Ok(found.map(|Json(map)| map))
}

pub async fn set_preferences(
    db: &Db,
    id: Uuid,
    preferences: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, UsersError> {
    let query = sqlx::query_scalar::<_, Json<Map<String, Value>>>(
        "UPDATE users SET preferences = $2, updated_at = now() WHERE id = $1 RETURNING preferences",
    )
    .bind(id)
    .bind(Json(preferences))
    .fetch_optional(db.pool());
    let stored = db.timed("users.set_preferences", query).await?;
    Ok(stored.map(|Json(map)| map))
}

/// Up to `limit` accounts after `after` in id (that is, creation) order.
pub async fn list(
    db: &Db,
    filter: &UserFilter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<User>, UsersError> {
    const SQL: &str = concat!(
        "SELECT ",
        user_columns!(),
        " FROM users WHERE ($1::uuid IS NULL OR id > $1) ",
        "AND (cardinality($2::text[]) = 0 OR role = ANY($2)) ",
        "AND (cardinality($3::text[]) = 0 OR status = ANY($3)) ",
        // LIKE with the search text's wildcards escaped, so the trigram indexes on both serve it.
        "AND ($4::text IS NULL OR email LIKE $4 OR lower(full_name) LIKE $4) ",
        "ORDER BY id LIMIT $5"
    );
    let roles: Vec<&str> = filter.roles.iter().map(|r| r.as_str()).collect();
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    let query = sqlx::query_as::<_, User>(SQL)
        .bind(after)
        .bind(roles)
        .bind(statuses)
        .bind(filter.q.as_deref().map(platform::search::contains_pattern))
        .bind(i64::from(limit))
        .fetch_all(db.pool());
    Ok(db.timed("users.list", query).await?)
}
