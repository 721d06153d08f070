//! Who may pass the edge: public routes need nothing, every other route a valid access token, and the
//! first matching `gateway.rbac` rule decides which roles. Routes without a rule are open to any
//! authenticated caller; the services check ownership and check roles again.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::Problem;
use platform::auth::{AuthUser, Claims, JwtKeys, Role};
use platform::config::RbacRule;

use crate::error::GatewayError;
use platform::route_pattern::RoutePattern;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Roles {
    AnyAuthenticated,
    Only(Vec<Role>),
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: RoutePattern,
    roles: Roles,
}

impl Rule {
    fn admits(&self, role: Role) -> bool {
        match &self.roles {
            Roles::AnyAuthenticated => true,
            Roles::Only(roles) => roles.contains(&role),
        }
    }
}

/// The compiled access policy; cheap to clone.
#[derive(Clone)]
pub(crate) struct Policy(Arc<PolicyInner>);

struct PolicyInner {
    keys: JwtKeys,
    public: Vec<RoutePattern>,
    rules: Vec<Rule>,
}

/// What the policy says about one request.
#[derive(Debug)]
pub(crate) enum Decision {
    Public,
    Allowed(Claims),
    Denied {
        claims: Claims,
        rule: String,
        reason: String,
    },
}

impl Policy {
    /// Compiles every pattern and role list; the first bad one stops the gateway from starting. `keys`
    /// verify tokens, revocations included.
    pub(crate) fn compile(
        keys: JwtKeys,
        public_routes: &[String],
        rbac: &[RbacRule],
    ) -> Result<Self, GatewayError> {
        let public = public_routes
            .iter()
            .map(|text| {
                RoutePattern::parse(text).map_err(|reason| {
                    GatewayError::config("gateway.public_routes", format!("{text:?}: {reason}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rules = rbac
            .iter()
            .map(compile_rule)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(Arc::new(PolicyInner {
            keys,
            public,
            rules,
        })))
    }

    /// Checks a bearer token alone, for the gateway's own routes that fix their roles in code.
    pub(crate) async fn verify(&self, authorization: Option<&str>) -> Result<Claims, Problem> {
        self.0.keys.verify_bearer(authorization).await
    }

    /// Public routes first, then the token (401), then the first matching rule (403).
    /// `segments` is the request path as [`platform::route_pattern::request_segments`] gives it.
    pub(crate) async fn decide(
        &self,
        method: &Method,
        segments: &[Cow<'_, str>],
        authorization: Option<&str>,
    ) -> Result<Decision, Problem> {
        if segments.iter().any(|s| s == "." || s == "..") {
            // Services and anything between could resolve dot segments differently from the matcher
            // here, so such paths are refused rather than interpreted.
            return Err(Problem::bad_request(
                "BAD_REQUEST",
                "the path must not contain `.` or `..` segments",
            ));
        }
        if self.0.public.iter().any(|p| p.matches(method, segments)) {
            return Ok(Decision::Public);
        }
        // A machine client's token must also have a scope that opens the route.
        let claims = self
            .0
            .keys
            .verify_request(authorization, method, segments)
            .await?;
        let Some(rule) = self
            .0
            .rules
            .iter()
            .find(|rule| rule.pattern.matches(method, segments))
        else {
            return Ok(Decision::Allowed(claims));
        };
        if rule.admits(claims.role) {
            Ok(Decision::Allowed(claims))
        } else {
            Ok(Decision::Denied {
                reason: format!("role {} is not in the rule's roles", claims.role),
                rule: rule.pattern.text().to_owned(),
                claims,
            })
        }
    }
}

fn compile_rule(rule: &RbacRule) -> Result<Rule, GatewayError> {
    let invalid = |reason: String| {
        GatewayError::config("gateway.rbac", format!("rule {:?}: {reason}", rule.route))
    };
    let pattern = RoutePattern::parse(&rule.route).map_err(invalid)?;
    if rule.roles.is_empty() {
        return Err(invalid("roles must not be empty".into()));
    }
    let roles = if rule.roles.iter().any(|r| r == "*") {
        if rule.roles.len() > 1 {
            return Err(invalid(
                "`*` already admits every role; list it alone".into(),
            ));
        }
        Roles::AnyAuthenticated
    } else {
        Roles::Only(
            rule.roles
                .iter()
                .map(|r| r.parse::<Role>())
                .collect::<Result<_, _>>()
                .map_err(invalid)?,
        )
    };
    Ok(Rule { pattern, roles })
}

/// The access check in front of every proxied route: lets the request on with the caller's claims in its
/// extensions, or gives the refusal to answer instead. Refusals never reach the upstream. `segments` is
/// the request's path as [`platform::route_pattern::request_segments`] gives it.
pub(crate) async fn admit(
    policy: &Policy,
    request: &mut Request,
    segments: &[Cow<'_, str>],
) -> Result<(), Response> {
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    match check(policy, request.method(), segments, authorization).await {
        Ok(Some(claims)) => {
            request.extensions_mut().insert(AuthUser(claims));
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(refusal) => Err(refusal.into_response(request.method(), request.uri().path())),
    }
}

/// Why the policy refused a request.
pub(crate) enum Refusal {
    /// A valid token whose role no rule admits (403).
    Denied {
        claims: Claims,
        rule: String,
        reason: String,
    },
    /// No valid token (401), or a path that is refused outright (400).
    Problem(Problem),
}

impl Refusal {
    /// The response, logging a denial first; `method` and `path` are for that log line.
    pub(crate) fn into_response(self, method: &Method, path: &str) -> Response {
        match self {
            Refusal::Denied {
                claims,
                rule,
                reason,
            } => {
                tracing::warn!(
                    user_id = %claims.sub,
                    role = %claims.role,
                    method = %method,
                    route = %path,
                    rule = %rule,
                    reason = %reason,
                    "access denied at the gateway"
                );
                Problem::forbidden(format!("role {} may not do this", claims.role)).into_response()
            }
            Refusal::Problem(problem) => problem_response(problem),
        }
    }
}

/// A refusal's problem as a response; a 401 names the scheme the caller should use (RFC 6750 §3).
pub(crate) fn problem_response(problem: Problem) -> Response {
    let unauthorized = problem.status_code() == StatusCode::UNAUTHORIZED;
    let mut response = problem.into_response();
    if unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// [`admit`] for a request that is not an `http::Request`: the caller's verified claims (`None` on a
/// public route), or why it is refused.
pub(crate) async fn check(
    policy: &Policy,
    method: &Method,
    segments: &[Cow<'_, str>],
    authorization: Option<&str>,
) -> Result<Option<Claims>, Refusal> {
    match policy.decide(method, segments, authorization).await {
        Ok(Decision::Public) => Ok(None),
        Ok(Decision::Allowed(claims)) => Ok(Some(claims)),
        Ok(Decision::Denied {
            claims,
            rule,
            reason,
        }) => Err(Refusal::Denied {
            claims,
            rule,
            reason,
        }),
        Err(problem) => Err(Refusal::Problem(problem)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::config::AuthSettings;
    use platform::route_pattern::request_segments;

    fn auth() -> AuthSettings {
        AuthSettings::defaults_with_secret("0123456789abcdef0123456789abcdef")
    }

    fn rule(route: &str, roles: &[&str]) -> RbacRule {
        RbacRule {
            route: route.into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn bearer(role: Role) -> String {
        let (token, _) = JwtKeys::new(&auth())
            .issue(uuid::Uuid::now_v7(), "someone@example.com", role)
            .unwrap_or_else(|e| panic!("{e}"));
        format!("Bearer {token}")
    }

    #[test]
    fn rules_with_unknown_roles_or_bad_patterns_stop_the_start() {
        for bad in [
            rule("GET /x", &["wizard"]),
            rule("GET /x", &[]),
            rule("GET /x", &["*", "admin"]),
            rule("GET x", &["admin"]),
        ] {
            assert!(
                Policy::compile(JwtKeys::new(&auth()), &[], std::slice::from_ref(&bad)).is_err(),
                "{bad:?}"
            );
        }
        assert!(Policy::compile(JwtKeys::new(&auth()), &["BREW /coffee".into()], &[]).is_err());
    }

    #[tokio::test]
    async fn the_first_matching_rule_decides() {
        let policy = Policy::compile(
            JwtKeys::new(&auth()),
            &[],
            &[
                rule("* /api/v1/users/me/*", &["*"]),
                rule("GET /api/v1/users/{id}", &["admin"]),
            ],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let customer = bearer(Role::Customer);
        let me = policy
            .decide(
                &Method::GET,
                &request_segments("/api/v1/users/me"),
                Some(&customer),
            )
            .await;
        assert!(matches!(me, Ok(Decision::Allowed(_))), "{me:?}");
        let other = policy
            .decide(
                &Method::GET,
                &request_segments("/api/v1/users/42"),
                Some(&customer),
            )
            .await;
        assert!(matches!(other, Ok(Decision::Denied { .. })), "{other:?}");
    }

    #[tokio::test]
    async fn dot_segments_are_refused_before_any_rule_is_consulted() {
        let policy = Policy::compile(JwtKeys::new(&auth()), &["GET /public/*".into()], &[])
            .unwrap_or_else(|e| panic!("{e}"));
        let decision = policy
            .decide(
                &Method::GET,
                &request_segments("/public/../api/v1/users"),
                None,
            )
            .await;
        assert!(matches!(decision, Err(p) if p.status == 400));
    }
}
