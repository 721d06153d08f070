use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use platform::auth::Role;
use platform::config::RbacRule;
use reqwest::Method;
use testkit::assert_problem;

use crate::helpers::{Stack, config, echoed};

#[tokio::test]
async fn a_public_route_is_reachable_without_a_token() {
    let stack = Stack::spawn().await;
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
    ] {
        let response = testkit::client()
            .post(stack.url(path))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(echoed(response).await["path"], path);
    }
    assert_eq!(stack.upstream.hits(), 3);
}

#[tokio::test]
async fn a_public_route_is_public_only_for_its_methods() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .get(stack.url("/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused_without_contacting_the_upstream() {
    let stack = Stack::spawn().await;
    let valid = stack.bearer(Role::Customer);
    let token = valid.trim_start_matches("Bearer ");
    let parts: Vec<&str> = token.split('.').collect();
    let forged_payload = URL_SAFE_NO_PAD.encode(
        String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap())
            .unwrap()
            .replace("\"customer\"", "\"admin\""),
    );
    let tampered = format!("Bearer {}.{forged_payload}.{}", parts[0], parts[2]);
    let alg_none = format!(
        "Bearer {}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let cases = [
        ("missing", None),
        ("expired", Some(stack.expired_bearer())),
        ("tampered", Some(tampered)),
        ("alg none", Some(alg_none)),
        ("wrong secret", Some(stack.foreign_bearer())),
        ("not bearer", Some(format!("Basic {token}"))),
    ];
    for (case, authorization) in cases {
        let mut request = testkit::client().get(stack.url("/api/v1/users/me"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{case}"
        );
        let problem = assert_problem(response, 401, "UNAUTHORIZED").await;
        assert!(problem["request_id"].is_string(), "{case}: {problem}");
    }
    assert_eq!(
        stack.upstream.hits(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn a_customer_is_refused_admin_routes_without_contacting_the_upstream() {
    let stack = Stack::spawn().await;
    let customer = stack.bearer(Role::Customer);
    let attempts = [
        (Method::POST, "/api/v1/users"),
        (Method::GET, "/api/v1/users"),
        (
            Method::GET,
            "/api/v1/users/0190f3a4-1111-7000-8000-000000000001",
        ),
        (
            Method::DELETE,
            "/api/v1/users/0190f3a4-1111-7000-8000-000000000001",
        ),
    ];
    for (method, path) in attempts {
        let response = testkit::client()
            .request(method.clone(), stack.url(path))
            .header("authorization", &customer)
            .body("{}")
            .send()
            .await
            .unwrap();
        let problem = assert_problem(response, 403, "FORBIDDEN").await;
        assert!(problem["detail"].is_string(), "{method} {path}: {problem}");
    }
    // Respelling the path does not get around a rule: it is either judged by what it means or not
    // routed at all.
    for (method, path) in [
        (Method::POST, "/api/v1/users//"),
        (Method::POST, "/api/v1//users"),
        (Method::POST, "/api/v1/%75sers"),
        (Method::DELETE, "/api/v1/users/%61dmin-id"),
    ] {
        let response = testkit::client()
            .request(method.clone(), stack.url(path))
            .header("authorization", &customer)
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(status == 403 || status == 404, "{method} {path}: {status}");
    }
    // HEAD is answered by GET handlers, so the GET rule covers it too.
    let response = testkit::client()
        .head(stack.url("/api/v1/users"))
        .header("authorization", &customer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        stack.upstream.hits(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test]
async fn staff_pass_the_rules_written_for_them() {
    let stack = Stack::spawn().await;
    let client = testkit::client();
    let admin = stack.bearer(Role::Admin);
    let manager = stack.bearer(Role::Manager);
    for (request, who) in [
        (client.post(stack.url("/api/v1/users")).body("{}"), &admin),
        (client.get(stack.url("/api/v1/users")), &manager),
        (
            client.patch(stack.url("/api/v1/users/42")).body("{}"),
            &admin,
        ),
    ] {
        let response = request.header("authorization", who).send().await.unwrap();
        echoed(response).await;
    }
    let response = client
        .patch(stack.url("/api/v1/users/42"))
        .header("authorization", &manager)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "FORBIDDEN").await;
}

#[tokio::test]
async fn a_customer_reaches_their_own_profile_because_the_first_matching_rule_wins() {
    let stack = Stack::spawn().await;
    let customer = stack.bearer(Role::Customer);
    // `/api/v1/users/me` also fits the admin-only `/api/v1/users/{id}` rule, which comes later.
    for path in ["/api/v1/users/me", "/api/v1/users/me/preferences"] {
        let response = testkit::client()
            .get(stack.url(path))
            .header("authorization", &customer)
            .send()
            .await
            .unwrap();
        assert_eq!(echoed(response).await["path"], path);
    }
}

#[tokio::test]
async fn an_earlier_stricter_rule_beats_a_later_permissive_one() {
    let stack = Stack::spawn_with(|c| {
        c.rbac = vec![
            RbacRule {
                route: "GET /api/v1/users/{id}".into(),
                roles: vec!["admin".into()],
            },
            RbacRule {
                route: "GET /api/v1/users/me".into(),
                roles: vec!["*".into()],
            },
        ];
    })
    .await;
    let response = testkit::client()
        .get(stack.url("/api/v1/users/me"))
        .header("authorization", stack.bearer(Role::Customer))
        .send()
        .await
        .unwrap();
    assert_problem(response, 403, "FORBIDDEN").await;
}

#[tokio::test]
async fn a_route_without_a_rule_is_open_to_any_authenticated_caller() {
    let stack = Stack::spawn().await;
    let response = testkit::client()
        .post(stack.url("/api/v1/auth/logout"))
        .header("authorization", stack.bearer(Role::Driver))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed(response).await["path"], "/api/v1/auth/logout");
}

#[tokio::test]
async fn a_path_with_dot_segments_is_refused() {
    let stack = Stack::spawn().await;
    // reqwest would resolve the dot segments itself, so the request is sent as written by hyper.
    for path in [
        "/api/v1/auth/login/../../users",
        "/api/v1/auth/login/%2e%2e/x",
    ] {
        let request = hyper::Request::get(stack.url(path))
            .header("authorization", stack.bearer(Role::Admin))
            .body(http_body_util::Empty::<axum::body::Bytes>::new())
            .unwrap();
        let response = Client::builder(TokioExecutor::new())
            .build_http()
            .request(request)
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
    }
    assert_eq!(stack.upstream.hits(), 0);
}

#[tokio::test]
async fn an_invalid_rule_stops_the_gateway_from_building() {
    let mut bad_role = config("http://127.0.0.1:1");
    bad_role.rbac.push(RbacRule {
        route: "GET /api/v1/users".into(),
        roles: vec!["superuser".into()],
    });
    let mut bad_route = config("http://127.0.0.1:1");
    bad_route.rbac.insert(
        0,
        RbacRule {
            route: "GET /api/v1/*/users".into(),
            roles: vec!["admin".into()],
        },
    );
    let mut bad_public = config("http://127.0.0.1:1");
    bad_public.public_routes.push("/api/v1/anything".into());
    for config in [bad_role, bad_route, bad_public] {
        let error = gateway::build(&config, Vec::new()).await.unwrap_err();
        assert!(
            matches!(error, gateway::GatewayError::Config { .. }),
            "{error}"
        );
    }
}

#[tokio::test]
async fn an_upstream_the_route_table_does_not_name_or_a_routed_one_left_out_is_refused() {
    let mut misspelt = config("http://127.0.0.1:1");
    misspelt.upstreams.push(
        gateway::Upstream::new("userz", "http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}")),
    );
    let mut missing = config("http://127.0.0.1:1");
    missing
        .upstreams
        .retain(|upstream| upstream.name != "orders");
    for (config, key) in [
        (misspelt, "gateway.upstreams.userz"),
        (missing, "gateway.upstreams"),
    ] {
        match gateway::build(&config, Vec::new()).await {
            Err(gateway::GatewayError::Config { key: found, .. }) => assert_eq!(found, key),
            Err(other) => panic!("{key}: {other}"),
            Ok(_) => panic!("{key}: the gateway was built"),
        }
    }
}
