//! The two paths a proxied request can take, and what they share.
//!
//! - The **direct path** ([`direct`]) reads every connection first. A request for a proxied route that is
//!   plain HTTP/1.1 with a small body is forwarded from the bytes it came in, with its own HTTP/1 framing
//!   ([`crate::wire`]). It exists for speed: it spends about two thirds of the router path's CPU per
//!   request (docs/benchmarks.md).
//! - The **router path** ([`routed`]) is hyper's server and axum: everything else (operations routes,
//!   docs, chunked or large bodies, HTTP/1.0, `Expect`, CORS requests) is handed to it with the
//!   connection.
//!
//! Both read the same route table ([`crate::routes`]), run the same access policy
//! ([`crate::policy::check`]) and rate limiter ([`crate::ratelimit::admit`]), send through the same
//! breaker, balancing, retry and ejection loop ([`crate::upstream::UpstreamClient::dispatch`]) on the same
//! upstream connections: each instance has one pool of keep-alive connections
//! ([`crate::upstream::connections`]), per worker, that both paths (and the readiness probe) take from
//! and give back to, so a connection opened for one path's request carries the other's next. They apply
//! the same header policy ([`crate::headers`]) and compression decision ([`crate::compression`]), and
//! answer upstream failures with the same problems ([`proxy_error`]). `tests/api/paths.rs` sends the same
//! requests through both and compares the answers.

pub(crate) mod direct;
pub(crate) mod routed;

use std::collections::HashMap;

use crate::error::{GatewayError, ProxyError};
use crate::policy::Policy;
use crate::ratelimit::Limiter;
use crate::routes::Route;
use crate::upstream::{SendError, UpstreamClient};

/// The state of one proxied route: who may call it, how often, where it goes and how much body it
/// accepts.
#[derive(Clone)]
pub(crate) struct Target {
    pub(crate) policy: Policy,
    pub(crate) limiter: Limiter,
    pub(crate) upstream: UpstreamClient,
    pub(crate) max_body_bytes: usize,
}

/// Each row of the table with the state of its proxied route. Fails as [`check_routing`] does.
pub(crate) fn targets(
    table: &[Route],
    upstreams: &HashMap<String, UpstreamClient>,
    policy: &Policy,
    limiter: &Limiter,
    max_body_bytes: usize,
) -> Result<Vec<(Route, Target)>, GatewayError> {
    check_routing(table, upstreams.keys().map(String::as_str))?;
    Ok(table
        .iter()
        .filter_map(|route| {
            let upstream = upstreams.get(route.upstream)?;
            Some((
                *route,
                Target {
                    policy: policy.clone(),
                    limiter: limiter.clone(),
                    upstream: upstream.clone(),
                    max_body_bytes,
                },
            ))
        })
        .collect())
}

/// Whether the route table and the configured upstreams agree: no duplicated prefix, no route to an
/// upstream without a URL, no URL that no route uses (a misspelt upstream name would otherwise go
/// unnoticed).
pub(crate) fn check_routing<'a>(
    table: &[Route],
    upstreams: impl Iterator<Item = &'a str> + Clone,
) -> Result<(), GatewayError> {
    for (index, route) in table.iter().enumerate() {
        // axum panics on a route registered twice; a duplicated row is a configuration error instead.
        if table[..index].iter().any(|r| r.prefix == route.prefix) {
            return Err(GatewayError::config(
                "route table",
                format!("{} is listed twice", route.prefix),
            ));
        }
        if !upstreams.clone().any(|name| name == route.upstream) {
            return Err(GatewayError::config(
                "gateway.upstreams",
                format!(
                    "{} is routed to upstream {:?}, which has no URL",
                    route.prefix, route.upstream
                ),
            ));
        }
    }
    let mut unrouted: Vec<&str> = upstreams
        .filter(|name| !table.iter().any(|route| route.upstream == *name))
        .collect();
    unrouted.sort_unstable();
    if let Some(name) = unrouted.first() {
        return Err(GatewayError::config(
            &format!("gateway.upstreams.{name}"),
            "no route of the gateway's route table goes to this upstream",
        ));
    }
    Ok(())
}

/// What the caller is told when the upstream gave no response.
pub(crate) fn proxy_error(target: &Target, error: SendError) -> ProxyError {
    let upstream = target.upstream.name().to_owned();
    let limit = target.max_body_bytes;
    match error {
        SendError::Connect(source) => ProxyError::Unavailable {
            upstream,
            source: Some(source),
        },
        SendError::NoInstance => ProxyError::Unavailable {
            upstream,
            source: None,
        },
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
}
