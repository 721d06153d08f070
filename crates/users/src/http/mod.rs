//! HTTP handlers: parse the request, call the domain, shape the response. Every error is a `UsersError`
//! or an extractor's `Problem`, so every error body is problem+json. The routes are registered together with
//! their OpenAPI description, generated from the handlers so the two cannot drift apart.

pub mod admin;
pub mod auth;
pub mod clients;
pub mod internal;
pub mod me;
pub mod oauth;

use platform::openapi::BearerAuth;
use platform::pagination::Page;
use platform::{FieldError, Problem};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::models::UserView;
use crate::state::AppState;

/// The collection users live in: a new user's `Location` is this plus its id.
pub(crate) const USERS: &str = "/api/v1/users";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "LogiCore users service",
        description = "Accounts, roles and sessions. Errors are `application/problem+json` (RFC 9457) with a stable `code`.",
        version = env!("CARGO_PKG_VERSION"),
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    components(schemas(Problem, FieldError, Page<UserView>)),
    tags(
        (name = "auth", description = "Sign-up, sign-in and token refresh"),
        (name = "profile", description = "The signed-in user's own account"),
        (name = "users", description = "Account administration"),
        (name = "clients", description = "OAuth2 machine clients (client credentials)"),
        (name = "oauth", description = "LogiCore as an OAuth2 authorization server and OpenID provider"),
    )
)]
struct ApiDoc;

/// Every API route, each registered with its OpenAPI operation.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(me::get_me, me::update_me))
        .routes(routes!(me::get_preferences, me::put_preferences))
        .routes(routes!(admin::create_user, admin::list_users))
        .routes(routes!(
            admin::get_user,
            admin::update_user,
            admin::deactivate_user
        ))
        .routes(routes!(clients::create_client, clients::list_clients))
        .routes(routes!(clients::get_client, clients::revoke_client))
        .routes(routes!(clients::rotate_secret))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::jwks))
        .routes(routes!(oauth::openid_configuration))
}

#[cfg(test)]
mod tests {
    use crate::openapi;

    /// The users table of docs/api.md.
    const CONTRACT: &[(&str, &str)] = &[
        ("post", "/api/v1/auth/register"),
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("get", "/api/v1/users/me"),
        ("patch", "/api/v1/users/me"),
        ("get", "/api/v1/users/me/preferences"),
        ("put", "/api/v1/users/me/preferences"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users"),
        ("get", "/api/v1/users/{id}"),
        ("patch", "/api/v1/users/{id}"),
        ("delete", "/api/v1/users/{id}"),
        ("post", "/api/v1/clients"),
        ("get", "/api/v1/clients"),
        ("get", "/api/v1/clients/{id}"),
        ("delete", "/api/v1/clients/{id}"),
        ("post", "/api/v1/clients/{id}/secret"),
        ("post", "/oauth/token"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/.well-known/openid-configuration"),
    ];

    fn operation<'a>(
        spec: &'a utoipa::openapi::OpenApi,
        method: &str,
        path: &str,
    ) -> Option<&'a utoipa::openapi::path::Operation> {
        let item = spec.paths.paths.get(path)?;
        match method {
            "get" => item.get.as_ref(),
            "post" => item.post.as_ref(),
            "put" => item.put.as_ref(),
            "patch" => item.patch.as_ref(),
            "delete" => item.delete.as_ref(),
            _ => None,
        }
    }

    #[test]
    fn every_route_of_the_contract_is_documented() {
        let spec = openapi();
        for (method, path) in CONTRACT {
            assert!(
                operation(&spec, method, path).is_some(),
                "{method} {path} is missing from the OpenAPI document"
            );
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_a_bearer_scheme_on_protected_routes() {
        let spec = openapi();
        let json = serde_json::to_value(&spec).unwrap_or_default();
        assert_eq!(json["openapi"], "3.1.0");
        assert_eq!(json["info"]["title"], "LogiCore users service");
        assert_eq!(
            json["components"]["securitySchemes"]["bearer_auth"]["scheme"],
            "bearer"
        );
        let me = operation(&spec, "get", "/api/v1/users/me");
        assert!(me.and_then(|op| op.security.as_ref()).is_some());
        let login = operation(&spec, "post", "/api/v1/auth/login");
        assert!(login.is_some_and(|op| op.security.is_none()));
    }

    #[test]
    fn request_bodies_and_list_parameters_are_described() {
        let json = serde_json::to_value(openapi()).unwrap_or_default();
        let register = &json["paths"]["/api/v1/auth/register"]["post"];
        assert!(
            register["requestBody"]["content"]["application/json"].is_object(),
            "{register}"
        );
        let list = &json["paths"]["/api/v1/users"]["get"]["parameters"];
        let names: Vec<&str> = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["role", "status", "q", "limit", "cursor"], "{list}");
    }
}
