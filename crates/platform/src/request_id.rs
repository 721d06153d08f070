//! Request ids: accepted from the caller's `x-request-id` or made here, echoed on the response, forwarded
//! downstream, and attached to every log line of the request through its span.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use opentelemetry::trace::TraceContextExt as _;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use uuid::Uuid;

use crate::telemetry::traces::{self, Carried};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The request id as a request extension, for handlers and the proxy.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The trace headers a request's own calls send (its span's context, or its caller's headers), as a
/// request extension for the proxy; absent when spans are not exported (the headers pass untouched).
#[derive(Debug, Clone)]
pub struct Propagation(pub Carried);

/// A caller's id is kept when it is short printable ASCII, so it cannot inject into logs or headers.
fn accept(value: &[u8]) -> Option<String> {
    let ok = !value.is_empty() && value.len() <= MAX_LEN && value.iter().all(u8::is_ascii_graphic);
    ok.then(|| String::from_utf8_lossy(value).into_owned())
}

/// A fresh id: a UUIDv7 (time-ordered to the millisecond) whose random part comes from the thread's
/// generator. `Uuid::now_v7` asks the kernel for randomness on every call (a `getrandom` syscall per
/// request) and serialises callers on a global counter, and request ids need neither.
fn new_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
    uuid.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// The id of a caller's `x-request-id` value, when it may be kept, or a fresh one.
pub fn accept_or_new(header: Option<&[u8]>) -> String {
    header.and_then(accept).unwrap_or_else(new_id)
}

/// One request's id, span and start time: what `with_request_id` keeps around a handler, for a server
/// that handles requests without a router (the gateway's direct path). The span is made only when
/// something is logged inside it ([`RequestScope::in_span`], [`RequestScope::run_in_span`]): for a
/// request that logs nothing but its completion, making a span costs more than the line itself.
pub struct RequestScope<'a> {
    id: String,
    method: Method,
    route: Cow<'a, str>,
    span: OnceLock<Span>,
    started: Instant,
    /// The trace headers to send on (see [`RequestScope::traced`]).
    propagate: Carried,
}

impl<'a> RequestScope<'a> {
    /// `route` is the route template, or the path when none matched.
    pub fn begin(id: String, method: &Method, route: impl Into<Cow<'a, str>>) -> Self {
        Self {
            id,
            method: method.clone(),
            route: route.into(),
            span: OnceLock::new(),
            started: Instant::now(),
            propagate: Carried::default(),
        }
    }

