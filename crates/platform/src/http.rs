//! Server bootstrap: the layers every service shares, the operations routes, and serving on a given
//! listener until a shutdown token fires, then draining in-flight requests within a grace period.

use std::any::Any;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;

use crate::health::{Readiness, health_handler, readyz_handler};
use crate::metrics::{HttpMetrics, MetricsHandle, metrics_handler, tracked};
use crate::problem::Problem;
use crate::request_id;

/// What [`with_platform_layers`] needs.
pub struct PlatformLayers {
    pub http_metrics: HttpMetrics,
    pub metrics: MetricsHandle,
    pub readiness: Readiness,
    pub max_body_bytes: usize,
}

/// Adds `/health`, `/readyz`, `/metrics`, problem+json 404/405 fallbacks, the body limit, panic catching,
/// request metrics and the request-id span to a service's router.
pub fn with_platform_layers(router: Router, layers: PlatformLayers) -> Router {
    let ops = Router::new()
        .route("/health", get(health_handler))
        .route("/readyz", get(readyz_handler).with_state(layers.readiness))
        .route("/metrics", get(metrics_handler).with_state(layers.metrics));
    router
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(layers.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            layers.http_metrics,
            observe,
        ))
}

/// The request id and its span around request metrics around the rest: one middleware rather than one
/// each, since every axum `from_fn` layer boxes and clones the service stack below it on each request.
async fn observe(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    request_id::with_request_id(request, |request| {
        tracked(&metrics, request, |request| next.run(request))
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

/// A token cancelled on SIGTERM or SIGINT; every server and background worker watches it.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
            () = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        trigger.cancel();
    });
    token
}

/// Serves `router` on `listener` until `shutdown` fires; then stops accepting and lets in-flight requests
/// finish for at most `grace` before dropping what is left.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening");
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let grace_elapsed = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => {
            tracing::info!(%address, "drained");
            result
        }
        () = grace_elapsed => {
            tracing::warn!(%address, grace_ms = grace.as_millis() as u64, "grace period over, closing open connections");
            Ok(())
        }
    }
}
