//! The direct path: every connection is read here first, and a request for a proxied route that is
//! plain HTTP/1.1 with a small body (or none) is forwarded without building an `http::Request` or a
//! router call: its head is read with `httparse` into offsets of the connection's buffer
//! ([`crate::wire`]), checked (access policy, rate limit) with the same code as the router path's
//! handler, written to an upstream keep-alive connection of this worker from the instance's one pool,
//! which the router path uses too ([`crate::upstream::connections`]), through the same breaker,
//! balancing, retry and ejection loop
//! ([`crate::upstream::UpstreamClient::dispatch`]), and the response head is rewritten by the one header
//! policy ([`crate::headers`]: hop-by-hop and replaced headers out, security, request-id and rate-limit
//! headers in) while its body is passed on as it comes.
//!
//! Anything else — operations routes, docs, admin, unknown paths, HTTP/1.0, `Expect`, `Upgrade`,
//! chunked or large request bodies, CORS requests when CORS is configured, heads the parser refuses —
//! hands the connection, with what was read of it, to hyper and the router for the rest of its life
//! (the router path, [`super::routed`]), so those keep their full behaviour. Both paths log the same
//! line and record the same metrics.
//!
//! Both live under the same [`ConnectionLimits`]: reads here wait as long as the listener's guard
//! would let hyper wait (keep-alive idle, head, body), writes carry the write timeout, and a head
//! that breaks a limit — too large, too long a target, too slow — is handed over with what came of
//! it, so the guard answers it exactly as on the router path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use platform::http::{
    ChunkedScanner, ConnectionHandler, ConnectionLimits, GuardedIo, Prefixed, TimedIo,
};
use platform::metrics::{HttpMetrics, LatencyHistogram, observe_latency};
use platform::request_id::RequestScope;
use platform::telemetry::traces::Carried;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{Target, proxy_error};
use crate::compression::{self, Encoding};
use crate::headers::{
    Kind, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, dropped_from_response,
    security_header_lines,
};
use crate::policy;
use crate::ratelimit::{self, Admission};
use crate::routes::Route;
use crate::upstream::connections::{self as client, UpstreamResponse};
use crate::upstream::{Endpoint, InFlight, SendError, may_repeat_with};
use crate::wire::{self, Framing, RawHeader, RequestHead, RequestParse, push_header, push_length};
use platform::route_pattern::request_segments;

/// Read size.
const READ_BUFFER: usize = 8 * 1024;

/// The direct path's routes and what it hands the rest to; cheap to clone. A reload replaces the routes
/// ([`DirectPath::replace`]); each request reads the ones in force when its head arrived.
#[derive(Clone)]
pub(crate) struct DirectPath(Arc<ArcSwap<Shared>>);

struct Shared {
    routes: Vec<DirectRoute>,
    router: Router,
    metrics: HttpMetrics,
    /// With CORS configured, browser requests (those with `Origin`) go to the router's CORS layer.
    cors: bool,
    /// The security headers of an API response, as header lines.
    security_headers: Vec<u8>,
    limits: ConnectionLimits,
}

struct DirectRoute {
    /// The prefix, which is also the router's template for the prefix itself.
    prefix: &'static str,
    /// The router's template for the paths below the prefix.
    rest: String,
    target: Target,
    /// The request metrics series met so far, by template (exact or rest), method and status.
    series: Mutex<Vec<SeriesKey>>,
}

/// A request metrics series and what selects it.
struct SeriesKey {
    exact: bool,
    method: Method,
    status: u16,
    latency: LatencyHistogram,
    requests: Counter,
}

impl DirectRoute {
    /// The route template for metrics and logs.
    fn label(&self, exact: bool) -> &str {
        if exact { self.prefix } else { &self.rest }
    }

