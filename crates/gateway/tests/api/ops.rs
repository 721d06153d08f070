use std::time::Duration;

use platform::auth::Role;
use testkit::assert_problem;

use crate::helpers::{
    FakeUpstream, Stack, config, service_spec, spawn_gateway, spawn_gateway_with_specs,
};

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
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing");
    }
    assert!(
        spec["paths"]["/metrics"].is_null(),
        "metrics are on the admin listener"
    );
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
        .get(stack.admin_url("/readyz"))
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
            let url = gateway.admin_url("/readyz");
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
        .get(stack.admin_url("/metrics"))
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

#[tokio::test]
async fn the_public_port_keeps_only_health_and_a_minimal_readyz_and_the_admin_listener_has_the_rest()
 {
    let stack = Stack::spawn().await;
    let client = testkit::client();
    let get = |url: String| {
        let request = client.get(url).send();
        async move { request.await.unwrap_or_else(|e| panic!("{e}")) }
    };
    assert_problem(get(stack.url("/metrics")).await, 404, "NOT_FOUND").await;
    assert_problem(
        get(stack.url("/admin/circuit-breakers")).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(get(stack.url("/health")).await.status(), 200);
    let readyz = get(stack.url("/readyz")).await;
    assert_eq!(readyz.status(), 200);
    assert_eq!(
        testkit::json(readyz).await,
        serde_json::json!({ "status": "ready" })
    );

    let metrics = get(stack.admin_url("/metrics")).await;
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap_or_default().contains("# TYPE"));
    let detailed = testkit::json(get(stack.admin_url("/readyz")).await).await;
    assert_eq!(detailed["status"], "ready", "{detailed}");
    assert_eq!(detailed["checks"]["users"]["status"], "up", "{detailed}");
    assert!(detailed["checks"]["users"]["circuit_breaker"]["state"].is_string());
}

#[tokio::test]
async fn the_minimal_readyz_says_not_ready_with_503_and_nothing_more() {
    let upstream = FakeUpstream::spawn().await;
    let gateway = spawn_gateway(config(&upstream.url())).await;
    upstream.server.stop().await;
    let response = testkit::client()
        .get(gateway.url("/readyz"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 503);
    assert_eq!(
        testkit::json(response).await,
        serde_json::json!({ "status": "not_ready" })
    );
}

#[tokio::test]
async fn every_admin_route_needs_an_admin_token() {
    let stack = Stack::spawn().await;
    let client = testkit::client();
    for path in ["/admin/circuit-breakers", "/admin/anything-else", "/admin"] {
        let anonymous = client.get(stack.admin_url(path)).send().await.unwrap();
        assert_problem(anonymous, 401, "UNAUTHORIZED").await;
        let customer = client
            .get(stack.admin_url(path))
            .header("authorization", stack.bearer(Role::Customer))
            .send()
            .await
            .unwrap();
        assert_eq!(customer.status(), 403, "{path}");
    }
    let admin = client
        .get(stack.admin_url("/admin/circuit-breakers"))
        .header("authorization", stack.bearer(Role::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
}

#[tokio::test]
async fn a_flood_of_readyz_calls_probes_each_upstream_once_per_cache_interval() {
    let stack = Stack::spawn_with(|c| c.readiness_cache = Duration::from_secs(30)).await;
    let client = testkit::client();
    let calls = (0..100).map(|i| {
        let url = if i % 2 == 0 {
            stack.url("/readyz")
        } else {
            stack.admin_url("/readyz")
        };
        let request = client.get(url).send();
        async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
    });
    let statuses = futures::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // users, inventory and orders all point at the one fake: one probe of each in all.
    let probes = stack
        .upstream
        .probe
        .health_checks
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(probes, 3);
}

#[tokio::test]
async fn with_the_default_cache_a_readyz_flood_costs_at_most_a_handful_of_probes() {
    let stack = Stack::spawn().await;
    let client = testkit::client();
    let started = std::time::Instant::now();
    for _ in 0..100 {
        let response = client.get(stack.url("/readyz")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let elapsed = started.elapsed();
    let probes = stack
        .upstream
        .probe
        .health_checks
        .load(std::sync::atomic::Ordering::SeqCst);
    // One round (3 upstreams) per started second of the flood, at most.
    let rounds = elapsed.as_secs() as usize + 1;
    assert!(
        probes <= 3 * rounds,
        "{probes} probes for 100 calls in {elapsed:?}"
    );
}
