//! `/api/v1/clients`: machine clients, administered by admins (see `clients`).

use axum::extract::State;
use axum::http::StatusCode;
use platform::auth::roles::Admin;
use platform::created::Created;
use platform::extract::{Json, Path, Validate};
use platform::{FieldError, Problem};
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::clients::{self, ClientView, ClientWithSecret, NewClient};
use crate::error::UsersError;
use crate::sessions::current_user;
use crate::state::AppState;

/// The collection clients live in.
pub(crate) const CLIENTS: &str = "/api/v1/clients";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// 1-100 characters, e.g. the system it is for.
    #[schema(
        example = "Warehouse sync",
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// At least one of `inventory:read`, `inventory:write`, `orders:read`, `tracking:write`.
    #[schema(value_type = Vec<ScopeName>, example = json!(["inventory:write"]), min_items = 1)]
    pub scopes: Vec<String>,
}

/// The scopes of `platform::auth::scopes::SCOPES`, as the document names them (a test keeps the two equal).
/// The request takes strings, so an unknown one is a field error (`UNKNOWN_SCOPE`), not a parse failure.
#[derive(serde::Serialize, ToSchema)]
#[allow(dead_code, reason = "only its schema is used")]
pub enum ScopeName {
    #[serde(rename = "inventory:read")]
    InventoryRead,
    #[serde(rename = "inventory:write")]
    InventoryWrite,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "tracking:write")]
    TrackingWrite,
}

impl Validate for CreateClientRequest {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        NewClient::parse(&self.name, &self.scopes).map(drop)
    }
}

/// Creates a machine client; its secret is in this answer only.
#[utoipa::path(
    post,
    path = "/api/v1/clients",
    tag = "clients",
    security(("bearer_auth" = [])),
    responses(
        (status = 201, description = "Created, with its secret (shown once)", body = ClientWithSecret,
            headers(("Location" = String, description = "The new client's path"))),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`VALIDATION_FAILED`: a bad name or an `UNKNOWN_SCOPE`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_client(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Json(body): Json<CreateClientRequest>,
) -> Result<Created<ClientWithSecret>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let client = NewClient::parse(&body.name, &body.scopes).map_err(UsersError::Validation)?;
    let created = clients::create(&state.db, client, auth.id()).await?;
    Ok(Created::new(CLIENTS, created.client.id, created))
}

/// Every machine client, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/clients",
    tag = "clients",
    security(("bearer_auth" = [])),
    responses(
        (status = 200, description = "The clients", body = Vec<ClientView>),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_clients(
    Admin(auth): Admin,
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<ClientView>>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    Ok(axum::Json(clients::list(&state.db).await?))
}

/// One machine client.
#[utoipa::path(
    get,
    path = "/api/v1/clients/{id}",
    tag = "clients",
    security(("bearer_auth" = [])),
    params(("id" = Uuid, Path, description = "The client's id")),
    responses(
        (status = 200, description = "The client", body = ClientView),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_client(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ClientView>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let client = clients::get(&state.db, id).await?.ok_or_else(not_found)?;
    Ok(axum::Json(client))
}

/// Replaces the client's secret; the old one is refused from now on. Tokens already issued keep working
/// until they expire (revoke the client to end them).
#[utoipa::path(
    post,
    path = "/api/v1/clients/{id}/secret",
    tag = "clients",
    security(("bearer_auth" = [])),
    params(("id" = Uuid, Path, description = "The client's id")),
    responses(
        (status = 200, description = "The client with its new secret (shown once)", body = ClientWithSecret),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`NOT_FOUND`: no such active client", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn rotate_secret(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ClientWithSecret>, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    let rotated = clients::rotate_secret(&state.db, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(axum::Json(rotated))
}

/// Revokes the client: no new tokens, and the ones it holds are refused within a second.
#[utoipa::path(
    delete,
    path = "/api/v1/clients/{id}",
    tag = "clients",
    security(("bearer_auth" = [])),
    params(("id" = Uuid, Path, description = "The client's id")),
    responses(
        (status = 204, description = "Revoked (also when it already was)"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`NOT_FOUND`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_client(
    Admin(auth): Admin,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, UsersError> {
    current_user(&state, &auth, Admin::ROLES).await?;
    if clients::revoke(&state, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found())
    }
}

fn not_found() -> UsersError {
    UsersError::Problem(Problem::not_found("no client with this id"))
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use super::ScopeName;

    #[test]
    fn the_documented_scopes_are_the_scopes() {
        let schema = serde_json::to_value(ScopeName::schema()).unwrap_or_default();
        let documented: Vec<&str> = schema["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|name| name.as_str())
            .collect();
        let real: Vec<&str> = platform::auth::scopes::SCOPES
            .iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(documented, real);
    }
}
