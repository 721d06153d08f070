//! Several instances of one service: balancing, ejecting a dead instance and taking it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gateway::OutlierConfig;
use platform::auth::Role;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::helpers::{FakeUpstream, GatewayServer, bearer, config, spawn_gateway};

/// Two instances of the users service behind one gateway.
struct Pair {
    first: FakeUpstream,
    second: FakeUpstream,
    gateway: GatewayServer,
    admin: String,
}

impl Pair {
    async fn spawn(adjust: impl FnOnce(&mut gateway::Config)) -> Self {
        let first = FakeUpstream::spawn().await;
        let second = FakeUpstream::spawn().await;
        let mut config = config(&format!("{},{}", first.url(), second.url()));
        adjust(&mut config);
        let admin = bearer(&config.auth, Role::Admin);
        let gateway = spawn_gateway(config).await;
        Self {
            first,
            second,
            gateway,
            admin,
        }
    }
}

/// The users upstream's instances as the admin view shows them.
async fn endpoints(gateway: &GatewayServer, admin: &str) -> Vec<Value> {
    let response = testkit::client()
        .get(gateway.admin_url("/admin/circuit-breakers"))
        .header("authorization", admin)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let body = testkit::json(response).await;
    body["data"][0]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

type Answers = Arc<Mutex<Vec<(Instant, u16)>>>;

/// Four callers sending GETs back to back until `stop`, each answer noted with when it came.
fn load(
    gateway: &GatewayServer,
    admin: &str,
    stop: Arc<AtomicBool>,
) -> (Vec<tokio::task::JoinHandle<()>>, Answers) {
    let answers = Arc::new(Mutex::new(Vec::new()));
    let callers = (0..4)
        .map(|i| {
            let url = gateway.url(&format!("/api/v1/users/{i}"));
            let admin = admin.to_owned();
            let stop = stop.clone();
            let answers = answers.clone();
            tokio::spawn(async move {
                let client = testkit::client();
                while !stop.load(Ordering::SeqCst) {
                    let status = client
                        .get(&url)
                        .header("authorization", &admin)
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    answers.lock().await.push((Instant::now(), status));
                }
            })
        })
        .collect();
    (callers, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_instances_mid_load_fails_no_get_and_the_instance_is_ejected_then_readmitted()
 {
    let Pair {
        first,
        second,
        gateway,
        admin,
    } = Pair::spawn(|c| {
        c.outlier = OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_millis(300),
            max_ejection: Duration::from_millis(300),
            ..OutlierConfig::default()
        };
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (callers, answers) = load(&gateway, &admin, stop.clone());
    testkit::eventually(
        "both instances to serve",
        Duration::from_secs(5),
        || async { (first.hits() > 0 && second.hits() > 0).then_some(()) },
    )
    .await;

    let address = first.server.address;
    let killed_at = Instant::now();
    first.server.stop().await;
    let ejected = testkit::eventually(
        "the dead instance to be ejected",
        Duration::from_secs(5),
        || async {
            let endpoints = endpoints(&gateway, &admin).await;
            (endpoints[0]["state"] == "ejected").then_some(endpoints)
        },
    )
    .await;
    assert!(ejected[0]["ejected_until"].is_string(), "{ejected:?}");
    assert_eq!(ejected[1]["state"], "healthy", "{ejected:?}");
    let readyz = testkit::json(
        testkit::client()
            .get(gateway.admin_url("/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    assert_eq!(readyz["checks"]["users"]["status"], "up", "{readyz}");
    assert_eq!(readyz["checks"]["users"]["instances_up"], "1/2", "{readyz}");

    // Back on the same port: once its ejection ends it gets traffic again.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("rebind {address}: {e}"));
    let revived = FakeUpstream::spawn_on(listener);
    testkit::eventually(
        "the revived instance to serve again",
        Duration::from_secs(5),
        || async { (revived.hits() > 0).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    for caller in callers {
        let _ = caller.await;
    }

    let answers = answers.lock().await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|(_, status)| *status != 200)
        .map(|(at, status)| (at.saturating_duration_since(killed_at), *status))
        .collect();
    // Requests in flight while the instance shuts down may be lost; after the first few ms none is.
    assert!(
        failed
            .iter()
            .all(|(after, _)| *after < Duration::from_millis(20)),
        "{} of {} GETs failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    assert!(answers.len() > 20, "only {} GETs were sent", answers.len());
}

#[tokio::test]
async fn the_admin_view_and_readyz_show_every_instance_with_its_load_and_ejection() {
    let pair = Pair::spawn(|_| {}).await;
    let endpoints = endpoints(&pair.gateway, &pair.admin).await;
    assert_eq!(endpoints.len(), 2);
    for (endpoint, upstream) in endpoints.iter().zip([&pair.first, &pair.second]) {
        assert_eq!(endpoint["url"], format!("{}/", upstream.url()));
        assert_eq!(endpoint["state"], "healthy");
        assert_eq!(endpoint["outstanding"], 0);
        assert!(endpoint["ejected_until"].is_null());
    }
    let readyz = testkit::json(
        testkit::client()
            .get(pair.gateway.admin_url("/readyz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    let users = &readyz["checks"]["users"];
    assert_eq!(users["instances_up"], "2/2", "{readyz}");
    assert_eq!(users["endpoints"][1]["health"], "up", "{readyz}");
    assert_eq!(users["endpoints"][1]["outstanding"], 0, "{readyz}");
}
