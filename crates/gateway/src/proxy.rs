//! The reverse proxy handler: forwards a request to its upstream with bodies streamed both ways (nothing
//! is buffered), hop-by-hop headers dropped and forwarding headers set.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Version, header};
use axum::response::Response;
use http_body_util::Limited;
use platform::request_id::{REQUEST_ID_HEADER, RequestId};

use crate::error::ProxyError;
use crate::headers::{set_forwarded, strip_hop_by_hop};
use crate::upstream::{SendError, UpstreamClient};

/// The state of one proxied route: where it goes and how much body it accepts.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) upstream: UpstreamClient,
    pub(crate) max_body_bytes: usize,
}

pub(crate) async fn forward(
    State(target): State<Target>,
    request: Request,
) -> Result<Response, ProxyError> {
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
    let (mut parts, body) = request.into_parts();

    strip_hop_by_hop(&mut parts.headers);
    set_forwarded(&mut parts.headers, &parts.uri, client_ip);
    if let Some(RequestId(id)) = request_id
        && let Ok(value) = HeaderValue::from_str(&id)
    {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    parts.uri = target
        .upstream
        .uri_for(parts.uri.path_and_query())
        .map_err(ProxyError::BadRequest)?;
    // The client speaks HTTP/1.1 to upstreams whatever the caller used.
    parts.version = Version::HTTP_11;
    let outgoing = Request::from_parts(parts, Body::new(Limited::new(body, limit)));

    let response = target.upstream.send(outgoing).await.map_err(|e| {
        let upstream = target.upstream.name().to_owned();
        match e {
            SendError::Connect(source) => ProxyError::Unavailable { upstream, source },
            SendError::Timeout(timeout) => ProxyError::Timeout {
                upstream,
                timeout_ms: timeout.as_millis() as u64,
            },
            SendError::BodyTooLarge => ProxyError::BodyTooLarge { limit },
            SendError::Other(source) => ProxyError::Failed { upstream, source },
            SendError::Open { retry_after } => ProxyError::Open {
                upstream,
                // Whole seconds for the header, never 0 so clients do not retry in a tight loop.
                retry_after_secs: retry_after.as_secs_f64().ceil().max(1.0) as u64,
            },
        }
    })?;
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::new(body)))
}
