//! `/api/v1/auth/*`: register, login, refresh, logout.

use axum::extract::State;
use axum::http::StatusCode;
use platform::auth::{AuthUser, Role};
use platform::created::Created;
use platform::extract::{Json, Validate};
use platform::{FieldError, Problem};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::NewAccount;
use crate::error::UsersError;
use crate::http::USERS;
use crate::models::TokenResponse;
use crate::sessions;
use crate::state::AppState;
use crate::tokens;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Stored trimmed and lowercased; at most 254 characters.
    #[schema(
        example = "ada@example.com",
        min_length = 3,
        max_length = 254,
        pattern = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    )]
    pub email: String,
    /// 10-256 characters with at least one letter and one digit; not the email.
    #[schema(
        min_length = 10,
        max_length = 256,
        pattern = r"^(?=.*[A-Za-z])(?=.*[0-9])"
    )]
    pub password: String,
    /// 1-200 characters.
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub full_name: String,
    /// E.164: `+` and 7-15 digits.
    #[schema(
        example = "+442079460958",
        pattern = r"^[ -]*\+([ -]*[0-9]){7,15}[ -]*$"
    )]
    pub phone: Option<String>,
}

impl RegisterRequest {
    fn parse(&self) -> Result<NewAccount, Vec<FieldError>> {
        NewAccount::parse(
            &self.email,
            &self.password,
            &self.full_name,
            self.phone.as_deref(),
        )
    }
}

impl Validate for RegisterRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.parse().map(drop)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Nothing to check: any malformed value simply fails to match, with the same 401 as a wrong password.
impl Validate for LoginRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenRequest {
    pub refresh_token: String,
}

impl Validate for RefreshTokenRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        Ok(())
    }
}

/// Signs up a customer and signs them in.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    responses(
        (status = 201, description = "Account created and signed in", body = TokenResponse,
            headers(("Location" = String, description = "The new user's path"))),
        (status = 409, description = "`EMAIL_TAKEN`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED`; a weak password is `WEAK_PASSWORD` on `password`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterRequest>,
) -> Result<Created<TokenResponse>, UsersError> {
    let account = body.parse().map_err(UsersError::Validation)?;
    let user = sessions::create_user(&state, account, Role::Customer).await?;
    let tokens = sessions::start_session(&state, user).await?;
    Ok(Created::new(USERS, tokens.user.id, tokens))
}

/// Signs in with email and password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "`INVALID_CREDENTIALS`, identical for an unknown email, a wrong password and an inactive account", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    Json(body): Json<LoginRequest>,
) -> Result<axum::Json<TokenResponse>, UsersError> {
    let user = sessions::login(&state, &body.email, &body.password).await?;
    Ok(axum::Json(sessions::start_session(&state, user).await?))
}

/// Exchanges a refresh token for a new pair; the presented token is spent.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    responses(
        (status = 200, description = "A new access and refresh token", body = TokenResponse),
        (status = 401, description = "`INVALID_REFRESH_TOKEN` (unknown, expired, revoked) or `REFRESH_TOKEN_REUSED` (already spent: every token of the session is revoked)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshTokenRequest>,
) -> Result<axum::Json<TokenResponse>, UsersError> {
    Ok(axum::Json(
        sessions::refresh(&state, &body.refresh_token).await?,
    ))
}

/// Ends the session the refresh token belongs to and revokes the access token presented, everywhere within
/// a second. Idempotent: an unknown or foreign refresh token is ignored.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    security(("bearer_auth" = [])),
    responses(
        (status = 204, description = "The session's refresh tokens and the presented access token are revoked"),
        (status = 401, description = "Missing or invalid access token", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<RefreshTokenRequest>,
) -> Result<StatusCode, UsersError> {
    tokens::revoke_family_of(&state.db, auth.id(), &body.refresh_token).await?;
    state.revoker.log_out(&state.db, &auth.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
