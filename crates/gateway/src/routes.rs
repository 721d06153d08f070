//! The route table: which path prefix goes to which upstream. It is data, so routing a new service is
//! one row here (its URL under `gateway.upstreams` follows the service's port); both proxy paths read it.

/// A path prefix (a whole-segment prefix: `/api/v1/users` covers `/api/v1/users/42`, not
/// `/api/v1/usersx`) and the upstream named in `gateway.upstreams` that serves it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pub(crate) prefix: &'static str,
    pub(crate) upstream: &'static str,
}

impl Route {
    /// The router's template for the paths below the prefix; metrics and logs name them by it.
    pub(crate) fn rest_template(&self) -> String {
        format!("{}/{{*rest}}", self.prefix)
    }
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
        prefix: "/api/v1/clients",
        upstream: "users",
    },
    // LogiCore as an OAuth2 authorization server and OpenID provider: the token endpoint, the discovery
    // document and the JWKS live at the roots OAuth clients look for.
    Route {
        prefix: "/oauth",
        upstream: "users",
    },
    Route {
        prefix: "/.well-known",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_is_a_distinct_api_or_oauth_path_without_a_trailing_slash() {
        for (index, route) in ROUTE_TABLE.iter().enumerate() {
            assert!(
                ["/api/", "/oauth", "/.well-known"]
                    .iter()
                    .any(|root| route.prefix.starts_with(root)),
                "{route:?}"
            );
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
