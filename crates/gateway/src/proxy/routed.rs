//! The router path: the axum handler of every proxied route, for the requests the direct path hands
//! over (see [`super`]). It forwards a request to its upstream with bodies streamed both ways (only a
//! small body of a request that may be retried is buffered), through the same header policy, checks and
//! upstream loop as the direct path.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use platform::problem::Forwarded;
use platform::request_id::{Propagation, REQUEST_ID_HEADER, RequestId};

use super::{Target, proxy_error};
use crate::error::ProxyError;
use crate::headers::{set_forwarded, strip_hop_by_hop, strip_replaced};
use crate::policy;
use crate::ratelimit;
use crate::routes::Route;
use crate::upstream::{Outgoing, OutgoingBody, may_repeat};
use platform::route_pattern::request_segments;

/// Every proxied route's handler: the access policy, then the rate limiter, then the upstream. One
/// handler rather than a middleware for each step, because every axum `from_fn` layer boxes and clones
/// the rest of the route's service stack on each request, which cost more than the checks themselves.
pub(crate) async fn handle(State(target): State<Target>, mut request: Request) -> Response {
    // Both checks match the path by segments; cut it once. The URI is cloned (reference counts, not a
    // copy) so the segments can borrow it while the policy adds the caller to the request.
    let uri = request.uri().clone();
    let segments = request_segments(uri.path());
    if let Err(refusal) = policy::admit(&target.policy, &mut request, &segments).await {
        return refusal;
    }
    let bucket = ratelimit::bucket(&target.limiter, &request, &segments);
    let admission = match ratelimit::admit(&target.limiter, bucket).await {
        Ok(admission) => admission,
        Err(refusal) => return refusal,
    };
    let mut response = forward(&target, request).await.into_response();
    admission.stamp(response.headers_mut());
    response
}

async fn forward(target: &Target, request: Request) -> Result<Response, ProxyError> {
    let limit = target.max_body_bytes;
    // A declared length over the limit is refused before the upstream is contacted; a body without a
    // length (chunked) is counted as it streams through `Limited` below.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }

    let client_ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let request_id = request.extensions().get::<RequestId>().cloned();
    let propagation = request.extensions().get::<Propagation>().cloned();
    let (mut parts, body) = request.into_parts();

    strip_hop_by_hop(&mut parts.headers);
    set_forwarded(&mut parts.headers, &parts.uri, client_ip);
    if let Some(RequestId(id)) = request_id
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    if let Some(Propagation(trace)) = propagation {
        for name in platform::telemetry::traces::HEADERS {
            parts.headers.remove(name);
        }
        for (name, value) in trace.headers() {
            if let Ok(value) = HeaderValue::from_str(value) {
                parts.headers.insert(name, value);
            }
        }
    }
    // A request that may be retried keeps its body only if it is empty or small with a known length:
    // that is read in full so a retry can send it again. Any other body streams through once and the
    // request is never retried, since what was already forwarded cannot be re-sent.
    let body = match body.size_hint().exact() {
        Some(length)
            if may_repeat(&parts.method, &parts.headers)
                && length <= target.upstream.max_buffered_body_bytes() as u64 =>
        {
            let bytes = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        ProxyError::BodyTooLarge { limit }
                    } else {
                        ProxyError::ClientBody(e)
                    }
                })?
                .to_bytes();
            OutgoingBody::Buffered(bytes)
        }
        _ => OutgoingBody::Streamed(Body::new(Limited::new(body, limit))),
    };
    let outgoing = Outgoing {
        method: parts.method,
        path_and_query: parts.uri.path_and_query().cloned(),
        headers: parts.headers,
        body,
    };

    let response = target
        .upstream
        .send(outgoing)
        .await
        .map_err(|e| proxy_error(target, e))?;
    let (mut parts, body) = response.into_parts();
    strip_replaced(&mut parts.headers);
    parts.extensions.insert(Forwarded);
    Ok(Response::from_parts(parts, body))
}

/// Every prefix as two axum routes (`prefix` and `prefix/{*rest}`), so request metrics carry a route
/// template rather than raw paths; each behind the access policy and the rate limiter. Any other
/// `/api/...` path is a 404 problem, answered without a token so probing it reveals nothing either way.
pub(crate) fn api_router(targets: &[(Route, Target)]) -> Router {
    let mut router = Router::new();
    for (route, target) in targets {
        let handler = any(handle).with_state(target.clone());
        router = router
            .route(route.prefix, handler.clone())
            .route(&route.rest_template(), handler);
    }
    router
        .route("/api", any(platform::http::not_found))
        .route("/api/{*rest}", any(platform::http::not_found))
}
