//! The deployment's metrics against a real Prometheus server: `logicore all` on free ports with a database of
//! its own, and Debian's `prometheus` scraping every LogiCore listener each second with the rules of
//! deploy/prometheus/rules.yml. After a little traffic through the gateway, Prometheus's HTTP API must show
//! every target up, every recording rule producing series, and every PromQL expression of every Grafana
//! dashboard (deploy/grafana/dashboards) parsing and returning data, except the few listed in
//! [`EXPECTED_EMPTY`] with the reason they have no series in a healthy run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

mod support;

use support::{logicore, promtool_accepts};

/// Expressions (after variable substitution, see [`concrete`]) that no series answers in a healthy run,
/// each with why. They must still parse.
const EXPECTED_EMPTY: &[(&str, &str)] = &[
    (
        "sum by (upstream, to) (increase(circuit_breaker_transitions_total{service=\"gateway\"}[30s]))",
        "a transition series exists only once a breaker changed state (opened after failures)",
    ),
    (
        "sum by (upstream) (rate(circuit_breaker_rejections_total{service=\"gateway\"}[30s]))",
        "a rejection series exists only once an open breaker refused a call",
    ),
    (
        "sum by (upstream, reason) (rate(gateway_upstream_retries_total{service=\"gateway\"}[30s]))",
        "a retry series exists only once an attempt failed and was retried",
    ),
    (
        "sum by (upstream, reason) (rate(gateway_upstream_retry_budget_exhausted_total{service=\"gateway\"}[30s]))",
        "exists only once the retry budget refused a retry",
    ),
    (
        "sum by (upstream, endpoint) (increase(gateway_upstream_ejections_total{service=\"gateway\"}[30s]))",
        "exists only once an instance was ejected after consecutive failures",
    ),
    (
        "max by (upstream, backend) (discovery_endpoints{service=\"gateway\"})",
        "set by a registry watch (consul, etcd, dns); static discovery, which `logicore all` uses, has none",
    ),
    (
        "max by (upstream) (discovery_stale{service=\"gateway\"})",
        "set by a registry watch (consul, etcd, dns); a static endpoint list is never stale",
    ),
    (
        "sum by (upstream) (rate(discovery_watch_updates_total{service=\"gateway\"}[30s]))",
        "static discovery (the default, which `logicore all` uses) watches no registry",
    ),
    (
        "sum by (upstream) (rate(discovery_watch_errors_total{service=\"gateway\"}[30s]))",
        "static discovery watches no registry, so it has no watch errors",
    ),
    (
        "sum by (group) (rate(messaging_events_retried_total{service=~\".+\"}[30s]))",
        "exists only once a handler asked for a retry",
    ),
    (
        "sum by (group) (rate(messaging_events_duplicates_total{service=~\".+\"}[30s]))",
        "exists only once the inbox skipped a redelivery",
    ),
    (
        "sum by (group) (increase(messaging_events_dead_lettered_total{service=~\".+\"}[30s]))",
        "exists only once a delivery was dead-lettered",
    ),
];

/// Grafana's variables and the value each gets here. `$__rate_interval` is four scrape intervals in
/// Grafana; a longer window is taken so that a rate covers the whole run.
const VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "30s"),
    ("__interval", "1s"),
    ("__range", "1m"),
    ("service", ".+"),
];

/// How long the whole check may take once both servers are up: scrapes and rule evaluations are 1 s apart.
const DEADLINE: Duration = Duration::from_secs(45);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed (and reaped) when dropped, however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Prometheus on a free loopback port with its own storage, scraping `targets` (job → host:port) every
/// second and evaluating rules.yml every second.
fn start_prometheus(dir: &Path, targets: &BTreeMap<&str, String>) -> (Killed, String) {
    let version = Command::new("prometheus").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "the `prometheus` server is needed (Debian package prometheus, which .ci/run installs): {version:?}"
    );
    let rules = repository().join("deploy/prometheus/rules.yml");
    // JSON is YAML: the configuration needs no YAML writer.
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [rules.display().to_string()],
        "scrape_configs": targets.iter().map(|(job, target)| json!({
            "job_name": job,
            "static_configs": [{"targets": [target]}],
        })).collect::<Vec<_>>(),
    });
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let address = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting prometheus: {e}"));
    (Killed(child), format!("http://{address}"))
}

