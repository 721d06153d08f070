//! Sign-up, sign-in, token refresh and sign-out, and the check that a token's account may still act.

use cache::Cache;
use messaging::Messaging;
use platform::auth::{AuthUser, Role};
use platform::db::{Db, Isolation};
use platform::problem::FieldError;
use platform::revocation::Revocation;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::cached;
use crate::domain::{Email, FullName, NewAccount, Password, UserStatus};
use crate::error::UsersError;
use crate::events;
use crate::models::{TokenResponse, User, UserView};
use crate::passwords;
use crate::repo::{self, NewUser, UserPatch};
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
    let access_token = state.signer.access_token(user.id, &user.email, user.role)?;
    let id_token = state
        .signer
        .id_token(user.id, &user.email, &user.full_name, user.role)?;
    Ok(TokenResponse {
        user: user.into(),
        access_token,
        refresh_token: refresh.token,
        token_type: "Bearer",
        expires_in: state.signer.access_ttl().as_secs(),
        id_token,
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

/// What `create_or_promote_admin` did to the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminAction {
    /// A new admin account.
    Created,
    /// An existing account became an active admin (through the same change path as an admin's
    /// `PATCH /users/{id}`, so its events and session rules apply).
    Promoted,
    /// The account already was an active admin.
    AlreadyAdmin,
}

/// The account afterwards, what was done, and whether its password was replaced (which ends its sessions).
#[derive(Debug, Clone)]
pub struct AdminOutcome {
    pub user: UserView,
    pub action: AdminAction,
    pub password_changed: bool,
}

/// Creates an admin account, or makes the account with that email an active admin. An existing account
/// keeps its password unless `password` is given; a new one needs it. A promotion or a new password revokes
/// the account's older access tokens (see `Revoker::for_change`), announced once the transaction commits; the
/// account's cached profile is dropped (it may have been cached with its old role or status).
pub async fn create_or_promote_admin(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    revoker: &Revoker,
    email: &str,
    password: Option<&str>,
) -> Result<AdminOutcome, UsersError> {
    let mut errors = Vec::new();
    let email = platform::problem::collect(Email::parse(email), &mut errors);
    let password = password.and_then(|password| {
        platform::problem::collect(
            Password::parse(password, email.as_ref().map(Email::as_str)),
            &mut errors,
        )
    });
    let Some(email) = email.filter(|_| errors.is_empty()) else {
        return Err(UsersError::Validation(errors));
    };
    let password_hash = match &password {
        Some(password) => Some(passwords::hash(password).await?),
        None => None,
    };
    let (tx_db, messaging, tx_revoker) = (db.clone(), messaging.clone(), revoker.clone());
    let (outcome, revocation) = db
        .transaction(
            Isolation::ReadCommitted,
            repo::tx_body(move |connection| {
                Box::pin(upsert_admin_in(
                    tx_db.clone(),
                    messaging.clone(),
                    tx_revoker.clone(),
                    connection,
                    email.clone(),
                    password_hash.clone(),
                ))
            }),
        )
        .await?;
    if let Some(revocation) = revocation {
        revoker.announce(&[revocation]).await;
    }
    cached::forget(cache, outcome.user.id).await;
    tracing::info!(
        user_id = %outcome.user.id,
        action = ?outcome.action,
        password_changed = outcome.password_changed,
        "admin account ready"
    );
    Ok(outcome)
}

/// The body of [`create_or_promote_admin`]'s transaction; it owns its inputs (see `repo::tx_body`).
async fn upsert_admin_in(
    db: Db,
    messaging: Messaging,
    revoker: Revoker,
    connection: &mut PgConnection,
    email: Email,
    password_hash: Option<String>,
) -> Result<(AdminOutcome, Option<Revocation>), UsersError> {
    if let Some(password_hash) = &password_hash {
        let admin = NewUser {
            email: email.clone(),
            full_name: FullName::parse("Administrator")
                .map_err(|e| UsersError::Validation(vec![e]))?,
            phone: None,
            role: Role::Admin,
            password_hash: password_hash.clone(),
        };
        if let Some(user) = repo::insert_if_absent(&db, connection, &admin).await? {
            events::created(&messaging, connection, &user).await?;
            let created = AdminOutcome {
                user: user.into(),
                action: AdminAction::Created,
                password_changed: false,
            };
            return Ok((created, None));
        }
    }
    // The email is taken (the insert waited for any concurrent one to commit), or no password was given,
    // which only an existing account can do without.
    let Some(before) = repo::lock_by_email(&db, connection, &email).await? else {
        return Err(UsersError::Validation(vec![FieldError::new(
            "password",
            "REQUIRED",
            "a new admin account needs a password",
        )]));
    };
    let action = if before.role == Role::Admin && before.is_active() {
        AdminAction::AlreadyAdmin
    } else {
        AdminAction::Promoted
    };
    let promotion = UserPatch {
        role: Some(Role::Admin),
        status: Some(UserStatus::Active),
        ..UserPatch::default()
    };
    let (promoted, mut revocation) = crate::changes::apply_patch_in(
        db.clone(),
        messaging,
        revoker.clone(),
        connection,
        before.id,
        promotion,
        None,
    )
    .await?
    .ok_or(UsersError::NotFound)?;
    let mut user = promoted;
    if let Some(password_hash) = &password_hash {
        let replaced = repo::set_password_hash(&db, connection, user.id, password_hash)
            .await?
            .ok_or(UsersError::NotFound)?;
        // A replaced password ends the sessions opened with the old one, and the access tokens too.
        tokens::revoke_all_of_user(&db, connection, user.id).await?;
        if let Some(password_revocation) = revoker.for_change(&user, &replaced) {
            revoker
                .record(&db, connection, &password_revocation)
                .await?;
            revocation = Some(password_revocation);
        }
        user = replaced;
    }
    let outcome = AdminOutcome {
        user: user.into(),
        action,
        password_changed: password_hash.is_some(),
    };
    Ok((outcome, revocation))
}
