//! Registration, login, refresh and logout.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, access_token, expect, expect_problem, refresh_token, spawn_app};

#[tokio::test]
async fn registering_returns_a_session_and_a_customer_profile() {
    let app = spawn_app().await;
    let body = json!({
        "email": "  Ada@Example.COM ", "password": PASSWORD, "full_name": " Ada Lovelace ",
        "phone": "+44 20 7946 0958",
    });
    let response = app.post("/api/v1/auth/register", None, &body).await;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let tokens = expect(response, StatusCode::CREATED).await;
    let id = tokens["user"]["id"].as_str().unwrap_or_default();
    assert_eq!(location, Some(format!("/api/v1/users/{id}")));

    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 900);
    assert!(!refresh_token(&tokens).is_empty());
    let user = &tokens["user"];
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["full_name"], "Ada Lovelace");
    assert_eq!(user["phone"], "+442079460958");
    assert_eq!(user["role"], "customer");
    assert_eq!(user["status"], "active");
    assert!(user.get("password_hash").is_none());

    let me = app
        .get("/api/v1/users/me", Some(&access_token(&tokens)))
        .await;
    assert_eq!(expect(me, StatusCode::OK).await["id"], user["id"]);
}

#[tokio::test]
async fn registering_an_email_twice_is_a_conflict_whatever_its_case() {
    let app = spawn_app().await;
    app.register("grace@example.com").await;
    let body = json!({"email": "GRACE@example.com", "password": PASSWORD, "full_name": "Grace"});
    let response = app.post("/api/v1/auth/register", None, &body).await;
    expect_problem(response, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
}

#[tokio::test]
async fn a_weak_password_is_rejected_naming_the_password_field() {
    let app = spawn_app().await;
    for password in [
        "short1",
        "no digits here",
        "1234567890123",
        "weak@example.com",
    ] {
        let body = json!({"email": "weak@example.com", "password": password, "full_name": "W"});
        let response = app.post("/api/v1/auth/register", None, &body).await;
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(
            problem["errors"][0]["field"], "password",
            "{password}: {problem}"
        );
        assert_eq!(
            problem["errors"][0]["code"], "WEAK_PASSWORD",
            "{password}: {problem}"
        );
    }
}

#[tokio::test]
async fn every_invalid_registration_field_is_reported_at_once() {
    let app = spawn_app().await;
    let body =
        json!({"email": "not-an-email", "password": PASSWORD, "full_name": "  ", "phone": "12"});
    let response = app.post("/api/v1/auth/register", None, &body).await;
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["email", "full_name", "phone"], "{problem}");
}

#[tokio::test]
async fn registering_cannot_choose_a_role() {
    let app = spawn_app().await;
    let body = json!({
        "email": "sneaky@example.com", "password": PASSWORD, "full_name": "S", "role": "admin",
    });
    let response = app.post("/api/v1/auth/register", None, &body).await;
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["code"], "UNKNOWN_FIELD", "{problem}");
}

#[tokio::test]
async fn logging_in_starts_a_new_session() {
    let app = spawn_app().await;
    let registered = app.register("lin@example.com").await;
    let response = app.login("LIN@example.com ", PASSWORD).await;
    let tokens = expect(response, StatusCode::OK).await;
    assert_eq!(tokens["user"]["id"], registered["user"]["id"]);
    assert_ne!(refresh_token(&tokens), refresh_token(&registered));
    let me = app
        .get("/api/v1/users/me", Some(&access_token(&tokens)))
        .await;
    expect(me, StatusCode::OK).await;
}

#[tokio::test]
async fn an_unknown_email_and_a_wrong_password_get_identical_answers() {
    let app = spawn_app().await;
    app.register("known@example.com").await;

    let wrong_password = app.login("known@example.com", "wrong password 1").await;
    let unknown_email = app.login("unknown@example.com", PASSWORD).await;
    let headers = |r: &reqwest::Response| {
        let mut headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        headers.sort();
        headers
    };
    assert_eq!(headers(&wrong_password), headers(&unknown_email));

    let mut a = expect_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    let mut b = expect_problem(
        unknown_email,
        StatusCode::UNAUTHORIZED,
        "INVALID_CREDENTIALS",
    )
    .await;
    for body in [&mut a, &mut b] {
        body.as_object_mut()
            .map(|o| o.remove("request_id"))
            .unwrap_or_else(|| panic!("no request_id in {body}"));
    }
    assert_eq!(a, b);
}
