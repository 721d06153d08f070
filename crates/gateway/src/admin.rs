//! `GET /admin/circuit-breakers`: each upstream, its instances (state, requests in flight, ejection) and its breaker's state and window counts.
//! Admins only, checked here in code rather than through `gateway.rbac`, so no configuration can open it.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use platform::Problem;
use platform::auth::Role;
use serde_json::{Value, json};

use crate::policy::Policy;
use crate::upstream::UpstreamClient;

#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) policy: Policy,
    pub(crate) upstreams: Vec<UpstreamClient>,
}

pub(crate) async fn circuit_breakers(
    State(state): State<AdminState>,
    request: Request,
) -> Response {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = match state.policy.verify(authorization) {
        Ok(claims) => claims,
        Err(problem) => return crate::policy::problem_response(problem),
    };
    if claims.role != Role::Admin {
        return Problem::forbidden(format!("role {} may not do this", claims.role)).into_response();
    }
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