    /// Records a finished request in its series, looked up by label only the first time.
    fn record(
        &self,
        metrics: &HttpMetrics,
        exact: bool,
        method: &Method,
        status: u16,
        elapsed: Duration,
        trace_id: Option<String>,
    ) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match series
            .iter()
            .position(|s| s.exact == exact && s.status == status && s.method == method)
        {
            Some(index) => index,
            None => {
                let (latency, requests) = metrics.series(method, self.label(exact), status);
                series.push(SeriesKey {
                    exact,
                    method: method.clone(),
                    status,
                    latency,
                    requests,
                });
                series.len() - 1
            }
        };
        observe_latency(&series[index].latency, elapsed, trace_id);
        series[index].requests.inc();
    }
}

impl DirectPath {
    pub(crate) fn new(
        routes: Vec<(Route, Target)>,
        router: Router,
        metrics: HttpMetrics,
        cors: bool,
        limits: ConnectionLimits,
    ) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Shared {
            routes: direct_routes(routes),
            router,
            metrics,
            cors,
            security_headers: security_header_lines(),
            limits,
        })))
    }

    /// Puts a reloaded configuration's routes in force for every request from now on, connections
    /// already open included.
    pub(crate) fn replace(&self, routes: Vec<(Route, Target)>, cors: bool) {
        let running = self.0.load();
        self.0.store(Arc::new(Shared {
            routes: direct_routes(routes),
            router: running.router.clone(),
            metrics: running.metrics.clone(),
            cors,
            security_headers: running.security_headers.clone(),
            limits: running.limits,
        }));
    }
}

fn direct_routes(routes: Vec<(Route, Target)>) -> Vec<DirectRoute> {
    routes
        .into_iter()
        .map(|(route, target)| DirectRoute {
            prefix: route.prefix,
            rest: route.rest_template(),
            target,
            series: Mutex::new(Vec::new()),
        })
        .collect()
}

impl ConnectionHandler for DirectPath {
    fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let shared = self.0.load_full();
        let connection = Connection {
            stream: TimedIo::new(stream, shared.limits.write_timeout),
            head_started: Some(tokio::time::Instant::now()),
            current: self.0.clone(),
            shared,
            peer,
            peer_ip: peer.ip().to_string(),
            buf: BytesMut::with_capacity(READ_BUFFER),
            headers: Vec::new(),
            forward: Vec::new(),
            out: Vec::new(),
        };
        Box::pin(connection.run(shutdown))
    }
}

/// One client connection on the direct path, with buffers reused by each of its requests.
struct Connection {
    /// The routes in force, read again for each request.
    current: Arc<ArcSwap<Shared>>,
    /// Those the request being served was admitted under.
    shared: Arc<Shared>,
    stream: TimedIo<TcpStream>,
    /// When the head being read began (the accept, for the first); `None` between requests.
    head_started: Option<tokio::time::Instant>,
    peer: SocketAddr,
    /// The peer's address as `X-Forwarded-For` names it.
    peer_ip: String,
    /// What was read from the client and not consumed yet.
    buf: BytesMut,
    /// The current request's headers, as offsets into `buf`.
    headers: Vec<RawHeader>,
    /// The request as forwarded, after its request line.
    forward: Vec<u8>,
    /// The response head being written.
    out: Vec<u8>,
}

/// How an exchange ended.
struct Outcome {
    status: u16,
    /// The connection can take another request.
    keep_alive: bool,
    /// When the response head was ready to write: the end of the request's latency, as the router
    /// path measures it (its handler returns the response before hyper writes it).
    ready: Instant,
}

