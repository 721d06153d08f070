//! One upstream service as the proxy sees it: its instances ([`endpoints`]), each with one pool of
//! keep-alive HTTP/1.1 connections ([`connections`]) that both proxy paths and the readiness probe send
//! on, the response deadline, its circuit breaker, retry budget and metrics.
//! [`UpstreamClient::dispatch`] is the single loop every forwarded request goes through (the router
//! path's by way of [`UpstreamClient::send`]), so the breaker, balancing, ejection and retries apply to
//! every one of them.
//!
//! The breaker is per service and sees one outcome per request (the last attempt's): a dead instance
//! whose requests are retried on another one does not count against the service. Ejection is per
//! instance and sees every attempt. Both judge an outcome by the same rule (`failure_on`, see
//! [`platform::breaker::FailureKinds`]): by default connect errors, timeouts and 502/503/504, never a 4xx
//! or a plain 500 that one request's content provoked.

mod body;
pub(crate) mod connections;
mod definition;
mod endpoints;
mod metrics;
mod retry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::BoxError;
use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, Method, Response, StatusCode};
use bytes::Bytes;
use platform::breaker::{BreakerConfig, BreakerMetrics, CallOutcome, CircuitBreaker, FailureKinds};
use platform::discovery::Snapshot;
use serde_json::Value;

use body::TrackedBody;
pub(crate) use endpoints::{Endpoint, EndpointList, InFlight, PoolShape};
use endpoints::{Endpoints, bit};
use retry::{RetryBudget, backoff};

use crate::headers::{Kind, classify};
use crate::wire::{push_header, push_length};

pub use definition::Upstream;
pub use endpoints::{Balancing, OutlierConfig};
use metrics::AttemptSeries;
pub(crate) use metrics::UpstreamMetrics;
pub use retry::RetryConfig;
pub(crate) use retry::{may_repeat, may_repeat_with};

/// Longest wait for a TCP connection: an unreachable upstream should be reported as unavailable (503)
/// quickly instead of using up the caller's whole deadline and ending as a 504.
pub(crate) const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle pooled connections are closed after this, well before typical server keep-alive timeouts of
/// the services so the gateway rarely sends on a connection the other side is closing.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why an upstream gave no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The breaker is open: nothing was sent.
    Open { retry_after: Duration },
    /// No connection could be made: the service is down or unreachable.
    Connect(BoxError),
    /// No response head before the deadline.
    Timeout(Duration),
    /// The caller's streamed body went over the limit while being forwarded.
    BodyTooLarge,
    /// The service has no instances (possible only once discovery can empty the list).
    NoInstance,
    /// Anything else: the connection broke, the response was malformed.
    Other(BoxError),
}

impl SendError {
    /// A short name of what went wrong, for a span's `error.type`.
    fn kind(&self) -> &'static str {
        match self {
            SendError::Open { .. } => "circuit_open",
            SendError::Connect(_) => "connect",
            SendError::Timeout(_) => "timeout",
            SendError::BodyTooLarge => "body_too_large",
            SendError::NoInstance => "no_instance",
            SendError::Other(_) => "transport",
        }
    }
}

/// A request's body as the upstream client gets it.
pub(crate) enum OutgoingBody {
    /// Empty, or small and read in full: it can be sent again on a retry.
    Buffered(Bytes),
    /// Streamed from the caller as it arrives: sent once and never retried, because the part already
    /// forwarded is gone.
    Streamed(Body),
}

/// A request for an upstream, before an instance is chosen: the URI is made per attempt.
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) path_and_query: Option<PathAndQuery>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: OutgoingBody,
}

#[derive(Clone)]
pub(crate) struct UpstreamClient(Arc<Inner>);

struct Inner {
    name: String,
    endpoints: Endpoints,
    timeout: Duration,
    metrics: UpstreamMetrics,
    attempts: AttemptSeries,
    breaker: CircuitBreaker,
    failures: FailureKinds,
    retry: RetryConfig,
    budget: RetryBudget,
}

/// What an upstream client is made with besides its instances: a client is kept across a reload while
/// these stay the same (its breaker state, instances and connections with it).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClientSettings {
    /// Deadline for the response head (capped by the breaker's call timeout).
    pub(crate) timeout: Duration,
    pub(crate) breaker: BreakerConfig,
    pub(crate) failures: FailureKinds,
    pub(crate) retry: RetryConfig,
    pub(crate) outlier: OutlierConfig,
    pub(crate) balancing: Balancing,
    pub(crate) pool: PoolShape,
}

