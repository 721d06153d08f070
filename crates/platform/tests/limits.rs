//! Connection limits of `platform::http::serve`, the server under every service: slow and idle clients
//! are cut off on time, a client that does not read is dropped, heads over the limits are answered
//! with problem+json, and the connection cap refuses the excess without starving the others.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{get, post};
use futures::StreamExt;
use platform::http::ConnectionLimits;
use testkit::assert_problem;
use testkit::limits::{self, roomy};
use testkit::raw::{self, Response};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// When the body of `/large` was dropped: the server gave up on the response.
type Dropped = Arc<Mutex<Option<Instant>>>;

struct MarkOnDrop(Dropped);

impl Drop for MarkOnDrop {
    fn drop(&mut self) {
        if let Ok(mut dropped) = self.0.lock() {
            *dropped = Some(Instant::now());
        }
    }
}

/// 64 MiB, far more than socket buffers hold, made as it is sent.
const LARGE_BYTES: usize = 64 << 20;

struct Server {
    address: SocketAddr,
    large_dropped: Dropped,
    _shutdown: tokio_util::sync::DropGuard,
}

/// `serve` on a random port with `/ok`, `/echo` (the body's length) and `/large`.
async fn spawn(limits: ConnectionLimits) -> Server {
    testkit::init();
    let large_dropped = Dropped::default();
    let marker = large_dropped.clone();
    let router = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/large",
            get(move || {
                let mark = MarkOnDrop(marker.clone());
                let chunks = futures::stream::iter(0..LARGE_BYTES >> 20).map(move |_| {
                    let _held = &mark;
                    Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1 << 20]))
                });
                async move { Body::from_stream(chunks) }
            }),
        );
    let listener = testkit::bind().await;
    let address = listener.local_addr().expect("local address");
    let shutdown = CancellationToken::new();
    tokio::spawn(platform::http::serve(
        listener,
        router,
        shutdown.clone(),
        Duration::from_secs(1),
        limits,
    ));
    Server {
        address,
        large_dropped,
        _shutdown: shutdown.drop_guard(),
    }
}

const GET_OK: &[u8] = b"GET /ok HTTP/1.1\r\nhost: test\r\n\r\n";
const GET_OK_AND_CLOSE: &[u8] = b"GET /ok HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n";

/// A request on a connection of its own, answered 200.
async fn served(address: SocketAddr) {
    let mut stream = raw::send(address, GET_OK).await;
    let response = raw::read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(response.status, 200, "{response:?}");
}

#[tokio::test]
async fn half_sent_requests_are_cut_off_after_the_header_timeout_while_others_are_served() {
    const SLOW_CLIENTS: usize = 300;
    let header_timeout = Duration::from_millis(1500);
    let server = spawn(ConnectionLimits {
        header_read_timeout: header_timeout,
        ..roomy()
    })
    .await;

    let heads = vec![b"GET /ok HTTP/1.1\r\nhost: test\r\nx-slo".to_vec(); SLOW_CLIENTS];
    let slow = limits::open_slow_clients(server.address, &heads).await;
    for _ in 0..20 {
        served(server.address).await;
    }
    limits::slow_clients_are_cut_off_with_408(slow, header_timeout).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let keep_alive = Duration::from_millis(500);
    let server = spawn(ConnectionLimits {
        keep_alive_timeout: keep_alive,
        ..roomy()
    })
    .await;
    limits::idle_connection_closes_after_keep_alive(server.address, GET_OK, keep_alive).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_while_established_ones_are_served() {
    let server = spawn(ConnectionLimits {
        max_connections: 3,
        ..roomy()
    })
    .await;
    let mut held = limits::connections_over_the_cap_are_closed(server.address, GET_OK, 3).await;

    // A slot given back serves a new connection.
    drop(held.pop());
    testkit::eventually(
        "a freed slot to serve a new connection",
        Duration::from_secs(5),
        || async {
            let mut stream = tokio::net::TcpStream::connect(server.address).await.ok()?;
            stream.write_all(GET_OK_AND_CLOSE).await.ok()?;
            let (bytes, _) = raw::read_until_closed(&mut stream, Duration::from_secs(5)).await;
            Response::parse(&bytes).filter(|r| r.status == 200)
        },
    )
    .await;
}

#[tokio::test]
async fn a_head_over_the_limit_gets_431_and_a_long_target_414_both_problems_with_a_request_id() {
    let server = spawn(roomy()).await;
    let client = testkit::client();
    let url = |path: &str| format!("http://{}{path}", server.address);

    let within = client
        .get(url("/ok"))
        .header("x-filler", "a".repeat(3000))
        .send()
        .await
        .expect("request");
    assert_eq!(within.status(), 200);

    let too_large = client
        .get(url("/ok"))
        .header("x-filler", "a".repeat(5000))
        .send()
        .await
        .expect("request");
    assert_problem(too_large, 431, "HEADERS_TOO_LARGE").await;

    let too_long = client
        .get(url(&format!("/ok?q={}", "a".repeat(1100))))
        .send()
        .await
        .expect("request");
    assert_problem(too_long, 414, "URI_TOO_LONG").await;

    // Beyond hyper's own 64 KiB target limit (and what an HTTP client library sends): still the guard's
    // answer, not hyper's empty one.
    let mut far_too_long = format!("GET /{} HTTP/1.1\r\nhost: t\r\n\r\n", "a".repeat(70_000));
    let mut stream = raw::send(server.address, far_too_long.as_bytes()).await;
    far_too_long.clear();
    let (bytes, _) = raw::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    Response::parse(&bytes)
        .expect("a response")
        .assert_problem(414, "URI_TOO_LONG");
}

#[tokio::test]
async fn a_client_that_does_not_read_a_large_response_is_dropped_after_the_write_timeout() {
    let write_timeout = Duration::from_millis(500);
    let server = spawn(ConnectionLimits {
        write_timeout,
        ..roomy()
    })
    .await;
    let sent = Instant::now();
    let mut stream = raw::send(server.address, b"GET /large HTTP/1.1\r\nhost: test\r\n\r\n").await;
    let dropped = testkit::eventually(
        "the server to give up on the unread response",
        Duration::from_secs(10),
        || async { *server.large_dropped.lock().ok()? },
    )
    .await;
    assert!(
        dropped - sent >= write_timeout,
        "dropped after {:?}",
        dropped - sent
    );
    let (received, _) = raw::read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(received.len() < LARGE_BYTES, "the whole response arrived");
}

#[tokio::test]
async fn requests_with_bodies_keep_their_framing_on_a_kept_alive_connection() {
    let server = spawn(roomy()).await;
    // Three pipelined requests in one write: a sized body, a chunked one, then no body.
    let pipelined = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\n\r\nhello\
POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\n\r\n\
GET /ok HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    let mut stream = raw::send(server.address, pipelined).await;
    let (bytes, _) = raw::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let bodies: Vec<String> = Response::parse_all(&bytes)
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(bodies, ["5", "7", "ok"]);
}
#[tokio::test]
async fn a_stalled_request_body_ends_the_connection_after_the_body_timeout() {
    let body_timeout = Duration::from_millis(500);
    let server = spawn(ConnectionLimits {
        body_read_timeout: body_timeout,
        ..roomy()
    })
    .await;
    let sent = Instant::now();
    let mut stream = raw::send(
        server.address,
        b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\nonly part",
    )
    .await;
    let (_, closed) = raw::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(
        closed - sent >= body_timeout,
        "closed after {:?}",
        closed - sent
    );
}