/// Prometheus's HTTP API.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .unwrap_or_else(|e| panic!("{e}"));
        let response = self.client.get(url).send().await;
        match response {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(error) => json!({"status": "error", "error": error.to_string()}),
        }
    }

    /// An instant query: `Ok(number of series)` or `Err(Prometheus's error)`, e.g. a parse error.
    async fn series(&self, expr: &str) -> Result<usize, String> {
        let answer = self.get("/api/v1/query", &[("query", expr)]).await;
        if answer["status"] == "success" {
            Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
        } else {
            Err(format!("{}: {}", answer["errorType"], answer["error"]))
        }
    }
}

/// `logicore all` on free ports, with a first admin; the job name and `/metrics` address of each listener.
struct Platform {
    _server: Killed,
    gateway: String,
    targets: BTreeMap<&'static str, String>,
    client: reqwest::Client,
    _db: testkit::TestDb,
}

impl Platform {
    async fn start() -> Self {
        let db = testkit::TestDb::new();
        let ports: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
        // Its own exchange and cache prefix: other tests use the same RabbitMQ and Redis.
        let run = uuid::Uuid::new_v4().simple().to_string();
        let exchange = format!("lc_prometheus_{run}");
        let key_prefix = format!("lc-prometheus-{run}:");
        let env = [
            ("DATABASE_URL", db.url.as_str()),
            ("GATEWAY_PORT", ports[0].as_str()),
            ("LOGICORE_GATEWAY__ADMIN_PORT", ports[1].as_str()),
            ("LOGICORE_USERS__PORT", ports[2].as_str()),
            ("LOGICORE_INVENTORY__PORT", ports[3].as_str()),
            ("LOGICORE_ORDERS__PORT", ports[4].as_str()),
            ("ADMIN_EMAIL", "root@logicore.test"),
            ("ADMIN_PASSWORD", "Admin-password-1"),
            ("LOGICORE_MESSAGING__EXCHANGE", exchange.as_str()),
            ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
            ("LOGICORE_REDIS__KEY_PREFIX", key_prefix.as_str()),
            ("LOGICORE_INVENTORY__STOCK_GAUGE_INTERVAL_MS", "500"),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "100000"),
        ];
        let server = Killed(
            logicore(&env)
                .stdout(Stdio::null())
                .arg("all")
                .spawn()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let gateway = format!("http://127.0.0.1:{}", ports[0]);
        let client = testkit::client();
        testkit::eventually("the gateway to be ready", Duration::from_secs(60), || {
            let request = client.get(format!("{gateway}/readyz"));
            async move {
                request
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            }
        })
        .await;
        // The gateway's /metrics is on its admin listener; each service serves its own.
        let targets = BTreeMap::from([
            ("logicore-gateway", format!("127.0.0.1:{}", ports[1])),
            ("logicore-users", format!("127.0.0.1:{}", ports[2])),
            ("logicore-inventory", format!("127.0.0.1:{}", ports[3])),
            ("logicore-orders", format!("127.0.0.1:{}", ports[4])),
        ]);
        Self {
            _server: server,
            gateway,
            targets,
            client,
            _db: db,
        }
    }

