//! Rate limiting at the edge: GCRA per client, keyed by user id (`sub`) for authenticated calls and by
//! peer IP otherwise, with the first matching per-route / per-role override deciding the limit. Runs
//! inside the access policy, so it sees the verified claims; operations routes are never limited.
//!
//! Every limited route answers with `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a
//! refusal is a 429 `RATE_LIMITED` problem with `Retry-After`.

mod config;
mod gcra;
mod memory;
mod redis;

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::Problem;
use platform::auth::{AuthUser, Claims, Role};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use config::{FailMode, LimitRule, RateLimitBackend, RateLimitConfig};

use crate::error::GatewayError;
use crate::headers::{RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET};
use gcra::{Quota, Verdict};
use memory::MemoryStore;
use platform::route_pattern::RoutePattern;
use redis::RedisStore;

struct CompiledRule {
    /// Stable across reloads while the rule is unchanged, so its buckets carry on; a changed rule starts
    /// afresh.
    id: u64,
    pattern: Option<RoutePattern>,
    role: Option<Role>,
    quota: Quota,
}

/// The buckets; shared by the limiters of successive configurations.
enum Store {
    Memory(MemoryStore),
    Redis(Box<RedisStore>, FailMode),
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// `allowed`, `limited`, `fail_open` or `fail_closed`.
    decision: &'static str,
}

/// The compiled limits and their store; cheap to clone.
#[derive(Clone)]
pub(crate) struct Limiter(Arc<Inner>);

struct Inner {
    /// Overrides in order, then the default rule last (it matches everything).
    rules: Vec<CompiledRule>,
    store: Arc<Store>,
    /// The series of `gateway_rate_limit_decisions`, looked up once here rather than by label on every
    /// request.
    allowed: Counter,
    limited: Counter,
    fail_open: Counter,
    fail_closed: Counter,
}

impl Limiter {
    pub(crate) async fn build(
        config: &RateLimitConfig,
        registry: &mut Registry,
    ) -> Result<Self, GatewayError> {
        let rules = compile(config)?;
        let store = match &config.backend {
            RateLimitBackend::Memory => Store::Memory(MemoryStore::new()),
            RateLimitBackend::Redis {
                url,
                key_prefix,
                connect_timeout,
                timeout,
                fail_mode,
            } => {
                let store = RedisStore::new(url, key_prefix.clone(), *connect_timeout, *timeout)
                    .map_err(|e| GatewayError::config("redis.url", e.to_string()))?;
                store.connect().await;
                Store::Redis(Box::new(store), *fail_mode)
            }
        };
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "gateway_rate_limit_decisions",
            "Rate limiter decisions",
            decisions.clone(),
        );
        let series = |decision| {
            decisions
                .get_or_create(&DecisionLabels { decision })
                .clone()
        };
        Ok(Self(Arc::new(Inner {
            rules,
            store: Arc::new(store),
            allowed: series("allowed"),
            limited: series("limited"),
            fail_open: series("fail_open"),
            fail_closed: series("fail_closed"),
        })))
    }
}

impl Limiter {
    /// The limiter of a reloaded configuration: `config`'s rules on this one's buckets and counters. The
    /// backend is read at start only.
    pub(crate) fn with_rules(&self, config: &RateLimitConfig) -> Result<Self, GatewayError> {
        let inner = &*self.0;
        Ok(Self(Arc::new(Inner {
            rules: compile(config)?,
            store: inner.store.clone(),
            allowed: inner.allowed.clone(),
            limited: inner.limited.clone(),
            fail_open: inner.fail_open.clone(),
            fail_closed: inner.fail_closed.clone(),
        })))
    }
}

/// Whether `config`'s rules compile (their route patterns).
pub(crate) fn check(config: &RateLimitConfig) -> Result<(), GatewayError> {
    compile(config).map(drop)
}

/// The overrides in order, then the default rule.
fn compile(config: &RateLimitConfig) -> Result<Vec<CompiledRule>, GatewayError> {
    let mut rules = Vec::with_capacity(config.overrides.len() + 1);
    for rule in config.overrides.iter().chain([&config.default]) {
        let pattern = match &rule.route {
            Some(text) => Some(RoutePattern::parse(text).map_err(|reason| {
                GatewayError::config(
                    "gateway.rate_limit.overrides",
                    format!("{text:?}: {reason}"),
                )
            })?),
            None => None,
        };
        let mut id = std::hash::DefaultHasher::new();
        (
            &rule.route,
            rule.role.map(|role| role.to_string()),
            rule.window,
            rule.max_requests,
            rule.burst,
        )
            .hash(&mut id);
        rules.push(CompiledRule {
            id: id.finish(),
            pattern,
            role: rule.role,
            quota: Quota::new(
                rule.window.as_micros() as u64,
                rule.max_requests,
                rule.burst,
            ),
        });
    }
    Ok(rules)
}

/// Who a limit is counted for: the user when the access policy verified a token, else the peer IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Client {
    User(uuid::Uuid),
    Ip(IpAddr),
    Unknown,
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::User(id) => write!(f, "u:{id}"),
            Client::Ip(ip) => write!(f, "ip:{ip}"),
            Client::Unknown => f.write_str("ip:unknown"),
        }
    }
}

