//! `/readyz` checks: one per upstream, asking each instance's `/health` and showing the instances'
//! balancing state, where they come from (service discovery, flagged stale while the registry cannot be
//! read) and the service's breaker. An upstream is ready when at least one instance is: the gateway can
//! serve its routes.
//!
//! Probe results are reused for `gateway.readiness_cache_ms`, and callers arriving while a probe is under
//! way wait for it rather than start their own: however often `/readyz` is asked (it is public), each
//! instance is probed at most about once per interval. The balancing and breaker state are read fresh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use http_body_util::BodyExt;
use platform::health::{Check, CheckReport};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::upstream::{Endpoint, SendError, UpstreamClient};

/// Each instance's probe: whether it answered 2xx, and what was seen.
type Probes = Arc<Vec<(bool, Map<String, Value>)>>;

pub(crate) struct UpstreamCheck {
    upstream: UpstreamClient,
    timeout: Duration,
    cache_for: Duration,
    /// The last probes and when they were made; the lock is held while probing, so concurrent callers
    /// share one round of probes.
    last: Mutex<Option<(Instant, Probes)>>,
}

impl UpstreamCheck {
    /// `timeout` should be a little under the readiness deadline, so this check reports its own
    /// timeout (with the URL) instead of being cut off by the outer one. Probes are reused for
    /// `cache_for` (0: never).
    pub(crate) fn new(upstream: UpstreamClient, timeout: Duration, cache_for: Duration) -> Self {
        Self {
            upstream,
            timeout,
            cache_for,
            last: Mutex::new(None),
        }
    }

    /// The instances' probes, made now unless a round younger than `cache_for` can be reused.
    async fn probes(&self) -> Probes {
        let mut last = self.last.lock().await;
        if let Some((at, probes)) = &*last
            && at.elapsed() < self.cache_for
        {
            return probes.clone();
        }
        let endpoints = self.upstream.endpoints();
        let probes: Probes =
            Arc::new(join_all(endpoints.iter().map(|e| self.probe(e.clone()))).await);
        *last = Some((Instant::now(), probes.clone()));
        probes
    }

    /// One instance's `/health`: whether it answered 2xx, and what was seen. The request goes out on
    /// the instance's pooled connections, as proxied requests do.
    async fn probe(&self, endpoint: Arc<Endpoint>) -> (bool, Map<String, Value>) {
        let mut details = Map::new();
        // The base URL's path prefix, then `/health`, as requests are forwarded.
        let url = format!("{}/health", endpoint.url().as_str().trim_end_matches('/'));
        details.insert("health_url".into(), json!(url));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let outcome =
            tokio::time::timeout_at(deadline, self.upstream.get(endpoint, "/health")).await;
        let error = match outcome {
            Ok(Ok(response)) => {
                let status = response.status();
                details.insert("http_status".into(), json!(status.as_u16()));
                // Read to its end (within the same deadline) only so the connection goes back to the
                // pool; the status alone decides.
                let _ = tokio::time::timeout_at(deadline, response.into_body().collect()).await;
                if status.is_success() {
                    return (true, details);
                }
                format!("health endpoint answered {}", status.as_u16())
            }
            Ok(Err(SendError::Connect(_))) => "connection refused or unreachable".to_owned(),
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
            let probes = self.probes().await;
            let states = self.upstream.endpoint_report();
            let up = probes.iter().filter(|(up, _)| *up).count();
            let endpoints: Vec<Value> = probes
                .iter()
                .zip(states)
                .map(|((healthy, details), state)| {
                    let mut details = details.clone();
                    if let Value::Object(state) = state {
                        details.extend(state);
                    }
                    details.insert("health".into(), json!(if *healthy { "up" } else { "down" }));
                    Value::Object(details)
                })
                .collect();
            let source = self.upstream.source();
            let mut report = if up > 0 {
                CheckReport::up()
            } else if !source.known {
                CheckReport::down(format!("{} has not given its instances yet", source.source))
            } else if probes.is_empty() {
                CheckReport::down(format!("{} lists no instance", source.source))
            } else {
                CheckReport::down("no instance answers its health check")
            };
            report
                .details
                .insert("discovery".into(), crate::admin::discovery_report(&source));
            report.details.insert(
                "instances_up".into(),
                json!(format!("{up}/{}", probes.len())),
            );
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
