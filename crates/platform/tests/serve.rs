//! `serve_dedicated`: connections dealt to single-threaded workers, handlers running on them, and a
//! graceful drain on shutdown.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

async fn who(ConnectInfo(peer): ConnectInfo<SocketAddr>) -> String {
    let worker = platform::http::worker_index().map_or("none".to_owned(), |i| i.to_string());
    format!("{worker} {}", peer.ip())
}

type Server = JoinHandle<std::io::Result<()>>;

/// The connection limits of the default settings.
fn limits() -> platform::http::ConnectionLimits {
    testkit::connection_limits()
}

/// `serve_dedicated` with `workers` workers on a random port.
async fn spawn(
    router: Router,
    grace: Duration,
    workers: usize,
) -> (SocketAddr, CancellationToken, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("local address");
    let shutdown = CancellationToken::new();
    let workers = NonZeroUsize::new(workers).expect("a positive worker count");
    let server = tokio::spawn(platform::http::serve_dedicated(
        listener,
        router,
        shutdown.clone(),
        grace,
        workers,
        limits(),
    ));
    (address, shutdown, server)
}

#[tokio::test]
async fn connections_are_dealt_to_every_worker_and_in_flight_requests_drain() {
    let started = Arc::new(Notify::new());
    let slow = {
        let started = started.clone();
        move || async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_millis(300)).await;
            "finished"
        }
    };
    let router = Router::new()
        .route("/who", get(who))
        .route("/slow", get(slow));
    let (address, shutdown, server) = spawn(router, Duration::from_secs(5), 2).await;

    // A new connection per request, so each one is dealt to the next worker.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let answer = client
            .get(format!("http://{address}/who"))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body");
        seen.push(answer);
    }
    assert_eq!(
        seen,
        ["0 127.0.0.1", "1 127.0.0.1", "0 127.0.0.1", "1 127.0.0.1"]
    );

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move {
            let response = client
                .get(format!("http://{address}/slow"))
                .send()
                .await
                .expect("the in-flight request is answered");
            (response.status(), response.text().await.expect("body"))
        }
    });
    started.notified().await;
    shutdown.cancel();
    let (status, body) = in_flight.await.expect("request task");
    assert_eq!((status.as_u16(), body.as_str()), (200, "finished"));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops once drained")
        .expect("server task")
        .expect("served without error");
    assert!(
        client
            .get(format!("http://{address}/who"))
            .send()
            .await
            .is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn a_request_past_the_grace_period_is_cut_off() {
    let started = Arc::new(Notify::new());
    let forever = {
        let started = started.clone();
        move || async move {
            started.notify_one();
            std::future::pending::<()>().await;
            "never"
        }
    };
    let router = Router::new().route("/forever", get(forever));
    let (address, shutdown, server) = spawn(router, Duration::from_millis(200), 1).await;
    let request = tokio::spawn(reqwest::get(format!("http://{address}/forever")));
    started.notified().await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server gives up after the grace period")
        .expect("server task")
        .expect("served without error");
    let outcome = request.await.expect("request task");
    assert!(outcome.is_err(), "the cut-off request gets no response");
}
