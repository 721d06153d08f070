use platform::auth::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::spawn_app;

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthorized() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/inventory/warehouses",
        "/api/v1/inventory/products",
        "/api/v1/inventory/stock-levels",
        "/api/v1/inventory/movements",
    ] {
        let (status, body) = app.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert_eq!(body["code"], "UNAUTHORIZED");
    }
    let response = app
        .client
        .get(app.server.url("/api/v1/inventory/products"))
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_route_admits_exactly_the_roles_of_the_contract() {
    let app = spawn_app().await;
    let id = Uuid::now_v7();
    let staff = [Role::Admin, Role::Manager, Role::Dispatcher];
    let managers = [Role::Admin, Role::Manager];
    let anyone = Role::ALL;
    let routes: Vec<(Method, String, &[Role])> = vec![
        (
            Method::POST,
            "/api/v1/inventory/warehouses".into(),
            &managers,
        ),
        (Method::GET, "/api/v1/inventory/warehouses".into(), &staff),
        (
            Method::GET,
            format!("/api/v1/inventory/warehouses/{id}"),
            &staff,
        ),
        (
            Method::PATCH,
            format!("/api/v1/inventory/warehouses/{id}"),
            &managers,
        ),
        (Method::POST, "/api/v1/inventory/products".into(), &managers),
        (Method::GET, "/api/v1/inventory/products".into(), &anyone),
        (
            Method::GET,
            format!("/api/v1/inventory/products/{id}"),
            &anyone,
        ),
        (
            Method::PATCH,
            format!("/api/v1/inventory/products/{id}"),
            &managers,
        ),
        (
            Method::GET,
            format!("/api/v1/inventory/products/{id}/availability"),
            &anyone,
        ),
        (Method::GET, "/api/v1/inventory/stock-levels".into(), &staff),
        (
            Method::POST,
            "/api/v1/inventory/adjustments".into(),
            &managers,
        ),
        (
            Method::POST,
            "/api/v1/inventory/transfers".into(),
            &managers,
        ),
        (Method::GET, "/api/v1/inventory/movements".into(), &staff),
        (
            Method::POST,
            "/api/v1/inventory/reservations".into(),
            &staff,
        ),
        (
            Method::GET,
            format!("/api/v1/inventory/reservations/{id}"),
            &staff,
        ),
        (
            Method::POST,
            format!("/api/v1/inventory/reservations/{id}/release"),
            &staff,
        ),
        (Method::POST, "/api/v1/inventory/import".into(), &managers),
    ];
    for (method, path, allowed) in &routes {
        for role in Role::ALL {
            // An empty object: allowed roles get past the role check to a 404/415/422, never a 403.
            let body = (*method != Method::GET).then(|| json!({}));
            let (status, problem) = app.call(method.clone(), path, Some(role), body).await;
            if allowed.contains(&role) {
                assert_ne!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {problem}"
                );
                assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {path} as {role}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::FORBIDDEN,
                    "{method} {path} as {role}: {problem}"
                );
                assert_eq!(problem["code"], "FORBIDDEN");
            }
        }
    }
}
