//! `/readyz` checks: one per upstream, asking each instance's `/health` and showing the instances'
//! balancing state and the service's breaker. An upstream is ready when at least one instance is: the
//! gateway can serve its routes.

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use futures::future::{BoxFuture, join_all};
use platform::health::{Check, CheckReport};
use serde_json::{Map, Value, json};
use url::Url;

use crate::upstream::UpstreamClient;

pub(crate) struct UpstreamCheck {
    upstream: UpstreamClient,
    timeout: Duration,
}

impl UpstreamCheck {
    /// `timeout` should be a little under the readiness deadline, so this check reports its own
    /// timeout (with the URL) instead of being cut off by the outer one.
    pub(crate) fn new(upstream: UpstreamClient, timeout: Duration) -> Self {
        Self { upstream, timeout }
    }

    /// One instance's `/health`: whether it answered 2xx, and what was seen.
    async fn probe(&self, base: &Url) -> (bool, Map<String, Value>) {
        let mut details = Map::new();
        // The base URL's path prefix, then `/health`, as requests are forwarded.
        let url = format!("{}/health", base.as_str().trim_end_matches('/'));
        details.insert("health_url".into(), json!(url));
        let request = match url
            .parse::<axum::http::Uri>()
            .map_err(|e| e.to_string())
            .and_then(|uri| {
                Request::get(uri)
                    .body(Body::empty())
                    .map_err(|e| e.to_string())
            }) {
            Ok(request) => request,
            Err(e) => {
                details.insert(
                    "error".into(),
                    json!(format!("cannot build the request: {e}")),
                );
                return (false, details);
            }
        };
        let outcome =
            tokio::time::timeout(self.timeout, self.upstream.http_client().request(request)).await;
        let error = match outcome {
            Ok(Ok(response)) => {
                details.insert("http_status".into(), json!(response.status().as_u16()));
                if response.status().is_success() {
                    return (true, details);
                }
                format!("health endpoint answered {}", response.status().as_u16())
            }
            Ok(Err(e)) if e.is_connect() => "connection refused or unreachable".to_owned(),
            Ok(Err(_)) => "the health request failed".to_owned(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        details.insert("error".into(), json!(error));
        (false, details)
    }
}

impl Check for UpstreamCheck {
    fn name(&self) -> &str {
        self.upstream.name()
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            let urls = self.upstream.urls();
            let probes = join_all(urls.iter().map(|url| self.probe(url))).await;
            let states = self.upstream.endpoint_report();
            let up = probes.iter().filter(|(up, _)| *up).count();
            let endpoints: Vec<Value> = probes
                .into_iter()
                .zip(states)
                .map(|((healthy, mut details), state)| {
                    if let Value::Object(state) = state {
                        details.extend(state);
                    }
                    details.insert("health".into(), json!(if healthy { "up" } else { "down" }));
                    Value::Object(details)
                })
                .collect();
            let mut report = if up > 0 {
                CheckReport::up()
            } else {
                CheckReport::down("no instance answers its health check")
            };
            report
                .details
                .insert("instances_up".into(), json!(format!("{up}/{}", urls.len())));
            report.details.insert("endpoints".into(), json!(endpoints));
            let breaker = self.upstream.breaker().snapshot();
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
