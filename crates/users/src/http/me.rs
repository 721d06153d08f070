//! `/api/v1/users/me` and its preferences: what any signed-in user may do with their own account.

use axum::extract::State;
use platform::auth::{AuthUser, Role};
use platform::extract::{Json, Validate};
use platform::openapi::JsonDocument;
use platform::problem::collect;
use platform::{FieldError, Problem};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::cached;
use crate::changes;
use crate::domain::{FullName, Phone, UserStatus};
use crate::error::UsersError;
use crate::models::UserView;
use crate::repo::{self, UserPatch};
use crate::sessions::current_user;
use crate::state::AppState;

/// The profile fields a user may change. Role, email and status are not among them: sending them is a 422.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub full_name: Option<String>,
    /// `null` removes the phone number.
    #[serde(default, deserialize_with = "platform::extract::nullable")]
    #[schema(value_type = Option<String>, pattern = r"^[ -]*\+([ -]*[0-9]){7,15}[ -]*$")]
    pub phone: Option<Option<String>>,
}

impl UpdateMeRequest {
    fn parse(&self) -> Result<UserPatch, Vec<FieldError>> {
        parse_patch(self.full_name.as_deref(), self.phone.as_ref(), None, None)
    }
}

/// A profile change, checked: the name and phone a user may change on their own profile, and the role
/// and status only an admin may. `None` leaves a field as it is; a `null` phone removes it.
pub(crate) fn parse_patch(
    full_name: Option<&str>,
    phone: Option<&Option<String>>,
    role: Option<Role>,
    status: Option<UserStatus>,
) -> Result<UserPatch, Vec<FieldError>> {
    let mut errors = Vec::new();
    let patch = UserPatch {
        full_name: full_name.and_then(|raw| collect(FullName::parse(raw), &mut errors)),
        phone: phone.and_then(|raw| match raw {
            None => Some(None),
            Some(number) => collect(Phone::parse(number), &mut errors).map(Some),
        }),
        role,
        status,
    };
    if errors.is_empty() {
        Ok(patch)
    } else {
        Err(errors)
    }
}

impl Validate for UpdateMeRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.parse().map(drop)
    }
}

/// The caller's profile.
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "profile",
    security(("bearer_auth" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = UserView),
        (status = 401, description = "Missing or invalid token, or the account is inactive", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_me(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<axum::Json<UserView>, UsersError> {
    Ok(axum::Json(current_user(&state, &auth, &Role::ALL).await?))
}

/// Changes the caller's name or phone.
#[utoipa::path(
    patch,
    path = "/api/v1/users/me",
    tag = "profile",
    security(("bearer_auth" = [])),
    responses(
        (status = 200, description = "The updated profile", body = UserView),
        (status = 401, description = "Missing or invalid token, or the account is inactive", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED`, including `UNKNOWN_FIELD` for role, email or status", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_me(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<UpdateMeRequest>,
) -> Result<axum::Json<UserView>, UsersError> {
    let patch = body.parse().map_err(UsersError::Validation)?;
    let user = current_user(&state, &auth, &Role::ALL).await?;
    let updated = changes::apply_patch(&state, user.id, &patch, None)
        .await?
        .ok_or(UsersError::InactiveCaller)?;
    Ok(axum::Json(updated.into()))
}

/// The caller's preferences: a JSON object the clients define.
#[utoipa::path(
    get,
    path = "/api/v1/users/me/preferences",
    tag = "profile",
    security(("bearer_auth" = [])),
    responses(
        (status = 200, description = "The stored object, `{}` when none was set", body = Object),
        (status = 401, description = "Missing or invalid token, or the account is inactive", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_preferences(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<axum::Json<Map<String, Value>>, UsersError> {
    let user = current_user(&state, &auth, &Role::ALL).await?;
    let preferences = cached::preferences(&state, user.id)
        .await?
        .ok_or(UsersError::InactiveCaller)?;
    Ok(axum::Json(preferences))
}

/// Replaces the caller's preferences.
#[utoipa::path(
    put,
    path = "/api/v1/users/me/preferences",
    tag = "profile",
    security(("bearer_auth" = [])),
    request_body(content = JsonDocument, description = "Any JSON object of at most `users.preferences_max_bytes` (16 KiB) when serialized, its numbers of magnitude below 1e100"),
    responses(
        (status = 200, description = "The stored object", body = Object),
        (status = 401, description = "Missing or invalid token, or the account is inactive", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "`PAYLOAD_TOO_LARGE`: the object is over the preferences limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED`: the body is not a JSON object", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_preferences(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(preferences): Json<Map<String, Value>>,
) -> Result<axum::Json<Map<String, Value>>, UsersError> {
    let user = current_user(&state, &auth, &Role::ALL).await?;
    // Measured re-serialized, not as sent, so whitespace in the request does not count against the limit.
    let size = serde_json::to_vec(&preferences).map_or(usize::MAX, |bytes| bytes.len());
    if size > state.preferences_max_bytes {
        return Err(UsersError::PreferencesTooLarge {
            limit: state.preferences_max_bytes,
        });
    }
    let stored = repo::set_preferences(&state.db, user.id, &preferences).await?;
    cached::forget(&state.cache, user.id).await;
    let stored = stored.ok_or(UsersError::InactiveCaller)?;
    Ok(axum::Json(stored))
}
