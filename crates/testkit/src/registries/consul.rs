//! A fake of the Consul agent endpoints LogiCore's Consul backend uses, following Consul's documentation
//! (agent/service, health, features/blocking): service registration with an HTTP check that the fake runs
//! itself, deregistration, health queries with blocking, and ACL tokens.
//!
//! Where Consul is lenient the fake is too (unknown JSON fields are ignored, `Authorization: Bearer` is
//! accepted); where supporting a feature would only add surface it refuses loudly instead of ignoring it
//! (checks other than HTTP, query parameters such as `tag` or `filter`), so a client relying on them fails
//! here rather than in production. Deliberate differences, all to keep tests fast: the first check runs at
//! once (Consul staggers it randomly within the interval), intervals under Consul's one-second minimum and
//! `DeregisterCriticalServiceAfter` under its one-minute minimum are honoured as given, the reaper runs
//! every 50 ms (Consul: 30 s), and one index counts changes to every service (Consul's is per service, so
//! here blocking queries wake more often, which Consul's documentation tells clients to expect anyway).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use tokio_util::sync::CancellationToken;

/// Where the index starts; any value above 1 would do, a distinctive one reads better in failures.
const FIRST_INDEX: u64 = 10;
const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
const REAP_INTERVAL: Duration = Duration::from_millis(50);
const NODE: &str = "fake-agent";
/// Query parameters the fake accepts without acting on them: they cannot change the answer of a
/// single-datacenter, single-server Consul.
const IGNORED_PARAMETERS: &[&str] = &["dc", "stale", "consistent", "cached"];

/// A health query as it arrived, before any blocking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthQuery {
    pub service: String,
    pub index: Option<u64>,
    /// As sent, e.g. `"30s"`.
    pub wait: Option<String>,
    pub passing: bool,
}

/// The fake agent, serving on 127.0.0.1 until stopped or dropped.
pub struct FakeConsul {
    address: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

struct Shared {
    acl_token: Option<String>,
    state: Mutex<FakeState>,
    /// Runs the HTTP checks.
    http: reqwest::Client,
    /// Ends the server, its blocking queries and the reaper.
    shutdown: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has failed already; the state is still readable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct FakeState {
    index: u64,
    /// Carries the index to blocking queries; sent on every change.
    changes: watch::Sender<u64>,
    services: BTreeMap<String, Service>,
    /// Tells a checker whether the check it runs is still the registered one.
    next_generation: u64,
    registrations: Vec<Value>,
    deregistrations: Vec<String>,
    tokens_seen: Vec<String>,
    health_queries: Vec<HealthQuery>,
}

impl FakeState {
    fn bump(&mut self) {
        self.index += 1;
        self.changes.send_replace(self.index);
    }

    /// The check a checker of this generation runs, unless it was replaced or a test took it over.
    fn checked_by(&mut self, id: &str, generation: u64) -> Option<&mut Check> {
        self.services
            .get_mut(id)?
            .check
            .as_mut()
            .filter(|check| check.generation == generation && !check.overridden)
    }
}

struct Service {
    id: String,
    name: String,
    address: String,
    port: u16,
    meta: BTreeMap<String, String>,
    tags: Vec<String>,
    check: Option<Check>,
}

impl Service {
    fn status(&self) -> Status {
        self.check
            .as_ref()
            .map_or(Status::Passing, |check| check.status)
    }

