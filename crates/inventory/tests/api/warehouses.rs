use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{codes, id_of, spawn_app};

#[tokio::test]
async fn an_admin_creates_a_warehouse_that_staff_can_read() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/warehouses",
            Role::Manager,
            json!({"code": "ber-1", "name": "Berlin", "address": "Hafenstr. 1", "priority": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["code"], "BER-1", "codes are stored uppercase");
    assert_eq!(body["priority"], 10);
    assert_eq!(body["active"], true);
    let id = id_of(&body);
    assert_eq!(id.get_version_num(), 7);

    let (status, fetched) = app
        .get(
            &format!("/api/v1/inventory/warehouses/{id}"),
            Role::Dispatcher,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, body);
}

#[tokio::test]
async fn a_second_warehouse_with_the_same_code_in_any_case_is_a_conflict() {
    let app = spawn_app().await;
    app.warehouse("MAIN", 1).await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/warehouses",
            Role::Admin,
            json!({"code": "main", "name": "Again", "address": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "WAREHOUSE_CODE_TAKEN");
}

#[tokio::test]
async fn every_invalid_warehouse_field_is_named() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/api/v1/inventory/warehouses",
            Role::Admin,
            json!({"code": "no spaces!", "name": "  ", "address": "x", "priority": -1}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "VALIDATION_FAILED");
    let fields: Vec<String> = codes(&body).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["code", "name", "priority"]);

    let (status, body) = app
        .post(
            "/api/v1/inventory/warehouses",
            Role::Admin,
            json!({"code": "A", "address": ""}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(codes(&body), [("name".to_owned(), "REQUIRED".to_owned())]);
}

#[tokio::test]
async fn a_warehouse_can_be_renamed_reprioritised_and_deactivated_but_not_recoded() {
    let app = spawn_app().await;
    let id = app.warehouse("OLD", 5).await;
    let path = format!("/api/v1/inventory/warehouses/{id}");
    let (status, body) = app
        .patch(
            &path,
            Role::Admin,
            json!({"name": "New name", "priority": 2, "active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "New name");
    assert_eq!(body["priority"], 2);
    assert_eq!(body["active"], false);
    assert_eq!(body["code"], "OLD");

    let (status, body) = app.patch(&path, Role::Admin, json!({"code": "NEW"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(codes(&body)[0].1, "UNKNOWN_FIELD");

    let missing = format!("/api/v1/inventory/warehouses/{}", Uuid::now_v7());
    let (status, body) = app.patch(&missing, Role::Admin, json!({"name": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn an_unknown_warehouse_id_is_not_found_and_a_malformed_one_is_a_422_naming_it() {
    let app = spawn_app().await;
    let (status, body) = app
        .get(
            &format!("/api/v1/inventory/warehouses/{}", Uuid::now_v7()),
            Role::Admin,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "NOT_FOUND");
    let (status, body) = app
        .get("/api/v1/inventory/warehouses/not-a-uuid", Role::Admin)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "id");
    assert_eq!(body["errors"][0]["code"], "INVALID_FORMAT");
}

#[tokio::test]
async fn warehouse_lists_page_with_a_cursor_and_filter_by_code_and_state() {
    let app = spawn_app().await;
    let a = app.warehouse("A", 1).await;
    let b = app.warehouse("B", 1).await;
    let c = app.warehouse("C", 1).await;
    app.patch(
        &format!("/api/v1/inventory/warehouses/{c}"),
        Role::Admin,
        json!({"active": false}),
    )
    .await;

    let (status, first) = app
        .get("/api/v1/inventory/warehouses?limit=2", Role::Dispatcher)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<Uuid> = first["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id_of)
        .collect();
    assert_eq!(ids, [a, b]);
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    let (_, second) = app
        .get(
            &format!("/api/v1/inventory/warehouses?limit=2&cursor={cursor}"),
            Role::Dispatcher,
        )
        .await;
    let ids: Vec<Uuid> = second["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id_of)
        .collect();
    assert_eq!(ids, [c]);
    assert!(second["next_cursor"].is_null());

    let (_, filtered) = app
        .get("/api/v1/inventory/warehouses?code=a,c", Role::Admin)
        .await;
    let ids: Vec<Uuid> = filtered["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(id_of)
        .collect();
    assert_eq!(ids, [a, c]);
    let (_, active) = app
        .get("/api/v1/inventory/warehouses?active=true", Role::Admin)
        .await;
    assert_eq!(active["data"].as_array().map(Vec::len), Some(2));

    let (status, body) = app
        .get(
            "/api/v1/inventory/warehouses?limit=0&cursor=%21",
            Role::Admin,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<String> = codes(&body).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["limit", "cursor"]);
}
