//! Recovery after a PostgreSQL outage, through the gateway with the shipped defaults: the users service
//! reaches its database through a [`testkit::Cut`] (the shared server keeps running for everyone else),
//! the cut lasts until the gateway's breaker has opened, and the API must answer again within 5 s of the
//! database's return.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{Cut, TestDb, TestServer};

/// Full service within this long of the database's return.
const RECOVERY: Duration = Duration::from_secs(5);

const EMAIL: &str = "outage@example.com";
const PASSWORD: &str = "outage-pass-1";

/// A login through the gateway, which needs the database (profiles may be answered from the cache): its
/// status and body.
async fn login(client: &reqwest::Client, gateway: &TestServer) -> (u16, Value) {
    let response = client
        .post(gateway.url("/api/v1/auth/login"))
        .json(&json!({"email": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_within_five_seconds_of_the_databases_return() {
    let db = TestDb::new();
    let cut = Cut::start(
        "127.0.0.1:5432"
            .parse()
            .unwrap_or_else(|e| panic!("database address: {e}")),
    )
    .await;
    let through_cut = format!("postgres://postgres@{}/{}", cut.address(), db.name);
    let service_settings = testkit::settings_with(
        &[("DATABASE_URL", through_cut.as_str())],
        &logicore::services::sections(),
    );
    let users_app = users::build(
        &users::Config::from_settings(&service_settings).unwrap_or_else(|e| panic!("{e}")),
    )
    .await
    .unwrap_or_else(|e| panic!("users: {e}"));
    let users = TestServer::spawn(users_app.router).await;
    let settings = testkit::settings_with(
        &[
            ("DATABASE_URL", through_cut.as_str()),
            ("USER_SERVICE_URL", users.url("").as_str()),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000"),
        ],
        &logicore::services::sections(),
    );
    let config = gateway::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    let router = gateway::build(&config, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("gateway: {e}"));
    let gateway = TestServer::spawn(router).await;
    let client = testkit::client();

    let registered = client
        .post(gateway.url("/api/v1/auth/register"))
        .json(&json!({"email": EMAIL, "password": PASSWORD, "full_name": "O"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registered.status(), 201);
    assert_eq!(login(&client, &gateway).await.0, 200);

    cut.cut();
    // Callers keep coming during the outage until the gateway's breaker has opened on the service's 503s.
    testkit::eventually(
        "the gateway's breaker to open",
        Duration::from_secs(60),
        || async {
            let answers = futures::future::join_all((0..4).map(|_| login(&client, &gateway))).await;
            for (status, _) in &answers {
                assert!(*status == 503 || *status == 504, "{answers:?}");
            }
            answers
                .iter()
                .any(|(_, body)| body["code"] == "UPSTREAM_UNAVAILABLE")
                .then_some(())
        },
    )
    .await;

    cut.restore();
    let restored = Instant::now();
    testkit::eventually("the API to answer again", RECOVERY, || async {
        (login(&client, &gateway).await.0 == 200).then_some(())
    })
    .await;
    println!(
        "the API answered {:?} after the database's return",
        restored.elapsed()
    );
}
