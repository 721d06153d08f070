//! A fake upstream that shows what reached it, one written by hand that counts its connections, and a
//! gateway in front of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use futures::StreamExt;
use gateway::Config;
use http_body_util::BodyExt;
use platform::auth::{Claims, JwtKeys, Role};
use platform::config::{AuthSettings, Secret};
use serde_json::{Value, json};
use testkit::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the fake upstream observed and the levers a test pulls.
#[derive(Default)]
pub struct Probe {
    /// Requests to anything but `/health`.
    pub hits: AtomicUsize,
    /// Requests to `/health`.
    pub health_checks: AtomicUsize,
    /// Fired when `/upload` has received its first chunk.
    pub first_chunk_received: Notify,
    /// `/stream` sends its second chunk only after this fires.
    pub release_stream: Notify,
    /// `/hold` answers only after this fires.
    pub release_hold: Notify,
    /// While set, everything but `/health` answers 503 (an overloaded or draining instance).
    pub unavailable: AtomicBool,
    /// When the body of `/large` was dropped unfinished or finished: its sender gave up or was done.
    pub large_dropped: std::sync::Mutex<Option<std::time::Instant>>,
}

/// The size of `/large`: far more than socket buffers hold, made as it is sent.
pub const LARGE_BYTES: usize = 64 << 20;

/// Records in the probe when it is dropped.
struct MarkOnDrop(Arc<Probe>);

impl Drop for MarkOnDrop {
    fn drop(&mut self) {
        if let Ok(mut dropped) = self.0.large_dropped.lock() {
            *dropped = Some(std::time::Instant::now());
        }
    }
}

pub struct FakeUpstream {
    pub server: TestServer,
    pub probe: Arc<Probe>,
}

impl FakeUpstream {
    /// An upstream serving `/health` and, under any path:
    /// `…/slow` (answers after a minute), `…/large` ([`LARGE_BYTES`], noting when its body is dropped), `…/stream`
    /// (one chunk, then the rest once released), `…/upload` (counts a streamed body), `…/mirror` (streams the body
    /// back), `…/fail` (a 500), `…/unavailable` (a 503), `…/missing` (a 404), `…/hold`
    /// (answers once released) and otherwise an echo of
    /// the request as JSON, sent with hop-by-hop and software-revealing headers the gateway must drop.
    pub async fn spawn() -> Self {
        Self::spawn_on(testkit::bind().await)
    }

    /// The same upstream on a listener the test bound, e.g. again on the port of one it stopped.
    pub fn spawn_on(listener: tokio::net::TcpListener) -> Self {
        testkit::init();
        let probe = Arc::new(Probe::default());
        let router = Router::new()
            .route("/health", get(health))
            // The gateway polls the users service for revocations; like `/health`, not a proxied request.
            .route(
                "/internal/revocations",
                get(|| async { axum::Json(json!({ "revocations": [], "watermark": null })) }),
            )
            .fallback(any(dispatch))
            .with_state(probe.clone());
        Self {
            server: TestServer::spawn_on(listener, router),
            probe,
        }
    }

    pub fn url(&self) -> String {
        self.server.url("")
    }

    pub fn hits(&self) -> usize {
        self.probe.hits.load(Ordering::SeqCst)
    }
}

async fn health(State(probe): State<Arc<Probe>>) -> &'static str {
    probe.health_checks.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn dispatch(State(probe): State<Arc<Probe>>, request: Request) -> Response {
    probe.hits.fetch_add(1, Ordering::SeqCst);
    if probe.unavailable.load(Ordering::SeqCst) {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    let path = request.uri().path().to_owned();
    if path.ends_with("/missing") {
        return (axum::http::StatusCode::NOT_FOUND, "no such thing").into_response();
    }
    if path.ends_with("/unavailable") {
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "overloaded").into_response();
    }
    if path.ends_with("/fail") {
        // The body is read first, as a handler failing on its content would have.
        let _ = request.into_body().collect().await;
        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response();
    }
    if path.ends_with("/hold") {
        probe.release_hold.notified().await;
        return "released".into_response();
    }
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return "too late".into_response();
    }
    if path.ends_with("/stream") {
        let chunks = futures::stream::unfold(0, move |step| {
            let probe = probe.clone();
            async move {
                match step {
                    0 => Some((Ok::<_, std::io::Error>(Bytes::from("first chunk\n")), 1)),
                    1 => {
                        probe.release_stream.notified().await;
                        Some((Ok(Bytes::from("second chunk\n")), 2))
                    }
                    _ => None,
                }
            }
        });
        return Body::from_stream(chunks).into_response();
    }
    if path.ends_with("/upload") {
        let mut body = request.into_body().into_data_stream();
        let mut total = 0usize;
        let mut first = true;
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                return (axum::http::StatusCode::BAD_REQUEST, "body broke").into_response();
            };
            total += chunk.len();
            if first {
                first = false;
                probe.first_chunk_received.notify_one();
            }
        }
        return axum::Json(json!({ "received_bytes": total })).into_response();
    }
    if path.ends_with("/large") {
        let mark = MarkOnDrop(probe.clone());
        let chunks = futures::stream::iter(0..LARGE_BYTES >> 20).map(move |_| {
            let _held = &mark;
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1 << 20]))
        });
        return Body::from_stream(chunks).into_response();
    }
    if path.ends_with("/mirror") {
        return Body::new(request.into_body()).into_response();
    }
    echo(request).await
}