impl Connection {
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            let head = match self.next_head(&shutdown).await {
                Some(RequestParse::Complete(head)) => head,
                Some(_) => return self.hand_over(shutdown).await,
                None => return,
            };
            self.shared = self.current.load_full();
            let Some((index, exact)) = self.shared.route_for(&self.buf[head.path.clone()]) else {
                return self.hand_over(shutdown).await;
            };
            let target = &self.shared.routes[index].target;
            let body_fits = head.content_length <= target.max_body_bytes
                && head.content_length <= target.upstream.max_buffered_body_bytes();
            let browser = self.shared.cors && self.headers.iter().any(|h| h.kind == Kind::Origin);
            if !body_fits || browser {
                return self.hand_over(shutdown).await;
            }
            let total = head.len + head.content_length;
            while self.buf.len() < total {
                self.buf.reserve(total - self.buf.len());
                let deadline = self.stream.last_progress() + self.shared.limits.body_read_timeout;
                self.stream.set_read_deadline(Some(deadline));
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
            self.head_started = None;
            let close = head.close || shutdown.is_cancelled();
            let outcome = self.exchange(index, exact, &head, close).await;
            let _ = self.buf.split_to(total);
            if !outcome.keep_alive || close {
                return;
            }
        }
    }

    /// Reads until a request head is complete: `None` when the client closed, or stayed idle past the
    /// keep-alive timeout, or shutdown came while the connection was idle; else what the parser made of
    /// it, and `General` for a head that breaks a limit (the guard answers it).
    async fn next_head(&mut self, shutdown: &CancellationToken) -> Option<RequestParse> {
        let limits = self.shared.limits;
        loop {
            if !self.buf.is_empty() {
                let parsed = wire::parse_request(&self.buf, &mut self.headers);
                let within = match &parsed {
                    RequestParse::Partial => limits.check_partial(&self.buf),
                    RequestParse::Complete(head) => {
                        limits.check_complete(head.len, head.target.len())
                    }
                    RequestParse::General => Ok(()),
                };
                match (parsed, within) {
                    (_, Err(_)) => return Some(RequestParse::General),
                    (RequestParse::Partial, Ok(())) => {
                        self.head_started
                            .get_or_insert_with(tokio::time::Instant::now);
                    }
                    (parsed, Ok(())) => return Some(parsed),
                }
            }
            let deadline = match self.head_started {
                Some(started) => started + limits.header_read_timeout,
                None => self.stream.last_progress() + limits.keep_alive_timeout,
            };
            self.stream.set_read_deadline(Some(deadline));
            self.buf.reserve(READ_BUFFER);
            let read = if self.buf.is_empty() {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return None,
                    read = self.stream.read_buf(&mut self.buf) => read,
                }
            } else {
                self.stream.read_buf(&mut self.buf).await
            };
            match read {
                Ok(0) => return None,
                Ok(_) => {}
                // Part of a head, then silence: the guard tells the client why it closes.
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut && !self.buf.is_empty() => {
                    return Some(RequestParse::General);
                }
                Err(_) => return None,
            }
        }
    }

    /// The rest of the connection, from the request just read on, goes to hyper and the router, under
    /// the same limits, the head being read counted from when it began.
    async fn hand_over(self, shutdown: CancellationToken) {
        let io = Prefixed::new(self.buf.freeze(), self.stream.into_inner());
        let mut io = GuardedIo::new(io, self.shared.limits);
        if let Some(started) = self.head_started {
            io = io.head_started_at(started);
        }
        platform::http::serve_http1(io, self.peer, self.shared.router.clone(), shutdown).await;
    }

    /// One request on the direct path: its id, span, log line and metrics around [`Self::respond`].
    async fn exchange(
        &mut self,
        index: usize,
        exact: bool,
        head: &RequestHead,
        close: bool,
    ) -> Outcome {
        let shared = self.shared.clone();
        let route = &shared.routes[index];
        let label = route.label(exact);
        let id = platform::request_id::accept_or_new(self.header(Kind::RequestId));
        let carried = Carried::from_pairs(
            self.headers
                .iter()
                .filter(|h| h.kind == Kind::TraceContext)
                .filter_map(|h| {
                    let name = std::str::from_utf8(&self.buf[h.name.clone()]).ok()?;
                    Some((name, &self.buf[h.value.clone()]))
                }),
        );
        let scope = RequestScope::begin(id, &head.method, label).traced(
            crate::NAME,
            carried,
            Some(self.peer.ip()),
        );
        let in_flight = shared.metrics.in_flight();
        let outcome = scope
            .run(self.respond(&route.target, head, &scope, close))
            .await;
        drop(in_flight);
        let latency = outcome.ready.saturating_duration_since(scope.started());
        route.record(
            &shared.metrics,
            exact,
            &head.method,
            outcome.status,
            latency,
            scope.sampled_trace_id(),
        );
        scope.finish_after(outcome.status, latency);
        outcome
    }

    /// The first value of a header the request carries.
    fn header(&self, kind: Kind) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.kind == kind)
            .map(|h| &self.buf[h.value.clone()])
    }

    async fn respond(
        &mut self,
        target: &Target,
        head: &RequestHead,
        scope: &RequestScope<'_>,
        close: bool,
    ) -> Outcome {
        let id = scope.id();
        // The target passed the URI parser, so it is ASCII.
        let path = std::str::from_utf8(&self.buf[head.path.clone()]).unwrap_or("/");
        let segments = request_segments(path);
        let authorization = self
            .header(Kind::Authorization)
            .and_then(|v| std::str::from_utf8(v).ok());
        let checked = policy::check(&target.policy, &head.method, &segments, authorization)
            .await
            .map(|claims| {
                let key = ratelimit::bucket_for(
                    &target.limiter,
                    claims.as_ref(),
                    Some(self.peer.ip()),
                    &head.method,
                    &segments,
                );
                (claims, key)
            });
        drop(segments);
        let key = match checked {
            Ok((_, key)) => key,
            Err(refusal) => {
                let refusal = scope.in_span(|| refusal.into_response(&head.method, path));
                return self.write_generated(refusal, head, id, None, close).await;
            }
        };
        let admission = match ratelimit::admit(&target.limiter, key).await {
            Ok(admission) => admission,
            Err(refusal) => return self.write_generated(refusal, head, id, None, close).await,
        };

        self.build_forward(head, id, scope.propagation());
        let repeatable = may_repeat_with(&head.method, self.header(Kind::IdempotencyKey).is_some());
        let method = &head.method;
        let target_bytes = &self.buf[head.target.clone()];
        let forward = &self.forward;
        let timeout = target.upstream.timeout();
        let attempt = |endpoint: Arc<Endpoint>| {
            let line = client::request_line(method, &endpoint, target_bytes);
            async move { client::attempt(endpoint, method, [&line, forward], None, timeout).await }
        };
        let result = target.upstream.dispatch(repeatable, attempt).await;
        match result {
            Ok((response, in_flight)) => {
                self.relay(response, in_flight, scope, &admission, close)
                    .await
            }
            // An open breaker's rejection logs nothing at info: not worth a span, and it is the error
            // answered most often.
            Err(error @ SendError::Open { .. }) => {
                let refusal = proxy_error(target, error).into_response();
                self.write_generated(refusal, head, id, Some(&admission), close)
                    .await
            }
            Err(error) => {
                let refusal = scope.in_span(|| proxy_error(target, error).into_response());
                self.write_generated(refusal, head, id, Some(&admission), close)
                    .await
            }
        }
    }

    /// The request's headers and body as the upstream gets them (after the request line and `Host`):
    /// hop-by-hop, forwarding and trace headers replaced, the request id set.
    fn build_forward(&mut self, head: &RequestHead, id: &str, trace: &Carried) {
        let buf = &self.buf;
        let forward = &mut self.forward;
        forward.clear();
        let mut forwarded_for: Vec<&[u8]> = Vec::new();
        let mut host = None;
        for header in &self.headers {
            match header.kind {
                Kind::HopByHop
                | Kind::Connection
                | Kind::RequestId
                | Kind::ForwardedOther
                | Kind::TraceContext => {}
                Kind::Host => host = Some(&buf[header.value.clone()]),
                Kind::ForwardedFor => forwarded_for.push(&buf[header.value.clone()]),
                _ => push_header(
                    forward,
                    &buf[header.name.clone()],
                    &buf[header.value.clone()],
                ),
            }
        }
        // The client's address is appended to any chain of proxies in front of us; proto and host
        // describe this gateway's own listener (plain HTTP).
        forward.extend_from_slice(b"x-forwarded-for: ");
        for hop in forwarded_for {
            forward.extend_from_slice(hop);
            forward.extend_from_slice(b", ");
        }
        forward.extend_from_slice(self.peer_ip.as_bytes());
        forward.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
        if let Some(host) = host {
            push_header(forward, b"x-forwarded-host", host);
        }
        push_header(forward, b"x-request-id", id.as_bytes());
        for (name, value) in trace.headers() {
            push_header(forward, name.as_bytes(), value.as_bytes());
        }
        forward.extend_from_slice(b"\r\n");
        forward.extend_from_slice(&buf[head.len..head.len + head.content_length]);
    }

    /// Passes the upstream's response on: its head rewritten, its body as it arrives (or compressed
    /// whole when the client accepts it and it is worth it).
    async fn relay(
        &mut self,
        mut response: UpstreamResponse,
        in_flight: InFlight,
        scope: &RequestScope<'_>,
        admission: &Admission,
        close: bool,
    ) -> Outcome {
        let status = response.head.status;
        let framing = response.head.framing;
        let encoding = match framing {
            Framing::Length(length) if worth_compressing(&response, length) => self
                .header(Kind::AcceptEncoding)
                .and_then(compression::negotiate),
            _ => None,
        };
        let failed = |ready| Outcome {
            status,
            keep_alive: false,
            ready,
        };
        let body = match (encoding, framing) {
            (Some(encoding), Framing::Length(length)) => {
                let wanted = response.head.len + length as usize;
                let connection = &mut response.connection;
                while connection.buf.len() < wanted {
                    match connection.read_more().await {
                        Ok(0) | Err(_) => return failed(Instant::now()),
                        Ok(_) => {}
                    }
                }
                let plain = &connection.buf[response.head.len..wanted];
                match encoding.compress(plain) {
                    Ok(compressed) => Some((encoding, compressed)),
                    Err(e) => {
                        scope.in_span(|| {
                            tracing::warn!(error = %e, "cannot compress a response; sending it as it is");
                        });
                        None
                    }
                }
            }
            _ => None,
        };

        self.write_response_head(&response, scope.id(), admission, close, body.as_ref());
        let ready = Instant::now();
        let mut connection = response.connection;
        let _ = connection.buf.split_to(response.head.len);
        let reusable = response.head.reusable;
        let relayed = match (body, framing) {
            (Some((_, compressed)), Framing::Length(length)) => {
                let _ = connection.buf.split_to(length as usize);
                self.out.extend_from_slice(&compressed);
                self.stream
                    .write_all(&self.out)
                    .await
                    .map_err(Relay::Client)
            }
            (_, Framing::Empty) => self
                .stream
                .write_all(&self.out)
                .await
                .map_err(Relay::Client),
            (_, Framing::Length(length)) => {
                relay_length(&mut self.stream, &mut self.out, &mut connection, length).await
            }
            (_, Framing::Chunked) => {
                relay_chunked(&mut self.stream, &mut self.out, &mut connection).await
            }
            (_, Framing::UntilClose) => {
                relay_until_close(&mut self.stream, &mut self.out, &mut connection).await
            }
        };
        drop(in_flight);
        match relayed {
            Ok(()) => {
                if reusable {
                    response.endpoint.idle().put(connection);
                }
                Outcome {
                    status,
                    keep_alive: true,
                    ready,
                }
            }
            Err(Relay::Upstream(e)) => {
                scope.in_span(|| {
                    tracing::warn!(error = %e, "upstream response body broke off; closing the connection");
                });
                failed(ready)
            }
            Err(Relay::Client(e)) => {
                tracing::debug!(error = %e, "client went away during the response");
                failed(ready)
            }
        }
    }

    /// The rewritten response head, into `out`.
    fn write_response_head(
        &mut self,
        response: &UpstreamResponse,
        id: &str,
        admission: &Admission,
        close: bool,
        compressed: Option<&(Encoding, Vec<u8>)>,
    ) {
        let buf = &response.connection.buf;
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(response.head.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(&buf[response.head.reason.clone()]);
        out.extend_from_slice(b"\r\n");
        // Headers the upstream named in `Connection` are for that hop only.
        let named: Vec<&[u8]> = response
            .headers
            .iter()
            .filter(|h| h.kind == Kind::Connection)
            .flat_map(|h| buf[h.value.clone()].split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .collect();
        let mut dated = false;
        for header in &response.headers {
            let name = &buf[header.name.clone()];
            match header.kind {
                kind if dropped_from_response(kind) => {}
                // Set below: the length of the body as sent, and this request's id.
                Kind::RequestId | Kind::ContentLength => {}
                _ if named.iter().any(|n| n.eq_ignore_ascii_case(name)) => {}
                kind => {
                    dated |= kind == Kind::Date;
                    push_header(out, name, &buf[header.value.clone()]);
                }
            }
        }
        out.extend_from_slice(&self.shared.security_headers);
        push_header(out, b"x-request-id", id.as_bytes());
        stamp_rate_limit(out, admission);
        if !dated {
            push_date(out);
        }
        match (response.head.framing, compressed) {
            (_, Some((encoding, body))) => {
                push_header(out, b"content-encoding", encoding.name().as_bytes());
                push_header(out, b"vary", b"accept-encoding");
                push_length(out, body.len() as u64);
            }
            (Framing::Empty, None) => {
                if let Some(length) = &response.head.head_length {
                    push_header(out, b"content-length", &buf[length.clone()]);
                }
            }
            (Framing::Length(length), None) => push_length(out, length),
            (Framing::Chunked | Framing::UntilClose, None) => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            }
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// A response the gateway made itself (a refusal or a proxy error), with the same headers as a
    /// relayed one.
    async fn write_generated(
        &mut self,
        response: Response,
        head: &RequestHead,
        id: &str,
        admission: Option<&Admission>,
        close: bool,
    ) -> Outcome {
        let (parts, body) = response.into_parts();
        let body = match Body::new(body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a generated response");
                bytes::Bytes::new()
            }
        };
        let status = parts.status.as_u16();
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        // The gateway's own responses carry no security headers of their own, only a refusal's
        // `RateLimit-*`, which stay; the length is written below.
        for (name, value) in &parts.headers {
            if name != header::CONTENT_LENGTH {
                push_header(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        out.extend_from_slice(&self.shared.security_headers);
        push_header(out, b"x-request-id", id.as_bytes());
        if let Some(admission) = admission {
            stamp_rate_limit(out, admission);
        }
        push_date(out);
        push_length(out, body.len() as u64);
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if head.method != Method::HEAD {
            out.extend_from_slice(&body);
        }
        let ready = Instant::now();
        let keep_alive = self.stream.write_all(&self.out).await.is_ok();
        Outcome {
            status,
            keep_alive,
            ready,
        }
    }
}

impl Shared {
    /// The route a path belongs to (by whole segments, as the router's `prefix` and `prefix/{*rest}`
    /// routes take it) and whether it is the prefix itself.
    fn route_for(&self, path: &[u8]) -> Option<(usize, bool)> {
        self.routes.iter().enumerate().find_map(|(index, route)| {
            let prefix = route.prefix.as_bytes();
            let rest = path.strip_prefix(prefix)?;
            if rest.is_empty() {
                Some((index, true))
            } else if rest.len() > 1 && rest[0] == b'/' {
                Some((index, false))
            } else {
                None
            }
        })
    }
}

/// The compression decision ([`compression::worth_compressing`]) for a raw upstream response.
fn worth_compressing(response: &UpstreamResponse, length: u64) -> bool {
    let buf = &response.connection.buf;
    let mut content_type = None;
    let mut encoded = false;
    for header in &response.headers {
        match header.kind {
            Kind::ContentType => content_type = Some(&buf[header.value.clone()]),
            Kind::ContentEncoding | Kind::ContentRange => encoded = true,
            _ => {}
        }
    }
    compression::worth_compressing(length, content_type, encoded)
}

/// Why relaying a body stopped.
enum Relay {
    Upstream(std::io::Error),
    Client(std::io::Error),
}

fn closed_early() -> Relay {
    Relay::Upstream(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the upstream closed the connection before the end of the body",
    ))
}

/// Reads more of the upstream's body into its buffer: an error at its end.
async fn fill(connection: &mut client::UpstreamConnection) -> Result<(), Relay> {
    match connection.read_more().await {
        Ok(0) => Err(closed_early()),
        Ok(_) => Ok(()),
        Err(e) => Err(Relay::Upstream(e)),
    }
}

/// A body of known length: what already arrived goes out with the head, the rest as it comes.
async fn relay_length(
    client: &mut TimedIo<TcpStream>,
    out: &mut Vec<u8>,
    connection: &mut client::UpstreamConnection,
    length: u64,
) -> Result<(), Relay> {
    let mut remaining = length;
    let first = (connection.buf.len() as u64).min(remaining) as usize;
    out.extend_from_slice(&connection.buf.split_to(first));
    remaining -= first as u64;
    client.write_all(out).await.map_err(Relay::Client)?;
    while remaining > 0 {
        fill(connection).await?;
        let take = (connection.buf.len() as u64).min(remaining) as usize;
        client
            .write_all(&connection.buf.split_to(take))
            .await
            .map_err(Relay::Client)?;
        remaining -= take as u64;
    }
    Ok(())
}

/// A chunked body passed on as it is, chunk sizes, extensions and trailers included.
async fn relay_chunked(
    client: &mut TimedIo<TcpStream>,
    out: &mut Vec<u8>,
    connection: &mut client::UpstreamConnection,
) -> Result<(), Relay> {
    let mut scanner = ChunkedScanner::default();
    let invalid =
        |e: &'static str| Relay::Upstream(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
    let first = scanner.feed(&connection.buf).map_err(invalid)?;
    out.extend_from_slice(&connection.buf.split_to(first));
    client.write_all(out).await.map_err(Relay::Client)?;
    while !scanner.is_done() {
        fill(connection).await?;
        let take = scanner.feed(&connection.buf).map_err(invalid)?;
        client
            .write_all(&connection.buf.split_to(take))
            .await
            .map_err(Relay::Client)?;
    }
    Ok(())
}

/// A body that ends when the upstream closes, sent on in chunks so the client connection stays open.
async fn relay_until_close(
    client: &mut TimedIo<TcpStream>,
    out: &mut Vec<u8>,
    connection: &mut client::UpstreamConnection,
) -> Result<(), Relay> {
    loop {
        if !connection.buf.is_empty() {
            let data = connection.buf.split();
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
        client.write_all(out).await.map_err(Relay::Client)?;
        out.clear();
        match fill(connection).await {
            Ok(()) => {}
            Err(Relay::Upstream(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
    }
    client.write_all(b"0\r\n\r\n").await.map_err(Relay::Client)
}

fn stamp_rate_limit(out: &mut Vec<u8>, admission: &Admission) {
    if let Some((limit, remaining, reset)) = admission.header_values() {
        let mut number = itoa::Buffer::new();
        for (name, value) in [
            (RATELIMIT_LIMIT, u64::from(limit)),
            (RATELIMIT_REMAINING, remaining),
            (RATELIMIT_RESET, reset),
        ] {
            push_header(
                out,
                name.as_str().as_bytes(),
                number.format(value).as_bytes(),
            );
        }
    }
}

thread_local! {
    /// The `Date` value of the current second, made once per second per thread.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(second, value)| {
        if *second != now || value.is_empty() {
            *second = now;
            *value = chrono::Utc::now()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
        }
        push_header(out, b"date", value.as_bytes());
    });
}
