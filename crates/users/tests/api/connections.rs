//! The service applies the connection limits of its configuration (`[http]`).

use std::time::{Duration, Instant};

use testkit::raw::{self, Response};

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn a_half_sent_request_is_cut_off_after_the_configured_header_timeout() {
    let app = spawn_app_with(&[("LOGICORE_HTTP__HEADER_READ_TIMEOUT_MS", "500")]).await;
    let opened = Instant::now();
    let mut slow = raw::send(
        app.server.address(),
        b"GET /health HTTP/1.1\r\nhost: users\r\nx-sl",
    )
    .await;
    let health = app
        .client
        .get(app.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);

    let (bytes, closed) = raw::read_until_closed(&mut slow, Duration::from_secs(5)).await;
    let waited = closed - opened;
    assert!(
        waited >= Duration::from_millis(450),
        "cut off after {waited:?}"
    );
    Response::parse(&bytes)
        .expect("a response before the close")
        .assert_problem(408, "REQUEST_TIMEOUT");
}