async fn echo(request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let echoed = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": header_map(&parts.headers),
        "body": body,
    });
    let mut response = axum::Json(echoed).into_response();
    let headers = response.headers_mut();
    headers.insert("connection", HeaderValue::from_static("x-upstream-hop"));
    headers.insert("x-upstream-hop", HeaderValue::from_static("secret"));
    headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
    headers.insert("server", HeaderValue::from_static("fake-upstream/1.0"));
    headers.insert("x-powered-by", HeaderValue::from_static("fake"));
    response
}

fn header_map(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// Gateway settings as the binary would load them, with every routed upstream (users, inventory, orders) served by
/// the fake at `upstream_url`, and a rate limit no test reaches unless it sets its own (the default of 100
/// per 15 minutes would).
pub fn config(upstream_url: &str) -> Config {
    let settings = testkit::settings(&[
        ("USER_SERVICE_URL", upstream_url),
        ("INVENTORY_SERVICE_URL", upstream_url),
        ("ORDER_SERVICE_URL", upstream_url),
    ]);
    let mut config = Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    config.rate_limit.default.max_requests = 1_000_000;
    config
}

/// A one-path OpenAPI document, as a service would hand it to the binary.
pub fn service_spec(path: &str, operation_id: &str) -> utoipa::openapi::OpenApi {
    serde_json::from_value(json!({
        "openapi": "3.1.0",
        "info": { "title": operation_id, "version": "1" },
        "paths": { path: { "get": {
            "operationId": operation_id,
            "responses": { "200": { "description": "ok" } }
        }}},
        "components": { "schemas": { format!("{operation_id}_body"): { "type": "object" } } }
    }))
    .unwrap_or_else(|e| panic!("spec: {e}"))
}

/// `gateway::run` on random ports.
pub async fn spawn_gateway(config: Config) -> GatewayServer {
    spawn_gateway_with_specs(config, Vec::new()).await
}

pub async fn spawn_gateway_with_specs(
    config: Config,
    specs: Vec<utoipa::openapi::OpenApi>,
) -> GatewayServer {
    testkit::init();
    let listeners = gateway::Listeners {
        public: testkit::bind().await,
        admin: testkit::bind().await,
    };
    let address = listeners
        .public
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = listeners
        .admin
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(async move {
        if let Err(e) = gateway::run(config, specs, listeners, token).await {
            panic!("gateway stopped: {e}");
        }
    });
    GatewayServer {
        public: TestServer::from_parts(address, shutdown, handle),
        admin,
    }
}

/// A running gateway: its public port, and its admin listener.
pub struct GatewayServer {
    pub public: TestServer,
    pub admin: std::net::SocketAddr,
}

impl GatewayServer {
    /// A URL on the public port.
    pub fn url(&self, path: &str) -> String {
        self.public.url(path)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.public.address()
    }

    pub async fn stop(self) {
        self.public.stop().await;
    }
}

/// A fake upstream with a gateway in front of it, configured as the defaults say.
pub struct Stack {
    pub upstream: FakeUpstream,
    pub gateway: GatewayServer,
    pub auth: AuthSettings,
}

impl Stack {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let upstream = FakeUpstream::spawn().await;
        let mut config = config(&upstream.url());
        adjust(&mut config);
        let auth = config.auth.clone();
        let gateway = spawn_gateway(config).await;
        Self {
            upstream,
            gateway,
            auth,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.gateway.url(path)
    }

    /// A URL on the gateway's admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        self.gateway.admin_url(path)
    }

    /// `Bearer <token>` for a fresh user with `role`.
    pub fn bearer(&self, role: Role) -> String {
        bearer(&self.auth, role)
    }

    /// A token signed with the right secret whose expiry passed an hour ago.
    pub fn expired_bearer(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: uuid::Uuid::now_v7(),
            email: "someone@example.com".into(),
            role: Role::Admin,
            iat: now - 7200,
            exp: now - 3600,
            jti: uuid::Uuid::now_v7(),
            iss: self.auth.issuer.clone(),
            scope: None,
        };
        let key = jsonwebtoken::EncodingKey::from_secret(self.auth.jwt_secret.expose().as_bytes());
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
            .unwrap_or_else(|e| panic!("{e}"));
        format!("Bearer {token}")
    }

    /// A token of the right shape signed with another secret.
    pub fn foreign_bearer(&self) -> String {
        let other = AuthSettings {
            jwt_secret: Secret::new("an-entirely-different-secret-of-32-bytes!"),
            ..self.auth.clone()
        };
        let (token, _) = JwtKeys::new(&other)
            .issue(uuid::Uuid::now_v7(), "someone@example.com", Role::Admin)
            .unwrap_or_else(|e| panic!("{e}"));
        format!("Bearer {token}")
    }
}

