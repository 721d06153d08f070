//! The layers every service puts around its router: the operations routes (`/health`, `/readyz`,
//! `/metrics`), problem+json fallbacks, the body limit, panic catching, and the one per-request
//! middleware that opens the request-id span and records request metrics. Kept apart from serving:
//! a router gets these the same whichever way it is served.

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tower_http::catch_panic::CatchPanicLayer;

use crate::health::{Readiness, health_handler, readyz_handler};
use crate::metrics::{HttpMetrics, MetricsHandle, metrics_handler, tracked};
use crate::problem::{Problem, as_problem};
use crate::request_id;

/// What [`with_platform_layers`] needs.
pub struct PlatformLayers {
    pub http_metrics: HttpMetrics,
    pub metrics: MetricsHandle,
    pub readiness: Readiness,
    pub max_body_bytes: usize,
}

/// Adds `/health`, `/readyz`, `/metrics` and [`with_request_layers`] to a service's router.
pub fn with_platform_layers(router: Router, layers: PlatformLayers) -> Router {
    let ops = Router::new()
        .route("/health", get(health_handler))
        .route("/readyz", get(readyz_handler).with_state(layers.readiness))
        .route("/metrics", get(metrics_handler).with_state(layers.metrics));
    with_request_layers(
        router.merge(ops),
        layers.http_metrics,
        layers.max_body_bytes,
    )
}

/// Problem+json 404/405 fallbacks, the body limit, panic catching, request metrics and the request-id
/// span, for a router that places its operations routes itself (the gateway keeps them on two listeners).
pub fn with_request_layers(
    router: Router,
    http_metrics: HttpMetrics,
    max_body_bytes: usize,
) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(http_metrics, observe))
}

/// The request id and its span around request metrics around the rest: one middleware rather than one
/// each, since every axum `from_fn` layer boxes and clones the service stack below it on each request.
/// Errors the framework or a library wrote in their own format become problem+json here, inside the
/// request's scope so they carry its id.
async fn observe(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    request_id::with_request_id(metrics.service, request, |request| {
        tracked(&metrics, request, |request| async {
            as_problem(next.run(request).await)
        })
    })
    .await
}

pub async fn not_found() -> Problem {
    Problem::not_found("no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not accept that method",
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    Problem::internal().into_response()
}
