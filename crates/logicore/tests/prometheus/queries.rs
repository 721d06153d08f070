//! What the test asks Prometheus: the expressions of the dashboards, with Grafana's variables given values,
//! those expected to be empty, and the recording rules of rules.yml.

use std::path::PathBuf;

use serde_json::Value;

use crate::repository;

/// Expressions (after variable substitution, see [`concrete`]) that no series answers in a healthy run,
/// each with why. They must still parse.
pub const EXPECTED_EMPTY: &[(&str, &str)] = &[
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

/// Every `expr` of every panel (rows' nested panels too) of every dashboard: (where, expression).
pub fn dashboard_expressions() -> Vec<(String, String)> {
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
pub fn recording_rules() -> Vec<String> {
    let file = repository().join("deploy/prometheus/rules.yml");
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("- record:"))
        .map(|name| name.trim().to_owned())
        .collect()
}
