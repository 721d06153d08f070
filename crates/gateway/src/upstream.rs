//! One upstream service as the proxy sees it: a pooled keep-alive HTTP/1.1 client, the base URL, the
//! response deadline, its circuit breaker and per-upstream metrics. [`UpstreamClient::send`] is the
//! single call every forwarded request goes through, so the breaker wraps every one of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{Request, Response, Uri};
use http_body_util::LengthLimitError;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::breaker::{CallOutcome, CircuitBreaker, FailureKinds};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::config::Upstream;

pub(crate) type HttpClient = Client<HttpConnector, Body>;

/// Longest wait for a TCP connection: an unreachable upstream should be reported as unavailable (503)
/// quickly instead of using up the caller's whole deadline and ending as a 504.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle pooled connections are closed after this, well before typical server keep-alive timeouts of
/// the services so the gateway rarely sends on a connection the other side is closing.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The one client the gateway shares across upstreams; its pool is keyed by host.
pub(crate) fn http_client(pool_idle_per_host: usize, request_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(request_timeout.min(MAX_CONNECT_TIMEOUT)));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool_idle_per_host)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(connector)
}

/// Why an upstream gave no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The breaker is open: nothing was sent.
    Open { retry_after: Duration },
    /// No connection could be made: the service is down or unreachable.
    Connect(hyper_util::client::legacy::Error),
    /// No response head before the deadline.
    Timeout(Duration),
    /// The caller's streamed body went over the limit while being forwarded.
    BodyTooLarge,
    /// Anything else: the connection broke, the response was malformed.
    Other(hyper_util::client::legacy::Error),
}

#[derive(Clone)]
pub(crate) struct UpstreamClient(Arc<Inner>);

struct Inner {
    upstream: Upstream,
    client: HttpClient,
    timeout: Duration,
    metrics: UpstreamMetrics,
    breaker: CircuitBreaker,
    failures: FailureKinds,
}

/// The parts of an upstream client besides the upstream itself.
pub(crate) struct ClientParts {
    pub(crate) client: HttpClient,
    pub(crate) timeout: Duration,
    pub(crate) metrics: UpstreamMetrics,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) failures: FailureKinds,
}

impl UpstreamClient {
    pub(crate) fn new(upstream: Upstream, parts: ClientParts) -> Self {
        // The breaker's call timeout is the deadline when it is the shorter one.
        let timeout = parts.timeout.min(parts.breaker.config().timeout);
        Self(Arc::new(Inner {
            upstream,
            client: parts.client,
            timeout,
            metrics: parts.metrics,
            breaker: parts.breaker,
            failures: parts.failures,
        }))
    }

    pub(crate) fn base_url(&self) -> &str {
        self.0.upstream.base_url.as_str()
    }

    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.0.breaker
    }

    pub(crate) fn name(&self) -> &str {
        &self.0.upstream.name
    }

    /// The upstream URI for a request path: the base URL's path prefix, then the request's path and query.
    pub(crate) fn uri_for(
        &self,
        path_and_query: Option<&PathAndQuery>,
    ) -> Result<Uri, axum::http::Error> {
        let base = &self.0.upstream.base_url;
        let prefix = base.path().trim_end_matches('/');
        let rest = path_and_query.map_or("/", PathAndQuery::as_str);
        let authority = match base.port() {
            Some(port) => format!("{}:{port}", base.host_str().unwrap_or_default()),
            None => base.host_str().unwrap_or_default().to_owned(),
        };
        Uri::builder()
            .scheme(base.scheme())
            .authority(authority)
            .path_and_query(format!("{prefix}{rest}"))
            .build()
    }

    /// Sends the request through the breaker and waits for the response head within the deadline. While
    /// the breaker is open nothing is sent. The response body is left streaming: a long download is not
    /// cut off by the deadline, and only the head decides the breaker's outcome.
    pub(crate) async fn send(
        &self,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let permit = self
            .0
            .breaker
            .try_acquire()
            .map_err(|rejected| SendError::Open {
                retry_after: rejected.retry_after,
            })?;
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.0.timeout, self.0.client.request(request)).await;
        let result = match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(SendError::Connect(e)),
            Ok(Err(e)) if caused_by_body_limit(&e) => Err(SendError::BodyTooLarge),
            Ok(Err(e)) => Err(SendError::Other(e)),
            Err(_) => Err(SendError::Timeout(self.0.timeout)),
        };
        let status_class = match &result {
            Ok(response) => match response.status().as_u16() {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
            Err(SendError::Connect(_)) => "connect_error",
            Err(SendError::Timeout(_)) => "timeout",
            Err(SendError::BodyTooLarge) => "body_too_large",
            Err(SendError::Other(_)) => "error",
            Err(SendError::Open { .. }) => "rejected",
        };
        self.0
            .metrics
            .record(self.name(), status_class, started.elapsed());
        permit.record(self.0.failures.is_failure(breaker_outcome(&result)));
        result
    }
}

fn breaker_outcome(result: &Result<Response<Incoming>, SendError>) -> CallOutcome {
    match result {
        Ok(response) if response.status().is_server_error() => CallOutcome::ServerError,
        Ok(response) if response.status().is_client_error() => CallOutcome::ClientError,
        Ok(_) => CallOutcome::Success,
        Err(SendError::Connect(_)) => CallOutcome::ConnectError,
        Err(SendError::Timeout(_)) => CallOutcome::Timeout,
        // The caller sent too much: the upstream is not to blame.
        Err(SendError::BodyTooLarge | SendError::Open { .. }) => CallOutcome::ClientError,
        Err(SendError::Other(_)) => CallOutcome::OtherError,
    }
}

fn caused_by_body_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
    /// `2xx`…`5xx`, or why there was no response: `connect_error`, `timeout`, `body_too_large`, `error`.
    status_class: String,
}

/// Upstream requests and their latency (to the response head) by upstream and status class.
#[derive(Clone)]
pub(crate) struct UpstreamMetrics {
    requests: Family<UpstreamLabels, Counter>,
    duration: Family<UpstreamLabels, Histogram>,
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
        Self { requests, duration }
    }

    fn record(&self, upstream: &str, status_class: &str, elapsed: Duration) {
        let labels = UpstreamLabels {
            upstream: upstream.to_owned(),
            status_class: status_class.to_owned(),
        };
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }
}
