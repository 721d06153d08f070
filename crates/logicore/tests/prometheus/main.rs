//! The deployment's metrics against a real Prometheus server: `logicore all` on free ports with a database of
//! its own, and Debian's `prometheus` scraping every LogiCore listener each second with the rules of
//! deploy/prometheus/rules.yml. After a little traffic through the gateway, Prometheus's HTTP API must show
//! every target up, every recording rule producing series, and every PromQL expression of every Grafana
//! dashboard (deploy/grafana/dashboards) parsing and returning data, except the few listed in
//! [`EXPECTED_EMPTY`] with the reason they have no series in a healthy run.

#[path = "../support/all.rs"]
mod all;
mod platform;
mod queries;
mod server;
#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::promtool_accepts;

use platform::Platform;
use queries::{EXPECTED_EMPTY, dashboard_expressions, recording_rules};
use server::{Api, require_prometheus, start_prometheus};

/// How long the whole check may take once both servers are up: scrapes and rule evaluations are 1 s apart.
const DEADLINE: Duration = Duration::from_secs(45);

pub(crate) fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
    require_prometheus();
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
