//! The two proxy paths answer alike. The same requests go, in the same order, to a gateway as it runs
//! (`gateway::run`, where the direct path takes every plain HTTP/1.1 request) and to its router alone
//! (`gateway::build` served by hyper: the router path), in front of the same upstream, and the answers
//! are compared byte for byte: status, every header but `Date`, and the body, which for the echo route
//! is what the upstream received, so the request side of the header policy is compared too.

use std::io::Read;
use std::time::Duration;

use gateway::{Config, LimitRule};
use platform::auth::Role;

use crate::helpers::{
    Answer, FakeUpstream, GatewayServer, Wire, bearer, closed_port_url, config, spawn_gateway,
};

/// A gateway's two faces on one configuration: `run`'s public port, and its router served alone.
struct BothPaths {
    direct: GatewayServer,
    router: testkit::TestServer,
}

impl BothPaths {
    async fn spawn(config: Config) -> Self {
        let router = gateway::build(&config, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            direct: spawn_gateway(config).await,
            router: testkit::TestServer::spawn(router).await,
        }
    }

    /// Sends `request` to each on a new connection and returns both answers, direct path first.
    async fn exchange(&self, method: &str, request: &str) -> (Answer, Answer) {
        let mut answers = Vec::new();
        for address in [self.direct.address(), self.router.address()] {
            let mut wire = Wire::connect(address).await;
            wire.send(request).await;
            answers.push(wire.answer(method).await);
        }
        let router = answers.pop().unwrap_or_else(|| panic!("two answers"));
        let direct = answers.pop().unwrap_or_else(|| panic!("two answers"));
        (direct, router)
    }
}

/// The headers that must match: all but `Date`, as a sorted list so the order they were written in
/// does not count.
fn comparable(answer: &Answer) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = answer
        .headers
        .iter()
        .filter(|(name, _)| name != "date")
        .cloned()
        .collect();
    headers.sort();
    headers
}

/// The request and the status both paths must give it.
struct Case {
    name: &'static str,
    method: &'static str,
    request: String,
    status: u16,
}

fn case(name: &'static str, method: &'static str, request: String, status: u16) -> Case {
    Case {
        name,
        method,
        request,
        status,
    }
}

async fn assert_alike(paths: &BothPaths, cases: &[Case]) {
    for case in cases {
        let (direct, router) = paths.exchange(case.method, &case.request).await;
        assert_eq!(
            (direct.status, router.status),
            (case.status, case.status),
            "{}: direct {:?} / router {:?}",
            case.name,
            String::from_utf8_lossy(&direct.body),
            String::from_utf8_lossy(&router.body)
        );
        assert_eq!(
            comparable(&direct),
            comparable(&router),
            "{}: headers differ",
            case.name
        );
        assert_eq!(
            String::from_utf8_lossy(&direct.body),
            String::from_utf8_lossy(&router.body),
            "{}: bodies differ",
            case.name
        );
    }
}

