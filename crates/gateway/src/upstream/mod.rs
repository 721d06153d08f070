//! One upstream service as the proxy sees it: a pooled keep-alive HTTP/1.1 client, its instances
//! ([`endpoints`]), the response deadline, its circuit breaker, retry budget and metrics.
//! [`UpstreamClient::send`] is the single call every forwarded request goes through, so the breaker,
//! balancing, ejection and retries apply to every one of them.
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

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::BoxError;
use axum::body::Body;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use bytes::Bytes;
use http_body_util::LengthLimitError;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use platform::breaker::{CallOutcome, CircuitBreaker, FailureKinds};
use serde_json::Value;

use body::TrackedBody;
pub(crate) use endpoints::{Endpoint, InFlight, PoolShape};
use endpoints::{Endpoints, bit};
use retry::{RetryBudget, backoff};

pub use definition::Upstream;
pub use endpoints::OutlierConfig;
use metrics::AttemptSeries;
pub(crate) use metrics::UpstreamMetrics;
pub use retry::RetryConfig;
pub(crate) use retry::{may_repeat, may_repeat_with};

pub(crate) type HttpClient = Client<HttpConnector, Body>;

/// Longest wait for a TCP connection: an unreachable upstream should be reported as unavailable (503)
/// quickly instead of using up the caller's whole deadline and ending as a 504.
pub(crate) const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Idle pooled connections are closed after this, well before typical server keep-alive timeouts of
/// the services so the gateway rarely sends on a connection the other side is closing.
pub(crate) const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The gateway's upstream clients, shared across upstreams (each pool is keyed by host): one per
/// dedicated HTTP worker, so that a worker's pooled connections are driven by its own runtime and a
/// request never waits on another thread, plus one for callers on any other thread (tests serving the
/// router on a shared runtime, say).
#[derive(Clone)]
pub(crate) struct HttpClients(Arc<[HttpClient]>);

impl HttpClients {
    pub(crate) fn new(
        workers: NonZeroUsize,
        pool_idle_per_host: usize,
        request_timeout: Duration,
    ) -> Self {
        let client = || {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(request_timeout.min(MAX_CONNECT_TIMEOUT)));
            Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(pool_idle_per_host)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .build(connector)
        };
        Self((0..=workers.get()).map(|_| client()).collect())
    }

    /// The client of the worker running this code, or the shared one.
    fn local(&self) -> &HttpClient {
        let shared = self.0.len() - 1;
        let index = platform::http::worker_index().map_or(shared, |i| i.min(shared));
        &self.0[index]
    }
}

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
    /// The request could not be built for an instance (its URL and the path do not make a URI).
    Build(axum::http::Error),
    /// Anything else: the connection broke, the response was malformed.
    Other(BoxError),
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
    clients: HttpClients,
    timeout: Duration,
    metrics: UpstreamMetrics,
    attempts: AttemptSeries,
    breaker: CircuitBreaker,
    failures: FailureKinds,
    retry: RetryConfig,
    budget: RetryBudget,
}

/// The parts of an upstream client besides the upstream itself.
pub(crate) struct ClientParts {
    pub(crate) clients: HttpClients,
    pub(crate) timeout: Duration,
    pub(crate) metrics: UpstreamMetrics,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) failures: FailureKinds,
    pub(crate) retry: RetryConfig,
    pub(crate) outlier: OutlierConfig,
    pub(crate) pool: PoolShape,
}

impl UpstreamClient {
    pub(crate) fn new(upstream: Upstream, parts: ClientParts) -> Self {
        // The breaker's call timeout is the deadline when it is the shorter one.
        let timeout = parts.timeout.min(parts.breaker.config().timeout);
        let attempts = parts.metrics.attempts(&upstream.name);
        Self(Arc::new(Inner {
            name: upstream.name,
            endpoints: Endpoints::new(upstream.endpoints, parts.outlier, parts.pool),
            clients: parts.clients,
            timeout,
            attempts,
            metrics: parts.metrics,
            breaker: parts.breaker,
            failures: parts.failures,
            budget: RetryBudget::new(&parts.retry),
            retry: parts.retry,
        }))
    }

    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.0.breaker
    }

    pub(crate) fn name(&self) -> &str {
        &self.0.name
    }

    /// The client for a request made on this thread.
    pub(crate) fn http_client(&self) -> &HttpClient {
        self.0.clients.local()
    }

    /// Each instance's URL.
    pub(crate) fn urls(&self) -> Vec<url::Url> {
        self.0
            .endpoints
            .current()
            .iter()
            .map(|e| e.url().clone())
            .collect()
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
    pub(crate) async fn send(&self, outgoing: Outgoing) -> Result<Response<Body>, SendError> {
        let Outgoing {
            method,
            path_and_query,
            headers,
            body,
        } = outgoing;
        let repeatable = matches!(body, OutgoingBody::Buffered(_)) && may_repeat(&method, &headers);
        let mut body = body;
        let client = self.0.clients.local();
        let attempt = |endpoint: Arc<Endpoint>| {
            let attempt_body = match &mut body {
                OutgoingBody::Buffered(bytes) => Body::from(bytes.clone()),
                // Taken on the first attempt; a streamed body is never repeatable, so never retried.
                OutgoingBody::Streamed(streamed) => std::mem::take(streamed),
            };
            let request = endpoint.uri_for(path_and_query.as_ref()).map(|uri| {
                let mut request = Request::new(attempt_body);
                *request.method_mut() = method.clone();
                *request.uri_mut() = uri;
                *request.version_mut() = Version::HTTP_11;
                *request.headers_mut() = headers.clone();
                request
            });
            async move {
                match client.request(request.map_err(SendError::Build)?).await {
                    Ok(response) => Ok(response),
                    Err(e) if e.is_connect() => Err(SendError::Connect(e.into())),
                    Err(e) if caused_by_body_limit(&e) => Err(SendError::BodyTooLarge),
                    Err(e) => Err(SendError::Other(e.into())),
                }
            }
        };
        let (response, in_flight) = self.dispatch(repeatable, attempt).await?;
        Ok(response.map(|body| Body::new(TrackedBody::new(body, in_flight))))
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
        let permit = inner
            .breaker
            .try_acquire()
            .map_err(|rejected| SendError::Open {
                retry_after: rejected.retry_after,
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
            let result =
                match tokio::time::timeout_at(deadline.into(), attempt(endpoint.clone())).await {
                    Ok(result) => result,
                    Err(_) => Err(SendError::Timeout(inner.timeout)),
                };
            inner
                .attempts
                .record(status_class(&result), started.elapsed());
            let failed = inner.failures.is_failure(outcome(result.as_ref()));
            if let Some(length) = inner.endpoints.record(&list, index, failed) {
                inner.metrics.ejected(&inner.name, endpoint.url().as_str());
                tracing::warn!(
                    upstream = %inner.name,
                    endpoint = %endpoint.url(),
                    ejected_for_ms = length.as_millis() as u64,
                    "upstream instance ejected after consecutive failures"
                );
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
        Err(SendError::Other(_) | SendError::Build(_)) => "error",
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
        // The caller sent too much, or the request was unbuildable: the upstream is not to blame.
        Err(SendError::BodyTooLarge | SendError::Open { .. } | SendError::Build(_)) => {
            CallOutcome::Success
        }
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
