//! Trace context through the gateway, on both proxy paths: a caller's trace is continued (the upstream
//! gets the gateway's server span as its parent), a trace the caller sampled out stays sampled out (no
//! span, the caller's `traceparent` passed on as it came), and a request without one starts a trace.
//! A test binary of its own, since the span exporter is process-wide.

#[allow(
    dead_code,
    reason = "shared with the api tests, which use more of it than this one"
)]
#[path = "api/helpers.rs"]
mod helpers;

use std::time::Duration;

use helpers::{FakeUpstream, bearer, config, spawn_gateway};
use opentelemetry::trace::SpanKind;
use platform::auth::Role;
use serde_json::Value;

/// The gateway as it runs (`direct`: the direct path takes plain HTTP/1.1) and its router alone.
async fn both_paths() -> (String, String, String, FakeUpstream) {
    testkit::traces::capture();
    let upstream = FakeUpstream::spawn().await;
    let config = config(&upstream.url());
    let token = bearer(&config.auth, Role::Admin);
    let router = gateway::build(&config, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let router = testkit::TestServer::spawn(router).await;
    let direct = spawn_gateway(config).await;
    let urls = (direct.url(""), router.url(""));
    // Both servers stop when dropped: they live as long as the test binary.
    std::mem::forget((direct, router));
    (urls.0, urls.1, token, upstream)
}

/// The trace headers the upstream received for one echoed request.
async fn forwarded(base: &str, token: &str, headers: &[(&str, &str)]) -> Value {
    let mut request = testkit::client()
        .get(format!("{base}/api/v1/users/me"))
        .header("authorization", token);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    let echo: Value = testkit::json(response).await;
    echo["headers"].clone()
}

/// The gateway's server span among a trace's spans.
fn server_span(
    spans: &[opentelemetry_sdk::trace::SpanData],
) -> &opentelemetry_sdk::trace::SpanData {
    spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap_or_else(|| panic!("no server span among {spans:?}"))
}

fn trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[tokio::test]
async fn a_callers_trace_is_continued_on_both_paths_with_the_gateways_span_as_parent() {
    let (direct, router, token, _upstream) = both_paths().await;
    for base in [direct, router] {
        let trace = trace_id();
        let caller = "b7ad6b7169203331";
        let sent = format!("00-{trace}-{caller}-01");
        let headers = forwarded(
            &base,
            &token,
            &[("traceparent", &sent), ("baggage", "tenant=acme")],
        )
        .await;
        let spans = testkit::traces::spans_of(&trace, Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.span_kind == SpanKind::Server)
        })
        .await;
        let server = server_span(&spans);
        assert_eq!(server.parent_span_id.to_string(), caller, "{base}");
        assert_eq!(
            headers["traceparent"],
            format!("00-{trace}-{}-01", server.span_context.span_id()),
            "{base}"
        );
        assert_eq!(headers["baggage"], "tenant=acme", "{base}");
        assert_eq!(
            testkit::traces::attribute(server, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(
            testkit::traces::attribute(server, "client.address").as_deref(),
            Some("127.0.0.1"),
            "{base}"
        );
    }
}

#[tokio::test]
async fn a_trace_the_caller_sampled_out_is_passed_on_as_it_came_and_makes_no_span() {
    let (direct, router, token, _upstream) = both_paths().await;
    for base in [direct, router] {
        let unsampled = trace_id();
        let sent = format!("00-{unsampled}-b7ad6b7169203331-00");
        let headers = forwarded(&base, &token, &[("traceparent", &sent)]).await;
        assert_eq!(headers["traceparent"], sent.as_str(), "{base}");

        // A sampled request after it: once its span is exported, the first one's would have been too.
        let sampled = trace_id();
        let marker = format!("00-{sampled}-b7ad6b7169203331-01");
        forwarded(&base, &token, &[("traceparent", &marker)]).await;
        testkit::traces::spans_of(&sampled, Duration::from_secs(10), |spans| !spans.is_empty())
            .await;
        let spans = testkit::traces::spans_of(&unsampled, Duration::ZERO, |_| true).await;
        assert!(spans.is_empty(), "{base}: {spans:?}");
    }
}

#[tokio::test]
async fn a_request_without_trace_context_starts_a_trace_the_upstream_continues() {
    let (direct, router, token, _upstream) = both_paths().await;
    for base in [direct, router] {
        let headers = forwarded(&base, &token, &[]).await;
        let traceparent = headers["traceparent"]
            .as_str()
            .unwrap_or_else(|| panic!("{base}: no traceparent in {headers}"));
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!((parts[0], parts[3]), ("00", "01"), "{traceparent}");
        let spans = testkit::traces::spans_of(parts[1], Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.span_kind == SpanKind::Server)
        })
        .await;
        let server = server_span(&spans);
        assert_eq!(server.span_context.span_id().to_string(), parts[2]);
        assert_eq!(
            server.parent_span_id,
            opentelemetry::trace::SpanId::INVALID,
            "the gateway's span is the root"
        );
    }
}

