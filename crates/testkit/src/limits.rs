//! Connection-limit scenarios every listener must pass, run against a server the test started: the
//! platform's `serve` and both of the gateway's paths use them, so the same rule is checked the same way
//! everywhere. `request` is a complete request the server answers 200 on a kept-alive connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use platform::http::ConnectionLimits;
use tokio::io::AsyncWriteExt;

use crate::raw;

/// Limits no test reaches unless it lowers one.
pub fn roomy() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(10),
        keep_alive_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        write_timeout: Duration::from_secs(10),
        max_connections: 1000,
        max_head_bytes: 4096,
        max_uri_bytes: 1024,
    }
}

/// A kept-alive connection serves a second request, then is closed once idle for `keep_alive` (the
/// server's `keep_alive_timeout`), not before.
pub async fn idle_connection_closes_after_keep_alive(
    address: SocketAddr,
    request: &[u8],
    keep_alive: Duration,
) {
    let mut stream = raw::send(address, request).await;
    let first = raw::read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(first.status, 200);
    stream.write_all(request).await.expect("second request");
    let second = raw::read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(second.status, 200);
    let answered = Instant::now();

    let (rest, closed) = raw::read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let idle = closed - answered;
    assert!(
        idle >= keep_alive - Duration::from_millis(50),
        "closed after {idle:?}"
    );
}

/// With `cap` connections open (the server's `max_connections`), further ones are closed at once without
/// a byte, while the open ones go on being served. Returns the open connections.
pub async fn connections_over_the_cap_are_closed(
    address: SocketAddr,
    request: &[u8],
    cap: usize,
) -> Vec<tokio::net::TcpStream> {
    let mut held = Vec::with_capacity(cap);
    for _ in 0..cap {
        let mut stream = raw::send(address, request).await;
        let response = raw::read_response(&mut stream, Duration::from_secs(5)).await;
        assert_eq!(response.status, 200);
        held.push(stream);
    }
    for _ in 0..5 {
        let mut excess = tokio::net::TcpStream::connect(address)
            .await
            .expect("the kernel still completes the handshake");
        let (bytes, _) = raw::read_until_closed(&mut excess, Duration::from_secs(2)).await;
        assert!(bytes.is_empty());
    }
    for stream in &mut held {
        stream.write_all(request).await.expect("request");
        let response = raw::read_response(stream, Duration::from_secs(5)).await;
        assert_eq!(response.status, 200);
    }
    held
}

/// A client that sent part of a head and went quiet, and when it connected.
pub struct SlowClient {
    opened: Instant,
    stream: tokio::net::TcpStream,
}

/// Opens a connection per partial head and sends it, leaving each head unfinished.
pub async fn open_slow_clients(address: SocketAddr, partial_heads: &[Vec<u8>]) -> Vec<SlowClient> {
    let mut slow = Vec::with_capacity(partial_heads.len());
    for head in partial_heads {
        let opened = Instant::now();
        let stream = raw::send(address, head).await;
        slow.push(SlowClient { opened, stream });
    }
    slow
}

/// Every slow client was held, not dropped, while the caller's normal requests were served (the first
/// one is still within `header_timeout`), and then is answered 408 problem+json and closed, no sooner
/// than `header_timeout` after it connected.
pub async fn slow_clients_are_cut_off_with_408(
    mut slow: Vec<SlowClient>,
    header_timeout: Duration,
) {
    let first = slow.first().map(|client| client.opened.elapsed());
    assert!(
        first.is_some_and(|elapsed| elapsed < header_timeout),
        "normal requests took {first:?} beside {} slow clients",
        slow.len()
    );
    for client in &mut slow {
        let (bytes, closed) =
            raw::read_until_closed(&mut client.stream, Duration::from_secs(10)).await;
        let waited = closed - client.opened;
        assert!(
            waited >= header_timeout - Duration::from_millis(50),
            "cut off after {waited:?}"
        );
        raw::Response::parse(&bytes)
            .expect("a response before the close")
            .assert_problem(408, "REQUEST_TIMEOUT");
    }
}