    /// A call through the gateway that must succeed; its JSON body.
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Value) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.gateway));
        if !body.is_null() {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status();
        let body: Value = testkit::json(response).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn token(&self, email: &str, password: &str) -> String {
        let login = json!({"email": email, "password": password});
        let tokens = self
            .call(Method::POST, "/api/v1/auth/login", None, login)
            .await;
        tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Users, stock, an import, cached reads, one order confirmed through the saga and one rejected, a
    /// 404: something for the RED, event, cache and business panels to show.
    async fn drive_traffic(&self) {
        let post = Method::POST;
        let admin = self.token("root@logicore.test", "Admin-password-1").await;
        let registration = json!({"email": "prom@logicore.test", "password": "correct-horse-9", "full_name": "Prom"});
        self.call(post.clone(), "/api/v1/auth/register", None, registration)
            .await;
        let customer = self.token("prom@logicore.test", "correct-horse-9").await;
        self.call(
            Method::GET,
            "/api/v1/users/me",
            Some(&customer),
            Value::Null,
        )
        .await;
        let warehouse = self
            .call(
                post.clone(),
                "/api/v1/inventory/warehouses",
                Some(&admin),
                json!({"code": "PROM", "name": "Prom", "address": "1 Dock Road", "priority": 1}),
            )
            .await;
        let product = self
            .call(
                post.clone(),
                "/api/v1/inventory/products",
                Some(&admin),
                json!({"sku": "PROM-1", "name": "Gauge", "reorder_point": 5}),
            )
            .await;
        self.call(
            post.clone(),
            "/api/v1/inventory/adjustments",
            Some(&admin),
            json!({"sku": "PROM-1", "warehouse_id": warehouse["id"], "delta": 8, "reason": "receipt"}),
        )
        .await;
        let csv = "sku,name,warehouse_code,quantity\nPROM-2,Dial,PROM,3\nPROM-3,Cog,NOWHERE,1\n";
        let imported = self
            .client
            .post(format!("{}/api/v1/inventory/import", self.gateway))
            .bearer_auth(&admin)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(imported.status().is_success(), "{}", imported.status());
        let availability = format!(
            "/api/v1/inventory/products/{}/availability",
            product["id"].as_str().unwrap_or_default()
        );
        for _ in 0..2 {
            self.call(Method::GET, &availability, Some(&customer), Value::Null)
                .await;
        }
        let order = |quantity: i64| {
            json!({
                "lines": [{"sku": "PROM-1", "quantity": quantity, "unit_price": 100}],
                "currency": "EUR",
                "shipping_address": {"name": "Prom", "street": "1 Canal Street", "city": "Amsterdam",
                                     "postal_code": "1011AA", "country": "NL"},
            })
        };
        for (quantity, outcome) in [(4, "confirmed"), (100, "rejected")] {
            let placed = self
                .call(
                    post.clone(),
                    "/api/v1/orders",
                    Some(&customer),
                    order(quantity),
                )
                .await;
            let path = format!(
                "/api/v1/orders/{}",
                placed["id"].as_str().unwrap_or_default()
            );
            testkit::eventually(
                &format!("the order to be {outcome}"),
                Duration::from_secs(30),
                || async {
                    let order = self
                        .call(Method::GET, &path, Some(&customer), Value::Null)
                        .await;
                    (order["status"] == outcome).then_some(())
                },
            )
            .await;
        }
        let missing = self
            .client
            .get(format!(
                "{}/api/v1/orders/{}",
                self.gateway,
                uuid::Uuid::now_v7()
            ))
            .bearer_auth(&customer)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(missing.status(), 404);
    }
}

/// Every `expr` of every panel (rows' nested panels too) of every dashboard: (where, expression).
fn dashboard_expressions() -> Vec<(String, String)> {
    let dir = repository().join("deploy/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let board: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut panels: Vec<&Value> = board["panels"].as_array().into_iter().flatten().collect();
        while let Some(panel) = panels.pop() {
            panels.extend(panel["panels"].as_array().into_iter().flatten());
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    let place = format!(
                        "{} / {} / {}",
                        name.as_deref().unwrap_or_default(),
                        panel["title"].as_str().unwrap_or_default(),
                        target["refId"].as_str().unwrap_or_default()
                    );
                    found.push((place, concrete(expr)));
                }
            }
        }
    }
    found.sort();
    found
}

