//! The Prometheus server of the test and its HTTP API.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::all::Running;
use crate::repository;

/// Fails the test at once, saying what to install, when there is no `prometheus` to run.
pub fn require_prometheus() {
    let version = Command::new("prometheus").arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "the `prometheus` server is needed (Debian package prometheus, which .ci/run installs): {version:?}"
    );
}

/// Prometheus on a free loopback port with its own storage, scraping `targets` (job → host:port) every
/// second and evaluating rules.yml every second.
pub fn start_prometheus(dir: &Path, targets: &BTreeMap<&str, String>) -> (Running, String) {
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
    let address = format!("127.0.0.1:{}", testkit::registries::free_port());
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
    (Running(child), format!("http://{address}"))
}

/// Prometheus's HTTP API.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = url::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .unwrap_or_else(|e| panic!("{e}"));
        let response = self.client.get(url).send().await;
        match response {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(error) => json!({"status": "error", "error": error.to_string()}),
        }
    }

    /// An instant query: `Ok(number of series)` or `Err(Prometheus's error)`, e.g. a parse error.
    pub async fn series(&self, expr: &str) -> Result<usize, String> {
        let answer = self.get("/api/v1/query", &[("query", expr)]).await;
        if answer["status"] == "success" {
            Ok(answer["data"]["result"].as_array().map_or(0, Vec::len))
        } else {
            Err(format!("{}: {}", answer["errorType"], answer["error"]))
        }
    }
}