/// The parts of an upstream client besides the upstream itself.
pub(crate) struct ClientParts {
    pub(crate) settings: ClientSettings,
    pub(crate) metrics: UpstreamMetrics,
    pub(crate) breaker_metrics: BreakerMetrics,
    /// The instances to start with: the configured list, or none yet when a registry gives them.
    pub(crate) initial: Snapshot,
}

impl UpstreamClient {
    pub(crate) fn new(upstream: Upstream, parts: ClientParts) -> Self {
        let ClientParts {
            settings,
            metrics,
            breaker_metrics,
            initial,
        } = parts;
        // The breaker's call timeout is the deadline when it is the shorter one.
        let timeout = settings.timeout.min(settings.breaker.timeout);
        let attempts = metrics.attempts(&upstream.name);
        let breaker = CircuitBreaker::new(
            upstream.name.clone(),
            settings.breaker,
            Some(breaker_metrics),
        );
        Self(Arc::new(Inner {
            name: upstream.name,
            endpoints: Endpoints::new(initial, settings.balancing, settings.outlier, settings.pool),
            timeout,
            attempts,
            metrics,
            breaker,
            failures: settings.failures,
            budget: RetryBudget::new(&settings.retry),
            retry: settings.retry,
        }))
    }

    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.0.breaker
    }

    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    /// The instances as they are now.
    pub(crate) fn endpoints(&self) -> EndpointList {
        self.0.endpoints.current()
    }

    /// Takes in service discovery's current set of instances.
    pub(crate) fn apply(&self, snapshot: Snapshot) {
        self.0.endpoints.apply(snapshot);
    }

    /// Where the instances come from and whether that is current, for `/readyz` and the admin view.
    pub(crate) fn source(&self) -> Arc<Snapshot> {
        self.0.endpoints.source()
    }

    /// Each instance's state, outstanding requests and ejection, for `/readyz` and the admin view.
    pub(crate) fn endpoint_report(&self) -> Vec<Value> {
        self.0.endpoints.report()
    }

    /// How long a request may wait for the response head.
    pub(crate) fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// The largest body worth buffering so the request can be retried.
    pub(crate) fn max_buffered_body_bytes(&self) -> usize {
        self.0.retry.max_buffered_body_bytes
    }

    /// Sends the request through the breaker to the least busy healthy instance and waits for the
    /// response head within the deadline, retrying on another instance when that is safe (see
    /// [`retry`]). While the breaker is open nothing is sent. The response body is left streaming: a long
    /// download is not cut off by the deadline, and only the head decides the outcome.
    ///
    /// The request goes out on the instance's pooled connections, as the direct path's do. A streamed
    /// body is sent as it arrives while the head is awaited, and after the head while the response body
    /// is read, rather than whole before the head is read: an upstream may answer before it has read the
    /// whole body, and one that streams its answer while it reads (`tests/api/proxy.rs` sends 16 MiB
    /// through a mirror) would otherwise stall once both ways' socket buffers are full.
    pub(crate) async fn send(&self, outgoing: Outgoing) -> Result<Response<Body>, SendError> {
        let Outgoing {
            method,
            path_and_query,
            headers,
            mut body,
        } = outgoing;
        let repeatable = matches!(body, OutgoingBody::Buffered(_)) && may_repeat(&method, &headers);
        let target = path_and_query.as_ref().map_or("/", PathAndQuery::as_str);
        let head = header_block(&method, &headers, &body);
        let timeout = self.0.timeout;
        let attempt = |endpoint: Arc<Endpoint>| {
            let (whole, streamed) = match &mut body {
                OutgoingBody::Buffered(bytes) => (bytes.clone(), None),
                // Taken on the first attempt; a streamed body is never repeatable, so never retried.
                OutgoingBody::Streamed(streamed) => (Bytes::new(), Some(std::mem::take(streamed))),
            };
            exchange(endpoint, &method, target, &head, whole, streamed, timeout)
        };
        let (response, in_flight) = self.dispatch(repeatable, attempt).await?;
        Ok(response.map(|body| Body::new(TrackedBody::new(body, in_flight))))
    }

    /// A bodiless `GET` of `target` on one instance, outside the breaker, balancing and retries: the
    /// readiness probe asks each instance itself, and its outcome is not a request's.
    pub(crate) async fn get(
        &self,
        endpoint: Arc<Endpoint>,
        target: &str,
    ) -> Result<Response<Body>, SendError> {
        let body = OutgoingBody::Buffered(Bytes::new());
        let head = header_block(&Method::GET, &HeaderMap::new(), &body);
        let timeout = self.0.timeout;
        exchange(
            endpoint,
            &Method::GET,
            target,
            &head,
            Bytes::new(),
            None,
            timeout,
        )
        .await
    }

    /// The breaker, balancing, deadline, ejection and retry loop around `attempt`, which sends the
    /// request once to the instance it is given. `repeatable` says whether the request may be sent
    /// again. The response comes with its instance's in-flight count, to keep while its body streams.
    pub(crate) async fn dispatch<R, F, Fut>(
        &self,
        repeatable: bool,
        mut attempt: F,
    ) -> Result<(R, InFlight), SendError>
    where
        R: AttemptResponse,
        F: FnMut(Arc<Endpoint>) -> Fut,
        Fut: Future<Output = Result<R, SendError>>,
    {
        let inner = &*self.0;
        let permit = inner.breaker.try_acquire().map_err(|rejected| {
            let refused = SendError::Open {
                retry_after: rejected.retry_after,
            };
            if let Some(span) = attempt_span(&inner.name, None, 0) {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", refused.kind());
            }
            refused
        })?;
        let mut started = Instant::now();
        let deadline = started + inner.timeout;
        inner.budget.deposit();
        let list = inner.endpoints.current();
        let mut tried = 0u64;
        let mut retries = 0u32;
        let result = loop {
            let Some(index) = inner.endpoints.pick(&list, tried) else {
                break Err(SendError::NoInstance);
            };
            tried |= bit(index);
            let endpoint = &list[index];
            let in_flight = endpoint.start();
            if retries > 0 {
                started = Instant::now();
            }
            let span = attempt_span(&inner.name, Some(endpoint), retries);
            let call = tokio::time::timeout_at(deadline.into(), attempt(endpoint.clone()));
            let called = match &span {
                Some(span) => tracing::Instrument::instrument(call, span.clone()).await,
                None => call.await,
            };
            let result = match called {
                Ok(result) => result,
                Err(_) => Err(SendError::Timeout(inner.timeout)),
            };
            if let Some(span) = &span {
                match &result {
                    Ok(response) => {
                        span.record("http.response.status_code", response.status().as_u16());
                        if response.status().is_server_error() {
                            span.record("otel.status_code", "ERROR");
                        }
                    }
                    Err(error) => {
                        span.record("otel.status_code", "ERROR");
                        span.record("error.type", error.kind());
                    }
                }
            }
            inner
                .attempts
                .record(status_class(&result), started.elapsed());
            let failed = inner.failures.is_failure(outcome(result.as_ref()));
            if let Some(length) = inner.endpoints.record(&list, index, failed) {
                inner.metrics.ejected(&inner.name, endpoint.url().as_str());
                // Inside the attempt's span, so the ejection shows in the trace of the request that
                // caused it.
                let ejected = || {
                    tracing::warn!(
                        upstream = %inner.name,
                        endpoint = %endpoint.url(),
                        ejected_for_ms = length.as_millis() as u64,
                        "upstream instance ejected after consecutive failures"
                    );
                };
                match &span {
                    Some(span) => span.in_scope(ejected),
                    None => ejected(),
                }
            }
            if let Some(reason) = retry_reason(&result).filter(|_| repeatable)
                && retries < inner.retry.max_retries
            {
                retries += 1;
                let wait = backoff(&inner.retry, retries);
                // A retry that cannot finish before the deadline only delays the answer.
                let in_time = Instant::now() + wait < deadline;
                let granted = in_time && inner.budget.withdraw();
                inner.metrics.retry(&inner.name, reason, granted);
                if granted {
                    drop((result, in_flight));
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            break result.map(|response| (response, in_flight));
        };
        permit.record(
            inner
                .failures
                .is_failure(outcome(result.as_ref().map(|(r, _)| r))),
        );
        result
    }
}

/// The client span of one attempt on `endpoint` (none: the breaker refused the call), when the request is
/// traced: the upstream, the instance, and how many times the request was sent before.
fn attempt_span(
    upstream: &str,
    endpoint: Option<&Endpoint>,
    resends: u32,
) -> Option<tracing::Span> {
    if !platform::telemetry::traces::in_traced_span() {
        return None;
    }
    let url = endpoint.map(|endpoint| endpoint.url());
    Some(tracing::info_span!(
        "upstream",
        otel.name = format!("upstream {upstream}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        upstream,
        server.address = url.and_then(|url| url.host_str()).unwrap_or_default(),
        server.port = url.and_then(|url| url.port_or_known_default()).unwrap_or_default(),
        http.request.resend_count = resends,
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    ))
}

/// What the retry loop needs to know of an upstream's answer.
pub(crate) trait AttemptResponse {
    fn status(&self) -> StatusCode;
}

impl<B> AttemptResponse for Response<B> {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
}

/// Why a failed attempt may be repeated, or `None` when it may not be. Connect errors and 502/503
/// mean the request was not processed. A connection reset before any response (an instance going away
/// under load) may have been processed, which only requests safe to repeat tolerate — and only those are
/// ever retried. Timeouts are not retried: the deadline is spent.
fn retry_reason<R: AttemptResponse>(result: &Result<R, SendError>) -> Option<&'static str> {
    match result {
        Err(SendError::Connect(_)) => Some("connect_error"),
        Err(SendError::Other(_)) => Some("reset"),
        Ok(response) if response.status() == StatusCode::BAD_GATEWAY => Some("502"),
        Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => Some("503"),
        _ => None,
    }
}

fn status_class<R: AttemptResponse>(result: &Result<R, SendError>) -> &'static str {
    match result {
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
        Err(SendError::NoInstance) => "no_instance",
        Err(SendError::Open { .. }) => "rejected",
    }
}