    fn entry(&self) -> Value {
        let mut checks = vec![json!({
            "Node": NODE, "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
            "Notes": "", "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "",
            "ServiceTags": [], "Type": "",
        })];
        if let Some(check) = &self.check {
            checks.push(json!({
                "Node": NODE, "CheckID": format!("service:{}", self.id),
                "Name": check.name, "Status": check.status.as_str(),
                "Notes": "", "Output": "", "ServiceID": self.id, "ServiceName": self.name,
                "ServiceTags": self.tags, "Type": "http",
            }));
        }
        json!({
            "Node": {
                "Node": NODE, "Address": "127.0.0.1", "Datacenter": "dc1",
                "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"}, "Meta": {},
            },
            "Service": {
                "ID": self.id, "Service": self.name, "Tags": self.tags, "Address": self.address,
                "Meta": self.meta, "Port": self.port, "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": false,
            },
            "Checks": checks,
        })
    }
}

struct Check {
    name: String,
    status: Status,
    /// When the current critical spell began.
    critical_since: Option<Instant>,
    deregister_after: Option<Duration>,
    /// A test set the status with [`FakeConsul::set_status`]; the fake no longer runs the check.
    overridden: bool,
    generation: u64,
    /// Dropping it stops the checker, when the check is replaced, deregistered or overridden.
    _checker: Option<AbortOnDrop>,
}

impl Check {
    /// Returns whether the status changed.
    fn set(&mut self, status: Status) -> bool {
        if status == self.status {
            return false;
        }
        self.status = status;
        self.critical_since = (status == Status::Critical).then(Instant::now);
        true
    }

