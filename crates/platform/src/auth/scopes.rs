//! OAuth2 scopes of machine clients (`POST /oauth/token`, client credentials). A scope grants a role and
//! confines it to a few routes: a warehouse system holding `inventory:write` acts as a manager, but only on
//! inventory routes. The routes are checked at the gateway and again by every service (the [`AuthUser`]
//! extractor), like roles.
//!
//! [`AuthUser`]: super::AuthUser

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::http::Method;

use super::Role;
use crate::route_pattern::RoutePattern;

/// One scope: its name, the role it acts with, and the routes it opens.
pub struct Scope {
    pub name: &'static str,
    pub role: Role,
    pub routes: &'static [&'static str],
    pub description: &'static str,
}

/// Every scope a client may be given.
pub const SCOPES: &[Scope] = &[
    Scope {
        name: "inventory:read",
        role: Role::Dispatcher,
        routes: &["GET /api/v1/inventory/*"],
        description: "read products, warehouses, stock levels, movements and reservations",
    },
    Scope {
        name: "inventory:write",
        role: Role::Manager,
        routes: &[
            "GET /api/v1/inventory/*",
            "POST,PUT,PATCH /api/v1/inventory/*",
        ],
        description: "push stock: products, adjustments, transfers, CSV imports (a warehouse system)",
    },
    Scope {
        name: "orders:read",
        role: Role::Dispatcher,
        routes: &["GET /api/v1/orders/*", "GET /api/v1/shipments/*"],
        description: "read orders and shipments",
    },
    Scope {
        name: "tracking:write",
        role: Role::Dispatcher,
        routes: &[
            "GET /api/v1/shipments/{id}",
            "GET,POST /api/v1/shipments/{id}/tracking-events",
        ],
        description: "post tracking events of shipments (a carrier)",
    },
];

/// The compiled routes of every scope, in [`SCOPES`] order.
static COMPILED: LazyLock<Vec<Vec<RoutePattern>>> = LazyLock::new(|| {
    SCOPES
        .iter()
        .map(|scope| {
            scope
                .routes
                .iter()
                .filter_map(|route| RoutePattern::parse(route).ok())
                .collect()
        })
        .collect()
});

/// The scope named `name`.
pub fn find(name: &str) -> Option<&'static Scope> {
    SCOPES.iter().find(|scope| scope.name == name)
}

/// The role a client holding `scopes` acts with: the strongest its scopes grant.
pub fn role_of<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Option<Role> {
    scopes
        .into_iter()
        .filter_map(find)
        .map(|scope| scope.role)
        .max_by_key(|role| role.privilege())
}

/// Whether a token with the space-separated `scope` may call `method` on the path `segments`
/// ([`crate::route_pattern::request_segments`]).
pub fn permits(scope: &str, method: &Method, segments: &[Cow<'_, str>]) -> bool {
    scope.split_whitespace().any(|name| {
        SCOPES
            .iter()
            .position(|scope| scope.name == name)
            .is_some_and(|index| {
                COMPILED[index]
                    .iter()
                    .any(|pattern| pattern.matches(method, segments))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route_pattern::request_segments;

    #[test]
    fn every_route_of_every_scope_compiles() {
        for (scope, compiled) in SCOPES.iter().zip(COMPILED.iter()) {
            assert_eq!(scope.routes.len(), compiled.len(), "{}", scope.name);
        }
    }

    #[test]
    fn a_scope_opens_its_routes_only() {
        let tracking = "tracking:write";
        let post = |path| permits(tracking, &Method::POST, &request_segments(path));
        assert!(post("/api/v1/shipments/0190/tracking-events"));
        assert!(!post("/api/v1/shipments/0190/proof"));
        assert!(!post("/api/v1/inventory/adjustments"));
        assert!(permits(
            "orders:read inventory:write",
            &Method::POST,
            &request_segments("/api/v1/inventory/adjustments")
        ));
        assert!(!permits(
            "inventory:write",
            &Method::DELETE,
            &request_segments("/api/v1/inventory/products/1")
        ));
        assert!(!permits(
            "unknown",
            &Method::GET,
            &request_segments("/api/v1/orders")
        ));
    }

    #[test]
    fn the_strongest_role_wins() {
        assert_eq!(
            role_of(["tracking:write", "inventory:write"]),
            Some(Role::Manager)
        );
        assert_eq!(role_of(["orders:read"]), Some(Role::Dispatcher));
        assert_eq!(role_of(["nope"]), None);
    }
}
