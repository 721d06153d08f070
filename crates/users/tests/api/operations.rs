//! Protocol-level behaviour: problem+json for malformed requests, request ids, metrics, readiness,
//! graceful shutdown, admin bootstrap.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::helpers::{ADMIN_EMAIL, PASSWORD, config_for, expect, expect_problem, spawn_app};

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email": "a@b.c", "password": "#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    expect_problem(response, StatusCode::BAD_REQUEST, "MALFORMED_JSON").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app().await;
    let padding = "x".repeat(app.config.basics.max_body_bytes + 1);
    let body = json!({"email": "a@example.com", "password": PASSWORD, "full_name": padding});
    let response = app.post("/api/v1/auth/register", None, &body).await;
    expect_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_a_415_problem() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body(r#"{"email": "a@example.com", "password": "whatever 123"}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    expect_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
}

#[tokio::test]
async fn the_callers_request_id_is_echoed_and_a_missing_one_is_generated() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/v1/users/me"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let problem = expect(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(problem["request_id"], "trace-me-123");

    let response = app.get("/health", None).await;
    let generated = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated:?}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let unknown = format!("/api/v1/users/{}", uuid::Uuid::now_v7());
    app.get(&unknown, Some(&admin)).await;

    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap_or_default();
    let series = text
        .lines()
        .find(|line| line.starts_with("http_requests_total{") && line.contains("status=\"404\""))
        .unwrap_or_else(|| panic!("no 404 series in\n{text}"));
    assert!(series.contains("route=\"/api/v1/users/{id}\""), "{series}");
    assert!(series.contains("service=\"users\""), "{series}");
    assert!(text.contains("db_query_duration_seconds"), "{text}");
}

#[tokio::test]
async fn readiness_is_ok_while_postgres_is_up() {
    let app = spawn_app().await;
    let body = expect(app.get("/readyz", None).await, StatusCode::OK).await;
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["postgres"]["status"], "up");
    let health = expect(app.get("/health", None).await, StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn readiness_is_not_ready_while_rabbitmq_refuses_the_credentials() {
    let exchange = format!("logicore.test.{}", Uuid::now_v7().simple());
    let app = crate::helpers::spawn_app_with(&[
        ("RABBITMQ_URL", "amqp://guest:wrong@127.0.0.1:5672/%2f"),
        ("LOGICORE_MESSAGING__EXCHANGE", &exchange),
    ])
    .await;
    // An outage would leave the service ready (its outbox keeps the events); a refusal never heals itself.
    let body = testkit::eventually(
        "readiness to report the refusal",
        Duration::from_secs(20),
        || {
            let response = app.get("/readyz", None);
            async move {
                let response = response.await;
                (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
            }
        },
    )
    .await;
    let body: serde_json::Value = testkit::json(body).await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"]["messaging"]["status"], "down", "{body}");
    let error = body["checks"]["messaging"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("refused") && error.contains("ACCESS_REFUSED"),
        "{body}"
    );
    assert!(
        !error.contains("wrong"),
        "the password is never shown: {body}"
    );
}

fn in_flight(metrics: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|line| line.starts_with("http_requests_in_flight{"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    testkit::init();
    let db = testkit::TestDb::new();
    let config = config_for(&db);
    let listener = testkit::bind().await;
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(users::run(config, listener, shutdown.clone()));
    let client = testkit::client();
    let url = |path: &str| format!("http://{address}{path}");
    testkit::eventually("the service to start", Duration::from_secs(60), || {
        let request = client.get(url("/health")).send();
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;

    // A login is slow on purpose (argon2), which makes it a natural in-flight request.
    let login = tokio::spawn(
        client
            .post(url("/api/v1/auth/login"))
            .json(&json!({"email": ADMIN_EMAIL, "password": crate::helpers::ADMIN_PASSWORD}))
            .send(),
    );
    testkit::eventually("the login to be in flight", Duration::from_secs(30), || {
        let request = client.get(url("/metrics")).send();
        let finished = login.is_finished();
        async move {
            let text = request.await.ok()?.text().await.ok()?;
            // Counting the scrape itself, two in flight means the login is being handled. Should the
            // login ever win the race, the test still checks that shutdown did not cut anything off.
            (in_flight(&text)? >= 2 || finished).then_some(())
        }
    })
    .await;
    shutdown.cancel();

    let response = login
        .await
        .unwrap_or_else(|e| panic!("login task: {e}"))
        .unwrap_or_else(|e| panic!("the in-flight login was cut off: {e}"));
    assert_eq!(response.status(), StatusCode::OK);
    let stopped = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap_or_else(|_| panic!("the server did not stop"));
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
    assert!(client.get(url("/health")).send().await.is_err());
}

#[tokio::test]
async fn the_admin_bootstrap_runs_only_while_there_is_no_admin() {
    let db = testkit::TestDb::new();
    let config = config_for(&db);
    let first = users::build(&config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    first.db.close().await;

    let mut second_config = config.clone();
    second_config.admin_email = "second@logicore.test".into();
    let second = users::build(&second_config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admins: Vec<String> =
        sqlx::query_scalar("SELECT email FROM users WHERE role = 'admin' ORDER BY id")
            .fetch_all(second.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(admins, [ADMIN_EMAIL]);
    second.db.close().await;
}

#[tokio::test]
async fn create_admin_promotes_an_existing_account_keeping_its_password_and_sessions() {
    let app = spawn_app().await;
    let registered = app.register("promote.me@example.com").await;
    let refresh = registered["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let outcome = users::create_admin(&app.config, "Promote.Me@example.com", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.user.email, "promote.me@example.com");
    assert_eq!(outcome.user.role, platform::auth::Role::Admin);
    assert_eq!(outcome.action, users::AdminAction::Promoted);
    assert!(!outcome.password_changed);
    let login = app.login("promote.me@example.com", PASSWORD).await;
    assert_eq!(expect(login, StatusCode::OK).await["user"]["role"], "admin");
    let refreshed = app
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({ "refresh_token": refresh }),
        )
        .await;
    expect(refreshed, StatusCode::OK).await;

    let again = users::create_admin(&app.config, "promote.me@example.com", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.action, users::AdminAction::AlreadyAdmin);

    let reset = users::create_admin(
        &app.config,
        "promote.me@example.com",
        Some("brand new pass 9"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reset.action, users::AdminAction::AlreadyAdmin);
    assert!(reset.password_changed);
    expect(
        app.login("promote.me@example.com", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    expect(
        app.login("promote.me@example.com", "brand new pass 9")
            .await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn create_admin_needs_a_valid_password_for_a_new_account() {
    let app = spawn_app().await;
    let weak = users::create_admin(&app.config, "new@example.com", Some("weak")).await;
    assert!(
        matches!(
            weak,
            Err(users::CreateAdminError::Create(
                users::UsersError::Validation(_)
            ))
        ),
        "{weak:?}"
    );
    let missing = users::create_admin(&app.config, "new@example.com", None).await;
    match missing {
        Err(users::CreateAdminError::Create(users::UsersError::Validation(errors))) => {
            assert_eq!(errors[0].field, "password");
            assert_eq!(errors[0].code, "REQUIRED");
        }
        other => panic!("{other:?}"),
    }
    let created = users::create_admin(&app.config, "new@example.com", Some("strong pass 42"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.action, users::AdminAction::Created);
}
