//! The profile cache: a read after any write sees the write, a repeated read is a cache hit, and an
//! unreachable Redis costs only the cache.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, access_token, expect, spawn_app, spawn_app_with};

/// A key prefix of its own, so tests sharing the local Redis never see each other's entries.
fn unique_prefix() -> String {
    format!("lc-users-test-{}:", Uuid::now_v7())
}

async fn spawn_with_redis(prefix: &str) -> TestApp {
    spawn_app_with(&[
        ("REDIS_ENABLED", "true"),
        ("REDIS_URL", "redis://127.0.0.1:6379/"),
        ("REDIS_KEY_PREFIX", prefix),
    ])
    .await
}

/// `cache_hits_total` of the service's `/metrics`.
async fn cache_hits(app: &TestApp) -> u64 {
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response
        .text()
        .await
        .unwrap_or_else(|e| panic!("metrics body: {e}"));
    text.lines()
        .find(|line| line.starts_with("cache_hits_total"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no cache_hits_total in {text}"))
}

#[tokio::test]
async fn with_redis_every_profile_read_after_a_write_returns_the_new_value() {
    let app = spawn_with_redis(&unique_prefix()).await;
    let ready = expect(app.get("/readyz", None).await, StatusCode::OK).await;
    assert_eq!(ready["checks"]["cache"]["backend"], "redis", "{ready}");
    let tokens = app.register("cached@example.com").await;
    let token = access_token(&tokens);
    let id = tokens["user"]["id"].as_str().unwrap_or_default().to_owned();
    let me = |token: String| {
        let app = &app;
        async move {
            expect(
                app.get("/api/v1/users/me", Some(&token)).await,
                StatusCode::OK,
            )
            .await
        }
    };

    assert_eq!(me(token.clone()).await["full_name"], "Test User");
    let patch = json!({"full_name": "Renamed Once"});
    expect(
        app.patch("/api/v1/users/me", Some(&token), &patch).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me(token.clone()).await["full_name"], "Renamed Once");

    let prefs = "/api/v1/users/me/preferences";
    assert_eq!(
        expect(app.get(prefs, Some(&token)).await, StatusCode::OK).await,
        json!({})
    );
    let dark = json!({"theme": "dark"});
    expect(app.put(prefs, Some(&token), &dark).await, StatusCode::OK).await;
    assert_eq!(
        expect(app.get(prefs, Some(&token)).await, StatusCode::OK).await,
        dark
    );

    let admin = app.admin_token().await;
    let path = format!("/api/v1/users/{id}");
    let by_admin = expect(app.get(&path, Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(by_admin["full_name"], "Renamed Once");
    let patch = json!({"full_name": "Renamed Twice"});
    expect(app.patch(&path, Some(&admin), &patch).await, StatusCode::OK).await;
    let by_admin = expect(app.get(&path, Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(by_admin["full_name"], "Renamed Twice");
    assert_eq!(me(token).await["full_name"], "Renamed Twice");
}

#[tokio::test]
async fn create_admin_in_another_process_drops_the_profile_the_service_cached_in_redis() {
    let app = spawn_with_redis(&unique_prefix()).await;
    let tokens = app.register("promoted@example.com").await;
    let path = format!(
        "/api/v1/users/{}",
        tokens["user"]["id"].as_str().unwrap_or_default()
    );
    let admin = app.admin_token().await;
    let before = expect(app.get(&path, Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(before["role"], "customer");

    // Its own cache handle on the same Redis and prefix, like `logicore users create-admin`.
    users::create_admin(&app.config, "promoted@example.com", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let after = expect(app.get(&path, Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(after["role"], "admin");
}

#[tokio::test]
async fn a_repeated_profile_read_is_answered_from_the_cache() {
    let app = spawn_app().await;
    let token = access_token(&app.register("hits@example.com").await);
    expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    let before = cache_hits(&app).await;
    expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        cache_hits(&app).await > before,
        "the second read was not a hit"
    );
}

#[tokio::test]
async fn a_deactivated_user_is_refused_at_once_even_with_a_cached_profile() {
    let app = spawn_app().await;
    let tokens = app.register("leaving@example.com").await;
    let token = access_token(&tokens);
    let id = tokens["user"]["id"].as_str().unwrap_or_default().to_owned();
    expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;

    let admin = app.admin_token().await;
    let deleted = app
        .delete(&format!("/api/v1/users/{id}"), Some(&admin))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let me = app.get("/api/v1/users/me", Some(&token)).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn with_redis_unreachable_requests_succeed_and_readiness_reports_the_cache_degraded() {
    let app = spawn_app_with(&[
        ("REDIS_ENABLED", "true"),
        ("REDIS_URL", "redis://127.0.0.1:1/"),
        ("REDIS_KEY_PREFIX", &unique_prefix()),
    ])
    .await;
    let token = access_token(&app.register("no-redis@example.com").await);
    expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    let patch = json!({"full_name": "Still Works"});
    expect(
        app.patch("/api/v1/users/me", Some(&token), &patch).await,
        StatusCode::OK,
    )
    .await;
    let me = expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["full_name"], "Still Works");

    let ready = expect(app.get("/readyz", None).await, StatusCode::OK).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["cache"]["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["postgres"]["status"], "up", "{ready}");
}