    fn reapable(&self) -> bool {
        match (self.deregister_after, self.critical_since) {
            (Some(after), Some(since)) => since.elapsed() > after,
            _ => false,
        }
    }
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Passing,
    Warning,
    Critical,
}

impl Status {
    fn parse(text: &str) -> Option<Status> {
        match text {
            "passing" => Some(Status::Passing),
            "warning" => Some(Status::Warning),
            "critical" => Some(Status::Critical),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Status::Passing => "passing",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }
}

/// The register body; Consul's decoder treats `null` as absent, hence the options.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Definition {
    #[serde(rename = "ID")]
    id: Option<String>,
    name: Option<String>,
    address: Option<String>,
    port: Option<u16>,
    meta: Option<BTreeMap<String, String>>,
    tags: Option<Vec<String>>,
    check: Option<CheckDefinition>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckDefinition {
    name: Option<String>,
    #[serde(rename = "HTTP")]
    http: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
    deregister_critical_service_after: Option<String>,
}

#[derive(Clone)]
struct HttpCheck {
    name: Option<String>,
    url: String,
    interval: Duration,
    timeout: Duration,
    deregister_after: Option<Duration>,
}

impl CheckDefinition {
    /// Validates as Consul does, with Consul's messages.
    fn parse(self) -> Result<HttpCheck, String> {
        let duration = |field: Option<String>| match field.filter(|text| !text.is_empty()) {
            None => Ok(None),
            Some(text) => parse_go_duration(&text)
                .map(Some)
                .ok_or_else(|| format!("Request decode failed: time: invalid duration \"{text}\"")),
        };
        let interval = duration(self.interval)?;
        let timeout = duration(self.timeout)?;
        let deregister_after = duration(self.deregister_critical_service_after)?;
        let Some(url) = self.http.filter(|url| !url.is_empty()) else {
            return Err("Invalid check: the fake Consul runs only HTTP checks".into());
        };
        let Some(interval) = interval.filter(|interval| !interval.is_zero()) else {
            return Err(
                "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
                    .into(),
            );
        };
        Ok(HttpCheck {
            name: self.name.filter(|name| !name.is_empty()),
            url,
            interval,
            timeout: timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT),
            deregister_after,
        })
    }
}

impl FakeConsul {
    /// Serves the fake on a random loopback port; with `acl_token`, every request must carry that token.
    pub async fn start(acl_token: Option<&str>) -> FakeConsul {
        crate::init();
        let listener = crate::bind().await;
        let address = listener
            .local_addr()
            .expect("a bound listener has a local address");
        let (changes, _) = watch::channel(FIRST_INDEX);
        let shared = Arc::new(Shared {
            acl_token: acl_token.map(str::to_owned),
            state: Mutex::new(FakeState {
                index: FIRST_INDEX,
                changes,
                services: BTreeMap::new(),
                next_generation: 0,
                registrations: Vec::new(),
                deregistrations: Vec::new(),
                tokens_seen: Vec::new(),
                health_queries: Vec::new(),
            }),
            // Consul's checker opens a connection per check (keep-alive off), so a service's graceful
            // shutdown is not held up by, nor hidden behind, an idle pooled connection.
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .expect("a client with no proxy always builds"),
            shutdown: CancellationToken::new(),
        });
        let router = Router::new()
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/health/service/{name}", get(health))
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), acl))
            .with_state(Arc::clone(&shared));
        let stopped = shared.shutdown.clone().cancelled_owned();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await;
        });
        tokio::spawn(reap(Arc::clone(&shared)));
        FakeConsul {
            address,
            shared,
            server: Some(server),
        }
    }

    pub fn host(&self) -> String {
        self.address.ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Every register body received (after the ACL check), in order, including ones refused as invalid.
    pub fn registrations(&self) -> Vec<Value> {
        self.shared.lock().registrations.clone()
    }

    /// The id of every deregister request received (after the ACL check), known or not, in order.
    /// Services the fake's reaper removes are not listed.
    pub fn deregistrations(&self) -> Vec<String> {
        self.shared.lock().deregistrations.clone()
    }

    /// The token of every request that carried one, refused or not, in order.
    pub fn tokens_seen(&self) -> Vec<String> {
        self.shared.lock().tokens_seen.clone()
    }

    /// Every valid health query that passed the ACL check, recorded on arrival, before it blocks.
    pub fn health_queries(&self) -> Vec<HealthQuery> {
        self.shared.lock().health_queries.clone()
    }

    /// The current index (`X-Consul-Index`).
    pub fn index(&self) -> u64 {
        self.shared.lock().index
    }

    /// Moves the index to `to` (at least 1, as Consul never reports 0), as a Consul server restored from
    /// a snapshot does, and wakes every blocking query, which answers with the new index.
    pub fn reset_index(&self, to: u64) {
        let mut state = self.shared.lock();
        state.index = to.max(1);
        let index = state.index;
        state.changes.send_replace(index);
    }

    /// The ids of the services registered now.
    pub fn service_ids(&self) -> Vec<String> {
        self.shared.lock().services.keys().cloned().collect()
    }

    /// Sets the check status of service `id` ("passing", "warning" or "critical") and stops the fake's
    /// own checker for it, so the status stays until set again, also across re-registrations of `id`.
    /// Panics if the service is unknown or has no check.
    pub fn set_status(&self, id: &str, status: &str) {
        let Some(status) = Status::parse(status) else {
            panic!("a check status is passing, warning or critical, not {status:?}");
        };
        let mut state = self.shared.lock();
        let Some(check) = state.services.get_mut(id).and_then(|s| s.check.as_mut()) else {
            panic!("set_status: service {id:?} is not registered or has no check");
        };
        check.overridden = true;
        check._checker = None;
        if check.set(status) {
            state.bump();
        }
    }

    /// Stops serving: blocking queries answer at once, then the port closes.
    pub async fn stop(mut self) {
        self.shared.shutdown.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        // The checkers hold the shared state; dropping the services aborts them and frees it.
        self.shared.lock().services.clear();
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// The request's token, read as Consul reads it: `X-Consul-Token` first, then `Authorization: Bearer`.
fn token_of(headers: &HeaderMap) -> Option<String> {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header(header::HeaderName::from_static("x-consul-token"))
        && !token.is_empty()
    {
        return Some(token.to_owned());
    }
    let (scheme, value) = header(header::AUTHORIZATION)?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    value.split_whitespace().next().map(str::to_owned)
}

async fn acl(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let token = token_of(request.headers());
    if let Some(token) = &token {
        shared.lock().tokens_seen.push(token.clone());
    }
    match &shared.acl_token {
        Some(required) if token.as_ref() != Some(required) => {
            text(StatusCode::FORBIDDEN, "ACL not found")
        }
        _ => next.run(request).await,
    }
}

async fn register(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let decode_failed = |e: serde_json::Error| {
        text(
            StatusCode::BAD_REQUEST,
            format!("Request decode failed: {e}"),
        )
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return decode_failed(e),
    };
    shared.lock().registrations.push(body.clone());
    let definition: Definition = match serde_json::from_value(body) {
        Ok(definition) => definition,
        Err(e) => return decode_failed(e),
    };
    let Some(name) = definition.name.filter(|name| !name.is_empty()) else {
        return text(StatusCode::BAD_REQUEST, "Missing service name");
    };
    let check = match definition.check.map(CheckDefinition::parse).transpose() {
        Ok(check) => check,
        Err(message) => return text(StatusCode::BAD_REQUEST, message),
    };
    let id = definition
        .id
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| name.clone());

    let mut state = shared.lock();
    let previous = state.services.remove(&id);
    let check = check.map(|spec| {
        // Consul keeps the status of a re-registered check; a new check starts critical.
        let prior = previous.as_ref().and_then(|service| service.check.as_ref());
        let status = prior.map_or(Status::Critical, |check| check.status);
        let overridden = prior.is_some_and(|check| check.overridden);
        state.next_generation += 1;
        let generation = state.next_generation;
        let checker = (!overridden).then(|| {
            let task = tokio::spawn(run_check(
                Arc::clone(&shared),
                id.clone(),
                generation,
                spec.clone(),
            ));
            AbortOnDrop(task.abort_handle())
        });
        Check {
            name: spec
                .name
                .clone()
                .unwrap_or_else(|| format!("Service '{name}' check")),
            status,
            critical_since: (status == Status::Critical).then(Instant::now),
            deregister_after: spec.deregister_after,
            overridden,
            generation,
            _checker: checker,
        }
    });
    state.services.insert(
        id.clone(),
        Service {
            id,
            name,
            address: definition.address.unwrap_or_default(),
            port: definition.port.unwrap_or_default(),
            meta: definition.meta.unwrap_or_default(),
            tags: definition.tags.unwrap_or_default(),
            check,
        },
    );
    state.bump();
    StatusCode::OK.into_response()
}

async fn deregister(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let mut state = shared.lock();
    state.deregistrations.push(id.clone());
    if state.services.remove(&id).is_none() {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
            ),
        );
    }
    state.bump();
    StatusCode::OK.into_response()
}

