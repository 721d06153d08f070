//! Request ids: accepted from the caller's `x-request-id` or made here, echoed on the response, forwarded
//! downstream, and attached to every log line of the request through its span.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The request id as a request extension, for handlers and the proxy.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A caller's id is kept when it is short printable ASCII, so it cannot inject into logs or headers.
fn accept(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok =
        !text.is_empty() && text.len() <= MAX_LEN && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_owned())
}

/// A fresh id: a UUIDv7 (time-ordered to the millisecond) whose random part comes from the thread's
/// generator. `Uuid::now_v7` asks the kernel for randomness on every call (a `getrandom` syscall per
/// request) and serialises callers on a global counter, and request ids need neither.
fn new_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &rand::random()).into_uuid();
    uuid.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

/// Assigns the id, opens the request span around `handle` and logs the completed request; a step of the
/// platform's one per-request middleware (`http::observe`).
pub(crate) async fn with_request_id<F, Fut>(mut request: Request, handle: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(accept)
        .unwrap_or_else(new_id);
    let header = HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, header.clone());
    request.extensions_mut().insert(RequestId(id.clone()));

    // Borrowed, not copied: the span records its fields when it is created. Plain `&str` fields are
    // recorded as strings; `%` would send each through the formatting machinery.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path(), MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        request_id = id.as_str(),
        method = request.method().as_str(),
        route = route,
    );
    let started = Instant::now();
    let mut response = CURRENT
        .scope(id, handle(request).instrument(span.clone()))
        .await;
    response.headers_mut().insert(REQUEST_ID_HEADER, header);

    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request completed");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_distinct_version_7_uuids() {
        let a = Uuid::parse_str(&new_id()).unwrap_or_else(|e| panic!("{e}"));
        let b = Uuid::parse_str(&new_id()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
    }
}