/// `Bearer <token>` for a fresh user with `role`, signed as `auth` says.
pub fn bearer(auth: &AuthSettings, role: Role) -> String {
    let (token, _) = JwtKeys::new(auth)
        .issue(uuid::Uuid::now_v7(), "someone@example.com", role)
        .unwrap_or_else(|e| panic!("{e}"));
    format!("Bearer {token}")
}

/// An address nothing listens on: bound by the OS, then released.
pub async fn closed_port_url() -> String {
    let listener = testkit::bind().await;
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(listener);
    format!("http://{address}")
}

/// The echo of the fake upstream, checking the response was a 200.
pub async fn echoed(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200, "{:?}", response.headers());
    testkit::json(response).await
}

/// An upstream written by hand: it answers every request on a connection with `answer`, then closes
/// the connection if `close_after` says so. Counts the connections it accepted and closed. A request's
/// body (a `content-length` or chunked one) is read and dropped.
pub struct RawUpstream {
    pub url: String,
    pub connections: Arc<AtomicUsize>,
    pub closed: Arc<AtomicUsize>,
}

impl RawUpstream {
    pub async fn spawn(answer: &'static str, close_after: bool) -> Self {
        let listener = testkit::bind().await;
        let url = format!(
            "http://{}",
            listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
        );
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (counted, counted_closed) = (connections.clone(), closed.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let closed = counted_closed.clone();
                tokio::spawn(async move {
                    let _closed = CountOnDrop(closed);
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let end = loop {
                            if let Some(end) = request_len(&buf) {
                                break end;
                            }
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        buf.drain(..end);
                        if stream.write_all(answer.as_bytes()).await.is_err() || close_after {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            url,
            connections,
            closed,
        }
    }
}

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// How many bytes of `buf` the request at its start takes, head and body, once they all arrived.
fn request_len(buf: &[u8]) -> Option<usize> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut storage);
    let httparse::Status::Complete(head) = request.parse(buf).ok()? else {
        return None;
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if header("transfer-encoding").as_deref() == Some("chunked") {
        let mut scanner = platform::http::ChunkedScanner::default();
        let body = scanner.feed(&buf[head..]).ok()?;
        return scanner.is_done().then_some(head + body);
    }
    let length: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
    (buf.len() >= head + length).then_some(head + length)
}

/// How long a raw client waits for bytes before the test fails.
pub const WITHIN: Duration = Duration::from_secs(10);

/// One response as read off the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A raw client connection and what it read past the last response.
pub struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    pub async fn connect(address: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(address)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &str) {
        self.stream
            .write_all(bytes.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    pub async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(WITHIN, self.stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no bytes within {WITHIN:?}; have {:?}", self.buf))
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// Reads one response to a request made with `method`.
    pub async fn answer(&mut self, method: &str) -> Answer {
        let (status, headers, len) = loop {
            let mut storage = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut storage);
            if let httparse::Status::Complete(len) = response
                .parse(&self.buf)
                .unwrap_or_else(|e| panic!("{e}: {:?}", self.buf))
            {
                let headers: Vec<(String, String)> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (response.code.unwrap_or(0), headers, len);
            }
            assert!(self.fill().await > 0, "closed before a response head");
        };
        self.buf.drain(..len);
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if method == "HEAD" || status == 204 || status == 304 {
            Vec::new()
        } else if let Some(length) = find("content-length") {
            let length: usize = length.parse().unwrap_or_else(|e| panic!("{e}: {length}"));
            while self.buf.len() < length {
                assert!(self.fill().await > 0, "closed inside a body");
            }
            self.buf.drain(..length).collect()
        } else {
            assert_eq!(find("transfer-encoding").as_deref(), Some("chunked"));
            self.dechunk().await
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn line(&mut self) -> String {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return line;
            }
            assert!(self.fill().await > 0, "closed inside a chunked body");
        }
    }

    pub async fn dechunk(&mut self) -> Vec<u8> {
        let mut body = Vec::new();
        loop {
            let size_line = self.line().await;
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap_or_default().trim(), 16)
                    .unwrap_or_else(|e| panic!("{e}: {size_line:?}"));
            if size == 0 {
                while !self.line().await.is_empty() {}
                return body;
            }
            while self.buf.len() < size + 2 {
                assert!(self.fill().await > 0, "closed inside a chunk");
            }
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }

    /// Whether the server closed the connection (and sent nothing more).
    pub async fn closed(&mut self) -> bool {
        self.fill().await == 0 && self.buf.is_empty()
    }
}
