//! The signed-in user's own profile and preferences.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{access_token, expect, expect_problem, spawn_app};

#[tokio::test]
async fn a_user_updates_their_name_and_phone_and_can_clear_the_phone() {
    let app = spawn_app().await;
    let token = access_token(&app.register("me@example.com").await);

    let body = json!({"full_name": "  New Name ", "phone": "+15551234567"});
    let response = app.patch("/api/v1/users/me", Some(&token), &body).await;
    let updated = expect(response, StatusCode::OK).await;
    assert_eq!(updated["full_name"], "New Name");
    assert_eq!(updated["phone"], "+15551234567");

    let response = app
        .patch("/api/v1/users/me", Some(&token), &json!({"phone": null}))
        .await;
    let cleared = expect(response, StatusCode::OK).await;
    assert_eq!(cleared["phone"], json!(null));
    assert_eq!(cleared["full_name"], "New Name");

    let me = expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me, cleared);
}

#[tokio::test]
async fn a_user_cannot_change_their_own_role_email_or_status() {
    let app = spawn_app().await;
    let token = access_token(&app.register("climber@example.com").await);
    for body in [
        json!({"role": "admin"}),
        json!({"email": "other@example.com"}),
        json!({"status": "inactive"}),
    ] {
        let response = app.patch("/api/v1/users/me", Some(&token), &body).await;
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["code"], "UNKNOWN_FIELD", "{problem}");
    }
    let me = expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["role"], "customer");
}

#[tokio::test]
async fn invalid_profile_changes_are_rejected_by_field() {
    let app = spawn_app().await;
    let token = access_token(&app.register("fields@example.com").await);
    let body = json!({"full_name": " ", "phone": "call me"});
    let response = app.patch("/api/v1/users/me", Some(&token), &body).await;
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        problem["errors"].as_array().map(Vec::len),
        Some(2),
        "{problem}"
    );
}

#[tokio::test]
async fn preferences_start_empty_and_are_replaced_as_a_whole() {
    let app = spawn_app().await;
    let token = access_token(&app.register("prefs@example.com").await);
    let path = "/api/v1/users/me/preferences";

    let empty = expect(app.get(path, Some(&token)).await, StatusCode::OK).await;
    assert_eq!(empty, json!({}));

    let first = json!({"theme": "dark", "notifications": {"email": true, "sms": false}});
    let stored = expect(app.put(path, Some(&token), &first).await, StatusCode::OK).await;
    assert_eq!(stored, first);
    let second = json!({"language": "de"});
    expect(app.put(path, Some(&token), &second).await, StatusCode::OK).await;
    let read = expect(app.get(path, Some(&token)).await, StatusCode::OK).await;
    assert_eq!(read, second);
}

#[tokio::test]
async fn preferences_must_be_a_json_object() {
    let app = spawn_app().await;
    let token = access_token(&app.register("array@example.com").await);
    for body in [json!(["dark"]), json!("dark"), json!(null)] {
        let response = app
            .put("/api/v1/users/me/preferences", Some(&token), &body)
            .await;
        expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
    }
}

#[tokio::test]
async fn preferences_over_the_limit_are_too_large() {
    let app = spawn_app().await;
    let token = access_token(&app.register("big@example.com").await);
    let limit = app.config.preferences_max_bytes;
    let body = json!({"notes": "x".repeat(limit)});
    let response = app
        .put("/api/v1/users/me/preferences", Some(&token), &body)
        .await;
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;

    let fits = json!({"notes": "x".repeat(limit - 20)});
    let response = app
        .put("/api/v1/users/me/preferences", Some(&token), &fits)
        .await;
    expect(response, StatusCode::OK).await;
}

/// With dedicated HTTP workers (`service.http_workers`), a profile cached while serving one connection
/// is not served stale on another connection, dealt to the other worker, after a change.
#[tokio::test]
async fn dedicated_workers_share_the_profile_cache_and_its_invalidation() {
    let app = crate::helpers::spawn_app_with(&[("LOGICORE_SERVICE__HTTP_WORKERS", "2")]).await;
    let token = access_token(&app.register("workers@example.com").await);
    let url = app.url("/api/v1/users/me");
    // Two clients, each with its own keep-alive connection, so their requests run on different workers.
    let first = reqwest::Client::new();
    let second = reqwest::Client::new();
    for client in [&first, &second] {
        let response = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(
            expect(response, StatusCode::OK).await["full_name"],
            "Test User"
        );
    }
    let response = second
        .patch(&url)
        .bearer_auth(&token)
        .json(&json!({"full_name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect(response, StatusCode::OK).await["full_name"],
        "Renamed"
    );
    let response = first.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        expect(response, StatusCode::OK).await["full_name"],
        "Renamed"
    );
}
