//! Who sees which orders, and the order list's filters and pages.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, User, field_codes, id_of, ids, spawn_app};

async fn list(app: &TestApp, user: &User, query: &[(&str, &str)]) -> crate::helpers::Reply {
    let query: Vec<String> = query
        .iter()
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    app.get(&format!("/api/v1/orders?{}", query.join("&")), Some(user))
        .await
}

/// Percent-encodes a query value (timestamps carry `+` and `:`).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~,".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn listed(app: &TestApp, user: &User, query: &[(&str, &str)]) -> Vec<Uuid> {
    ids(list(app, user, query).await.expect(StatusCode::OK))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cannot_see_or_touch_another_customers_order() {
    let app = spawn_app().await;
    let alice = app.user(Role::Customer);
    let bob = app.user(Role::Customer);
    let staff = app.user(Role::Manager);
    let driver = app.user(Role::Driver);
    let hers = id_of(&app.order_for(&alice, &[("SKU-A", 1, 100)]).await);
    let his = id_of(&app.order_for(&bob, &[("SKU-B", 1, 100)]).await);

    for path in [
        format!("/api/v1/orders/{hers}"),
        format!("/api/v1/orders/{hers}/events"),
    ] {
        app.get(&path, Some(&bob))
            .await
            .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    app.post(
        &format!("/api/v1/orders/{hers}/cancel"),
        Some(&bob),
        &json!({"reason": "mine now"}),
    )
    .await
    .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    // An unknown id is not found; a malformed one is the one rule of every service: a 422 naming `id`.
    app.get(&format!("/api/v1/orders/{}", Uuid::now_v7()), Some(&bob))
        .await
        .expect_problem(StatusCode::NOT_FOUND, "NOT_FOUND");
    app.get("/api/v1/orders/not-a-uuid", Some(&bob))
        .await
        .expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(app.order(hers, &alice).await["status"], "pending");

    assert_eq!(listed(&app, &alice, &[]).await, [hers]);
    assert_eq!(listed(&app, &bob, &[]).await, [his]);
    // Naming someone else finds nothing rather than their orders.
    assert!(
        listed(&app, &bob, &[("customer_id", &alice.id.to_string())])
            .await
            .is_empty()
    );
    assert_eq!(listed(&app, &staff, &[]).await, [hers, his]);
    assert_eq!(
        app.order(hers, &staff).await["customer_id"],
        alice.id.to_string()
    );

    app.get(&format!("/api/v1/orders/{hers}"), Some(&driver))
        .await
        .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    list(&app, &driver, &[])
        .await
        .expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");
    app.get("/api/v1/orders", None)
        .await
        .expect_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_list_filters_by_status_customer_and_creation_time() {
    let app = spawn_app().await;
    let alice = app.user(Role::Customer);
    let bob = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let first = app.order_for(&alice, &[("SKU-A", 1, 100)]).await;
    let second = app.order_for(&alice, &[("SKU-A", 2, 100)]).await;
    let third = app.order_for(&bob, &[("SKU-A", 3, 100)]).await;
    let fourth = app.order_for(&alice, &[("SKU-A", 4, 100)]).await;
    let [first_id, second_id, third_id, fourth_id] = [&first, &second, &third, &fourth].map(id_of);
    app.confirm(second_id, &[("SKU-A", Uuid::now_v7(), 2)])
        .await;
    app.reject(third_id, &[("SKU-A", 3, 0)]).await;

    assert_eq!(
        listed(&app, &staff, &[("status", "pending")]).await,
        [first_id, fourth_id]
    );
    assert_eq!(
        listed(&app, &staff, &[("status", "confirmed,rejected")]).await,
        [second_id, third_id]
    );
    assert_eq!(
        listed(&app, &alice, &[("status", "confirmed,rejected")]).await,
        [second_id]
    );
    assert_eq!(
        listed(&app, &staff, &[("customer_id", &bob.id.to_string())]).await,
        [third_id]
    );
    let both = format!("{},{}", alice.id, bob.id);
    assert_eq!(
        listed(
            &app,
            &staff,
            &[("customer_id", &both), ("status", "pending,rejected")]
        )
        .await,
        [first_id, third_id, fourth_id]
    );
    let created =
        |order: &serde_json::Value| order["created_at"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        listed(&app, &staff, &[("created_after", &created(&first))]).await,
        [second_id, third_id, fourth_id]
    );
    assert_eq!(
        listed(&app, &staff, &[("created_before", &created(&third))]).await,
        [first_id, second_id]
    );
    assert_eq!(
        listed(
            &app,
            &staff,
            &[
                ("created_after", &created(&first)),
                ("created_before", &created(&fourth))
            ]
        )
        .await,
        [second_id, third_id]
    );

    for (query, field) in [
        (("status", "lost"), "status"),
        (("customer_id", "nobody"), "customer_id"),
        (("created_after", "yesterday"), "created_after"),
        (("sort", "id"), "sort"),
    ] {
        let reply = list(&app, &staff, &[query]).await;
        reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
        let fields: Vec<String> = field_codes(&reply.body).into_iter().map(|f| f.0).collect();
        assert!(
            fields.iter().any(|f| f == field),
            "{query:?}: {}",
            reply.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_list_pages_with_a_cursor_without_gaps_or_duplicates() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let mut created = Vec::new();
    for quantity in 1..=5 {
        created.push(id_of(
            &app.order_for(&customer, &[("SKU-A", quantity, 100)]).await,
        ));
    }
    // Someone else's order never shows up in the customer's pages.
    let other = app.user(Role::Customer);
    app.order_for(&other, &[("SKU-A", 9, 100)]).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "2".to_owned())];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.clone()));
        }
        let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = list(&app, &customer, &query).await;
        let page = reply.expect(StatusCode::OK);
        let rows = ids(page);
        assert!(rows.len() <= 2, "{page}");
        seen.extend(rows);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the pages never end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);

    for (query, field) in [
        (("limit", "0"), "limit"),
        (("limit", "101"), "limit"),
        (("cursor", "!!not-a-cursor!!"), "cursor"),
    ] {
        let reply = list(&app, &customer, &[query]).await;
        reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
        assert_eq!(field_codes(&reply.body)[0].0, field, "{}", reply.body);
    }
    let reply = list(&app, &customer, &[("limit", "100")]).await;
    assert_eq!(ids(reply.expect(StatusCode::OK)), created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_pages_oldest_first() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let staff = app.user(Role::Dispatcher);
    let warehouse = Uuid::now_v7();
    let id = app
        .confirmed_order(&customer, warehouse, &[("SKU-A", 2)])
        .await;
    let shipment = app
        .create_shipment(&staff, id, warehouse, &[("SKU-A", 1)], false)
        .await;
    shipment.expect(StatusCode::CREATED);
    app.post(
        &format!("/api/v1/orders/{id}/cancel"),
        Some(&customer),
        &json!({}),
    )
    .await
    .expect(StatusCode::OK);
    let all: Vec<Uuid> = app.timeline(id).await.iter().map(id_of).collect();
    // created, confirmed, shipment created, cancelled, its shipment cancelled with it.
    assert_eq!(all.len(), 5);

    let first = app
        .get(
            &format!("/api/v1/orders/{id}/events?limit=3"),
            Some(&customer),
        )
        .await;
    let first = first.expect(StatusCode::OK);
    let cursor = first["next_cursor"].as_str().unwrap_or_default();
    let second = app
        .get(
            &format!("/api/v1/orders/{id}/events?limit=3&cursor={cursor}"),
            Some(&customer),
        )
        .await;
    let second = second.expect(StatusCode::OK);
    assert_eq!(second["next_cursor"], serde_json::Value::Null);
    let paged: Vec<Uuid> = ids(first).into_iter().chain(ids(second)).collect();
    assert_eq!(paged, all);
    let kinds: Vec<String> = app
        .timeline(id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds[0], "created");
    assert_eq!(kinds[1], "status_changed");
    assert_eq!(kinds[2], "shipment_created");
}