/// One bucket per rule and client, so a tight per-route limit does not use up the general one. A
/// value rather than a formatted string, so the in-memory store hashes a few bytes and allocates nothing
/// per request; Redis gets the string form. A bucket is the rule's stable id and the client; `rule` only
/// finds the rule in the configuration the request was admitted under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketKey {
    rule: usize,
    id: u64,
    client: Client,
}

impl PartialEq for BucketKey {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && self.client == other.client
    }
}

impl Eq for BucketKey {}

impl Hash for BucketKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
        self.client.hash(state);
    }
}

impl fmt::Display for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}:{}", self.id, self.client)
    }
}

/// What the limiter decided for a request it lets through.
pub(crate) enum Admission {
    /// No rule applies, or Redis failed open: the response carries no `RateLimit-*` headers.
    Unlimited,
    Allowed {
        capacity: u32,
        verdict: Verdict,
    },
}

impl Admission {
    /// Adds the `RateLimit-*` headers to the response of an admitted request.
    pub(crate) fn stamp(&self, headers: &mut HeaderMap) {
        if let Some((limit, remaining, reset)) = self.header_values() {
            set_values(headers, limit, remaining, reset);
        }
    }

    /// `RateLimit-Limit`, `-Remaining` and `-Reset`, when the request was counted.
    pub(crate) fn header_values(&self) -> Option<(u32, u64, u64)> {
        match self {
            Admission::Unlimited => None,
            Admission::Allowed { capacity, verdict } => Some(header_values(*capacity, verdict)),
        }
    }
}

/// The bucket a request is counted in: the first rule that matches it, and its client. `None` when no
/// rule does (the default rule matches everything, so only without any rule at all). `segments` is the
/// request's path as [`platform::route_pattern::request_segments`] gives it.
pub(crate) fn bucket(
    limiter: &Limiter,
    request: &Request,
    segments: &[Cow<'_, str>],
) -> Option<BucketKey> {
    let claims = request
        .extensions()
        .get::<AuthUser>()
        .map(|AuthUser(claims)| claims);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    bucket_for(limiter, claims, peer, request.method(), segments)
}

/// [`bucket`] from the parts of a request: the claims the access policy verified, if any, and the
/// peer's address.
pub(crate) fn bucket_for(
    limiter: &Limiter,
    claims: Option<&Claims>,
    peer: Option<IpAddr>,
    method: &Method,
    segments: &[Cow<'_, str>],
) -> Option<BucketKey> {
    let (client, role) = match claims {
        Some(claims) => (Client::User(claims.sub), Some(claims.role)),
        None => (peer.map_or(Client::Unknown, Client::Ip), None),
    };
    let rule = limiter.0.rules.iter().position(|rule| {
        rule.role.is_none_or(|r| Some(r) == role)
            && rule
                .pattern
                .as_ref()
                .is_none_or(|p| p.matches(method, segments))
    })?;
    Some(BucketKey {
        rule,
        id: limiter.0.rules[rule].id,
        client,
    })
}

/// The limiter in front of every proxied route, after the access policy (so [`bucket`] sees the
/// verified claims): admits the request, or gives the 429 (or fail-closed 503) to answer instead.
pub(crate) async fn admit(
    limiter: &Limiter,
    key: Option<BucketKey>,
) -> Result<Admission, Response> {
    let Some(key) = key else {
        return Ok(Admission::Unlimited);
    };
    let rule = &limiter.0.rules[key.rule];
    let verdict = match &*limiter.0.store {
        Store::Memory(store) => store.check(key, rule.quota),
        Store::Redis(store, fail_mode) => match store.check(&key.to_string(), rule.quota).await {
            Ok(verdict) => verdict,
            Err(e) => {
                tracing::debug!(error = %e, fail_mode = ?fail_mode, "rate limiter fell back to its fail mode");
                return match fail_mode {
                    FailMode::Open => {
                        limiter.0.fail_open.inc();
                        Ok(Admission::Unlimited)
                    }
                    FailMode::Closed => {
                        limiter.0.fail_closed.inc();
                        Err(refusal("the rate limiter is unavailable; retry later", 1))
                    }
                };
            }
        },
    };
    let capacity = rule.quota.capacity;
    if !verdict.allowed {
        limiter.0.limited.inc();
        let mut response = refusal(
            "too many requests; retry after the time in Retry-After",
            secs(verdict.retry_after_us),
        );
        set_headers(response.headers_mut(), capacity, &verdict);
        return Err(response);
    }
    limiter.0.allowed.inc();
    Ok(Admission::Allowed { capacity, verdict })
}

/// Whole seconds, rounded up and never 0, so a client waiting that long is admitted.
fn secs(us: u64) -> u64 {
    us.div_ceil(1_000_000).max(1)
}

fn refusal(detail: &str, retry_after_secs: u64) -> Response {
    let mut response =
        Problem::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", detail).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

fn header_values(capacity: u32, verdict: &Verdict) -> (u32, u64, u64) {
    (
        capacity,
        verdict.remaining,
        verdict.reset_us.div_ceil(1_000_000),
    )
}

fn set_headers(headers: &mut HeaderMap, capacity: u32, verdict: &Verdict) {
    let (limit, remaining, reset) = header_values(capacity, verdict);
    set_values(headers, limit, remaining, reset);
}

fn set_values(headers: &mut HeaderMap, limit: u32, remaining: u64, reset: u64) {
    headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit));
    headers.insert(RATELIMIT_REMAINING, HeaderValue::from(remaining));
    headers.insert(RATELIMIT_RESET, HeaderValue::from(reset));
}