async fn health(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(parameters): Query<Vec<(String, String)>>,
) -> Response {
    if let Some((key, _)) = parameters.iter().find(|(key, _)| {
        !["passing", "index", "wait"].contains(&key.as_str())
            && !IGNORED_PARAMETERS.contains(&key.as_str())
    }) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("the fake Consul does not implement ?{key}"),
        );
    }
    // Like Go's `url.Values.Get`: the first value; an empty value counts as absent except for flags.
    let parameter = |key: &str| {
        parameters
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let passing = match parameter("passing").map(parse_go_flag) {
        None => false,
        Some(Some(passing)) => passing,
        Some(None) => return text(StatusCode::BAD_REQUEST, "Invalid value for ?passing"),
    };
    let wait_text = parameter("wait").filter(|v| !v.is_empty());
    let wait = match wait_text.map(parse_go_duration) {
        None => DEFAULT_WAIT,
        Some(Some(wait)) => wait.min(MAX_WAIT),
        Some(None) => return text(StatusCode::BAD_REQUEST, "Invalid wait time"),
    };
    let index = match parameter("index").filter(|v| !v.is_empty()).map(str::parse) {
        None => None,
        Some(Ok(index)) => Some(index),
        Some(Err(_)) => return text(StatusCode::BAD_REQUEST, "Invalid index"),
    };

    let (mut changes, current) = {
        let mut state = shared.lock();
        state.health_queries.push(HealthQuery {
            service: name.clone(),
            index,
            wait: wait_text.map(str::to_owned),
            passing,
        });
        // Subscribed under the lock, so a change after `current` was read still wakes the wait below.
        (state.changes.subscribe(), state.index)
    };
    // Consul blocks only for a nonzero index the client has already seen.
    if let Some(seen) = index
        && seen > 0
        && seen >= current
    {
        tokio::select! {
            _ = changes.changed() => {}
            () = tokio::time::sleep(wait) => {}
            () = shared.shutdown.cancelled() => {}
        }
    }

    let state = shared.lock();
    let entries: Vec<Value> = state
        .services
        .values()
        // Consul's catalog compares service names case-insensitively.
        .filter(|service| service.name.eq_ignore_ascii_case(&name))
        .filter(|service| !passing || service.status() == Status::Passing)
        .map(Service::entry)
        .collect();
    (
        [
            ("X-Consul-Index", state.index.to_string()),
            ("X-Consul-KnownLeader", "true".to_owned()),
            ("X-Consul-LastContact", "0".to_owned()),
        ],
        Json(entries),
    )
        .into_response()
}