fn request(method: &str, path: &str, id: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut text =
        format!("{method} {path} HTTP/1.1\r\nhost: api.example.com\r\nx-request-id: {id}\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        text.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

#[tokio::test]
async fn both_paths_forward_refuse_and_rewrite_headers_alike() {
    let upstream = FakeUpstream::spawn().await;
    let config = config(&upstream.url());
    let customer = bearer(&config.auth, Role::Customer);
    let admin = bearer(&config.auth, Role::Admin);
    let paths = BothPaths::spawn(config).await;
    let me = "/api/v1/users/me?q=a%20b&x=1";
    // Large enough for the echo to be compressed.
    let padding = "p".repeat(2_000);
    let cases = [
        case(
            "a proxied GET, with hop-by-hop and forwarding headers from the client",
            "GET",
            request(
                "GET",
                me,
                "eq-1",
                &[
                    ("authorization", &customer),
                    ("connection", "keep-alive"),
                    ("keep-alive", "timeout=5"),
                    ("te", "trailers"),
                    ("proxy-authorization", "Basic c2VjcmV0"),
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-host", "evil.example.com"),
                    ("x-forwarded-proto", "https"),
                    ("x-custom", "kept"),
                ],
                "",
            ),
            200,
        ),
        case(
            "a POST with a body",
            "POST",
            request(
                "POST",
                "/api/v1/orders",
                "eq-2",
                &[
                    ("authorization", &customer),
                    ("content-type", "application/json"),
                    ("idempotency-key", "k-1"),
                ],
                r#"{"items":[{"sku":"A-1","quantity":2}]}"#,
            ),
            200,
        ),
        case(
            "HEAD",
            "HEAD",
            request("HEAD", me, "eq-3", &[("authorization", &customer)], ""),
            200,
        ),
        case(
            "gzip when the client prefers it",
            "GET",
            request(
                "GET",
                me,
                "eq-4",
                &[
                    ("authorization", &customer),
                    ("accept-encoding", "br;q=0.5, gzip;q=0.9"),
                    ("x-padding", &padding),
                ],
                "",
            ),
            200,
        ),
        case(
            "zstd on a tie, the last named",
            "GET",
            request(
                "GET",
                me,
                "eq-5",
                &[
                    ("authorization", &customer),
                    ("accept-encoding", "gzip, zstd"),
                    ("x-padding", &padding),
                ],
                "",
            ),
            200,
        ),
        case(
            "no encoding the client refuses",
            "GET",
            request(
                "GET",
                me,
                "eq-6",
                &[
                    ("authorization", &customer),
                    ("accept-encoding", "gzip;q=0, deflate"),
                    ("x-padding", &padding),
                ],
                "",
            ),
            200,
        ),
        case("no token", "GET", request("GET", me, "eq-7", &[], ""), 401),
        case(
            "a forged token",
            "GET",
            request(
                "GET",
                me,
                "eq-8",
                &[(
                    "authorization",
                    "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
                )],
                "",
            ),
            401,
        ),
        case(
            "a role the route does not allow",
            "POST",
            request(
                "POST",
                "/api/v1/users",
                "eq-9",
                &[("authorization", &customer)],
                "{}",
            ),
            403,
        ),
        case(
            "an upstream's own 404 passes through",
            "GET",
            request(
                "GET",
                "/api/v1/users/me/missing",
                "eq-10",
                &[("authorization", &admin)],
                "",
            ),
            404,
        ),
        case(
            "an upstream's 500 passes through",
            "POST",
            request(
                "POST",
                "/api/v1/orders/fail",
                "eq-11",
                &[("authorization", &admin)],
                "{}",
            ),
            500,
        ),
        case(
            "a path under no route",
            "GET",
            request(
                "GET",
                "/api/v1/nothing",
                "eq-12",
                &[("authorization", &admin)],
                "",
            ),
            404,
        ),
    ];
    assert_alike(&paths, &cases).await;

    // The compressed answers were compared byte for byte; they are also what they claim to be.
    let (direct, _) = paths.exchange("GET", &cases[3].request).await;
    assert_eq!(direct.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&direct.body[..])
        .read_to_string(&mut plain)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(plain.contains(&padding));
}

#[tokio::test]
async fn both_paths_answer_an_unreachable_upstream_and_a_spent_rate_limit_alike() {
    let mut config = config(&closed_port_url().await);
    config.rate_limit.default = LimitRule {
        route: None,
        role: None,
        window: Duration::from_secs(600),
        max_requests: 2,
        burst: 0,
    };
    let customer = bearer(&config.auth, Role::Customer);
    let paths = BothPaths::spawn(config).await;
    let get = |id| {
        request(
            "GET",
            "/api/v1/inventory/items",
            id,
            &[("authorization", &customer)],
            "",
        )
    };
    let cases = [
        case("an unreachable upstream", "GET", get("eq-20"), 503),
        case("the same again", "GET", get("eq-21"), 503),
        case("over the rate limit", "GET", get("eq-22"), 429),
    ];
    assert_alike(&paths, &cases).await;
}
