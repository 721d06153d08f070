//! Helpers for integration tests: a fresh database per test (so tests run in parallel), real servers on
//! random ports, settings built without touching the process environment, polling with a deadline, and
//! a TCP proxy that stages an outage of a shared server ([`Cut`]), and a real OpenID provider
//! ([`oidc::OidcProvider`]).

mod cut;

pub mod limits;
pub mod oidc;
pub mod plans;
pub mod raw;
pub mod registries;
pub mod traces;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use platform::config::{ConfigSources, Settings};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cut::Cut;

/// The server every test database lives on; `TEST_DATABASE_URL` overrides it.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Call first in every test: installs the rustls provider.
pub fn init() {
    platform::install_crypto_provider();
}

/// A database of its own for one test, dropped (with its connections) when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Picks a fresh name; the service under test creates the database on first start, as in production.
    pub fn new() -> Self {
        init();
        let name = format!("lc_test_{}", uuid::Uuid::new_v4().simple());
        let base = admin_url();
        let url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => format!("{base}/{name}"),
        };
        Self { name, url }
    }
}

impl Default for TestDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context guarantees, so the cleanup gets its own thread and runtime.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = admin.execute(AssertSqlSafe(sql)).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Settings as the binary would load them, from the given environment variables only (defaults plus
/// `env`), in the `test` environment, with no service's section registered: a service configured from them
/// gets its section's defaults.
pub fn settings(env: &[(&str, &str)]) -> Settings {
    settings_with(env, &[])
}

/// [`settings`] with these services' sections registered, so `env` may set their keys and the gateway's
/// upstreams follow their ports, as in the binary.
pub fn settings_with(env: &[(&str, &str)], sections: &[platform::config::SectionSpec]) -> Settings {
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.entry("LOGICORE_ENV".into())
        .or_insert_with(|| "test".into());
    let sources = ConfigSources {
        file: None,
        config_dir: std::path::PathBuf::from("/nonexistent"),
        env: vars,
    };
    match platform::config::load(&sources, sections) {
        Ok(loaded) => loaded.settings,
        Err(e) => panic!("test settings are invalid: {e}"),
    }
}

/// The connection limits of the default settings (`[http]`).
pub fn connection_limits() -> platform::http::ConnectionLimits {
    platform::http::ConnectionLimits::from_settings(&settings(&[]).http)
}

/// A server running in the background on 127.0.0.1 with a random port; stops when dropped.
pub struct TestServer {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Binds a random port and serves `router` through `platform::http::serve`.
    pub async fn spawn(router: Router) -> Self {
        Self::spawn_on(bind().await, router)
    }

    /// Serves `router` on a listener the caller bound, e.g. again on the port of a server it stopped.
    pub fn spawn_on(listener: TcpListener, router: Router) -> Self {
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle = tokio::spawn(async move {
            let _ = platform::http::serve(
                listener,
                router,
                token,
                Duration::from_secs(5),
                connection_limits(),
            )
            .await;
        });
        Self {
            address,
            shutdown,
            handle: Some(handle),
        }
    }

    /// Wraps a server started elsewhere (e.g. a service's own `run`).
    pub fn from_parts(
        address: SocketAddr,
        shutdown: CancellationToken,
        handle: JoinHandle<()>,
    ) -> Self {
        Self {
            address,
            shutdown,
            handle: Some(handle),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Fires the shutdown token and waits for the server to finish draining.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Serves a service's `run` (`users::run` and the like) on a fresh loopback listener until the returned
/// server is stopped; a service that fails panics the test with its error.
pub async fn serve<F, E>(run: impl FnOnce(TcpListener, CancellationToken) -> F) -> TestServer
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display,
{
    let listener = bind().await;
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let shutdown = CancellationToken::new();
    let served = run(listener, shutdown.clone());
    let handle = tokio::spawn(async move {
        if let Err(error) = served.await {
            panic!("a service failed: {error}");
        }
    });
    TestServer::from_parts(address, shutdown, handle)
}

/// A listener on 127.0.0.1 with a port picked by the OS.
pub async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("cannot bind a test port: {e}"))
}

/// An HTTP client for tests: no proxy, short timeouts.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Reads a response as JSON, panicking with the body when it is not.
/// Asserts a problem+json answer with this status and code, whose `request_id` is the response's
/// `x-request-id` when it has one; returns the body.
pub async fn assert_problem(
    response: reqwest::Response,
    status: u16,
    code: &str,
) -> serde_json::Value {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, request_id) = (header("content-type"), header("x-request-id"));
    let actual = response.status().as_u16();
    let body = json(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "body: {body}"
    );
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status, "body: {body}");
    if let Some(id) = request_id {
        assert_eq!(body["request_id"], id.as_str(), "body: {body}");
    }
    body
}

pub async fn json(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text}"))
}

/// A directory of its own under the system's temp dir, removed with everything in it when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The text of the `/metrics` page at `url`; empty when it cannot be read.
pub async fn metrics(url: &str) -> String {
    match client().get(url).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The sum of the samples of `family` in a metrics page whose labels include `label` (`name="value"`).
pub fn metric_sum(page: &str, family: &str, label: &str) -> f64 {
    let start = format!("{family}{{");
    page.lines()
        .filter(|line| line.starts_with(&start) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