/// What an attempt amounted to. Judged against `gateway.circuit_breaker.failure_on`, it is the one rule
/// for both the breaker (the request's last attempt) and the instance's outlier health (every attempt),
/// on both proxy paths, since both go through [`UpstreamClient::dispatch`].
fn outcome<R: AttemptResponse>(result: Result<&R, &SendError>) -> CallOutcome {
    match result {
        Ok(response) => CallOutcome::Status(response.status().as_u16()),
        Err(SendError::Connect(_) | SendError::NoInstance) => CallOutcome::ConnectError,
        Err(SendError::Timeout(_)) => CallOutcome::Timeout,
        // The caller sent too much: the upstream is not to blame.
        Err(SendError::BodyTooLarge | SendError::Open { .. }) => CallOutcome::Success,
        Err(SendError::Other(_)) => CallOutcome::OtherError,
    }
}

/// One request to `endpoint` with the router path's head (`target` after the instance's base path,
/// then `head`): a `whole` body goes out with the head, a `streamed` one as chunks.
async fn exchange(
    endpoint: Arc<Endpoint>,
    method: &Method,
    target: &str,
    head: &[u8],
    whole: Bytes,
    streamed: Option<Body>,
    timeout: Duration,
) -> Result<Response<Body>, SendError> {
    let line = connections::request_line(method, &endpoint, target.as_bytes());
    let response =
        connections::attempt(endpoint, method, [&line, head, &whole], streamed, timeout).await?;
    body::into_http(response)
}

/// The headers of a router-path request after its request line and `Host`, through the blank line:
/// those of `headers` (which the router path has already rid of hop-by-hop ones) but their own framing
/// and `Host`, which the request line and this body's framing replace. A body given whole is sent with
/// its length (none for an empty one of a method that expects no content, RFC 9110 §8.6, as hyper's
/// client does); a streamed one is chunked.
fn header_block(method: &Method, headers: &HeaderMap, body: &OutgoingBody) -> Vec<u8> {
    let mut head = Vec::with_capacity(512);
    for (name, value) in headers {
        let own = matches!(
            classify(name.as_str().as_bytes()),
            Kind::ContentLength | Kind::TransferEncoding | Kind::Host
        );
        if !own {
            push_header(&mut head, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    match body {
        OutgoingBody::Buffered(bytes)
            if bytes.is_empty()
                && matches!(
                    *method,
                    Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
                ) => {}
        OutgoingBody::Buffered(bytes) => push_length(&mut head, bytes.len() as u64),
        OutgoingBody::Streamed(_) => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    head.extend_from_slice(b"\r\n");
    head
}