/// The expression with Grafana's variables replaced by [`VARIABLES`]; longest names first, so that
/// `$__rate_interval` is not read as `$__range` followed by text.
fn concrete(expr: &str) -> String {
    let mut variables = VARIABLES.to_vec();
    variables.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut text = expr.to_owned();
    for (name, value) in variables {
        text = text
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    assert!(
        !text.contains('$'),
        "{expr}: a Grafana variable this test gives no value (add it to VARIABLES)"
    );
    text
}

/// The recording rules rules.yml defines, read off its `- record:` lines (the workspace has no YAML
/// parser, and this is the one shape promtool accepts for them anyway).
fn recording_rules() -> Vec<String> {
    let file = repository().join("deploy/prometheus/rules.yml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("- record:"))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// Polls `probe` (which describes what is still missing, if anything) until it reports nothing or the
/// deadline passes; then fails with the last report.
async fn until_complete<F, Fut>(what: &str, started: Instant, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    loop {
        let missing = probe().await;
        if missing.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{what}, after {DEADLINE:?}:\n  {}",
            missing.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_listener_and_every_rule_and_dashboard_query_has_data() {
    let run_started = Instant::now();
    let platform = Platform::start().await;
    let dir = testkit::TempDir::new("logicore-prometheus");
    let (_prometheus, base) = start_prometheus(dir.path(), &platform.targets);
    let api = Api {
        base,
        client: testkit::client(),
    };
    testkit::eventually("prometheus to be ready", Duration::from_secs(30), || {
        let request = api.client.get(format!("{}/-/ready", api.base));
        async move {
            request
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
    platform.drive_traffic().await;
    let started = Instant::now();
    // What Prometheus is about to scrape, checked by Prometheus' own parser first: a page it rejects would
    // only show up below as a target down.
    for target in platform.targets.values() {
        promtool_accepts(&testkit::metrics(&format!("http://{target}/metrics")).await);
    }

    // Every target up.
    until_complete("targets not up", started, || async {
        let targets = api.get("/api/v1/targets", &[("state", "active")]).await;
        let active = targets["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut missing: Vec<String> = platform
            .targets
            .keys()
            .filter(|job| {
                !active
                    .iter()
                    .any(|t| t["labels"]["job"] == **job && t["health"] == "up")
            })
            .map(|job| {
                let target = active.iter().find(|t| t["labels"]["job"] == *job);
                format!(
                    "{job}: {}",
                    target.map_or("not listed".into(), |t| t["lastError"].to_string())
                )
            })
            .collect();
        missing.sort();
        missing
    })
    .await;

    // Every recording rule loaded, healthy, and producing series.
    let records = recording_rules();
    assert!(!records.is_empty(), "no recording rules found in rules.yml");
    until_complete("recording rules without series", started, || async {
        let rules = api.get("/api/v1/rules", &[("type", "record")]).await;
        let loaded: Vec<Value> = rules["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let mut missing = Vec::new();
        for record in &records {
            let rule = loaded.iter().find(|r| r["name"] == record.as_str());
            match rule {
                None => missing.push(format!("{record}: not loaded by prometheus")),
                Some(rule) if rule["health"] == "err" => {
                    missing.push(format!("{record}: {}", rule["lastError"]));
                }
                Some(_) => match api.series(record).await {
                    Ok(0) => missing.push(format!("{record}: no series")),
                    Ok(_) => {}
                    Err(error) => missing.push(format!("{record}: {error}")),
                },
            }
        }
        missing
    })
    .await;

    // Every dashboard expression parses; all but the expected-empty ones return data.
    let expressions = dashboard_expressions();
    let empty: BTreeMap<&str, &str> = EXPECTED_EMPTY.iter().copied().collect();
    for (expr, reason) in &empty {
        assert!(
            expressions.iter().any(|(_, e)| e == expr),
            "EXPECTED_EMPTY lists an expression no dashboard has (remove it): {expr} ({reason})"
        );
    }
    until_complete("dashboard expressions without data", started, || async {
        let mut missing = Vec::new();
        for (place, expr) in &expressions {
            match api.series(expr).await {
                Err(error) => missing.push(format!("{place}: does not parse: {error}\n    {expr}")),
                Ok(0) if !empty.contains_key(expr.as_str()) => {
                    missing.push(format!("{place}: no data\n    {expr}"));
                }
                Ok(_) => {}
            }
        }
        missing
    })
    .await;
    eprintln!(
        "prometheus: {} targets up, {} recording rules with series, {} dashboard expressions checked \
         ({} expected empty), in {:?} (checks {:?})",
        platform.targets.len(),
        records.len(),
        expressions.len(),
        empty.len(),
        run_started.elapsed(),
        started.elapsed(),
    );
}
