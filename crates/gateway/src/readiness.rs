//! `/readyz` checks: one per upstream, asking its own `/health` and showing its breaker.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Uri};
use futures::future::BoxFuture;
use platform::breaker::CircuitBreaker;
use platform::health::{Check, CheckReport};
use serde_json::json;

use crate::upstream::HttpClient;

/// An upstream is ready when its `/health` answers 2xx within the timeout.
pub(crate) struct UpstreamCheck {
    name: String,
    url: Uri,
    client: HttpClient,
    timeout: Duration,
    breaker: CircuitBreaker,
}

impl UpstreamCheck {
    /// `timeout` should be a little under the readiness deadline, so this check reports its own
    /// timeout (with the URL) instead of being cut off by the outer one.
    pub(crate) fn new(
        name: &str,
        url: Uri,
        client: HttpClient,
        timeout: Duration,
        breaker: CircuitBreaker,
    ) -> Self {
        Self {
            name: name.to_owned(),
            url,
            client,
            timeout,
            breaker,
        }
    }
}

impl Check for UpstreamCheck {
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            let request = match Request::get(self.url.clone()).body(Body::empty()) {
                Ok(request) => request,
                Err(e) => return CheckReport::down(format!("cannot build the request: {e}")),
            };
            let outcome = tokio::time::timeout(self.timeout, self.client.request(request)).await;
            let mut report = match outcome {
                Ok(Ok(response)) if response.status().is_success() => {
                    let mut report = CheckReport::up();
                    report
                        .details
                        .insert("http_status".into(), json!(response.status().as_u16()));
                    report
                }
                Ok(Ok(response)) => {
                    let mut report = CheckReport::down(format!(
                        "health endpoint answered {}",
                        response.status().as_u16()
                    ));
                    report
                        .details
                        .insert("http_status".into(), json!(response.status().as_u16()));
                    report
                }
                Ok(Err(e)) if e.is_connect() => {
                    CheckReport::down("connection refused or unreachable")
                }
                Ok(Err(_)) => CheckReport::down("the health request failed"),
                Err(_) => {
                    CheckReport::down(format!("no answer within {} ms", self.timeout.as_millis()))
                }
            };
            report
                .details
                .insert("url".into(), json!(self.url.to_string()));
            let breaker = self.breaker.snapshot();
            report.details.insert(
                "circuit_breaker".into(),
                json!({
                    "state": breaker.state.as_str(),
                    "successes": breaker.successes,
                    "failures": breaker.failures,
                    "rejections": breaker.rejections,
                    "error_rate_percent": breaker.error_rate_percent,
                }),
            );
            report
        })
    }
}
