//! Service discovery with real processes: users instances of the `logicore` executable register in a real
//! etcd server, and a gateway process follows them while a client keeps sending requests through it.
//! Instances are killed (SIGKILL), added and stopped (SIGTERM), and etcd itself is stopped.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::registries::consul::FakeConsul;
use testkit::registries::etcd::EtcdServer;
use testkit::registries::free_port;
use tokio_util::sync::CancellationToken;

mod support;

use support::{logicore, promtool_accepts};

/// A child process, killed when dropped.
struct Process(Child);

impl Process {
    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(sent.success());
    }

    fn has_exited(&mut self) -> bool {
        self.0.try_wait().ok().flatten().is_some()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A users instance on its own port, registering in etcd.
struct UsersInstance {
    process: Process,
    port: u16,
}

impl UsersInstance {
    async fn start(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let process = Process(
            logicore(env)
                .stdout(Stdio::null())
                .env("PORT", port.to_string())
                .arg("users")
                .spawn()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let instance = Self { process, port };
        instance.wait_until_ready().await;
        instance
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Polls its `/readyz` until it says ready; returns when it first did.
    async fn wait_until_ready(&self) -> Instant {
        let client = testkit::client();
        let readyz = format!("http://127.0.0.1:{}/readyz", self.port);
        testkit::eventually(
            "a users instance to be ready",
            Duration::from_secs(60),
            || {
                let request = client.get(&readyz).send();
                async move {
                    request
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| Instant::now())
                }
            },
        )
        .await
    }

    /// Requests for `/api/v1/users/me` it has answered, from its own metrics.
    async fn served(&self) -> u64 {
        let page = testkit::metrics(&format!("http://127.0.0.1:{}/metrics", self.port)).await;
        testkit::metric_sum(&page, "http_requests_total", "users/me") as u64
    }
}

/// The gateway's view of the users upstream, from its admin listener's detailed `/readyz`; null while
/// the gateway is not listening yet.
async fn users_discovery(admin: &str) -> Value {
    let Ok(response) = testkit::client()
        .get(format!("{admin}/readyz"))
        .send()
        .await
    else {
        return Value::Null;
    };
    let report: Value = response.json().await.unwrap_or_default();
    report["checks"]["users"]["discovery"].clone()
}

fn endpoints(discovery: &Value) -> Vec<String> {
    discovery["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls the gateway until its users endpoints are exactly `expected` (sorted URLs); returns when.
async fn wait_for_endpoints(admin: &str, mut expected: Vec<String>, within: Duration) -> Instant {
    expected.sort();
    testkit::eventually(
        &format!("the gateway's users endpoints to be {expected:?}"),
        within,
        || {
            let expected = expected.clone();
            async move {
                let seen = endpoints(&users_discovery(admin).await);
                (seen == expected).then(Instant::now)
            }
        },
    )
    .await
}

/// Requests sent through the gateway until stopped, counting those that did not succeed.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(gateway: String, token: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, sent, failed, failures) =
                (stop.clone(), sent.clone(), failed.clone(), failures.clone());
            async move {
                let client = testkit::client();
                while !stop.load(Ordering::Relaxed) {
                    let response = client
                        .get(format!("{gateway}/api/v1/users/me"))
                        .bearer_auth(&token)
                        .send()
                        .await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    let failure = match response {
                        Ok(response) if response.status() == 200 => None,
                        Ok(response) => Some(format!(
                            "{} {}",
                            response.status(),
                            response.text().await.unwrap_or_default()
                        )),
                        Err(error) => Some(error.to_string()),
                    };
                    if let Some(failure) = failure {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(failure);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        Self {
            stop,
            sent,
            failed,
            failures,
            task,
        }
    }

    fn assert_no_failures(&self, during: &str) {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(
            self.failed.load(Ordering::Relaxed),
            0,
            "requests failed {during}: {:?}",
            failures.iter().take(5).collect::<Vec<_>>()
        );
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_else(|e| panic!("{e}"));
        self.sent.load(Ordering::Relaxed)
    }
}

#[tokio::test]
async fn the_gateway_follows_users_instances_registered_in_a_real_etcd() {
    testkit::init();
    let mut etcd = EtcdServer::start().await;
    let db = testkit::TestDb::new();
    let endpoint = etcd.endpoint();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("DISCOVERY_BACKEND", "etcd"),
        ("ETCD_ENDPOINTS", endpoint.as_str()),
        ("SERVICE_ADVERTISE_ADDRESS", "127.0.0.1"),
        ("LOGICORE_DISCOVERY__ETCD_LEASE_TTL_S", "2"),
        ("LOGICORE_DISCOVERY__DEREGISTER_DELAY_MS", "500"),
    ];
    let first = UsersInstance::start(&env).await;
    let second = UsersInstance::start(&env).await;

    let gateway_port = free_port().to_string();
    let admin_port = free_port().to_string();
    let mut gateway_env = env.to_vec();
    gateway_env.extend([
        ("GATEWAY_PORT", gateway_port.as_str()),
        ("LOGICORE_GATEWAY__ADMIN_PORT", admin_port.as_str()),
        ("LOGICORE_GATEWAY__LOAD_BALANCING", "round_robin"),
        ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000"),
    ]);
    let _gateway = Process(
        logicore(&gateway_env)
            .stdout(Stdio::null())
            .arg("gateway")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    let admin = format!("http://127.0.0.1:{admin_port}");
    wait_for_endpoints(
        &admin,
        vec![first.url(), second.url()],
        Duration::from_secs(60),
    )
    .await;

    let client = testkit::client();
    let registered = client
        .post(format!("{gateway}/api/v1/auth/register"))
        .json(
            &json!({"email": "ada@example.com", "password": "correct-horse-9", "full_name": "Ada"}),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registered.status(), 201);
    let login: Value = client
        .post(format!("{gateway}/api/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "correct-horse-9"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_default();
    let token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let load = Load::start(gateway.clone(), token);
    testkit::eventually(
        "both instances to serve requests",
        Duration::from_secs(10),
        || async { (first.served().await > 5 && second.served().await > 5).then_some(()) },
    )
    .await;

    // SIGKILL: no deregistration; the instance leaves when its lease runs out, and the requests sent to it
    // meanwhile are retried on the other one.

    let killed_at = Instant::now();
    first.process.signal("-KILL");
    let removed_at = wait_for_endpoints(&admin, vec![second.url()], Duration::from_secs(10)).await;
    let removal = removed_at - killed_at;
    assert!(
        removal <= Duration::from_secs(5),
        "a killed instance stayed {removal:?}"
    );
    load.assert_no_failures("while an instance was killed");

    // A new instance receives traffic soon after it is ready.
    let third = UsersInstance::start(&env).await;
    let ready_at = Instant::now();
    let before = third.served().await;
    let first_request_at = testkit::eventually(
        "the new instance to receive a request",
        Duration::from_secs(10),
        || async { (third.served().await > before).then(Instant::now) },
    )
    .await;
    let joining = first_request_at - ready_at;
    assert!(
        joining <= Duration::from_secs(2),
        "a new instance waited {joining:?}"
    );
    load.assert_no_failures("while an instance was added");

    // SIGTERM: deregistered first, while it still accepts; then it drains and exits.
    let mut second = second;
    second.process.signal("-TERM");
    wait_for_endpoints(&admin, vec![third.url()], Duration::from_secs(5)).await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", second.port))
            .await
            .is_ok()
            && !second.process.has_exited(),
        "the instance stopped accepting before the gateway dropped it"
    );
    testkit::eventually(
        "the stopped instance to exit",
        Duration::from_secs(30),
        || std::future::ready(second.process.has_exited().then_some(())),
    )
    .await;
    load.assert_no_failures("while an instance was stopped");

    // etcd stopped: the gateway keeps routing on the last set it knew, and says it is stale.
    etcd.stop().await;
    let stale = testkit::eventually(
        "the gateway to flag the users endpoints stale",
        Duration::from_secs(15),
        || async {
            let discovery = users_discovery(&admin).await;
            (discovery["stale"] == true).then_some(discovery)
        },
    )
    .await;
    assert_eq!(endpoints(&stale), vec![third.url()]);
    let served = third.served().await;
    testkit::eventually(
        "requests to go on while etcd is down",
        Duration::from_secs(5),
        || async { (third.served().await > served + 20).then_some(()) },
    )
    .await;
    load.assert_no_failures("while etcd was down");
    let metrics = testkit::metrics(&format!("{admin}/metrics")).await;
    for family in ["discovery_endpoints{", "discovery_stale{"] {
        assert!(
            metrics.lines().any(|line| line.starts_with(family)
                && line.contains(r#"backend="etcd""#)
                && line.contains(r#"upstream="users""#)
                && line.ends_with(" 1")),
            "{family} of users is not 1: {metrics}"
        );
    }
    promtool_accepts(&metrics);
    let sent = load.stop().await;
    eprintln!(
        "etcd discovery: SIGKILL to removal {removal:?}; ready to first request {joining:?}; \
         {sent} requests, 0 failed"
    );
}

/// A users service and a gateway in this process, both pointed at the Consul fake by the original
/// deployment's variables (`CONSUL_HOST` selects the backend).
#[tokio::test]
async fn a_service_registers_in_consul_with_a_health_check_and_the_gateway_follows_by_blocking_queries()
 {
    testkit::init();
    let consul = FakeConsul::start(Some("acl-secret")).await;
    let db = testkit::TestDb::new();
    let consul_port = consul.port().to_string();
    let settings = testkit::settings_with(
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("CONSUL_HOST", "127.0.0.1"),
            ("CONSUL_PORT", consul_port.as_str()),
            ("CONSUL_HTTP_TOKEN", "acl-secret"),
            ("LOGICORE_DISCOVERY__CONSUL_CHECK_INTERVAL_MS", "200"),
            ("LOGICORE_DISCOVERY__REFRESH_INTERVAL_MS", "2000"),
            ("LOGICORE_DISCOVERY__DEREGISTER_DELAY_MS", "200"),
        ],
        &logicore::services::sections(),
    );
    assert_eq!(settings.discovery.backend, "consul");

    let listener = testkit::bind().await;
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let users = logicore::services::named("users")
        .unwrap_or_else(|| panic!("no users service"))
        .configure(&settings)
        .unwrap_or_else(|e| panic!("{e}"));
    let stop_users = CancellationToken::new();
    let users_task = tokio::spawn(users.run(listener, stop_users.clone()));

    let config = gateway::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    let public = testkit::bind().await;
    let admin_listener = testkit::bind().await;
    let admin = format!(
        "http://{}",
        admin_listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
    );
    let stop_gateway = CancellationToken::new();
    let gateway_task = tokio::spawn(gateway::run(
        config,
        logicore::services::specs(),
        gateway::Listeners {
            public,
            admin: admin_listener,
        },
        stop_gateway.clone(),
    ));

    let registration = testkit::eventually(
        "the users service to register",
        Duration::from_secs(30),
        || std::future::ready(consul.registrations().first().cloned()),
    )
    .await;
    let id = format!("users-127-0-0-1-{port}");
    assert_eq!(registration["ID"], id.as_str(), "{registration}");
    assert_eq!(registration["Name"], "users");
    assert_eq!(registration["Address"], "127.0.0.1");
    assert_eq!(registration["Port"], port);
    assert_eq!(
        registration["Meta"]["version"],
        settings.service.version.as_str()
    );
    let check = &registration["Check"];
    assert_eq!(
        check["HTTP"],
        format!("http://127.0.0.1:{port}/health").as_str()
    );
    assert_eq!(check["Interval"], "200ms");
    assert_eq!(check["DeregisterCriticalServiceAfter"], "60s");

    // Passing once the agent's check reaches /health; the gateway learns it from its blocking query.
    let url = format!("http://127.0.0.1:{port}/");
    wait_for_endpoints(&admin, vec![url.clone()], Duration::from_secs(15)).await;
    let blocking = testkit::eventually("a blocking health query", Duration::from_secs(10), || {
        std::future::ready(
            consul
                .health_queries()
                .into_iter()
                .find(|q| q.service == "users" && q.index.is_some()),
        )
    })
    .await;
    assert!(blocking.passing, "{blocking:?}");
    assert_eq!(blocking.wait.as_deref(), Some("2000ms"));

    // The index goes backwards (a restored server): the gateway starts over without an index, then blocks
    // on the new one.
    let asked_before = consul.health_queries().len();
    consul.reset_index(1);
    let after_reset = testkit::eventually(
        "a query without an index after the reset, then a blocking one",
        Duration::from_secs(10),
        || {
            let queries: Vec<_> = consul
                .health_queries()
                .into_iter()
                .skip(asked_before)
                .filter(|q| q.service == "users")
                .collect();
            let restarted = queries.iter().position(|q| q.index.is_none());
            std::future::ready(restarted.and_then(|at| {
                queries[at + 1..]
                    .iter()
                    .find(|q| q.index.is_some())
                    .cloned()
            }))
        },
    )
    .await;
    assert!(after_reset.index.unwrap_or_default() >= 1);
    wait_for_endpoints(&admin, vec![url.clone()], Duration::from_secs(5)).await;

    // Shutdown: deregistered first, and the gateway drops the instance.
    stop_users.cancel();
    testkit::eventually(
        "the users service to deregister",
        Duration::from_secs(10),
        || std::future::ready(consul.deregistrations().contains(&id).then_some(())),
    )
    .await;
    wait_for_endpoints(&admin, Vec::new(), Duration::from_secs(5)).await;
    users_task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let tokens = consul.tokens_seen();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|token| token == "acl-secret"),
        "{tokens:?}"
    );
    stop_gateway.cancel();
    gateway_task
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("{e}"));
}
