//! Sign-up, sign-in, token refresh and sign-out, and the check that a token's account may still act.

use cache::Cache;
use messaging::Messaging;
use platform::auth::{AuthUser, Role};
use platform::db::{Db, Isolation};
use platform::revocation::Revocation;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::cached;
use crate::domain::{Email, FullName, NewAccount, Password};
use crate::error::UsersError;
use crate::events;
use crate::models::{TokenResponse, User, UserView};
use crate::passwords;
use crate::repo::{self, NewUser};
use crate::revoke::Revoker;
use crate::state::AppState;
use crate::tokens::{self, RefreshToken};

/// Creates an account from validated input with the given role, and its `user.created` event.
pub async fn create_user(
    state: &AppState,
    input: NewAccount,
    role: Role,
) -> Result<User, UsersError> {
    let password_hash = passwords::hash(&input.password).await?;
    let new_user = NewUser {
        email: input.email,
        full_name: input.full_name,
        phone: input.phone,
        role,
        password_hash,
    };
    let db = state.db.clone();
    let messaging = state.messaging.clone();
    let user = state
        .db
        .transaction(
            Isolation::ReadCommitted,
            repo::tx_body(move |connection| {
                let (db, messaging, new_user) = (db.clone(), messaging.clone(), new_user.clone());
                Box::pin(async move {
                    let user = repo::insert(&db, connection, &new_user).await?;
                    events::created(&messaging, connection, &user).await?;
                    Ok::<_, UsersError>(user)
                })
            }),
        )
        .await?;
    tracing::info!(user_id = %user.id, role = %user.role, "user created");
    Ok(user)
}

/// Signs the user in: an access token and the first refresh token of a new family.
pub async fn start_session(state: &AppState, user: User) -> Result<TokenResponse, UsersError> {
    let refresh = RefreshToken::generate();
    let mut connection = state.db.acquire().await?;
    tokens::insert(
        &state.db,
        &mut connection,
        user.id,
        Uuid::now_v7(),
        &refresh,
        state.refresh_ttl,
    )
    .await?;
    token_response(state, user, refresh)
}

fn token_response(
    state: &AppState,
    user: User,
    refresh: RefreshToken,
) -> Result<TokenResponse, UsersError> {
    let (access_token, _) = state.keys.issue(user.id, &user.email, user.role)?;
    Ok(TokenResponse {
        user: user.into(),
        access_token,
        refresh_token: refresh.token,
        token_type: "Bearer",
        expires_in: state.keys.access_ttl().as_secs(),
    })
}

/// Checks a password login. Unknown email, wrong password and inactive account are one error, and an
/// unknown email still pays for a hash verification, so neither the answer nor its timing tells them apart.
pub async fn login(state: &AppState, email: &str, password: &str) -> Result<User, UsersError> {
    let user = match Email::parse(email) {
        Ok(email) => repo::find_by_email(&state.db, &email).await?,
        Err(_) => None,
    };
    let matches =
        passwords::verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
    match user {
        Some(user) if matches && user.is_active() => Ok(user),
        _ => Err(UsersError::InvalidCredentials),
    }
}

/// Exchanges a refresh token for a new pair.
pub async fn refresh(state: &AppState, presented: &str) -> Result<TokenResponse, UsersError> {
    let (user, next) = tokens::rotate(&state.db, presented, state.refresh_ttl).await?;
    token_response(state, user, next)
}

/// The caller's account as it is now. The token proves who the caller was when it was issued; this adds
/// 401 when the account has since been deactivated and 403 when its current role is not in `roles`
/// (a demotion takes effect at once, not when the token expires). Read through the profile cache, which
/// every change of role or status invalidates after it commits, so "at once" still holds.
pub async fn current_user(
    state: &AppState,
    auth: &AuthUser,
    roles: &[Role],
) -> Result<UserView, UsersError> {
    auth.require(roles)?;
    let user = cached::profile(state, auth.id())
        .await?
        .filter(UserView::is_active)
        .ok_or(UsersError::InactiveCaller)?;
    if roles.contains(&user.role) {
        Ok(user)
    } else {
        Err(UsersError::Forbidden)
    }
}

/// Creates an admin or promotes (and reactivates) the account with that email, setting its password, with
/// the events of what changed and the revocation of the account's older tokens (see
/// `Revoker::for_change`), then drops the account's cached profile (it may have been cached with its old
/// role or status).
pub async fn create_or_promote_admin(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    revoker: &Revoker,
    email: &str,
    password: &str,
) -> Result<User, UsersError> {
    let mut errors = Vec::new();
    let email = crate::domain::collect(Email::parse(email), &mut errors);
    let password = crate::domain::collect(
        Password::parse(password, email.as_ref().map(Email::as_str)),
        &mut errors,
    );
    let (Some(email), Some(password)) = (email, password) else {
        return Err(UsersError::Validation(errors));
    };
    let password_hash = passwords::hash(&password).await?;
    let full_name =
        FullName::parse("Administrator").map_err(|e| UsersError::Validation(vec![e]))?;
    let admin = NewUser {
        email,
        full_name,
        phone: None,
        role: Role::Admin,
        password_hash,
    };
    let (tx_db, messaging, tx_revoker) = (db.clone(), messaging.clone(), revoker.clone());
    let (user, revocation) = db
        .transaction(
            Isolation::ReadCommitted,
            repo::tx_body(move |connection| {
                Box::pin(upsert_admin_in(
                    tx_db.clone(),
                    messaging.clone(),
                    tx_revoker.clone(),
                    connection,
                    admin.clone(),
                ))
            }),
        )
        .await?;
    if let Some(revocation) = revocation {
        revoker.announce(&[revocation]).await;
    }
    cached::forget(cache, user.id).await;
    tracing::info!(user_id = %user.id, "admin account created or promoted");
    Ok(user)
}

/// The body of [`create_or_promote_admin`]'s transaction; it owns its inputs (see `repo::tx_body`).
async fn upsert_admin_in(
    db: Db,
    messaging: Messaging,
    revoker: Revoker,
    connection: &mut PgConnection,
    admin: NewUser,
) -> Result<(User, Option<Revocation>), UsersError> {
    if let Some(user) = repo::insert_if_absent(&db, connection, &admin).await? {
        events::created(&messaging, connection, &user).await?;
        return Ok((user, None));
    }
    // The email is taken, by a row that exists (the insert waited for any concurrent one to commit) and that
    // no statement deletes.
    let before = repo::lock_by_email(&db, connection, &admin.email)
        .await?
        .ok_or(UsersError::NotFound)?;
    let after = repo::promote_admin(&db, connection, before.id, &admin.password_hash)
        .await?
        .ok_or(UsersError::NotFound)?;
    events::changed(&messaging, connection, &before, &after, None).await?;
    let revocation = revoker.for_change(&before, &after);
    if let Some(revocation) = &revocation {
        revoker.record(&db, connection, revocation).await?;
    }
    Ok((after, revocation))
}
