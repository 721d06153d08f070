//! Header work at the edge, for both proxy paths: the one table saying what the gateway does with each
//! header it treats specially ([`classify`]), what a proxy must drop or add when forwarding (RFC 9110
//! §7.6), the security headers every response carries, and CORS. The router path applies the table to
//! `HeaderMap`s ([`strip_hop_by_hop`], [`strip_replaced`]); the direct path reads the same [`Kind`] of each
//! raw header ([`crate::wire`]).

use std::net::IpAddr;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, Request, Response, Uri};
use futures::FutureExt;
use futures::future::Map;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::GatewayError;

/// What the gateway does with a header. Everything not in the table is `Other` and passes through
/// unchanged, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`: this hop's only (RFC 9110 §7.6.1), dropped both ways.
    HopByHop,
    /// Hop-by-hop too, and it may name more headers to drop.
    Connection,
    /// Hop-by-hop; each side frames its own body.
    TransferEncoding,
    /// Hop-by-hop; the gateway upgrades nothing.
    Upgrade,
    /// Recomputed for the body as forwarded.
    ContentLength,
    /// Replaced by the upstream's authority; the caller's value goes to `X-Forwarded-Host`.
    Host,
    Expect,
    Authorization,
    /// The caller's id is kept if it is well formed, else replaced; an upstream's is replaced.
    RequestId,
    IdempotencyKey,
    /// W3C `traceparent`, `tracestate` and `baggage`: read by the request span, and sent on as the
    /// request's own trace context (or as they came, when the request is not traced).
    TraceContext,
    /// The client's address is appended to the chain.
    ForwardedFor,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`: the gateway sets them itself.
    ForwardedOther,
    Origin,
    AcceptEncoding,
    ContentEncoding,
    ContentType,
    ContentRange,
    Date,
    Vary,
    /// Set by the gateway on every response (security headers, `RateLimit-*`) or removed (`Server`,
    /// `X-Powered-By`): an upstream's own value is dropped.
    Replaced,
    Other,
}

/// Every header the gateway treats specially, besides those it sets or removes on every response (the
/// security and rate-limit headers, [`REMOVED_FROM_RESPONSES`]), which are [`Kind::Replaced`].
const POLICY: &[(&str, Kind)] = &[
    ("te", Kind::HopByHop),
    ("trailer", Kind::HopByHop),
    ("keep-alive", Kind::HopByHop),
    ("proxy-connection", Kind::HopByHop),
    ("proxy-authenticate", Kind::HopByHop),
    ("proxy-authorization", Kind::HopByHop),
    ("connection", Kind::Connection),
    ("transfer-encoding", Kind::TransferEncoding),
    ("upgrade", Kind::Upgrade),
    ("content-length", Kind::ContentLength),
    ("host", Kind::Host),
    ("expect", Kind::Expect),
    ("authorization", Kind::Authorization),
    ("x-request-id", Kind::RequestId),
    ("idempotency-key", Kind::IdempotencyKey),
    ("traceparent", Kind::TraceContext),
    ("tracestate", Kind::TraceContext),
    ("baggage", Kind::TraceContext),
    ("x-forwarded-for", Kind::ForwardedFor),
    ("x-forwarded-proto", Kind::ForwardedOther),
    ("x-forwarded-host", Kind::ForwardedOther),
    ("origin", Kind::Origin),
    ("accept-encoding", Kind::AcceptEncoding),
    ("content-encoding", Kind::ContentEncoding),
    ("content-type", Kind::ContentType),
    ("content-range", Kind::ContentRange),
    ("date", Kind::Date),
    ("vary", Kind::Vary),
];

/// Headers that advertise the software behind the gateway: removed from every response.
const REMOVED_FROM_RESPONSES: [HeaderName; 2] =
    [header::SERVER, HeaderName::from_static("x-powered-by")];

pub(crate) const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub(crate) const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
pub(crate) const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The table by name length, so a lookup compares a header with the one to four names of its length
/// instead of all of them: it runs for every header of every request and response on the direct path.
static BY_LENGTH: LazyLock<Vec<Vec<(HeaderName, Kind)>>> = LazyLock::new(|| {
    let replaced = SECURITY_HEADERS
        .into_iter()
        .map(|(name, _)| name)
        .chain(REMOVED_FROM_RESPONSES)
        .chain([
            header::CONTENT_SECURITY_POLICY,
            RATELIMIT_LIMIT,
            RATELIMIT_REMAINING,
            RATELIMIT_RESET,
        ])
        .map(|name| (name, Kind::Replaced));
    let listed = POLICY
        .iter()
        .map(|&(name, kind)| (HeaderName::from_static(name), kind));
    let mut table: Vec<Vec<(HeaderName, Kind)>> = Vec::new();
    for (name, kind) in listed.chain(replaced) {
        let length = name.as_str().len();
        if table.len() <= length {
            table.resize(length + 1, Vec::new());
        }
        table[length].push((name, kind));
    }
    table
});

/// What the gateway does with a header of this name, in any letter case.
pub(crate) fn classify(name: &[u8]) -> Kind {
    BY_LENGTH
        .get(name.len())
        .and_then(|names| {
            names
                .iter()
                .find(|(candidate, _)| name.eq_ignore_ascii_case(candidate.as_str().as_bytes()))
        })
        .map_or(Kind::Other, |&(_, kind)| kind)
}

/// Whether a header is for one hop only and never forwarded, either way.
pub(crate) fn is_hop_by_hop(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::HopByHop | Kind::Connection | Kind::TransferEncoding | Kind::Upgrade
    )
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes the hop-by-hop headers, including any the sender named in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, is_hop_by_hop);
}

/// Whether an upstream's response header is dropped: a proxy must not pass it on (hop-by-hop), or the
/// gateway sets or removes it itself ([`Kind::Replaced`]).
pub(crate) fn dropped_from_response(kind: Kind) -> bool {
    is_hop_by_hop(kind) || kind == Kind::Replaced
}

/// Removes from an upstream's response what [`dropped_from_response`] says, and the headers its
/// `Connection` names.
pub(crate) fn strip_replaced(headers: &mut HeaderMap) {
    remove_where(headers, dropped_from_response);
}

fn remove_where(headers: &mut HeaderMap, drop: impl Fn(Kind) -> bool) {
    // Usually there are none: one pass over the few headers present finds out.
    if !headers
        .keys()
        .any(|name| drop(classify(name.as_str().as_bytes())))
    {
        return;
    }
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| drop(classify(name.as_str().as_bytes())))
        .cloned()
        .chain(connection_named(headers))
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
}

/// The headers `Connection` names, which are for this hop only too.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .collect()
}

/// Tells the upstream who really called: the client's address is appended to `x-forwarded-for` (keeping
/// any chain of proxies in front of us), while proto and host describe this gateway's own listener and
/// so replace whatever the caller claimed. `Host` itself is dropped so the client names the upstream.
pub(crate) fn set_forwarded(headers: &mut HeaderMap, uri: &Uri, client_ip: Option<IpAddr>) {
    let host = headers.remove(header::HOST).or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if let Some(ip) = client_ip {
        let chain = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        let value = if chain.is_empty() {
            ip.to_string()
        } else {
            format!("{chain}, {ip}")
        };
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    // The gateway terminates plain HTTP; a TLS terminator in front would set its own proto header.
    let proto = match uri.scheme_str() {
        None | Some("http") => Ok(HeaderValue::from_static("http")),
        Some(other) => HeaderValue::from_str(other),
    };
    if let Ok(value) = proto {
        headers.insert(X_FORWARDED_PROTO, value);
    }
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST, host),
        None => headers.remove(X_FORWARDED_HOST),
    };
}

/// API responses are data, never documents: nothing may load, frame or run from them.
const API_CSP: HeaderValue = HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'");
/// The docs page runs Swagger UI from this origin: its scripts and styles (it sets inline styles), its
/// icons (data: URIs) and a fetch of `/openapi.json`; nothing from elsewhere.
const DOCS_CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'",
);
pub(crate) const DOCS_PATH: &str = "/docs";

/// Adds helmet-like security headers to every response and removes headers that advertise the software
/// behind the gateway. A hand-written layer rather than `axum::middleware::from_fn`, which boxes the
/// service below it and its future on every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecurityHeadersLayer;

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeaders { inner }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct SecurityHeaders<S> {
    inner: S,
}

/// Adds the headers to a response; one per content security policy, so the future is a plain `Map`.
type Stamp<B, E> = fn(Result<Response<B>, E>) -> Result<Response<B>, E>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Map<S::Future, Stamp<ResBody, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let path = request.uri().path();
        let stamp: Stamp<ResBody, S::Error> = if path == DOCS_PATH || path.starts_with("/docs/") {
            |result| result.map(|response| with_security_headers(response, DOCS_CSP))
        } else {
            |result| result.map(|response| with_security_headers(response, API_CSP))
        };
        self.inner.call(request).map(stamp)
    }
}

/// The security headers besides the content security policy. Constants, so the names and values are
/// checked once at compile time rather than on every response.
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 7] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    ),
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    ),
    (
        header::X_DNS_PREFETCH_CONTROL,
        HeaderValue::from_static("off"),
    ),
];
/// The security headers of an API response as `name: value\r\n` lines, for the direct path.
pub(crate) fn security_header_lines() -> Vec<u8> {
    let mut lines = Vec::new();
    for (name, value) in SECURITY_HEADERS
        .iter()
        .chain([&(header::CONTENT_SECURITY_POLICY, API_CSP)])
    {
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(b": ");
        lines.extend_from_slice(value.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    lines
}

fn with_security_headers<B>(mut response: Response<B>, csp: HeaderValue) -> Response<B> {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    for name in &REMOVED_FROM_RESPONSES {
        headers.remove(name);
    }
    response
}

/// CORS for the configured origins; `None` when there are none, so responses carry no CORS headers.
/// Credentials are not allowed: the API authenticates with bearer tokens, not cookies.
pub(crate) fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, GatewayError> {
    if origins.is_empty() {
        return Ok(None);
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|origin| parse_origin(origin))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(values)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            header::ETAG,
            header::LOCATION,
            header::RETRY_AFTER,
            HeaderName::from_static("x-request-id"),
        ])
        .max_age(Duration::from_secs(600));
    Ok(Some(layer))
}

/// An origin is `scheme://host[:port]` exactly as browsers send it: no path, no trailing slash.
fn parse_origin(origin: &str) -> Result<HeaderValue, GatewayError> {
    let invalid = |reason: &str| {
        GatewayError::config(
            "gateway.cors_allowed_origins",
            format!("{origin:?}: {reason}"),
        )
    };
    let url = url::Url::parse(origin).map_err(|_| invalid("not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(invalid("must be http(s)://host[:port]"));
    }
    if url.origin().ascii_serialization() != origin {
        return Err(invalid("must be only scheme, host and port, with no path"));
    }
    HeaderValue::from_str(origin).map_err(|_| invalid("not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_named_in_connection_are_dropped_with_the_standard_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("x-secret, close"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn every_name_in_the_policy_is_lower_case_listed_once_and_found_in_any_case() {
        let names: Vec<&str> = BY_LENGTH
            .iter()
            .flatten()
            .map(|(name, _)| name.as_str())
            .collect();
        for (index, name) in names.iter().enumerate() {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(!names[..index].contains(name), "{name} is listed twice");
            let kind = classify(name.as_bytes());
            assert_ne!(kind, Kind::Other, "{name}");
            assert_eq!(classify(name.to_ascii_uppercase().as_bytes()), kind);
        }
        assert_eq!(classify(b"x-forwarded-host"), Kind::ForwardedOther);
        assert_eq!(classify(b"Strict-Transport-Security"), Kind::Replaced);
        assert_eq!(classify(b"RateLimit-Remaining"), Kind::Replaced);
        assert_eq!(classify(b"x-custom"), Kind::Other);
        assert_eq!(classify(b""), Kind::Other);
    }

    #[test]
    fn an_upstreams_own_security_and_rate_limit_headers_are_dropped_from_its_response() {
        let mut headers = HeaderMap::new();
        headers.insert(header::SERVER, HeaderValue::from_static("nginx"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("ALLOW"));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from_static("99"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"1\""));
        strip_replaced(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ETAG));
    }

    #[test]
    fn the_client_address_is_appended_to_an_existing_forwarded_chain() {
        let mut headers = HeaderMap::new();
        headers.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.7"));
        headers.insert(header::HOST, HeaderValue::from_static("api.example.com"));
        let ip = "198.51.100.1".parse().ok();
        set_forwarded(&mut headers, &Uri::from_static("/x"), ip);
        assert_eq!(headers[X_FORWARDED_FOR], "203.0.113.7, 198.51.100.1");
        assert_eq!(headers[X_FORWARDED_HOST], "api.example.com");
        assert_eq!(headers[X_FORWARDED_PROTO], "http");
        assert!(!headers.contains_key(header::HOST));
    }

    #[test]
    fn cors_origins_must_be_bare_origins() {
        assert!(cors_layer(&["https://app.example.com".into()]).is_ok());
        assert!(cors_layer(&["https://app.example.com/".into()]).is_err());
        assert!(cors_layer(&["app.example.com".into()]).is_err());
    }
}