/// Runs one service's HTTP check until the service is replaced, deregistered or taken over by a test.
async fn run_check(shared: Arc<Shared>, id: String, generation: u64, spec: HttpCheck) {
    loop {
        let response = shared
            .http
            .get(&spec.url)
            .timeout(spec.timeout)
            .header(header::USER_AGENT, "Consul Health Check")
            .header(header::ACCEPT, "text/plain, text/*, */*")
            .send()
            .await;
        // Consul's HTTP check: any 2xx passes, 429 Too Many Requests warns, anything else is critical.
        let status = match response.map(|r| r.status()) {
            Ok(code) if code.is_success() => Status::Passing,
            Ok(StatusCode::TOO_MANY_REQUESTS) => Status::Warning,
            _ => Status::Critical,
        };
        {
            let mut state = shared.lock();
            let Some(check) = state.checked_by(&id, generation) else {
                return;
            };
            if check.set(status) {
                state.bump();
            }
        }
        tokio::time::sleep(spec.interval).await;
    }
}

/// Deregisters services whose check has been critical for longer than their
/// `DeregisterCriticalServiceAfter`, as the agent's reaper does.
async fn reap(shared: Arc<Shared>) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            () = tokio::time::sleep(REAP_INTERVAL) => {}
        }
        let mut state = shared.lock();
        let before = state.services.len();
        state
            .services
            .retain(|_, service| !service.check.as_ref().is_some_and(Check::reapable));
        if state.services.len() != before {
            state.bump();
        }
    }
}