    /// Continues the caller's trace (`carried`) in `service`. When spans are exported and the caller did
    /// not sample the trace out, the request span is made now as an OpenTelemetry server span under the
    /// caller's context, and what is sent on continues that span; otherwise the caller's trace headers
    /// are sent on as they came.
    pub fn traced(
        mut self,
        service: &'static str,
        carried: Carried,
        client: Option<std::net::IpAddr>,
    ) -> Self {
        if !traces::enabled() {
            self.propagate = carried;
            return self;
        }
        // Most requests come without trace headers: nothing to parse then.
        let parent = if carried.is_empty() {
            opentelemetry::Context::new()
        } else {
            carried.extract()
        };
        let caller = parent.span().span_context().clone();
        if !traces::sampled_at_entry(&caller) {
            // No span: what is sent on says "not sampled", in the caller's trace when there is one.
            self.propagate = if caller.is_valid() && !caller.is_sampled() {
                carried
            } else {
                let trace = caller.is_valid().then(|| caller.trace_id());
                carried.with_traceparent(traces::unsampled_traceparent(trace))
            };
            return self;
        }
        // Sampled here although the caller was not (a sampler that is not parent-based): the span says so.
        let parent = if caller.is_valid() && !caller.is_sampled() {
            parent.with_remote_span_context(opentelemetry::trace::SpanContext::new(
                caller.trace_id(),
                caller.span_id(),
                opentelemetry::trace::TraceFlags::SAMPLED,
                true,
                caller.trace_state().clone(),
            ))
        } else {
            parent
        };
        let span = tracing::info_span!(
            "request",
            otel.name = format!("{} {}", self.method, self.route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = self.id.as_str(),
            method = self.method.as_str(),
            route = &*self.route,
            http.request.method = self.method.as_str(),
            http.route = &*self.route,
            http.response.status_code = tracing::field::Empty,
            client.address = tracing::field::Empty,
        );
        if let Some(client) = client {
            span.record("client.address", tracing::field::display(client));
        }
        let _ = span.set_parent(traces::enter(parent, service));
        self.propagate = Carried::inject(&span.context());
        let _ = self.span.set(span);
        self
    }

    /// The id of the request's trace when it is sampled: its latency's exemplar.
    pub fn sampled_trace_id(&self) -> Option<String> {
        traces::sampled_trace_id(self.span.get()?)
    }

    /// The trace headers the request's own calls send: its span's context, or the caller's headers.
    pub fn propagation(&self) -> &Carried {
        &self.propagate
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    fn span(&self) -> &Span {
        self.span.get_or_init(|| {
            // Plain `&str` fields are recorded as strings; `%` would send each through the formatting
            // machinery.
            // Never an OpenTelemetry span (a traced request made its span in `traced`).
            tracing::info_span!(
                target: traces::LOG_ONLY_TARGET,
                "request",
                request_id = self.id.as_str(),
                method = self.method.as_str(),
                route = &*self.route,
            )
        })
    }

    /// Runs the handling of the request with [`current`] answering its id (inside the request span when
    /// the request is traced).
    pub async fn run<F: Future>(&self, handle: F) -> F::Output {
        match self.span.get() {
            Some(span) => {
                CURRENT
                    .scope(self.id.clone(), handle.instrument(span.clone()))
                    .await
            }
            None => CURRENT.scope(self.id.clone(), handle).await,
        }
    }

    /// [`Self::run`] inside the request span, for handlers that may log anywhere.
    pub async fn run_in_span<F: Future>(&self, handle: F) -> F::Output {
        CURRENT
            .scope(self.id.clone(), handle.instrument(self.span().clone()))
            .await
    }

    /// Runs `f` inside the request span, so what it logs carries the request's id.
    pub fn in_span<T>(&self, f: impl FnOnce() -> T) -> T {
        self.span().in_scope(f)
    }

    /// When the request began.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Logs the completed request: `info`, or `error` for a 5xx.
    pub fn finish(self, status: u16) {
        let latency = self.started.elapsed();
        self.finish_after(status, latency);
    }

    /// [`Self::finish`] with the latency measured by the caller (up to the response head, as the router
    /// path measures it, rather than up to the end of its body).
    pub fn finish_after(self, status: u16, latency: std::time::Duration) {
        let latency_ms = latency.as_secs_f64() * 1000.0;
        match self.span.get() {
            Some(span) => span.in_scope(|| {
                span.record("http.response.status_code", status);
                if status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
                if status >= 500 {
                    tracing::error!(status, latency_ms, "request failed");
                } else {
                    tracing::info!(status, latency_ms, "request completed");
                }
            }),
            None => {
                let (request_id, method, route) =
                    (self.id.as_str(), self.method.as_str(), &*self.route);
                if status >= 500 {
                    tracing::error!(
                        status,
                        latency_ms,
                        request_id,
                        method,
                        route,
                        "request failed"
                    );
                } else {
                    tracing::info!(
                        status,
                        latency_ms,
                        request_id,
                        method,
                        route,
                        "request completed"
                    );
                }
            }
        }
    }
}

/// Assigns the id, opens the request span around `handle` and logs the completed request; a step of the
/// platform's one per-request middleware (`http::observe`).
pub(crate) async fn with_request_id<F, Fut>(
    service: &'static str,
    mut request: Request,
    handle: F,
) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = accept_or_new(
        request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .map(HeaderValue::as_bytes),
    );
    let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header.clone());
    request.extensions_mut().insert(RequestId(id.clone()));

    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    let mut scope = RequestScope::begin(id, request.method(), route.to_owned());
    // Without tracing the trace headers are left where they are: nothing reads or rewrites them.
    if traces::enabled() {
        let carried = Carried::from_pairs(
            request
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        );
        let client = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|axum::extract::ConnectInfo(peer)| peer.ip());
        scope = scope.traced(service, carried, client);
        request
            .extensions_mut()
            .insert(Propagation(scope.propagation().clone()));
    }
    let mut response = scope.run_in_span(handle(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);
    scope.finish(response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_distinct_version_7_uuids() {
        let a = Uuid::parse_str(&new_id()).unwrap_or_else(|e| panic!("{e}"));
        let b = Uuid::parse_str(&new_id()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
    }
}
