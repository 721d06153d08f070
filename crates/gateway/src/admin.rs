//! The admin listener (like Envoy's admin port, `gateway.admin_port`): `/metrics`, the detailed `/readyz`
//! (upstream URLs, instances, breaker state), `/health`, and `/admin/*` for admins only: the breakers
//! (`/admin/circuit-breakers`) and the upstreams' instances with where they come from (`/admin/upstreams`). None of it is on
//! the public port, which keeps `/health` and a `/readyz` that says only ready or not.
//!
//! Every `/admin/*` route, and any unknown path under it, is behind the admin check here in code rather than
//! through `gateway.rbac`, so no configuration can open it.

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use platform::Problem;
use platform::auth::Role;
use platform::config::{ReloadOutcome, Reloader};
use platform::discovery::Snapshot;
use platform::health::{Readiness, health_handler, readyz_handler};
use platform::metrics::{MetricsHandle, metrics_handler};
use platform::problem::FieldError;
use serde_json::{Value, json};

use crate::policy::Policy;
use crate::upstream::UpstreamClient;

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) policy: Policy,
    pub(crate) upstreams: Vec<UpstreamClient>,
    /// The process's configuration and its reloads, when it reloads.
    pub(crate) reloader: Option<Reloader>,
}

/// The admin listener's routes, before the request layers.
pub(crate) fn router(state: AdminState, readiness: Readiness, metrics: MetricsHandle) -> Router {
    let admin_only = Router::new()
        .route("/admin/circuit-breakers", get(circuit_breakers))
        .route("/admin/upstreams", get(upstreams))
        .route("/admin/config", get(config))
        .route("/admin/config/reload", post(reload))
        .route("/admin", any(platform::http::not_found))
        .route("/admin/{*rest}", any(platform::http::not_found))
        .route_layer(middleware::from_fn_with_state(
            state.policy.clone(),
            require_admin,
        ))
        .with_state(state);
    Router::new()
        .route("/health", get(health_handler))
        .route("/readyz", get(readyz_handler).with_state(readiness))
        .route("/metrics", get(metrics_handler).with_state(metrics))
        .merge(admin_only)
}

/// 401 without a valid token, 403 for any role but admin.
async fn require_admin(State(policy): State<Policy>, request: Request, next: Next) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = match policy.verify(authorization).await {
        Ok(claims) => claims,
        Err(problem) => return crate::policy::problem_response(problem),
    };
    if claims.role != Role::Admin {
        return Problem::forbidden(format!("role {} may not do this", claims.role)).into_response();
    }
    next.run(request).await
}

/// `GET /admin/circuit-breakers`: each upstream, its instances (state, requests in flight, ejection) and
/// its breaker's state and window counts.
async fn circuit_breakers(State(state): State<AdminState>) -> Response {
    let data: Vec<Value> = state
        .upstreams
        .iter()
        .map(|upstream| {
            let breaker = upstream.breaker();
            let snapshot = breaker.snapshot();
            let config = breaker.config();
            json!({
                "upstream": upstream.name(),
                "endpoints": upstream.endpoint_report(),
                "state": snapshot.state.as_str(),
                "window": {
                    "successes": snapshot.successes,
                    "failures": snapshot.failures,
                    "rejections": snapshot.rejections,
                    "error_rate_percent": snapshot.error_rate_percent,
                    "span_ms": config.rolling_window.as_millis() as u64,
                    "buckets": config.buckets,
                },
                "settings": {
                    "timeout_ms": config.timeout.as_millis() as u64,
                    "error_threshold_percent": config.error_threshold_percent,
                    "volume_threshold": config.volume_threshold,
                    "reset_timeout_ms": config.reset_timeout.as_millis() as u64,
                    "half_open_max_calls": config.half_open_max_calls,
                },
            })
        })
        .collect();
    Json(json!({ "data": data })).into_response()
}

/// `GET /admin/upstreams`: each upstream's discovery source and the instances it currently gives.
async fn upstreams(State(state): State<AdminState>) -> Response {
    let data: Vec<Value> = state
        .upstreams
        .iter()
        .map(|upstream| {
            json!({
                "upstream": upstream.name(),
                "discovery": discovery_report(&upstream.source()),
                "endpoints": upstream.endpoint_report(),
            })
        })
        .collect();
    Json(json!({ "data": data })).into_response()
}

/// Where an upstream's instances come from and how current they are: `stale` while the registry cannot
/// be read and the last known instances stay in use.
pub(crate) fn discovery_report(snapshot: &Snapshot) -> Value {
    json!({
        "source": snapshot.source,
        "known": snapshot.known,
        "stale": snapshot.is_stale(),
        "error": snapshot.error,
        "endpoints": snapshot.endpoints.iter().map(url::Url::as_str).collect::<Vec<_>>(),
        "changed_at": snapshot.changed_at.map(|at| {
            chrono::DateTime::<chrono::Utc>::from(at)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
    })
}

/// `GET /admin/config`: the configuration in force (secrets masked, each value's source and whether it
/// reloads), its hash, the changes waiting for a restart and the last reload.
async fn config(State(state): State<AdminState>) -> Response {
    match &state.reloader {
        Some(reloader) => Json(reloader.report()).into_response(),
        None => not_reloadable(),
    }
}

/// `POST /admin/config/reload`: loads the configuration again now. 200 with what changed (nothing, when
/// only keys that need a restart did); 422 `CONFIG_INVALID` with every bad key when it is invalid, the
/// configuration in force staying.
async fn reload(State(state): State<AdminState>) -> Response {
    let Some(reloader) = &state.reloader else {
        return not_reloadable();
    };
    match reloader.reload("admin").await {
        ReloadOutcome::Applied {
            applied,
            restart_required,
        } => Json(json!({
            "result": "applied",
            "applied": applied,
            "restart_required": restart_required,
        }))
        .into_response(),
        ReloadOutcome::Unchanged { restart_required } => Json(json!({
            "result": "unchanged",
            "applied": [],
            "restart_required": restart_required,
        }))
        .into_response(),
        ReloadOutcome::Rejected(error) => {
            let mut problem = Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "CONFIG_INVALID",
                "the configuration is invalid; the one in force stays",
            );
            problem.errors = error
                .issues
                .iter()
                .map(|issue| {
                    FieldError::new(
                        issue.key.clone(),
                        "INVALID_CONFIG",
                        format!(
                            "{} (value {}, from {})",
                            issue.rule, issue.value, issue.source
                        ),
                    )
                })
                .collect();
            problem.into_response()
        }
    }
}

/// A gateway started without a reloader (embedded in a test) has no configuration to show or reload.
fn not_reloadable() -> Response {
    platform::Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "this gateway was started without a reloadable configuration",
    )
    .into_response()
}