/// A query flag as Consul reads it: present without a value means true, else Go's `strconv.ParseBool`.
fn parse_go_flag(value: &str) -> Option<bool> {
    match value {
        "" | "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a non-negative Go duration (`time.ParseDuration`): decimal numbers, each with an optional
/// fraction and a unit (ns, us, µs, ms, s, m, h), e.g. "500ms", "1m30s", "1.5s"; a bare "0" is allowed.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut nanos = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        // Rust's float parser takes "1." and ".5", as Go does, but also "inf" and "1e3", which never
        // reach it here because letters end the number.
        let value: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        nanos += value * scale;
        rest = tail;
    }
    // Saturates at u64::MAX ns (584 years), where Go reports an overflow; no test waits that long.
    Some(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU16, Ordering};

    use super::*;
    use crate::{TestServer, eventually};

    const TOKEN: &str = "s3cret";

    fn url(consul: &FakeConsul, path: &str) -> String {
        format!("http://{}:{}{path}", consul.host(), consul.port())
    }

    /// A health endpoint answering with whatever status `code` holds.
    async fn health_server(code: Arc<AtomicU16>) -> TestServer {
        let router = Router::new().route(
            "/health",
            get(move || {
                let code = code.load(Ordering::SeqCst);
                async move { StatusCode::from_u16(code).expect("a valid status code") }
            }),
        );
        TestServer::spawn(router).await
    }

    async fn register(consul: &FakeConsul, body: Value) -> reqwest::Response {
        crate::client()
            .put(url(consul, "/v1/agent/service/register"))
            .json(&body)
            .send()
            .await
            .expect("register")
    }

    /// The index header and the entries of a health query.
    async fn health(consul: &FakeConsul, query: &str) -> (u64, Vec<Value>) {
        let response = crate::client()
            .get(url(consul, &format!("/v1/health/service/orders{query}")))
            .send()
            .await
            .expect("health query");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let index = response.headers()["x-consul-index"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("a number");
        let body = crate::json(response).await;
        (index, body.as_array().expect("an array").clone())
    }

    fn status_of(entry: &Value) -> &str {
        entry["Checks"][1]["Status"]
            .as_str()
            .expect("a service check")
    }

    #[tokio::test]
    async fn requests_without_the_acl_token_are_refused_and_every_token_is_recorded() {
        let consul = FakeConsul::start(Some(TOKEN)).await;
        let body = json!({"Name": "orders", "ID": "orders-1", "Port": 8080});
        let client = crate::client();
        let endpoint = url(&consul, "/v1/agent/service/register");

        let refused = client.put(&endpoint).json(&body).send().await.expect("put");
        assert_eq!(refused.status(), 403);
        assert!(
            refused.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain")
        );
        assert_eq!(refused.text().await.expect("body"), "ACL not found");
        let wrong = client
            .put(&endpoint)
            .header("X-Consul-Token", "guess")
            .json(&body)
            .send();
        assert_eq!(wrong.await.expect("put").status(), 403);

        let bearer = client.put(&endpoint).bearer_auth(TOKEN).json(&body).send();
        assert_eq!(bearer.await.expect("put").status(), 200);
        let query = client
            .get(url(&consul, "/v1/health/service/orders"))
            .header("X-Consul-Token", TOKEN);
        assert_eq!(query.send().await.expect("get").status(), 200);

        assert_eq!(consul.tokens_seen(), ["guess", TOKEN, TOKEN]);
        assert_eq!(consul.service_ids(), ["orders-1"]);
        assert_eq!(consul.registrations(), [body]);
    }

    #[tokio::test]
    async fn a_registered_service_is_critical_until_its_http_check_passes() {
        let code = Arc::new(AtomicU16::new(503));
        let target = health_server(Arc::clone(&code)).await;
        let consul = FakeConsul::start(None).await;
        let registered = register(
            &consul,
            json!({
                "Name": "orders", "ID": "orders-1", "Address": "10.0.0.1", "Port": 8080,
                "Meta": {"version": "1"}, "Tags": ["v1"],
                "Check": {"HTTP": target.url("/health"), "Interval": "50ms", "Timeout": "1s"},
            }),
        )
        .await;
        assert_eq!(registered.status(), 200);

        let (_, entries) = health(&consul, "").await;
        let [entry] = entries.as_slice() else {
            panic!("one entry: {entries:?}")
        };
        assert_eq!(entry["Node"]["Node"], NODE);
        assert_eq!(entry["Service"]["ID"], "orders-1");
        assert_eq!(entry["Service"]["Service"], "orders");
        assert_eq!(entry["Service"]["Address"], "10.0.0.1");
        assert_eq!(entry["Service"]["Port"], 8080);
        assert_eq!(entry["Service"]["Meta"]["version"], "1");
        assert_eq!(entry["Service"]["Tags"][0], "v1");
        assert_eq!(entry["Checks"][0]["CheckID"], "serfHealth");
        assert_eq!(entry["Checks"][1]["CheckID"], "service:orders-1");
        assert_eq!(entry["Checks"][1]["ServiceID"], "orders-1");
        assert_eq!(entry["Checks"][1]["ServiceName"], "orders");
        assert_eq!(entry["Checks"][1]["Name"], "Service 'orders' check");
        assert_eq!(status_of(entry), "critical");
        assert!(health(&consul, "?passing").await.1.is_empty());

        code.store(200, Ordering::SeqCst);
        let passing = eventually("the check to pass", Duration::from_secs(3), || async {
            let (_, entries) = health(&consul, "?passing=true").await;
            (!entries.is_empty()).then_some(entries)
        })
        .await;
        assert_eq!(status_of(&passing[0]), "passing");
    }

    #[tokio::test]
    async fn a_service_critical_for_longer_than_deregister_critical_service_after_is_removed() {
        let code = Arc::new(AtomicU16::new(500));
        let target = health_server(code).await;
        let consul = FakeConsul::start(None).await;
        let started = Instant::now();
        register(
            &consul,
            json!({
                "Name": "orders",
                "Check": {
                    "HTTP": target.url("/health"),
                    "Interval": "50ms",
                    "DeregisterCriticalServiceAfter": "300ms",
                },
            }),
        )
        .await;
        assert_eq!(
            consul.service_ids(),
            ["orders"],
            "the ID defaults to the name"
        );
        eventually("the reaper", Duration::from_secs(3), || async {
            consul.service_ids().is_empty().then_some(())
        })
        .await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(
            consul.deregistrations().is_empty(),
            "the reaper is not a request"
        );
    }

    #[tokio::test]
    async fn set_status_overrides_the_fakes_own_check() {
        let target = health_server(Arc::new(AtomicU16::new(200))).await;
        let consul = FakeConsul::start(None).await;
        register(
            &consul,
            json!({
                "Name": "orders", "ID": "orders-1",
                "Check": {"Name": "orders /health", "HTTP": target.url("/health"), "Interval": "20ms"},
            }),
        )
        .await;
        eventually("the check to pass", Duration::from_secs(3), || async {
            (health(&consul, "?passing").await.1.len() == 1).then_some(())
        })
        .await;

        consul.set_status("orders-1", "critical");
        // Several check intervals: the passing endpoint no longer counts.
        tokio::time::sleep(Duration::from_millis(150)).await;
        let entry = &health(&consul, "").await.1[0];
        assert_eq!(status_of(entry), "critical");
        assert_eq!(entry["Checks"][1]["Name"], "orders /health");
        consul.set_status("orders-1", "passing");
        assert_eq!(health(&consul, "?passing").await.1.len(), 1);
    }

    #[tokio::test]
    async fn a_blocking_query_returns_when_the_index_changes() {
        let consul = FakeConsul::start(None).await;
        let seen = consul.index();
        let query = tokio::spawn({
            let url = url(
                &consul,
                &format!("/v1/health/service/orders?index={seen}&wait=4s"),
            );
            async move { crate::client().get(url).send().await.expect("query") }
        });
        eventually("the query to arrive", Duration::from_secs(2), || async {
            (!consul.health_queries().is_empty()).then_some(())
        })
        .await;
        assert_eq!(
            consul.health_queries(),
            [HealthQuery {
                service: "orders".into(),
                index: Some(seen),
                wait: Some("4s".into()),
                passing: false
            }]
        );
        let started = Instant::now();
        register(&consul, json!({"Name": "orders", "Port": 1})).await;

        let response = query.await.expect("the query task");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "returned on the change, not on wait"
        );
        let index: u64 = response.headers()["x-consul-index"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("a number");
        assert!(index > seen);
        assert_eq!(crate::json(response).await[0]["Service"]["Port"], 1);
    }

    #[tokio::test]
    async fn a_blocking_query_answers_with_the_same_index_when_wait_expires() {
        let consul = FakeConsul::start(None).await;
        let seen = consul.index();
        let started = Instant::now();
        let (index, entries) = health(&consul, &format!("?index={seen}&wait=300ms")).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(index, seen);
        assert!(entries.is_empty(), "an unknown service has no entries");
    }

    #[tokio::test]
    async fn reset_index_wakes_blocking_queries_with_the_lower_index() {
        let consul = FakeConsul::start(None).await;
        let seen = consul.index();
        let query = tokio::spawn({
            let url = url(
                &consul,
                &format!("/v1/health/service/orders?index={seen}&wait=4s"),
            );
            async move { crate::client().get(url).send().await.expect("query") }
        });
        eventually("the query to arrive", Duration::from_secs(2), || async {
            (!consul.health_queries().is_empty()).then_some(())
        })
        .await;
        consul.reset_index(3);
        let response = tokio::time::timeout(Duration::from_secs(2), query)
            .await
            .expect("woken by the reset")
            .expect("the query task");
        assert_eq!(response.headers()["x-consul-index"], "3");
        assert_eq!(consul.index(), 3);
    }

    #[tokio::test]
    async fn deregistering_an_unknown_id_is_404_and_a_known_one_removes_it() {
        let consul = FakeConsul::start(None).await;
        let client = crate::client();
        let unknown = client
            .put(url(&consul, "/v1/agent/service/deregister/orders"))
            .send()
            .await
            .expect("put");
        assert_eq!(unknown.status(), 404);
        assert_eq!(
            unknown.text().await.expect("body"),
            "Unknown service ID \"orders\". Ensure that the service ID is passed, not the service name."
        );

        register(&consul, json!({"Name": "orders", "ID": "orders-1"})).await;
        let before = consul.index();
        let known = client
            .put(url(&consul, "/v1/agent/service/deregister/orders-1"))
            .send()
            .await
            .expect("put");
        assert_eq!(known.status(), 200);
        assert!(consul.service_ids().is_empty());
        assert!(consul.index() > before);
        assert_eq!(consul.deregistrations(), ["orders", "orders-1"]);
    }

    #[tokio::test]
    async fn registration_needs_a_name_and_replaces_a_service_with_the_same_id() {
        let consul = FakeConsul::start(None).await;
        let nameless = register(&consul, json!({"ID": "x", "Port": 1})).await;
        assert_eq!(nameless.status(), 400);
        assert_eq!(nameless.text().await.expect("body"), "Missing service name");

        register(
            &consul,
            json!({"Name": "orders", "ID": "orders-1", "Port": 1}),
        )
        .await;
        register(
            &consul,
            json!({"Name": "orders", "ID": "orders-1", "Port": 2}),
        )
        .await;
        let (_, entries) = health(&consul, "").await;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0]["Service"]["Port"], 2);
        assert_eq!(
            entries[0]["Checks"].as_array().map(Vec::len),
            Some(1),
            "no check, so only the node's serfHealth"
        );
    }

    #[tokio::test]
    async fn stop_ends_blocking_queries_and_closes_the_port() {
        let consul = FakeConsul::start(None).await;
        let seen = consul.index();
        let endpoint = url(
            &consul,
            &format!("/v1/health/service/orders?index={seen}&wait=4s"),
        );
        let query = tokio::spawn(crate::client().get(endpoint.clone()).send());
        eventually("the query to arrive", Duration::from_secs(2), || async {
            (!consul.health_queries().is_empty()).then_some(())
        })
        .await;
        tokio::time::timeout(Duration::from_secs(2), consul.stop())
            .await
            .expect("stop in time");
        assert!(query.await.expect("the query task").is_ok());
        assert!(crate::client().get(endpoint).send().await.is_err());
    }

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        for invalid in ["", "5", "s", "1d", "-1s", "1.2.3s"] {
            assert_eq!(parse_go_duration(invalid), None, "{invalid:?}");
        }
    }
}
