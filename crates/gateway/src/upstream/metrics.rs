//! Per-upstream metrics: attempts and their latency by status class, retries, and ejections.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    /// `2xx`…`5xx`, or why there was no response: `connect_error`, `timeout`, `body_too_large`, `error`.
    status_class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    upstream: String,
    /// `connect_error`, `reset`, `502` or `503`.
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    upstream: String,
    endpoint: String,
}

/// Upstream attempts (a retried request counts each) and their latency (to the response head) by
/// upstream and status class; retries, retries refused by the budget, and ejections.
#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    requests: Family<UpstreamLabels, Counter>,
    duration: Family<UpstreamLabels, Histogram>,
    retries: Family<RetryLabels, Counter>,
    budget_exhausted: Family<RetryLabels, Counter>,
    ejections: Family<EndpointLabels, Counter>,
}

impl UpstreamMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<UpstreamLabels, Counter>::default();
        let duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(
            platform::metrics::latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "gateway_upstream_requests",
            "Requests forwarded to upstream services",
            requests.clone(),
        );
        registry.register_with_unit(
            "gateway_upstream_request_duration",
            "Time until an upstream's response head",
            Unit::Seconds,
            duration.clone(),
        );
        let retries = Family::<RetryLabels, Counter>::default();
        let budget_exhausted = Family::<RetryLabels, Counter>::default();
        let ejections = Family::<EndpointLabels, Counter>::default();
        registry.register(
            "gateway_upstream_retries",
            "Upstream attempts repeated, by why the previous one failed",
            retries.clone(),
        );
        registry.register(
            "gateway_upstream_retry_budget_exhausted",
            "Retries not made because the retry budget was spent",
            budget_exhausted.clone(),
        );
        registry.register(
            "gateway_upstream_ejections",
            "Upstream instances taken out of rotation after consecutive failures",
            ejections.clone(),
        );
        Self {
            requests,
            duration,
            retries,
            budget_exhausted,
            ejections,
        }
    }

    pub(super) fn retry(&self, upstream: &str, reason: &str, granted: bool) {
        let labels = RetryLabels {
            upstream: upstream.to_owned(),
            reason: reason.to_owned(),
        };
        let family = if granted {
            &self.retries
        } else {
            &self.budget_exhausted
        };
        family.get_or_create(&labels).inc();
    }

    pub(super) fn ejected(&self, upstream: &str, endpoint: &str) {
        let labels = EndpointLabels {
            upstream: upstream.to_owned(),
            endpoint: endpoint.to_owned(),
        };
        self.ejections.get_or_create(&labels).inc();
    }

    /// The attempt series of one upstream, kept by status class so a request does not look them up
    /// by label.
    pub(super) fn attempts(&self, upstream: &str) -> AttemptSeries {
        AttemptSeries {
            metrics: self.clone(),
            upstream: upstream.to_owned(),
            known: Mutex::new(Vec::new()),
        }
    }
}

/// One upstream's `gateway_upstream_requests` and `…_request_duration` series by status class.
pub(crate) struct AttemptSeries {
    metrics: UpstreamMetrics,
    upstream: String,
    known: Mutex<Vec<(&'static str, Histogram, Counter)>>,
}

impl AttemptSeries {
    pub(super) fn record(&self, status_class: &'static str, elapsed: Duration) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match known.iter().position(|(class, ..)| *class == status_class) {
            Some(index) => index,
            None => {
                let labels = UpstreamLabels {
                    upstream: self.upstream.clone(),
                    status_class,
                };
                let histogram = self.metrics.duration.get_or_create(&labels).clone();
                let counter = self.metrics.requests.get_or_create(&labels).clone();
                known.push((status_class, histogram, counter));
                known.len() - 1
            }
        };
        let (_, histogram, counter) = &known[index];
        histogram.observe(elapsed.as_secs_f64());
        counter.inc();
    }
}
