//! The input boundary: text PostgreSQL cannot store, absurd lengths and malformed ids are client errors —
//! problem+json naming the field — on every route, never a 500; error details speak the API's language.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, access_token, expect_problem, spawn_app};

async fn assert_names_field(app_reply: reqwest::Response, field: &str, what: &str) -> Value {
    let body = expect_problem(
        app_reply,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], field, "{what}: {body}");
    assert!(body["request_id"].is_string(), "{what}: {body}");
    body
}

#[tokio::test]
async fn a_nul_in_preferences_or_the_user_search_is_a_422_naming_it() {
    let app = spawn_app().await;
    let token = access_token(&app.register("nul@example.com").await);
    let path = "/api/v1/users/me/preferences";
    for (body, field) in [
        (json!({"theme": "da\u{0}rk"}), "theme"),
        (json!({"the\u{0}me": "dark"}), "the\\u0000me"),
        (
            json!({"notifications": {"email": ["\u{0}"]}}),
            "notifications.email[0]",
        ),
    ] {
        assert_names_field(
            app.put(path, Some(&token), &body).await,
            field,
            "preferences",
        )
        .await;
    }
    let admin = app.admin_token().await;
    for (path, field) in [
        ("/api/v1/users?q=A%00B", "q"),
        ("/api/v1/users?role=%00", "role"),
        ("/api/v1/users/%00", "id"),
    ] {
        assert_names_field(app.get(path, Some(&admin)).await, field, path).await;
    }
}

#[tokio::test]
async fn error_details_speak_the_apis_language_not_rusts() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let cases = [
        (
            Method::POST,
            "/api/v1/auth/register",
            Some(json!("ada")),
            "",
        ),
        (
            Method::POST,
            "/api/v1/auth/register",
            Some(json!({"email": 1})),
            "email",
        ),
        (
            Method::POST,
            "/api/v1/users",
            Some(
                json!({"email": "a@b.co", "password": "correct-horse-9", "full_name": "A", "role": "king"}),
            ),
            "role",
        ),
        (Method::GET, "/api/v1/users?limit=ten", None, "limit"),
        (Method::GET, "/api/v1/users/12345", None, "id"),
    ];
    for (method, path, body, field) in cases {
        let reply = app.send(method, path, Some(&admin), body.as_ref()).await;
        let body = assert_names_field(reply, field, path).await;
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        for rust in [
            "expected",
            "struct",
            "variant",
            "invalid digit",
            "UUID parsing",
            "u32",
            "`",
        ] {
            assert!(
                !message.contains(rust),
                "{path}: {message:?} reads like Rust"
            );
        }
        assert!(
            message.starts_with("must be") || message.starts_with("is "),
            "{path}: {message:?}"
        );
    }
}

#[tokio::test]
async fn hostile_values_on_every_route_are_client_errors() {
    let app: TestApp = spawn_app().await;
    let admin = app.admin_token().await;
    let token = access_token(&app.register("hostile@example.com").await);
    let long = "x".repeat(20_000);
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/auth/register".into(),
            Some(
                json!({"email": format!("{long}@example.com"), "password": long, "full_name": long}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/auth/login".into(),
            Some(json!({"email": long, "password": long})),
        ),
        (
            Method::POST,
            "/api/v1/auth/refresh".into(),
            Some(json!({"refresh_token": long})),
        ),
        (
            Method::PATCH,
            "/api/v1/users/me".into(),
            Some(json!({"full_name": long, "phone": long})),
        ),
        (
            Method::PUT,
            "/api/v1/users/me/preferences".into(),
            Some(json!({long.clone(): long})),
        ),
        (
            Method::GET,
            format!("/api/v1/users?q={}", "q".repeat(4_000)),
            None,
        ),
        (
            Method::GET,
            "/api/v1/users?limit=99999999999&cursor=%FF".into(),
            None,
        ),
    ];
    for (method, path, body) in cases {
        let bearer = if path.starts_with("/api/v1/users?") {
            &admin
        } else {
            &token
        };
        let reply = app
            .send(method.clone(), &path, Some(bearer), body.as_ref())
            .await;
        let status = reply.status();
        let shown = &path[..path.len().min(80)];
        assert!(
            status.is_client_error() || status.is_success(),
            "{method} {shown}: {status} {}",
            reply.text().await.unwrap_or_default()
        );
    }
}
