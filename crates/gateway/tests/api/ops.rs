use std::time::Duration;

use platform::auth::Role;

use crate::helpers::{FakeUpstream, Stack, config, service_spec, spawn_gateway_with_specs};

#[tokio::test]
async fn the_openapi_document_merges_the_service_specs_with_the_operations_routes() {
    let upstream = FakeUpstream::spawn().await;
    let specs = vec![
        service_spec("/api/v1/users/me", "get_me"),
        service_spec("/api/v1/inventory/products", "list_products"),
    ];
    let gateway = spawn_gateway_with_specs(config(&upstream.url()), specs).await;
    let response = testkit::client()
        .get(gateway.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let spec = testkit::json(response).await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3.1"),
        "{spec}"
    );
    for path in [
        "/api/v1/users/me",
        "/api/v1/inventory/products",
        "/health",
        "/readyz",
        "/metrics",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
    assert_eq!(
        spec["paths"]["/api/v1/users/me"]["get"]["operationId"],
        "get_me"
    );
    assert!(spec["components"]["schemas"]["get_me_body"].is_object());
    assert!(spec["components"]["schemas"]["list_products_body"].is_object());
    assert_eq!(
        spec["components"]["securitySchemes"]["bearer_auth"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_docs_page_is_html_that_loads_nothing_from_other_sites() {
    let stack = Stack::spawn().await;
    // `/docs` redirects to `/docs/`, which the client follows.
    let response = testkit::client()
        .get(stack.url("/docs"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("http"),
        "the docs may load from this origin only: {csp}"
    );
    let html = response.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page references another site: {html}"
    );

    let initializer = testkit::client()
        .get(stack.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(
        !initializer.contains("http://") && !initializer.contains("https://"),
        "the docs configuration points elsewhere: {initializer}"
    );
}

#[tokio::test]
async fn readiness_follows_the_upstream_health() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .get(stack.url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = testkit::json(response).await;
    let users = &body["checks"]["users"];
    assert_eq!(users["status"], "up", "{body}");
    let endpoint = &users["endpoints"][0];
    assert_eq!(endpoint["http_status"], 200, "{body}");
    assert_eq!(endpoint["health"], "up", "{body}");
    assert_eq!(endpoint["state"], "healthy", "{body}");
    assert_eq!(
        endpoint["health_url"],
        format!("http://{}/health", stack.upstream.server.address)
    );

    let Stack {
        upstream, gateway, ..
    } = stack;
    upstream.server.stop().await;
    let body = testkit::eventually(
        "readyz to report the upstream down",
        Duration::from_secs(10),
        || {
            let url = gateway.url("/readyz");
            async move {
                let response = testkit::client().get(url).send().await.ok()?;
                (response.status() == 503).then_some(())?;
                Some(testkit::json(response).await)
            }
        },
    )
    .await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"]["users"]["status"], "down", "{body}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_upstream() {
    let stack = Stack::spawn().await;
    for id in ["1", "2", "3"] {
        testkit::client()
            .get(stack.url(&format!("/api/v1/users/me/{id}")))
            .header("authorization", stack.bearer(Role::Customer))
            .send()
            .await
            .unwrap();
    }
    let response = testkit::client()
        .get(stack.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let proxied: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("http_requests_total{") && l.contains("route=\"/api/v1/users/{*rest}\"")
        })
        .collect();
    assert_eq!(proxied.len(), 1, "one series for every id: {text}");
    assert!(proxied[0].ends_with(" 3"), "{}", proxied[0]);
    assert!(
        !text.contains("/api/v1/users/me/1"),
        "raw paths must not become labels"
    );
    let upstream = text
        .lines()
        .find(|l| {
            l.starts_with("gateway_upstream_requests_total{")
                && l.contains("upstream=\"users\"")
                && l.contains("status_class=\"2xx\"")
        })
        .unwrap_or_else(|| panic!("no upstream series: {text}"));
    assert!(upstream.ends_with(" 3"), "{upstream}");
    assert!(text.contains("gateway_upstream_request_duration_seconds_bucket{"));
}
