//! `/health` (liveness, no dependencies) and `/readyz` (every dependency checked concurrently with a short
//! timeout; 503 when a required one is down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::future::{BoxFuture, join_all};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::db::Db;

/// The state of one dependency.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub up: bool,
    /// Extra facts shown with the check (e.g. a breaker state).
    pub details: Map<String, Value>,
    pub error: Option<String>,
    /// Down for a reason waiting will not fix (e.g. refused credentials): the service is not ready even
    /// when the dependency is optional, since it would never come back on its own.
    pub fatal: bool,
}

impl CheckReport {
    pub fn up() -> Self {
        Self {
            up: true,
            details: Map::new(),
            error: None,
            fatal: false,
        }
    }

    pub fn down(error: impl Into<String>) -> Self {
        Self {
            up: false,
            details: Map::new(),
            error: Some(error.into()),
            fatal: false,
        }
    }

    /// Down until the configuration is fixed; see [`CheckReport::fatal`](field@CheckReport::fatal).
    pub fn fatal(error: impl Into<String>) -> Self {
        Self {
            fatal: true,
            ..Self::down(error)
        }
    }
}

/// A dependency that `/readyz` checks.
pub trait Check: Send + Sync {
    fn name(&self) -> &str;
    /// A required dependency being down makes the service not ready.
    fn required(&self) -> bool {
        true
    }
    fn check(&self) -> BoxFuture<'_, CheckReport>;
}

/// PostgreSQL answers `SELECT 1`.
pub struct PostgresCheck(pub Db);

impl Check for PostgresCheck {
    fn name(&self) -> &str {
        "postgres"
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            match sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(self.0.pool())
                .await
            {
                Ok(_) => CheckReport::up(),
                Err(e) => CheckReport::down(e.to_string()),
            }
        })
    }
}

/// The set of checks behind `/readyz`.
#[derive(Clone)]
pub struct Readiness {
    checks: Arc<Vec<Box<dyn Check>>>,
    timeout: Duration,
}

#[derive(Serialize)]
struct ReadinessBody {
    status: &'static str,
    checks: Map<String, Value>,
}

impl Readiness {
    pub fn new(checks: Vec<Box<dyn Check>>, timeout: Duration) -> Self {
        Self {
            checks: Arc::new(checks),
            timeout,
        }
    }

    /// Runs every check concurrently; a check slower than the timeout counts as down.
    pub async fn report(&self) -> (bool, Value) {
        let results = join_all(self.checks.iter().map(|check| async move {
            let started = Instant::now();
            let report = tokio::time::timeout(self.timeout, check.check())
                .await
                .unwrap_or_else(|_| {
                    CheckReport::down(format!("no answer within {} ms", self.timeout.as_millis()))
                });
            (check, report, started.elapsed())
        }))
        .await;
        let mut ready = true;
        let mut checks = Map::new();
        for (check, report, elapsed) in results {
            let blocking = check.required() || report.fatal;
            if blocking && !report.up {
                ready = false;
            }
            let mut entry = Map::new();
            let status = match (report.up, blocking) {
                (true, _) => "up",
                (false, true) => "down",
                (false, false) => "degraded",
            };
            entry.insert("status".into(), json!(status));
            entry.insert("required".into(), json!(check.required()));
            entry.insert("latency_ms".into(), json!(elapsed.as_secs_f64() * 1000.0));
            if let Some(error) = report.error {
                entry.insert("error".into(), json!(error));
            }
            entry.extend(report.details);
            checks.insert(check.name().to_owned(), Value::Object(entry));
        }
        let body = ReadinessBody {
            status: if ready { "ready" } else { "not_ready" },
            checks,
        };
        (ready, serde_json::to_value(body).unwrap_or_default())
    }
}

pub async fn health_handler() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn readyz_handler(State(readiness): State<Readiness>) -> Response {
    let (ready, body) = readiness.report().await;
    (ready_status(ready), Json(body)).into_response()
}

/// `/readyz` for a public listener: the verdict (`{"status":"ready"|"not_ready"}`, 200 or 503) without the
/// checks, whose details (addresses, errors, breaker counts) are for operators only.
pub async fn readyz_status_handler(State(readiness): State<Readiness>) -> Response {
    let (ready, _) = readiness.report().await;
    let status = if ready { "ready" } else { "not_ready" };
    (ready_status(ready), Json(json!({ "status": status }))).into_response()
}

fn ready_status(ready: bool) -> StatusCode {
    if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
