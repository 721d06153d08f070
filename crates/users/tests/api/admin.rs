//! Account administration and role checks.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ADMIN_EMAIL, PASSWORD, access_token, expect, expect_problem, spawn_app};

#[tokio::test]
async fn the_configured_admin_exists_at_start_up() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let me = expect(
        app.get("/api/v1/users/me", Some(&token)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(me["email"], ADMIN_EMAIL);
    assert_eq!(me["role"], "admin");
}

#[tokio::test]
async fn an_admin_creates_users_of_any_role_who_can_then_sign_in() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let body = json!({
        "email": "Driver@Example.com", "password": PASSWORD, "full_name": "Dee Driver", "role": "driver",
    });
    let response = app.post("/api/v1/users", Some(&admin), &body).await;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user = expect(response, StatusCode::CREATED).await;
    assert_eq!(user["role"], "driver");
    assert_eq!(user["email"], "driver@example.com");
    let id = user["id"].as_str().unwrap_or_default();
    assert_eq!(location, Some(format!("/api/v1/users/{id}")));

    let login = expect(
        app.login("driver@example.com", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(login["user"]["role"], "driver");

    let duplicate = app.post("/api/v1/users", Some(&admin), &body).await;
    expect_problem(duplicate, StatusCode::CONFLICT, "EMAIL_TAKEN").await;
    let bad_role =
        json!({"email": "x@example.com", "password": PASSWORD, "full_name": "X", "role": "king"});
    let response = app.post("/api/v1/users", Some(&admin), &bad_role).await;
    expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn a_customer_calling_admin_routes_is_forbidden() {
    let app = spawn_app().await;
    let tokens = app.register("cust@example.com").await;
    let customer = access_token(&tokens);
    let own = format!(
        "/api/v1/users/{}",
        tokens["user"]["id"].as_str().unwrap_or_default()
    );
    let body = json!({"email": "new@example.com", "password": PASSWORD, "full_name": "N", "role": "admin"});

    let responses = [
        app.post("/api/v1/users", Some(&customer), &body).await,
        app.get("/api/v1/users", Some(&customer)).await,
        app.get(&own, Some(&customer)).await,
        app.patch(&own, Some(&customer), &json!({"role": "admin"}))
            .await,
        app.delete(&own, Some(&customer)).await,
    ];
    for response in responses {
        expect_problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
}

#[tokio::test]
async fn a_caller_without_the_role_is_forbidden_before_the_body_or_query_is_read() {
    let app = spawn_app().await;
    let tokens = app.register("nosy@example.com").await;
    let customer = access_token(&tokens);
    let own = format!(
        "/api/v1/users/{}",
        tokens["user"]["id"].as_str().unwrap_or_default()
    );

    let responses = [
        app.post("/api/v1/users", Some(&customer), &json!({"email": 5}))
            .await,
        app.patch(&own, Some(&customer), &json!({"role": "emperor"}))
            .await,
        app.get("/api/v1/users?role=emperor&limit=0", Some(&customer))
            .await,
    ];
    for response in responses {
        expect_problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
}

#[tokio::test]
async fn a_manager_may_list_users_but_not_administer_them() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let manager = app
        .token_for_role(&admin, "boss@example.com", "manager")
        .await;

    let page = expect(
        app.get("/api/v1/users", Some(&manager)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2), "{page}");
    let id = page["data"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let response = app
        .get(&format!("/api/v1/users/{id}"), Some(&manager))
        .await;
    expect_problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn an_admin_reads_and_updates_a_user() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let user = app.create_user(&admin, "pat@example.com", "customer").await;
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap_or_default());

    let read = expect(app.get(&path, Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(read, user);

    let body = json!({"role": "dispatcher", "full_name": "Pat Dispatch", "phone": "+4930123456"});
    let updated = expect(app.patch(&path, Some(&admin), &body).await, StatusCode::OK).await;
    assert_eq!(updated["role"], "dispatcher");
    assert_eq!(updated["full_name"], "Pat Dispatch");
    assert_eq!(updated["phone"], "+4930123456");
    assert_eq!(updated["email"], "pat@example.com");

    let login = expect(app.login("pat@example.com", PASSWORD).await, StatusCode::OK).await;
    assert_eq!(login["user"]["role"], "dispatcher");

    let response = app
        .patch(&path, Some(&admin), &json!({"email": "x@example.com"}))
        .await;
    expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
}

#[tokio::test]
async fn deactivating_a_user_ends_their_sessions_and_blocks_sign_in() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let tokens = app.register("leaver@example.com").await;
    let path = format!(
        "/api/v1/users/{}",
        tokens["user"]["id"].as_str().unwrap_or_default()
    );

    let response = app.delete(&path, Some(&admin)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let again = app.delete(&path, Some(&admin)).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);

    let read = expect(app.get(&path, Some(&admin)).await, StatusCode::OK).await;
    assert_eq!(read["status"], "inactive");
    let login = app.login("leaver@example.com", PASSWORD).await;
    expect_problem(login, StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS").await;
    let me = app
        .get("/api/v1/users/me", Some(&access_token(&tokens)))
        .await;
    expect_problem(me, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;
    let refresh = json!({"refresh_token": tokens["refresh_token"]});
    let response = app.post("/api/v1/auth/refresh", None, &refresh).await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "INVALID_REFRESH_TOKEN").await;

    let body = json!({"status": "active"});
    expect(app.patch(&path, Some(&admin), &body).await, StatusCode::OK).await;
    expect(
        app.login("leaver@example.com", PASSWORD).await,
        StatusCode::OK,
    )
    .await;
}

#[tokio::test]
async fn a_demoted_admin_loses_admin_rights_before_their_token_expires() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let second = app
        .token_for_role(&admin, "deputy@example.com", "admin")
        .await;
    let me = expect(
        app.get("/api/v1/users/me", Some(&second)).await,
        StatusCode::OK,
    )
    .await;
    let path = format!("/api/v1/users/{}", me["id"].as_str().unwrap_or_default());

    expect(
        app.get("/api/v1/users", Some(&second)).await,
        StatusCode::OK,
    )
    .await;
    let body = json!({"role": "driver"});
    expect(app.patch(&path, Some(&admin), &body).await, StatusCode::OK).await;
    // The role change revoked the token that carried the old role.
    let response = app.get("/api/v1/users", Some(&second)).await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "TOKEN_REVOKED").await;
}

#[tokio::test]
async fn unknown_ids_are_not_found_and_malformed_ids_are_rejected() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let unknown = format!("/api/v1/users/{}", uuid::Uuid::now_v7());
    expect_problem(
        app.get(&unknown, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let response = app
        .patch(&unknown, Some(&admin), &json!({"role": "driver"}))
        .await;
    expect_problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    expect_problem(
        app.delete(&unknown, Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;

    let response = app.get("/api/v1/users/not-a-uuid", Some(&admin)).await;
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "id");
}

fn emails(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["email"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_user_list_filters_by_role_status_and_search_text() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "d1@example.com", "driver").await;
    app.create_user(&admin, "d2@fleet.example", "driver").await;
    let gone = app.create_user(&admin, "m1@example.com", "manager").await;
    let gone_path = format!("/api/v1/users/{}", gone["id"].as_str().unwrap_or_default());
    assert_eq!(
        app.delete(&gone_path, Some(&admin)).await.status(),
        StatusCode::NO_CONTENT
    );

    let list = async |query: &str| {
        let response = app
            .get(&format!("/api/v1/users?{query}"), Some(&admin))
            .await;
        emails(&expect(response, StatusCode::OK).await)
    };
    assert_eq!(
        list("role=driver").await,
        ["d1@example.com", "d2@fleet.example"]
    );
    assert_eq!(
        list("role=manager,admin").await,
        [ADMIN_EMAIL, "m1@example.com"]
    );
    assert_eq!(list("status=inactive").await, ["m1@example.com"]);
    assert_eq!(
        list("role=manager&status=active").await,
        Vec::<String>::new()
    );
    assert_eq!(list("q=FLEET").await, ["d2@fleet.example"]);
    // Full names are searched too: "driver d1@example.com".
    assert_eq!(list("q=driver%20d1").await, ["d1@example.com"]);
    // `%` is matched literally, not as a wildcard.
    assert_eq!(list("q=%25").await, Vec::<String>::new());

    let response = app.get("/api/v1/users?role=king", Some(&admin)).await;
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "role");
}

#[tokio::test]
async fn next_cursor_walks_every_page_of_users_exactly_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for n in 0..4 {
        app.create_user(&admin, &format!("page{n}@example.com"), "customer")
            .await;
    }

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(cursor) => format!("/api/v1/users?limit=2&cursor={cursor}"),
            None => "/api/v1/users?limit=2".to_owned(),
        };
        let page = expect(app.get(&query, Some(&admin)).await, StatusCode::OK).await;
        pages += 1;
        seen.extend(emails(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5, "{seen:?}");
}

#[tokio::test]
async fn paging_parameters_out_of_range_are_rejected() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for (query, field) in [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("cursor=%21%21", "cursor"),
        ("limit=lots", "limit"),
    ] {
        let response = app
            .get(&format!("/api/v1/users?{query}"), Some(&admin))
            .await;
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
}
