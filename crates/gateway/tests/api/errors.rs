//! Errors the gateway writes itself, including those of the framework and the docs file server, are
//! problem+json with a request id, like every service's.

use reqwest::Method;
use testkit::assert_problem;

use crate::helpers::Stack;

#[tokio::test]
async fn framework_errors_at_the_gateway_are_problem_json_with_a_request_id() {
    let stack = Stack::spawn().await;
    let client = testkit::client();
    for (method, path, status, code) in [
        (Method::GET, "/docs/no-such-file.js", 404, "NOT_FOUND"),
        (Method::GET, "/%FF%FE", 404, "NOT_FOUND"),
        (Method::GET, "/api/%FF%FE", 404, "NOT_FOUND"),
        (Method::POST, "/health", 405, "METHOD_NOT_ALLOWED"),
        (Method::DELETE, "/openapi.json", 405, "METHOD_NOT_ALLOWED"),
        (Method::PUT, "/docs/", 405, "METHOD_NOT_ALLOWED"),
    ] {
        let response = client
            .request(method.clone(), stack.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let header_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = assert_problem(response, status, code).await;
        assert!(body["request_id"].is_string(), "{method} {path}: {body}");
        assert_eq!(
            body["request_id"].as_str(),
            header_id.as_deref(),
            "{method} {path}"
        );
    }
}
