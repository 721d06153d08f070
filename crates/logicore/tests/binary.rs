//! The real `logicore` executable: configuration commands, and `all` serving the first vertical slice.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

#[path = "support/all.rs"]
mod all;
mod support;

use all::{ADMIN_EMAIL, ADMIN_PASSWORD, AllServices, Running, wait_until_ready};
use support::{logicore, promtool_accepts};

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run logicore: {e}"))
}

#[test]
fn config_check_lists_every_bad_key_and_exits_2() {
    let output = run(logicore(&[
        ("DB_POOL_MAX", "0"),
        ("GATEWAY_PORT", "http"),
        ("USER_SERVICE_URL", "ftp://x"),
        ("LOG_LEVEL", "loud"),
        ("LOGICORE_ORDERS__PORT", "4001"),
        ("LOGICORE_REDIS__COMMAND_TIMEOUT_MS", "0"),
    ])
    .args(["config", "check"]));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "gateway.port: must be an integer",
        "log.level: must be a level",
        "both listen on port 4001",
        "redis.command_timeout_ms: must be positive",
        "database.pool_max: must be between 1 and 1000",
        "gateway.upstreams.users: must be an http:// URL",
    ] {
        assert!(stderr.contains(expected), "{expected} missing: {stderr}");
    }
}

