//! LogiCore's edge. Routes `/api/...` to the services by a prefix table, checks the access token and the
//! role rules before anything reaches a service, streams requests and responses through a pooled
//! keep-alive client, and serves the merged OpenAPI document and an offline docs page.
//!
//! Request path, outermost first: security headers → compression → request id, metrics, panics (platform)
//! → CORS → access policy → rate limit → proxy (through the upstream's circuit breaker, to the least busy
//! healthy instance, retried on another when safe). The public port also serves `/health`, a `/readyz` that
//! says only ready or not, `/openapi.json` and `/docs`; metrics, the detailed readiness report and `/admin/*`
//! are on the admin listener (`admin`, `gateway.admin_port`).
//!
//! The gateway knows no service crate: the binary hands it each service's OpenAPI document.

mod admin;
mod compression;
mod config;
mod error;
mod headers;
mod openapi;
mod pattern;
mod policy;
mod proxy;
mod ratelimit;
mod readiness;
mod routes;
mod upstream;
mod wire;

use std::collections::HashMap;

use axum::Router;
use axum::routing::get;
use platform::auth::JwtKeys;
use platform::breaker::{BreakerMetrics, CircuitBreaker};
use platform::discovery::{Discovery, DiscoveryMetrics, Snapshot};
use platform::health::{Check, Readiness, health_handler, readyz_status_handler};
use platform::http::with_request_layers;
use platform::metrics::{HttpMetrics, MetricsHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::GatewayError;
pub use ratelimit::{FailMode, LimitRule, RateLimitBackend, RateLimitConfig};
pub use upstream::{Balancing, OutlierConfig, RetryConfig, Upstream};

use compression::CompressionLayer;
use policy::Policy;
use proxy::direct::DirectPath;
use readiness::UpstreamCheck;
use upstream::{ClientParts, PoolShape, UpstreamClient, UpstreamMetrics};

/// The gateway's name: its metrics prefix and its spans' `service.name`.
pub const NAME: &str = "gateway";

/// The public port's router: proxied routes, docs, `/health`, the minimal `/readyz` and every layer. Fails
/// on an invalid rule, pattern, origin or route table, so a bad configuration stops the start instead of a
/// request.
pub async fn build(
    config: &Config,
    specs: Vec<utoipa::openapi::OpenApi>,
) -> Result<Router, GatewayError> {
    Ok(assemble(config, specs).await?.public)
}

/// Where the gateway listens: the public port and the admin listener.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

/// The public router (the router path), the direct path in front of it that hands it what it does not
/// forward itself, and the admin listener's router.
struct Assembled {
    public: Router,
    direct: DirectPath,
    admin: Router,
    /// The registry the upstreams' instances come from.
    discovery: Discovery,
    /// Each upstream with its configured URLs, in route-table order.
    upstreams: Vec<(UpstreamClient, Vec<url::Url>)>,
}

async fn assemble(
    config: &Config,
    specs: Vec<utoipa::openapi::OpenApi>,
) -> Result<Assembled, GatewayError> {
    let keys = JwtKeys::with_revocations(&config.auth, config.revocation.set.clone());
    let policy = Policy::compile(keys, &config.public_routes, &config.rbac)?;
    let cors = headers::cors_layer(&config.cors_allowed_origins)?;
    let spec = openapi::merged(specs)?;

    let mut registry = platform::metrics::registry(NAME);
    let http_metrics = HttpMetrics::register(&mut registry, NAME);
    let upstream_metrics = UpstreamMetrics::register(&mut registry);
    let breaker_metrics = BreakerMetrics::register(&mut registry);
    let discovery =
        Discovery::from_settings(&config.discovery, DiscoveryMetrics::register(&mut registry))
            .map_err(|e| GatewayError::config("discovery.backend", e.to_string()))?;
    // With `static` the configured lists are the instances from the start; a registry's come with its
    // first answer.
    let configured_instances = discovery.backend() == "static";
    let limiter = ratelimit::Limiter::build(&config.rate_limit, &mut registry).await?;
    // A little under the readiness deadline, so a slow upstream is reported by its own check (with
    // its URL) rather than cut off by the outer timeout.
    let check_timeout = config.readiness_timeout.mul_f64(0.9);

    let mut upstreams = HashMap::new();
    let mut followed = Vec::new();
    let mut checks: Vec<Box<dyn Check>> = Vec::new();
    for upstream in &config.upstreams {
        if upstream.endpoints.is_empty()
            && discovery.backend() != "etcd"
            && discovery.backend() != "consul"
        {
            return Err(GatewayError::config(
                &format!("gateway.upstreams.{}", upstream.name),
                "names no instance",
            ));
        }
        let breaker = CircuitBreaker::new(
            upstream.name.clone(),
            config.circuit_breaker.clone(),
            Some(breaker_metrics.clone()),
        );
        let handle = UpstreamClient::new(
            upstream.clone(),
            ClientParts {
                timeout: config.request_timeout,
                metrics: upstream_metrics.clone(),
                breaker,
                failures: config.breaker_failures,
                retry: config.retry.clone(),
                outlier: config.outlier.clone(),
                balancing: config.load_balancing,
                pool: PoolShape {
                    workers: config.http_workers.get(),
                    max_idle: config.pool_idle_per_host,
                },
                initial: Snapshot {
                    source: discovery.backend(),
                    endpoints: if configured_instances {
                        upstream.endpoints.clone()
                    } else {
                        Vec::new()
                    },
                    known: configured_instances,
                    error: None,
                    changed_at: None,
                },
            },
        );
        followed.push((handle.clone(), upstream.endpoints.clone()));
        checks.push(Box::new(UpstreamCheck::new(
            handle.clone(),
            check_timeout,
            config.readiness_cache,
        )));
        upstreams.insert(upstream.name.clone(), handle);
    }

    let admin = admin::AdminState {
        policy: policy.clone(),
        upstreams: config
            .upstreams
            .iter()
            .filter_map(|u| upstreams.get(&u.name).cloned())
            .collect(),
    };
    let targets = proxy::targets(
        routes::ROUTE_TABLE,
        &upstreams,
        &policy,
        &limiter,
        config.max_body_bytes,
    )?;
    let readiness = Readiness::new(checks, config.readiness_timeout);
    let mut app = proxy::routed::api_router(&targets)
        .merge(openapi::docs_router(spec))
        .route("/health", get(health_handler))
        .route(
            "/readyz",
            get(readyz_status_handler).with_state(readiness.clone()),
        );
    let cors_configured = cors.is_some();
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    let public = with_request_layers(app, http_metrics.clone(), config.max_body_bytes)
        .layer(CompressionLayer)
        .layer(headers::SecurityHeadersLayer);
    let admin = with_request_layers(
        admin::router(admin, readiness, MetricsHandle::new(registry)),
        http_metrics.clone(),
        config.max_body_bytes,
    )
    .layer(headers::SecurityHeadersLayer);
    let direct = DirectPath::new(
        targets,
        public.clone(),
        http_metrics,
        cors_configured,
        config.connection_limits,
    );
    Ok(Assembled {
        public,
        direct,
        admin,
        discovery,
        upstreams: followed,
    })
}

/// Builds the gateway, keeps its revocation set current, and serves it until `shutdown` fires: the public
/// port with `config.http_workers` dedicated workers, the admin listener on the caller's runtime. Then both
/// drain in-flight requests for at most `config.shutdown_grace`.
pub async fn run(
    config: Config,
    specs: Vec<utoipa::openapi::OpenApi>,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), GatewayError> {
    let Assembled {
        direct,
        admin,
        discovery,
        upstreams,
        ..
    } = assemble(&config, specs).await?;
    // A listener that fails stops the other one, the revocation feed and the discovery watches too, rather
    // than leaving half a gateway up; the caller's token is left alone.
    let stop = shutdown.child_token();
    let users = upstreams
        .iter()
        .find(|(upstream, _)| upstream.name() == "users")
        .map(|(upstream, _)| upstream.clone());
    let mut feed = platform::revocation::spawn_feed(
        &config.revocation,
        platform::revocation::UsersFeed::new(move || {
            users.as_ref().map_or_else(Vec::new, |users| {
                users.endpoints().iter().map(|e| e.url().clone()).collect()
            })
        }),
        stop.clone(),
    );
    if discovery.backend() != "static" {
        for (upstream, configured) in upstreams {
            feed.extend(follow(&discovery, upstream, &configured, &stop));
        }
    }
    let public = async {
        let result = platform::http::serve_dedicated_with(
            listeners.public,
            std::sync::Arc::new(direct),
            stop.clone(),
            config.shutdown_grace,
            config.http_workers,
            config.connection_limits.max_connections,
        )
        .await;
        stop.cancel();
        result
    };
    let admin = async {
        let result = platform::http::serve(
            listeners.admin,
            admin,
            stop.clone(),
            config.shutdown_grace,
            config.connection_limits,
        )
        .await;
        stop.cancel();
        result
    };
    let (public, admin) = tokio::join!(public, admin);
    futures::future::join_all(feed).await;
    public?;
    admin?;
    Ok(())
}

/// Keeps `upstream`'s instances in step with the registry until `stop`: the watch, and the task applying
/// each change to the upstream's set.
fn follow(
    discovery: &Discovery,
    upstream: UpstreamClient,
    configured: &[url::Url],
    stop: &CancellationToken,
) -> [tokio::task::JoinHandle<()>; 2] {
    let (mut snapshots, watch) = discovery.watch(upstream.name(), configured, stop.clone());
    let apply = tokio::spawn(async move {
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            upstream.apply(snapshot);
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
    [watch, apply]
}
