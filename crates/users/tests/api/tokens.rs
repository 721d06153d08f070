//! Access-token verification and refresh-token rotation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, access_token, expect, expect_problem, refresh_token, spawn_app};

fn mint(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("cannot mint a token: {e}"))
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_else(|e| panic!("payload is not base64url: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("payload is not JSON: {e}"))
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/refresh",
        None,
        &json!({"refresh_token": token}),
    )
    .await
}

#[tokio::test]
async fn issued_access_tokens_carry_the_documented_claims() {
    let app = spawn_app().await;
    let tokens = app.register("claims@example.com").await;
    let claims = claims_of(&access_token(&tokens));
    assert_eq!(claims["sub"], tokens["user"]["id"]);
    assert_eq!(claims["email"], "claims@example.com");
    assert_eq!(claims["role"], "customer");
    assert_eq!(claims["iss"], "logicore");
    assert!(claims["jti"].is_string());
    let (iat, exp) = (claims["iat"].as_i64(), claims["exp"].as_i64());
    assert_eq!(exp.zip(iat).map(|(exp, iat)| exp - iat), Some(900));
}

#[tokio::test]
async fn expired_tampered_unsigned_and_foreign_tokens_are_unauthorized() {
    let app = spawn_app().await;
    let tokens = app.register("forger@example.com").await;
    let genuine = access_token(&tokens);
    let secret = app.config.basics.auth.jwt_secret.expose();
    let now = chrono::Utc::now().timestamp();
    let mut claims = claims_of(&genuine);

    claims["iat"] = json!(now - 7200);
    claims["exp"] = json!(now - 3600);
    let expired = mint(&claims, secret);

    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let mut promoted = claims_of(&genuine);
    promoted["role"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(promoted.to_string());
    let tampered = parts.join(".");

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{}.", parts[1]);

    let foreign = mint(
        &claims_of(&genuine),
        "an entirely different secret of 32+ bytes",
    );

    for (what, token) in [
        ("expired", expired.as_str()),
        ("tampered", tampered.as_str()),
        ("alg none", unsigned.as_str()),
        ("wrong secret", foreign.as_str()),
        ("garbage", "not-a-jwt"),
    ] {
        let response = app.get("/api/v1/users/me", Some(token)).await;
        let problem = expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        assert!(problem["detail"].is_string(), "{what}: {problem}");
    }
    let response = app.get("/api/v1/users/me", None).await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let response = app.get("/api/v1/users/me", Some(&genuine)).await;
    expect(response, StatusCode::OK).await;
}

#[tokio::test]
async fn refreshing_rotates_the_pair_and_spends_the_old_refresh_token() {
    let app = spawn_app().await;
    let first = app.register("rotate@example.com").await;

    let second = expect(refresh(&app, &refresh_token(&first)).await, StatusCode::OK).await;
    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_eq!(second["user"]["email"], "rotate@example.com");
    assert_eq!(second["token_type"], "Bearer");
    let me = app
        .get("/api/v1/users/me", Some(&access_token(&second)))
        .await;
    expect(me, StatusCode::OK).await;

    let third = expect(refresh(&app, &refresh_token(&second)).await, StatusCode::OK).await;
    assert_ne!(refresh_token(&third), refresh_token(&second));
}

#[tokio::test]
async fn reusing_a_spent_refresh_token_revokes_the_whole_family() {
    let app = spawn_app().await;
    let first = app.register("reuse@example.com").await;
    let second = expect(refresh(&app, &refresh_token(&first)).await, StatusCode::OK).await;
    let other_session = expect(
        app.login("reuse@example.com", crate::helpers::PASSWORD)
            .await,
        StatusCode::OK,
    )
    .await;

    let replay = refresh(&app, &refresh_token(&first)).await;
    expect_problem(replay, StatusCode::UNAUTHORIZED, "REFRESH_TOKEN_REUSED").await;

    // The newest token of the family, which a thief may hold, is dead too.
    let newest = refresh(&app, &refresh_token(&second)).await;
    expect_problem(newest, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
    // Another login is another family and lives on.
    let unrelated = refresh(&app, &refresh_token(&other_session)).await;
    expect(unrelated, StatusCode::OK).await;
}

#[tokio::test]
async fn an_unknown_refresh_token_is_rejected() {
    let app = spawn_app().await;
    let response = refresh(&app, "bm90IGEgcmVhbCB0b2tlbg").await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
}

#[tokio::test]
async fn logging_out_ends_the_session_and_revokes_the_access_token_presented() {
    let app = spawn_app().await;
    let tokens = app.register("bye@example.com").await;
    let access = access_token(&tokens);
    let body = json!({"refresh_token": refresh_token(&tokens)});

    let response = app.post("/api/v1/auth/logout", Some(&access), &body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    // Repeating it is harmless: the session is over and so is its access token.
    let again = app.post("/api/v1/auth/logout", Some(&access), &body).await;
    expect_problem(again, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;

    let response = refresh(&app, &refresh_token(&tokens)).await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
}

#[tokio::test]
async fn logging_out_needs_a_bearer_token_and_cannot_end_someone_elses_session() {
    let app = spawn_app().await;
    let victim = app.register("victim@example.com").await;
    let attacker = app.register("attacker@example.com").await;
    let body = json!({"refresh_token": refresh_token(&victim)});

    let anonymous = app.post("/api/v1/auth/logout", None, &body).await;
    expect_problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let foreign = app
        .post("/api/v1/auth/logout", Some(&access_token(&attacker)), &body)
        .await;
    assert_eq!(foreign.status(), StatusCode::NO_CONTENT);

    let response = refresh(&app, &refresh_token(&victim)).await;
    expect(response, StatusCode::OK).await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_rejected() {
    let app = spawn_app().await;
    let tokens = app.register("stale@example.com").await;
    let pool = sqlx::PgPool::connect(app.config.basics.database.url.expose())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sqlx::query("UPDATE users.refresh_tokens SET expires_at = now() - interval '1 minute'")
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    pool.close().await;

    let response = refresh(&app, &refresh_token(&tokens)).await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;
}

#[tokio::test]
async fn two_concurrent_refreshes_with_one_token_cannot_both_succeed() {
    let app = spawn_app().await;
    let token = refresh_token(&app.register("race@example.com").await);
    let (a, b) = tokio::join!(refresh(&app, &token), refresh(&app, &token));
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::UNAUTHORIZED]);
}
