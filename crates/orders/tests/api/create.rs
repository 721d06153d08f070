//! `POST /api/v1/orders`: what a new order looks like, which bodies are refused and who may order for whom.

use platform::auth::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{address, field_codes, order_body, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_creates_a_pending_order_with_its_lines_and_total() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);

    let reply = app
        .post(
            "/api/v1/orders",
            Some(&customer),
            &order_body(&[("SKU-A", 2, 1250), ("SKU-B", 1, 500)]),
        )
        .await;

    let order = reply.expect(StatusCode::CREATED);
    assert_eq!(order["status"], "pending");
    assert_eq!(order["customer_id"], customer.id.to_string());
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["total_amount"], 3000);
    assert_eq!(order["version"], 1);
    assert_eq!(order["shipping_address"], address());
    assert_eq!(order["reservation_id"], Value::Null);
    let lines: Vec<(String, i64, i64, i64)> = order["lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|l| {
                    (
                        l["sku"].as_str().unwrap_or_default().to_owned(),
                        l["quantity"].as_i64().unwrap_or(-1),
                        l["unit_price"].as_i64().unwrap_or(-1),
                        l["quantity_shipped"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        lines,
        [("SKU-A".into(), 2, 1250, 0), ("SKU-B".into(), 1, 500, 0)]
    );
    assert_eq!(reply.header("etag"), Some("\"1\""));
    assert!(reply.header("x-request-id").is_some());

    let read = app
        .get(&format!("/api/v1/orders/{}", reply.id()), Some(&customer))
        .await;
    assert_eq!(read.expect(StatusCode::OK), order);
    assert_eq!(read.header("etag"), Some("\"1\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_without_currency_or_prices_gets_the_default_currency_and_a_zero_total() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let body = json!({
        "lines": [{"sku": "SKU-A", "quantity": 3}],
        "shipping_address": {"name": "B", "street": "S 1", "city": "C", "postal_code": "1", "country": "nl"},
    });

    let reply = app.post("/api/v1/orders", Some(&customer), &body).await;

    let order = reply.expect(StatusCode::CREATED);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["total_amount"], 0);
    assert_eq!(order["lines"][0]["unit_price"], Value::Null);
    assert_eq!(order["shipping_address"]["country"], "NL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_order_bodies_are_refused_naming_each_field() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut body = order_body(&[("SKU-A", 1, 100), ("SKU-B", 2, 100)]);
        change(&mut body);
        body
    };
    let cases: Vec<(&str, Value, (&str, &str))> = vec![
        (
            "no lines",
            with(&|b| b["lines"] = json!([])),
            ("lines", "REQUIRED"),
        ),
        (
            "quantity 0",
            with(&|b| b["lines"][1]["quantity"] = json!(0)),
            ("lines[1].quantity", "OUT_OF_RANGE"),
        ),
        (
            "negative price",
            with(&|b| b["lines"][0]["unit_price"] = json!(-1)),
            ("lines[0].unit_price", "OUT_OF_RANGE"),
        ),
        (
            "duplicate sku",
            with(&|b| b["lines"][1]["sku"] = json!("SKU-A")),
            ("lines[1].sku", "DUPLICATE"),
        ),
        (
            "blank sku",
            with(&|b| b["lines"][0]["sku"] = json!("  ")),
            ("lines[0].sku", "REQUIRED"),
        ),
        (
            "bad currency",
            with(&|b| b["currency"] = json!("euro")),
            ("currency", "INVALID_FORMAT"),
        ),
        (
            "lowercase currency",
            with(&|b| b["currency"] = json!("eur")),
            ("currency", "INVALID_FORMAT"),
        ),
        (
            "currency that ISO 4217 does not know",
            with(&|b| b["currency"] = json!("ZZZ")),
            ("currency", "INVALID_VALUE"),
        ),
        (
            "withdrawn currency",
            with(&|b| b["currency"] = json!("HRK")),
            ("currency", "INVALID_VALUE"),
        ),
        (
            "bad country",
            with(&|b| b["shipping_address"]["country"] = json!("Netherlands")),
            ("shipping_address.country", "INVALID_FORMAT"),
        ),
        (
            "blank street",
            with(&|b| b["shipping_address"]["street"] = json!("")),
            ("shipping_address.street", "REQUIRED"),
        ),
        (
            "unknown field",
            with(&|b| b["discount"] = json!(10)),
            ("discount", "UNKNOWN_FIELD"),
        ),
        (
            "unknown line field",
            with(&|b| b["lines"][0]["colour"] = json!("red")),
            ("lines[0].colour", "UNKNOWN_FIELD"),
        ),
        (
            "no address",
            with(&|b| {
                if let Some(body) = b.as_object_mut() {
                    body.remove("shipping_address");
                }
            }),
            ("shipping_address", "REQUIRED"),
        ),
        (
            "quantity not a number",
            with(&|b| b["lines"][0]["quantity"] = json!("two")),
            ("lines[0].quantity", "INVALID_TYPE"),
        ),
    ];
    for (case, body, (field, code)) in cases {
        let reply = app.post("/api/v1/orders", Some(&customer), &body).await;
        reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
        let errors = field_codes(&reply.body);
        assert!(
            errors.contains(&(field.to_owned(), code.to_owned())),
            "{case}: expected {field} {code} in {}",
            reply.body
        );
    }
    // Several faults at once are all named.
    let body = with(&|b| {
        b["currency"] = json!("??");
        b["lines"][0]["quantity"] = json!(0);
        b["shipping_address"]["country"] = json!("N1");
    });
    let reply = app.post("/api/v1/orders", Some(&customer), &body).await;
    reply.expect(StatusCode::UNPROCESSABLE_ENTITY);
    let mut fields: Vec<String> = field_codes(&reply.body).into_iter().map(|f| f.0).collect();
    fields.sort();
    assert_eq!(
        fields,
        ["currency", "lines[0].quantity", "shipping_address.country"]
    );

    let list = app.get("/api/v1/orders", Some(&customer)).await;
    assert_eq!(list.expect(StatusCode::OK)["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_order_for_themselves_and_staff_for_a_named_customer() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);
    let other = app.user(Role::Customer);
    let dispatcher = app.user(Role::Dispatcher);
    let driver = app.user(Role::Driver);
    let body = order_body(&[("SKU-A", 1, 100)]);
    let naming = |customer_id: uuid::Uuid| {
        let mut body = body.clone();
        body["customer_id"] = json!(customer_id);
        body
    };

    let reply = app
        .post("/api/v1/orders", Some(&customer), &naming(other.id))
        .await;
    reply.expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    let reply = app
        .post("/api/v1/orders", Some(&customer), &naming(customer.id))
        .await;
    assert_eq!(
        reply.expect(StatusCode::CREATED)["customer_id"],
        customer.id.to_string()
    );

    let reply = app.post("/api/v1/orders", Some(&dispatcher), &body).await;
    reply.expect_problem(StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_FAILED");
    assert_eq!(
        field_codes(&reply.body),
        [("customer_id".to_owned(), "REQUIRED".to_owned())]
    );

    let reply = app
        .post("/api/v1/orders", Some(&dispatcher), &naming(other.id))
        .await;
    assert_eq!(
        reply.expect(StatusCode::CREATED)["customer_id"],
        other.id.to_string()
    );

    let reply = app
        .post("/api/v1/orders", Some(&driver), &naming(other.id))
        .await;
    reply.expect_problem(StatusCode::FORBIDDEN, "FORBIDDEN");

    let reply = app.post("/api/v1/orders", None, &body).await;
    reply.expect_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    let garbage = crate::helpers::User {
        id: customer.id,
        token: "not-a-jwt".into(),
    };
    let reply = app.post("/api/v1/orders", Some(&garbage), &body).await;
    reply.expect_problem(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // The other customer got exactly the one order staff placed for them.
    let list = app.get("/api/v1/orders", Some(&other)).await;
    assert_eq!(
        list.expect(StatusCode::OK)["data"].as_array().map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mistyped_or_oversized_bodies_are_refused() {
    let app = spawn_app().await;
    let customer = app.user(Role::Customer);

    let request = app
        .request(reqwest::Method::POST, "/api/v1/orders", Some(&customer))
        .header("content-type", "application/json")
        .body("{\"lines\": [");
    let reply = app.send(request).await;
    reply.expect_problem(StatusCode::BAD_REQUEST, "MALFORMED_JSON");

    let request = app
        .request(reqwest::Method::POST, "/api/v1/orders", Some(&customer))
        .header("content-type", "text/plain")
        .body(order_body(&[("SKU-A", 1, 1)]).to_string());
    let reply = app.send(request).await;
    reply.expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let mut body = order_body(&[("SKU-A", 1, 100)]);
    body["shipping_address"]["name"] = json!("x".repeat(300 * 1024));
    let reply = app.post("/api/v1/orders", Some(&customer), &body).await;
    reply.expect(StatusCode::PAYLOAD_TOO_LARGE);

    let list = app.get("/api/v1/orders", Some(&customer)).await;
    assert_eq!(list.expect(StatusCode::OK)["data"], json!([]));
}
