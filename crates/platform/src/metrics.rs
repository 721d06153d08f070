//! Prometheus metrics: one registry per service (no process-wide globals, so several services can share a
//! process), HTTP request metrics by route template, and process metrics read from `/proc` on each scrape.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets in seconds, from 250 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fresh registry whose series all carry `service="<name>"`.
pub fn registry(service: &str) -> Registry {
    let mut registry = Registry::with_labels(
        [(
            std::borrow::Cow::Borrowed("service"),
            std::borrow::Cow::Owned(service.to_owned()),
        )]
        .into_iter(),
    );
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

fn latency_with_exemplars() -> LatencyHistogram {
    HistogramWithExemplars::new(LATENCY_BUCKETS.iter().copied())
}

/// The finished registry, shared by the `/metrics` handler.
#[derive(Clone)]
pub struct MetricsHandle(Arc<Registry>);

impl MetricsHandle {
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(registry))
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.0);
        out
    }

    /// The OpenMetrics exposition, with the trace exemplars of the latency histograms.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0);
        out
    }
}

const OPENMETRICS: &str = "application/openmetrics-text";

/// The trace a latency observation was part of: its exemplar in the OpenMetrics exposition.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceExemplar {
    trace_id: String,
}

/// A latency histogram whose buckets keep the last sampled trace that fell in them.
pub type LatencyHistogram = HistogramWithExemplars<TraceExemplar>;

/// Records `elapsed` in `histogram`, with the trace it belongs to (a sampled one) as its exemplar.
pub fn observe_latency(histogram: &LatencyHistogram, elapsed: Duration, trace_id: Option<String>) {
    histogram.observe(
        elapsed.as_secs_f64(),
        trace_id.map(|trace_id| TraceExemplar { trace_id }),
        None,
    );
}

/// `/metrics`: the Prometheus text format, or OpenMetrics (with trace exemplars) for a scraper that asks for
/// it in `Accept`, as Prometheus does when exemplar storage is on.
pub async fn metrics_handler(
    State(metrics): State<MetricsHandle>,
    headers: axum::http::HeaderMap,
) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains(OPENMETRICS));
    let (body, content_type) = if openmetrics {
        (
            metrics.render_openmetrics(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The method as a label: borrowed for the standard methods, so only an extension method allocates.
type MethodLabel = Cow<'static, str>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: MethodLabel,
    route: String,
}

fn method_label(method: &Method) -> MethodLabel {
    match method.as_str() {
        "GET" => Cow::Borrowed("GET"),
        "POST" => Cow::Borrowed("POST"),
        "PUT" => Cow::Borrowed("PUT"),
        "PATCH" => Cow::Borrowed("PATCH"),
        "DELETE" => Cow::Borrowed("DELETE"),
        "HEAD" => Cow::Borrowed("HEAD"),
        "OPTIONS" => Cow::Borrowed("OPTIONS"),
        other => Cow::Owned(other.to_owned()),
    }
}

/// Requests by method, route template and status; latency by method and route; requests in flight. Also
/// the name of the service they are served by, which its request spans carry.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, LatencyHistogram>,
    in_flight: Gauge,
    pub(crate) service: &'static str,
}

impl HttpMetrics {
    /// The HTTP metrics of `service`, and the process's trace export counters and configuration reload
    /// metrics beside them.
    pub fn register(registry: &mut Registry, service: &'static str) -> Self {
        crate::telemetry::traces::register_metrics(registry);
        crate::config::register_reload_metrics(registry);
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = Family::<RouteLabels, LatencyHistogram>::new_with_constructor(
            latency_with_exemplars as fn() -> LatencyHistogram,
        );
        let in_flight = Gauge::default();
        registry.register("http_requests", "HTTP requests handled", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency",
            Unit::Seconds,
            duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            in_flight.clone(),
        );
        Self {
            requests,
            duration,
            in_flight,
            service,
        }
    }
}

impl HttpMetrics {
    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlightRequest {
        self.in_flight.inc();
        InFlightRequest(self.in_flight.clone())
    }

    /// The latency histogram and the request counter of one method, route and status, for a caller
    /// that keeps them rather than looking them up by label on every request.
    pub fn series(&self, method: &Method, route: &str, status: u16) -> (LatencyHistogram, Counter) {
        let labels = RouteLabels {
            method: method_label(method),
            route: route.to_owned(),
        };
        let histogram = self.duration.get_or_create(&labels).clone();
        let RouteLabels { method, route } = labels;
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                method,
                route,
                status,
            })
            .clone();
        (histogram, counter)
    }

    /// Records one finished request: its latency by method and route (with its trace, when sampled, as the
    /// exemplar), and its count by status.
    pub fn record(
        &self,
        method: &Method,
        route: &str,
        status: u16,
        elapsed: Duration,
        trace_id: Option<String>,
    ) {
        let (latency, requests) = self.series(method, route, status);
        observe_latency(&latency, elapsed, trace_id);
        requests.inc();
    }
}

/// A request counted in `http_requests_in_flight` until dropped.
pub struct InFlightRequest(Gauge);

impl Drop for InFlightRequest {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Records [`HttpMetrics`] around `handle`; unmatched paths are one series so scanners cannot explode them.
/// A step of the platform's one per-request middleware (`http::observe`).
pub(crate) async fn tracked<F, Fut>(metrics: &HttpMetrics, request: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let in_flight = metrics.in_flight();
    let started = Instant::now();
    let response = handle(request).await;
    drop(in_flight);
    // Inside the request's span (see `http::observe`): its trace, when sampled, is the exemplar.
    metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
        crate::telemetry::traces::sampled_trace_id(&tracing::Span::current()),
    );
    response
}

/// CPU time, memory and file descriptors of this process, read at scrape time.
#[derive(Debug)]
struct ProcessCollector;

/// `USER_HZ`, the unit of `/proc/self/stat` times; fixed at 100 by the Linux ABI on every mainstream arch.
const TICKS_PER_SECOND: f64 = 100.0;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = read_process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size",
                stats.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size",
                stats.virtual_bytes,
            ),
            ("process_open_fds", "Open file descriptors", stats.open_fds),
            (
                "process_start_time_seconds",
                "Start time since the Unix epoch",
                stats.start_time_seconds,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    start_time_seconds: f64,
}

fn read_process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|v| v.parse::<f64>().ok());
    // Indices are the man page's field numbers minus 3 (pid and comm precede, and it counts from 1).
    let cpu_seconds = (ticks(11)? + ticks(12)?) / TICKS_PER_SECOND;
    let start_ticks = ticks(19)?;
    let virtual_bytes = ticks(20)?;

    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let resident_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: resident_kib * 1024.0,
        virtual_bytes,
        open_fds,
        start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_metrics_are_exported() {
        let text = MetricsHandle::new(registry("test")).render();
        assert!(
            text.contains("process_cpu_seconds_total{service=\"test\"}"),
            "{text}"
        );
        assert!(
            text.contains("process_resident_memory_bytes{service=\"test\"}"),
            "{text}"
        );
    }
}
