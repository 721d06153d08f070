//! The route table: which path prefix goes to which upstream. It is data, so adding a service is one row.

use std::collections::HashMap;

use axum::Router;
use axum::routing::any;

use crate::error::GatewayError;
use crate::policy::Policy;
use crate::proxy::{Target, handle};
use crate::ratelimit::Limiter;
use crate::upstream::UpstreamClient;

/// A path prefix (a whole-segment prefix: `/api/v1/users` covers `/api/v1/users/42`, not
/// `/api/v1/usersx`) and the upstream named in `gateway.upstreams` that serves it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) prefix: &'static str,
    pub(crate) upstream: &'static str,
}

pub(crate) const ROUTE_TABLE: &[Route] = &[
    Route {
        prefix: "/api/v1/auth",
        upstream: "users",
    },
    Route {
        prefix: "/api/v1/users",
        upstream: "users",
    },
    Route {
        prefix: "/api/v1/inventory",
        upstream: "inventory",
    },
    Route {
        prefix: "/api/v1/orders",
        upstream: "orders",
    },
    Route {
        prefix: "/api/v1/shipments",
        upstream: "orders",
    },
    Route {
        prefix: "/api/v1/track",
        upstream: "orders",
    },
];

/// Each row of the table with the state of its proxied route. Fails on a duplicated prefix or an
/// upstream without a URL.
pub(crate) fn targets(
    table: &[Route],
    upstreams: &HashMap<String, UpstreamClient>,
    policy: &Policy,
    limiter: &Limiter,
    max_body_bytes: usize,
) -> Result<Vec<(Route, Target)>, GatewayError> {
    let mut targets = Vec::with_capacity(table.len());
    for (index, route) in table.iter().enumerate() {
        // axum panics on a route registered twice; a duplicated row is a configuration error instead.
        if table[..index].iter().any(|r| r.prefix == route.prefix) {
            return Err(GatewayError::config(
                "route table",
                format!("{} is listed twice", route.prefix),
            ));
        }
        let upstream = upstreams.get(route.upstream).ok_or_else(|| {
            GatewayError::config(
                "gateway.upstreams",
                format!(
                    "{} is routed to upstream {:?}, which has no URL",
                    route.prefix, route.upstream
                ),
            )
        })?;
        let target = Target {
            policy: policy.clone(),
            limiter: limiter.clone(),
            upstream: upstream.clone(),
            max_body_bytes,
        };
        targets.push((*route, target));
    }
    Ok(targets)
}

/// Every prefix as two axum routes (`prefix` and `prefix/{*rest}`), so request metrics carry a route
/// template rather than raw paths; each behind the access policy and the rate limiter. Any other `/api/...` path is a 404
/// problem, answered without a token so probing it reveals nothing either way.
pub(crate) fn api_router(targets: &[(Route, Target)]) -> Router {
    let mut router = Router::new();
    for (route, target) in targets {
        let handler = any(handle).with_state(target.clone());
        router = router
            .route(route.prefix, handler.clone())
            .route(&format!("{}/{{*rest}}", route.prefix), handler);
    }
    router
        .route("/api", any(platform::http::not_found))
        .route("/api/{*rest}", any(platform::http::not_found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_is_a_distinct_api_path_without_a_trailing_slash() {
        for (index, route) in ROUTE_TABLE.iter().enumerate() {
            assert!(route.prefix.starts_with("/api/"), "{route:?}");
            assert!(!route.prefix.ends_with('/'), "{route:?}");
            assert!(
                !ROUTE_TABLE[..index]
                    .iter()
                    .any(|r| r.prefix == route.prefix),
                "{route:?} is listed twice"
            );
        }
    }
}