#[test]
fn all_refuses_port_since_it_runs_several_services() {
    let output = run(logicore(&[("PORT", "7000")]).arg("all"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("service.port: `all` runs every service")
            && stderr.contains("LOGICORE_USERS__PORT")
            && stderr.contains("env PORT"),
        "{stderr}"
    );
}

#[test]
fn the_help_lists_every_service_and_an_unknown_one_is_refused_like_any_unknown_command() {
    let help = run(logicore(&[]).arg("--help"));
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("each run alone with `logicore <service>`: users, inventory, orders."),
        "{text}"
    );
    for words in [&["billing"][..], &["orders", "extra"], &["Orders"]] {
        let output = run(logicore(&[]).args(words));
        assert_eq!(output.status.code(), Some(2), "{words:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("the services are users, inventory, orders"),
            "{words:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_service_runs_alone_by_its_name_on_port_and_stops_on_sigterm() {
    let db = testkit::TestDb::new();
    let port = testkit::registries::free_port().to_string();
    let env = [("DATABASE_URL", db.url.as_str()), ("PORT", port.as_str())];
    let mut server = Running(
        logicore(&env)
            .stdout(Stdio::null())
            .arg("orders")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let client = testkit::client();
    let health = format!("http://127.0.0.1:{port}/health");
    testkit::eventually(
        "the orders service to answer",
        Duration::from_secs(60),
        || {
            let request = client.get(&health).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        },
    )
    .await;
    // Only the orders service has this route: without a token it is 401 there, and 404 anywhere else.
    let orders = client
        .get(format!("http://127.0.0.1:{port}/api/v1/orders"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    testkit::assert_problem(orders, 401, "UNAUTHORIZED").await;
    server.stop_with_sigterm().await;
}

#[test]
fn migrations_run_again_print_no_notices() {
    let db = testkit::TestDb::new();
    let env = [("DATABASE_URL", db.url.as_str()), ("LOG_LEVEL", "info")];
    let first = run(logicore(&env).arg("migrate"));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let again = run(logicore(&env).arg("migrate"));
    assert!(again.status.success());
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(printed.contains("migrations applied"), "{printed}");
    assert!(!printed.contains("already exists"), "{printed}");
}

#[test]
fn config_check_accepts_the_defaults() {
    let output = run(logicore(&[]).args(["config", "check"]));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn config_show_masks_secrets_and_says_where_values_came_from() {
    let output = run(logicore(&[
        ("DB_PASSWORD", "pg-secret-42"),
        ("GATEWAY_JWT_SECRET", "jwt-secret-that-nobody-may-see-0123"),
        ("DATABASE_URL", "postgres://app:url-secret-7@db/lc"),
    ])
    .args(["config", "show"]));
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for secret in ["pg-secret-42", "jwt-secret-that-nobody", "url-secret-7"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    assert!(
        stdout.contains("auth.jwt_secret = \"********\"  # env GATEWAY_JWT_SECRET"),
        "{stdout}"
    );
    assert!(stdout.contains("users.port = 4001  # default"), "{stdout}");
}

#[test]
fn production_refuses_to_start_with_the_development_jwt_secret_once_hs256_is_accepted() {
    let output = run(logicore(&[
        ("LOGICORE_ENV", "production"),
        ("LOGICORE_AUTH__ACCEPT_HS256", "true"),
    ])
    .arg("gateway"));
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("auth.jwt_secret"));
}

impl Running {
    /// Sends SIGTERM and asserts the process exits successfully within 30 s, as a graceful shutdown does.
    async fn stop_with_sigterm(&mut self) {
        let signalled = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(signalled.success());
        let status = testkit::eventually(
            "logicore to exit after SIGTERM",
            Duration::from_secs(30),
            || {
                let exited = self.0.try_wait().ok().flatten();
                async move { exited }
            },
        )
        .await;
        assert!(status.success(), "exit status after SIGTERM: {status}");
    }
}

#[tokio::test]
async fn all_serves_register_login_and_me_through_the_gateway_and_stops_cleanly_on_sigterm() {
    let db = testkit::TestDb::new();
    let gateway_port = testkit::registries::free_port().to_string();
    let admin_port = testkit::registries::free_port().to_string();
    let users_port = testkit::registries::free_port().to_string();
    let inventory_port = testkit::registries::free_port().to_string();
    let orders_port = testkit::registries::free_port().to_string();
    let users_url = format!("http://127.0.0.1:{users_port}");
    let inventory_url = format!("http://127.0.0.1:{inventory_port}");
    let log_dir = std::env::temp_dir().join(format!("logicore-logs-{}", uuid::Uuid::new_v4()));
    let log_dir_text = log_dir.display().to_string();
    let env = [
        ("LOG_DIR", log_dir_text.as_str()),
        ("DATABASE_URL", db.url.as_str()),
        ("GATEWAY_PORT", gateway_port.as_str()),
        ("LOGICORE_GATEWAY__ADMIN_PORT", admin_port.as_str()),
        // Only the services' ports move: the gateway's upstreams must follow them (no *_SERVICE_URL).
        ("LOGICORE_USERS__PORT", users_port.as_str()),
        ("LOGICORE_INVENTORY__PORT", inventory_port.as_str()),
        ("LOGICORE_ORDERS__PORT", orders_port.as_str()),
    ];

    let mut create_admin = logicore(&env)
        .args([
            "users",
            "create-admin",
            "--email",
            "root@logicore.test",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = create_admin.stdin.take() {
        stdin
            .write_all(b"Admin-password-1\n")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let created = create_admin
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(created.status.success());
    assert_eq!(
        String::from_utf8_lossy(&created.stdout).trim(),
        "created admin root@logicore.test"
    );

    let mut server = Running(
        logicore(&env)
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .arg("all")
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let client = testkit::client();
    let gateway = format!("http://127.0.0.1:{gateway_port}");
    wait_until_ready(&gateway).await;

    let registered = client
        .post(format!("{gateway}/api/v1/auth/register"))
        .json(&json!({"email": "Ada@Example.com", "password": "correct-horse-9", "full_name": "Ada Lovelace"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(registered.status(), 201);
    let login = client
        .post(format!("{gateway}/api/v1/auth/login"))
        .json(&json!({"email": "ada@example.com", "password": "correct-horse-9"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login.status(), 200);
    let tokens: Value = testkit::json(login).await;
    let token = tokens["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let me = client
        .get(format!("{gateway}/api/v1/users/me"))
        .bearer_auth(&token)
        .header("x-request-id", "e2e-me-1")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["x-request-id"], "e2e-me-1");
    let profile: Value = testkit::json(me).await;
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["role"], "customer");

    let admin_login = client
        .post(format!("{gateway}/api/v1/auth/login"))
        .json(&json!({"email": "root@logicore.test", "password": "Admin-password-1"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin: Value = testkit::json(admin_login).await;
    let listed = client
        .get(format!("{gateway}/api/v1/users?role=customer"))
        .bearer_auth(admin["access_token"].as_str().unwrap_or_default())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(listed.status(), 200);
    let page: Value = testkit::json(listed).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));

    let admin_token = admin["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let warehouse = client
        .post(format!("{gateway}/api/v1/inventory/warehouses"))
        .bearer_auth(&admin_token)
        .json(&json!({"code": "MAIN", "name": "Main", "address": "1 Dock Road", "priority": 1}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(warehouse.status(), 201);
    let csv = std::env::temp_dir().join(format!("logicore-import-{}.csv", uuid::Uuid::new_v4()));
    std::fs::write(
        &csv,
        "sku,name,warehouse_code,quantity\nBOLT-1,Bolt,MAIN,10\nNUT-1,Nut,NOWHERE,5\nWASHER-1,Washer,MAIN,7\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let import = run(logicore(&env).args(["inventory", "import"]).arg(&csv));
    let _ = std::fs::remove_file(&csv);
    assert!(
        !import.status.success(),
        "a rejected row makes the command fail"
    );
    let report: Value = serde_json::from_slice(&import.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["rows_applied"], 2, "{report}");
    assert_eq!(report["errors"][0]["line"], 3, "{report}");
    let bolts = client
        .get(format!(
            "{gateway}/api/v1/inventory/stock-levels?sku=BOLT-1"
        ))
        .bearer_auth(&admin_token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let levels: Value = testkit::json(bolts).await;
    assert_eq!(levels["data"][0]["on_hand"], 10, "{levels}");

    for url in [
        format!("http://127.0.0.1:{admin_port}/metrics"),
        format!("{users_url}/metrics"),
        format!("{inventory_url}/metrics"),
    ] {
        let text = client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default();
        assert!(text.contains("http_requests_total"), "{text}");
        promtool_accepts(&text);
    }

    server.stop_with_sigterm().await;
    let logged = std::fs::read_dir(&log_dir)
        .unwrap_or_else(|e| panic!("LOG_DIR was not created: {e}"))
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .any(|text| {
            text.lines()
                .any(|line| line.contains("\"request_id\":\"e2e-me-1\""))
        });
    assert!(
        logged,
        "the request's log lines carry its id in the rolling file"
    );

    let _ = std::fs::remove_dir_all(&log_dir);
}

/// `rotel-agent` (PyPI `rotel`, installed by `.ci/run`): a real OTLP receiver, on gRPC and HTTP, that
/// prints every span it receives.
struct Receiver {
    _agent: Running,
    output: std::path::PathBuf,
    grpc: u16,
    http: u16,
}

impl Receiver {
    async fn start() -> Self {
        let located = run(Command::new("python3").args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ]));
        assert!(
            located.status.success(),
            "rotel must be installed (pip install --pre rotel): {}",
            String::from_utf8_lossy(&located.stderr)
        );
        let agent = String::from_utf8_lossy(&located.stdout).trim().to_owned();
        let (grpc, http) = (
            testkit::registries::free_port(),
            testkit::registries::free_port(),
        );
        let output =
            std::env::temp_dir().join(format!("logicore-rotel-{}.log", uuid::Uuid::new_v4()));
        let log = std::fs::File::create(&output).unwrap_or_else(|e| panic!("{e}"));
        let errors = log.try_clone().unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(agent)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(log)
            .stderr(errors)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start rotel-agent: {e}"));
        let receiver = Self {
            _agent: Running(child),
            output,
            grpc,
            http,
        };
        for port in [grpc, http] {
            testkit::eventually(
                "rotel-agent to listen",
                Duration::from_secs(20),
                || async move {
                    tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .ok()
                },
            )
            .await;
        }
        receiver
    }

    /// The services (`service.name` of their resource) whose spans of `trace` arrived so far.
    fn services_of(&self, trace: &str) -> std::collections::BTreeSet<String> {
        let text = std::fs::read(&self.output).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let mut service = String::new();
        let mut found = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some((_, name)) = line.split_once("-> service.name: Str(") {
                service = name.trim_end_matches(')').to_owned();
            } else if line.contains("Trace ID") && line.trim_end().ends_with(trace) {
                found.insert(service.clone());
            }
        }
        found
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.output);
    }
}

/// An order placed through the gateway of `logicore all`, exporting to a real OTLP receiver over
/// `protocol`, arrives there as one trace with spans of the gateway, orders and inventory, each under
/// its own `service.name`.
async fn an_order_reaches_a_real_receiver_as_one_trace(protocol: &str) {
    let receiver = Receiver::start().await;
    let port = if protocol == "grpc" {
        receiver.grpc
    } else {
        receiver.http
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let all = AllServices::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_TRACES_SAMPLER_ARG", "1"),
        ("LOGICORE_TRACING__BATCH_DELAY_MS", "100"),
    ])
    .await;
    let admin = all.token(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let post = reqwest::Method::POST;
    let warehouse = all
        .call(
            post.clone(),
            "/api/v1/inventory/warehouses",
            Some(&admin),
            json!({"code": "OTLP", "name": "Otlp", "address": "1 Dock Road", "priority": 1}),
        )
        .await;
    all.call(
        post.clone(),
        "/api/v1/inventory/products",
        Some(&admin),
        json!({"sku": "SPAN-1", "name": "Span"}),
    )
    .await;
    all.call(
        post.clone(),
        "/api/v1/inventory/adjustments",
        Some(&admin),
        json!({"sku": "SPAN-1", "warehouse_id": warehouse["id"], "delta": 5, "reason": "receipt"}),
    )
    .await;
    let registration =
        json!({"email": "otlp@logicore.test", "password": "correct-horse-9", "full_name": "Otto"});
    let customer = all
        .call(post.clone(), "/api/v1/auth/register", None, registration)
        .await["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let trace = uuid::Uuid::new_v4().simple().to_string();
    let response = testkit::client()
        .post(format!("{}/api/v1/orders", all.gateway))
        .bearer_auth(&customer)
        .header("traceparent", format!("00-{trace}-b7ad6b7169203331-01"))
        .json(&json!({
            "lines": [{"sku": "SPAN-1", "quantity": 1, "unit_price": 100}],
            "currency": "EUR",
            "shipping_address": {"name": "Otto", "street": "1 Canal Street", "city": "Amsterdam", "postal_code": "1011AA", "country": "NL"},
        }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 201);
    let wanted = ["gateway", "inventory", "orders"];
    testkit::eventually(
        "the order's trace to reach the receiver from gateway, orders and inventory",
        Duration::from_secs(60),
        || {
            let services = receiver.services_of(&trace);
            let complete = wanted.iter().all(|name| services.contains(*name));
            async move { complete.then_some(()) }
        },
    )
    .await;
    let mut all = all;
    all.server.stop_with_sigterm().await;
}

#[tokio::test]
async fn an_order_reaches_a_real_otlp_receiver_over_grpc_as_one_trace() {
    an_order_reaches_a_real_receiver_as_one_trace("grpc").await;
}

#[tokio::test]
async fn an_order_reaches_a_real_otlp_receiver_over_http_as_one_trace() {
    an_order_reaches_a_real_receiver_as_one_trace("http/protobuf").await;
}

/// A collector that accepts connections and never answers: requests are served all the same, the spans
/// that do not fit the queue are dropped and counted, and SIGTERM still ends the process promptly.
#[tokio::test]
async fn a_collector_that_never_answers_costs_requests_nothing_and_dropped_spans_are_counted() {
    // Bound and never accepted from: connections complete in the backlog and wait for ever.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let endpoint = format!(
        "http://{}",
        silent.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let all = AllServices::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("LOGICORE_TRACING__QUEUE_SIZE", "8"),
        ("LOGICORE_TRACING__MAX_BATCH_SIZE", "4"),
        ("LOGICORE_TRACING__BATCH_DELAY_MS", "10"),
        ("LOGICORE_TRACING__EXPORT_TIMEOUT_MS", "1000"),
    ])
    .await;
    let client = testkit::client();
    for n in 0..100 {
        let response = client
            .get(format!("{}/api/v1/inventory/products?limit=1", all.gateway))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(response.status(), 401, "request {n}");
    }
    let metrics = format!("http://127.0.0.1:{}/metrics", all.listeners["admin"]);
    let dropped = testkit::eventually(
        "dropped spans to be counted",
        Duration::from_secs(10),
        || {
            let client = client.clone();
            let metrics = metrics.clone();
            async move {
                let text = client.get(metrics).send().await.ok()?.text().await.ok()?;
                let count: f64 = text
                    .lines()
                    .find(|line| line.starts_with("trace_spans_dropped_total"))?
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()?;
                (count > 0.0).then_some(count)
            }
        },
    )
    .await;
    assert!(dropped > 0.0);
    let mut all = all;
    all.server.stop_with_sigterm().await;
}

// Multi-threaded: the probe runs as a blocking child process while the server it asks answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_exits_0_for_a_2xx_and_1_otherwise_without_reading_configuration() {
    let up = testkit::TestServer::spawn(
        axum::Router::new().route("/health", axum::routing::get(|| async { "ok" })),
    )
    .await;
    // An invalid configuration in the environment does not matter to a probe.
    let health = up.url("/health");
    let probed = run(logicore(&[("DB_POOL_MAX", "0")]).args(["probe", &health]));
    assert_eq!(probed.status.code(), Some(0), "{probed:?}");
    let missing = run(logicore(&[]).args(["probe", &up.url("/nowhere")]));
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("404"),
        "{missing:?}"
    );
    let closed = format!(
        "http://127.0.0.1:{}/health",
        testkit::registries::free_port()
    );
    let refused = run(logicore(&[]).args(["probe", &closed]));
    assert_eq!(refused.status.code(), Some(1));
    let nonsense = run(logicore(&[]).args(["probe", "not a url"]));
    assert_eq!(nonsense.status.code(), Some(1));
}
