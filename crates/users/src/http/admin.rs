//! `/api/v1/users` and `/api/v1/users/{id}`: account administration.

use axum::extract::State;
use axum::http::StatusCode;
use platform::auth::Role;
use platform::auth::roles::{Admin, Manager};
use platform::created::Created;
use platform::extract::{Json, Path, Query, Validate};
use platform::list;
use platform::pagination::{Page, PageParams};
use platform::{FieldError, Problem};
use serde::Deserialize;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::cached;
use crate::changes;
use crate::domain::{NewAccount, UserStatus};
use crate::error::UsersError;
use crate::http::USERS;
use crate::http::me::parse_patch;
use crate::models::UserView;
use crate::repo::{self, UserFilter, UserPatch};
use crate::sessions::{self, current_user};
use crate::state::AppState;

const SEARCH_MAX: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(
        min_length = 3,
        max_length = 254,
        pattern = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
    )]
    pub email: String,
    #[schema(
        min_length = 10,
        max_length = 256,
        pattern = r"^(?=.*[A-Za-z])(?=.*[0-9])"
    )]
    pub password: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub full_name: String,
    #[schema(pattern = r"^[ -]*\+([ -]*[0-9]){7,15}[ -]*$")]
    pub phone: Option<String>,
    pub role: Role,
}

impl CreateUserRequest {
    fn parse(&self) -> Result<NewAccount, Vec<FieldError>> {
        NewAccount::parse(
            &self.email,
            &self.password,
            &self.full_name,
            self.phone.as_deref(),
        )
    }
}

impl Validate for CreateUserRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.parse().map(drop)
    }
}

/// What an admin may change. Deactivating (`status: inactive`) also ends every session of the account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
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

impl UpdateUserRequest {
    fn parse(&self) -> Result<UserPatch, Vec<FieldError>> {
        parse_patch(
            self.full_name.as_deref(),
            self.phone.as_ref(),
            self.role,
            self.status,
        )
    }
}

impl Validate for UpdateUserRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.parse().map(drop)
    }
}

fn role_list_schema() -> Object {
    list::one_of_schema(&Role::ALL.map(Role::as_str))
}

fn status_list_schema() -> Object {
    list::one_of_schema(&UserStatus::ALL.map(UserStatus::as_str))
}

/// Filters and paging of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListUsersQuery {
    /// Roles, comma-separated; a user with any of them matches.
    #[param(example = "driver,dispatcher", schema_with = role_list_schema)]
    pub role: Option<String>,
    /// `active`, `inactive` or both, comma-separated.
    #[param(schema_with = status_list_schema)]
    pub status: Option<String>,
    /// Case-insensitive substring of the email or the full name.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListUsersQuery {
    fn parse(&self) -> Result<(UserFilter, PageParams), Vec<FieldError>> {
        let mut errors = Vec::new();
        let roles = list::parse(
            self.role.as_deref(),
            "role",
            "a role",
            |s| s.parse::<Role>().ok(),
            &mut errors,
        );
        let statuses = list::parse(
            self.status.as_deref(),
            "status",
            "a user status",
            UserStatus::parse,
            &mut errors,
        );
        let q = self.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if q.is_some_and(|q| q.chars().count() > SEARCH_MAX) {
            errors.push(FieldError::new(
                "q",
                "TOO_LONG",
                "must be at most 200 characters",
            ));
        }
        let page = PageParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        };
        errors.extend(page.errors());
        if !errors.is_empty() {
            return Err(errors);
        }
        let filter = UserFilter {
            roles,
            statuses,
            q: q.map(str::to_lowercase),
        };
        Ok((filter, page))
    }
}

impl Validate for ListUsersQuery {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.parse().map(drop)
    }
}

/// Creates an account with any role.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "users",
    security(("bearer_auth" = [])),
    responses(
        (status = 201, description = "Created", body = UserView,
            headers(("Location" = String, description = "The new user's path"))),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`EMAIL_TAKEN`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_user(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Json(body): Json<CreateUserRequest>,
) -> Result<Created<UserView>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let account = body.parse().map_err(UsersError::Validation)?;
    let user = sessions::create_user(&state, account, body.role).await?;
    Ok(Created::new(USERS, user.id, user.into()))
}

/// Lists accounts in creation order.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "users",
    security(("bearer_auth" = [])),
    params(ListUsersQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<UserView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is neither admin nor manager", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED` naming the bad parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_users(
    Manager(auth): Manager,
    State(state): State<AppState>,
    Query(query): Query<ListUsersQuery>,
) -> Result<axum::Json<Page<UserView>>, UsersError> {
    current_user(&state, &auth, Manager::ROLES).await?;
    let (filter, page) = query.parse().map_err(UsersError::Validation)?;
    let limit = page.limit();
    let rows = repo::list(&state.db, &filter, page.after(), limit + 1).await?;
    let views = rows.into_iter().map(UserView::from).collect();
    Ok(axum::Json(Page::from_rows(views, limit, |user| user.id)))
}

/// One account.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer_auth" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_user(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<UserView>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let user = cached::profile(&state, id)
        .await?
        .ok_or(UsersError::NotFound)?;
    Ok(axum::Json(user))
}

/// Changes role, status or profile of an account.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer_auth" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 200, description = "The updated user", body = UserView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_user(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateUserRequest>,
) -> Result<axum::Json<UserView>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let patch = body.parse().map_err(UsersError::Validation)?;
    let user = changes::apply_patch(&state, id, &patch, Some(auth.id()))
        .await?
        .ok_or(UsersError::NotFound)?;
    Ok(axum::Json(user.into()))
}

/// Deactivates an account: it can no longer sign in, its sessions end, its data stays.
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    tag = "users",
    security(("bearer_auth" = [])),
    params(("id" = Uuid, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Deactivated (also when it already was)"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn deactivate_user(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let patch = UserPatch {
        status: Some(UserStatus::Inactive),
        ..UserPatch::default()
    };
    changes::apply_patch(&state, id, &patch, Some(auth.id()))
        .await?
        .ok_or(UsersError::NotFound)?;
    Ok(StatusCode::NO_CONTENT)
}
