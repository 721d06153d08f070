//! The platform extractors over real HTTP: every rejection is problem+json naming the parameter or field,
//! in the API's words, and text PostgreSQL cannot store never gets past them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use platform::extract::{Json, Path, Query};
use platform::{Problem, validated_by_parsing};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Debug, Deserialize)]
struct Search {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[allow(dead_code)]
    sku: String,
    #[allow(dead_code)]
    quantity: i32,
    #[allow(dead_code)]
    #[serde(default)]
    colour: Option<Colour>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Colour {
    Red,
    Blue,
}

#[derive(Debug, Deserialize)]
struct Order {
    #[allow(dead_code)]
    lines: Vec<Line>,
}

validated_by_parsing!(Search, Order);

async fn spawn() -> SocketAddr {
    let router = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<Uuid>| async move { id.to_string() }),
        )
        .route(
            "/pages/{page}",
            get(|Path(page): Path<u32>| async move { page.to_string() }),
        )
        .route(
            "/track/{number}",
            get(|Path(n): Path<String>| async move { n }),
        )
        .route(
            "/search",
            get(|Query(s): Query<Search>| async move { format!("{:?} {:?}", s.q, s.limit) }),
        )
        .route("/orders", post(|Json(_): Json<Order>| async { "ok" }))
        .route(
            "/preferences",
            post(
                |Json(p): Json<serde_json::Map<String, Value>>| async move { p.len().to_string() },
            ),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(platform::http::serve(
        listener,
        router,
        CancellationToken::new(),
        Duration::from_secs(1),
        testkit::connection_limits(),
    ));
    address
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// The problem at `url` (GET, or POST with `body`), checked to be problem+json with `status`.
async fn problem(address: SocketAddr, path: &str, body: Option<Value>, status: u16) -> Problem {
    let url = format!("http://{address}{path}");
    let request = match body {
        Some(body) => client().post(url).json(&body),
        None => client().get(url),
    };
    let response = request.send().await.expect("request");
    assert_eq!(response.status().as_u16(), status, "status for {path}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "content type for {path}"
    );
    response.json().await.expect("problem body")
}

fn only_error(problem: &Problem) -> (&str, &str, &str) {
    assert_eq!(problem.code, "VALIDATION_FAILED");
    assert_eq!(problem.errors.len(), 1, "{problem:?}");
    let error = &problem.errors[0];
    (&error.field, &error.code, &error.message)
}

#[tokio::test]
async fn a_malformed_id_in_a_path_is_a_422_naming_the_parameter() {
    let address = spawn().await;
    let p = problem(address, "/items/not-a-uuid", None, 422).await;
    assert_eq!(only_error(&p), ("id", "INVALID_FORMAT", "must be a UUID"));
    let p = problem(address, "/pages/x", None, 422).await;
    assert_eq!(
        only_error(&p),
        (
            "page",
            "INVALID_FORMAT",
            "must be an integer between 0 and 4294967295"
        )
    );
}

#[tokio::test]
async fn invalid_utf8_and_nul_in_a_path_are_422s_naming_the_parameter() {
    let address = spawn().await;
    let p = problem(address, "/track/%FF%FE", None, 422).await;
    assert_eq!(only_error(&p).0, "number");
    assert_eq!(only_error(&p).1, "INVALID_ENCODING");
    let p = problem(address, "/track/A%00B", None, 422).await;
    assert_eq!(only_error(&p).0, "number");
    assert_eq!(only_error(&p).1, "INVALID_CHARACTER");
    let ok = client()
        .get(format!("http://{address}/track/A%20B"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.text().await.expect("body"), "A B");
}

#[tokio::test]
async fn nul_in_a_query_value_or_name_is_refused_naming_it() {
    let address = spawn().await;
    let p = problem(address, "/search?q=a%00b", None, 422).await;
    assert_eq!(only_error(&p).0, "q");
    assert_eq!(only_error(&p).1, "INVALID_CHARACTER");
    let p = problem(address, "/search?q%00=a", None, 422).await;
    assert_eq!(only_error(&p).0, "q\\u0000");
}

#[tokio::test]
async fn query_type_errors_speak_the_apis_language() {
    let address = spawn().await;
    let p = problem(address, "/search?limit=ten", None, 422).await;
    assert_eq!(
        only_error(&p),
        ("limit", "INVALID_PARAMETER", "must be an integer")
    );
    let p = problem(address, "/search?limit=99999999999", None, 422).await;
    assert_eq!(
        only_error(&p),
        ("limit", "INVALID_PARAMETER", "is out of range")
    );
}

#[tokio::test]
async fn nul_anywhere_in_a_json_body_is_refused_with_its_path() {
    let address = spawn().await;
    let body = json!({"lines": [{"sku": "A", "quantity": 1}, {"sku": "B\u{0}", "quantity": 1}]});
    let p = problem(address, "/orders", Some(body), 422).await;
    assert_eq!(only_error(&p).0, "lines[1].sku");
    assert_eq!(only_error(&p).1, "INVALID_CHARACTER");
    let p = problem(
        address,
        "/preferences",
        Some(json!({"theme": "da\u{0}rk"})),
        422,
    )
    .await;
    assert_eq!(only_error(&p).0, "theme");
    let p = problem(
        address,
        "/preferences",
        Some(json!({"the\u{0}me": "dark"})),
        422,
    )
    .await;
    assert_eq!(only_error(&p).0, "the\\u0000me");
}

#[tokio::test]
async fn json_type_errors_name_the_field_in_the_apis_language() {
    let address = spawn().await;
    let cases: HashMap<&str, (Value, &str, &str, &str)> = HashMap::from([
        (
            "not an object",
            (json!("x"), "", "INVALID_TYPE", "must be an object"),
        ),
        (
            "a string quantity",
            (
                json!({"lines": [{"sku": "A", "quantity": "1"}]}),
                "lines[0].quantity",
                "INVALID_TYPE",
                "must be an integer between -2147483648 and 2147483647",
            ),
        ),
        (
            "a quantity past i32",
            (
                json!({"lines": [{"sku": "A", "quantity": 3_000_000_000_i64}]}),
                "lines[0].quantity",
                "INVALID_TYPE",
                "must be an integer between -2147483648 and 2147483647",
            ),
        ),
        (
            "an unknown colour",
            (
                json!({"lines": [{"sku": "A", "quantity": 1, "colour": "green"}]}),
                "lines[0].colour",
                "INVALID_TYPE",
                "must be one of: red, blue",
            ),
        ),
        (
            "an unknown field",
            (
                json!({"lines": [{"sku": "A", "quantity": 1, "size": 3}]}),
                "lines[0].size",
                "UNKNOWN_FIELD",
                "is not a known field; known fields: sku, quantity, colour",
            ),
        ),
        (
            "a missing field",
            (
                json!({"lines": [{"sku": "A"}]}),
                "lines[0].quantity",
                "REQUIRED",
                "is required",
            ),
        ),
    ]);
    for (case, (body, field, code, message)) in cases {
        let p = problem(address, "/orders", Some(body), 422).await;
        assert_eq!(only_error(&p), (field, code, message), "{case}");
    }
}
