//! The gateway's two kinds of failure: refusing to start ([`GatewayError`]) and failing one forwarded
//! request ([`ProxyError`], always answered with problem+json).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use platform::Problem;
use platform::telemetry::ErrorChain;

/// Seconds a caller should wait before retrying an upstream that could not be reached.
const RETRY_AFTER_SECS: u64 = 5;

/// Why the gateway could not be built or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid gateway configuration: {key}: {reason}")]
    Config { key: String, reason: String },
    #[error("gateway server failed: {0}")]
    Serve(#[from] std::io::Error),
}

impl GatewayError {
    pub(crate) fn config(key: &str, reason: impl Into<String>) -> Self {
        Self::Config {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Why one request could not be forwarded. The cause is logged here; the caller sees only the problem.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("upstream {upstream} is unreachable")]
    Unavailable {
        upstream: String,
        /// `None` when the service has no instance to try.
        #[source]
        source: Option<axum::BoxError>,
    },
    #[error("upstream {upstream} did not answer within {timeout_ms} ms")]
    Timeout { upstream: String, timeout_ms: u64 },
    #[error("upstream {upstream} failed")]
    Failed {
        upstream: String,
        #[source]
        source: axum::BoxError,
    },
    #[error("upstream {upstream}'s circuit breaker is open")]
    Open {
        upstream: String,
        retry_after_secs: u64,
    },
    #[error("the request body could not be read")]
    ClientBody(#[source] axum::BoxError),
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let problem = match &self {
            ProxyError::BodyTooLarge { limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the request body must not exceed {limit} bytes"),
            ),
            ProxyError::Unavailable { .. } => {
                tracing::warn!(error = %ErrorChain(&self), "upstream unavailable");
                Problem::unavailable(
                    "UPSTREAM_UNAVAILABLE",
                    "the service behind this route is unavailable; retry later",
                    RETRY_AFTER_SECS,
                )
            }
            ProxyError::Open {
                upstream,
                retry_after_secs,
            } => {
                // Debug only: while open this is every request, and the transition was logged already.
                tracing::debug!(upstream = %upstream, "rejected by the open circuit breaker");
                Problem::unavailable(
                    "UPSTREAM_UNAVAILABLE",
                    "the service behind this route is unavailable; retry later",
                    *retry_after_secs,
                )
            }
            ProxyError::Timeout { .. } => {
                tracing::warn!(error = %ErrorChain(&self), "upstream timed out");
                Problem::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "UPSTREAM_TIMEOUT",
                    "the service behind this route did not answer in time",
                )
            }
            ProxyError::Failed { .. } => {
                tracing::error!(error = %ErrorChain(&self), "upstream request failed");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "UPSTREAM_ERROR",
                    "the service behind this route failed to answer",
                )
            }
            ProxyError::ClientBody(_) => {
                tracing::info!(error = %ErrorChain(&self), "cannot read the request body");
                Problem::bad_request("BAD_REQUEST", "the request body could not be read")
            }
        };
        problem.into_response()
    }
}