#[tokio::test]
async fn each_attempt_on_an_upstream_is_a_client_span_and_a_retry_shows_as_a_resend() {
    testkit::traces::capture();
    let failing = FakeUpstream::spawn().await;
    failing
        .probe
        .unavailable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let healthy = FakeUpstream::spawn().await;
    let mut config = config(&healthy.url());
    let users = format!("{},{}", failing.url(), healthy.url());
    config.upstreams[0] = gateway::Upstream::new("users", &users).unwrap_or_else(|e| panic!("{e}"));
    config.outlier.consecutive_failures = u32::MAX;
    let token = bearer(&config.auth, Role::Admin);
    let direct = spawn_gateway(config).await;
    // Which instance a request tries first is the balancer's choice: some of these go to the failing one.
    let mut retried = None;
    for _ in 0..20 {
        let trace = trace_id();
        let sent = format!("00-{trace}-b7ad6b7169203331-01");
        forwarded(&direct.url(""), &token, &[("traceparent", &sent)]).await;
        let spans = testkit::traces::spans_of(&trace, Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.span_kind == SpanKind::Server)
        })
        .await;
        if spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Client)
            .count()
            == 2
        {
            retried = Some(spans);
            break;
        }
    }
    let spans = retried.unwrap_or_else(|| panic!("no request was retried"));
    let server = server_span(&spans);
    let attempt = |resends: &str| {
        spans
            .iter()
            .find(|s| {
                s.span_kind == SpanKind::Client
                    && testkit::traces::attribute(s, "http.request.resend_count").as_deref()
                        == Some(resends)
            })
            .unwrap_or_else(|| panic!("no attempt with {resends} resends"))
    };
    let (first, second) = (attempt("0"), attempt("1"));
    for span in [first, second] {
        assert_eq!(span.parent_span_id, server.span_context.span_id());
        assert_eq!(span.name, "upstream users");
    }
    assert_eq!(
        testkit::traces::attribute(first, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(
        testkit::traces::attribute(second, "http.response.status_code").as_deref(),
        Some("200")
    );
}

#[tokio::test]
async fn a_sampled_requests_latency_carries_its_trace_as_an_exemplar_for_an_openmetrics_scraper() {
    testkit::traces::capture();
    let upstream = FakeUpstream::spawn().await;
    let config = config(&upstream.url());
    let token = bearer(&config.auth, Role::Admin);
    let gateway = spawn_gateway(config).await;
    let trace = trace_id();
    let sent = format!("00-{trace}-b7ad6b7169203331-01");
    forwarded(&gateway.url(""), &token, &[("traceparent", &sent)]).await;

    let scrape = |accept: &'static str| {
        let url = gateway.admin_url("/metrics");
        async move {
            let response = testkit::client()
                .get(url)
                .header("accept", accept)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap_or_default()
                .to_owned();
            (content_type, response.text().await.unwrap_or_default())
        }
    };
    let (content_type, text) = scrape("application/openmetrics-text; version=1.0.0").await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let exemplar = format!("# {{trace_id=\"{trace}\"}}");
    assert!(
        text.lines().any(
            |line| line.starts_with("http_request_duration_seconds_bucket")
                && line.contains(&exemplar)
        ),
        "no exemplar of {trace} in:\n{text}"
    );
    let (content_type, text) = scrape("text/plain").await;
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(
        !text.contains("trace_id"),
        "exemplars in the Prometheus text format"
    );
}
