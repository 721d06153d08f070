use std::io::Read;

use platform::auth::Role;

use crate::helpers::Stack;

fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .expect("valid gzip");
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .expect("valid brotli");
        }
        "zstd" => out = zstd::decode_all(body).expect("valid zstd"),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

#[tokio::test]
async fn responses_are_compressed_with_the_encoding_the_caller_accepts() {
    let stack = Stack::spawn().await;
    let plain = testkit::client()
        .get(stack.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert!(!plain.headers().contains_key("content-encoding"));
    let plain = plain.bytes().await.unwrap();
    for encoding in ["gzip", "br", "zstd"] {
        let response = testkit::client()
            .get(stack.url("/openapi.json"))
            .header("accept-encoding", encoding)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-encoding"], encoding);
        let body = response.bytes().await.unwrap();
        assert!(
            body.len() < plain.len(),
            "{encoding} did not shrink the body"
        );
        assert_eq!(decode(encoding, &body), plain, "{encoding}");
    }
}

#[tokio::test]
async fn proxied_responses_are_compressed_too() {
    let stack = Stack::spawn().await;
    // The fake upstream echoes the query, which makes its answer big enough to be worth compressing.
    let padding = "x".repeat(2048);
    let response = testkit::client()
        .get(stack.url(&format!("/api/v1/users/me?pad={padding}")))
        .header("authorization", stack.bearer(Role::Customer))
        .header("accept-encoding", "zstd;q=0.5, br;q=1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "br");
    let body = response.bytes().await.unwrap();
    let echo: serde_json::Value = serde_json::from_slice(&decode("br", &body)).unwrap();
    assert_eq!(echo["path"], "/api/v1/users/me");
}

#[tokio::test]
async fn small_responses_are_not_compressed() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .get(stack.url("/api/v1/users/me"))
        .header("authorization", stack.bearer(Role::Customer))
        .header("accept-encoding", "br, gzip, zstd")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let stack = Stack::spawn().await;
    let bearer = stack.bearer(Role::Customer);
    let client = testkit::client();
    let responses = [
        client
            .get(stack.url("/api/v1/users/me"))
            .header("authorization", &bearer),
        client.get(stack.url("/api/v1/users/me")),
        client.get(stack.url("/health")),
        client.get(stack.url("/no-such-page")),
        client.get(stack.url("/openapi.json")),
    ];
    for request in responses {
        let response = request.send().await.unwrap();
        let headers = response.headers();
        let url = response.url().clone();
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
            ("cross-origin-opener-policy", "same-origin"),
            ("cross-origin-resource-policy", "same-origin"),
            ("x-dns-prefetch-control", "off"),
        ] {
            assert_eq!(
                headers.get(name).and_then(|v| v.to_str().ok()),
                Some(value),
                "{url} {name}"
            );
        }
        assert!(
            headers["strict-transport-security"]
                .to_str()
                .unwrap()
                .starts_with("max-age="),
            "{url}"
        );
        assert!(headers.contains_key("x-request-id"), "{url}");
        assert!(!headers.contains_key("server"), "{url}");
        assert!(!headers.contains_key("x-powered-by"), "{url}");
    }
}

const ALLOWED: &str = "https://app.logicore.example";

async fn preflight(stack: &Stack, origin: &str) -> reqwest::Response {
    testkit::client()
        .request(reqwest::Method::OPTIONS, stack.url("/api/v1/users"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .expect("the gateway answers")
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_at_the_edge() {
    let stack = Stack::spawn_with(|c| c.cors_allowed_origins = vec![ALLOWED.into()]).await;
    let response = preflight(&stack, ALLOWED).await;
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED);
    let methods = headers["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let allowed = headers["access-control-allow-headers"].to_str().unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert_eq!(
        stack.upstream.hits(),
        0,
        "a preflight needs no token and no upstream"
    );

    let response = testkit::client()
        .get(stack.url("/api/v1/users/me"))
        .header("origin", ALLOWED)
        .header("authorization", stack.bearer(Role::Customer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn a_preflight_from_another_origin_gets_no_permission() {
    let stack = Stack::spawn_with(|c| c.cors_allowed_origins = vec![ALLOWED.into()]).await;
    let response = preflight(&stack, "https://evil.example").await;
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin")
    );
    assert_eq!(stack.upstream.hits(), 0);
}

#[tokio::test]
async fn without_configured_origins_no_cors_headers_are_sent() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .post(stack.url("/api/v1/auth/login"))
        .header("origin", ALLOWED)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        !response
            .headers()
            .keys()
            .any(|name| name.as_str().starts_with("access-control-")),
        "{:?}",
        response.headers()
    );
}
