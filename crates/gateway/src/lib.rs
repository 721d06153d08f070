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
//!
//! A configuration reload ([`run_with`]) builds a new generation of routes, rules, limits and routers on
//! the lasting state (metrics, discovery watches, upstream clients, the limiter's buckets) and swaps it in
//! whole; every request, on a connection old or new, runs on the generation in force when it arrived.

mod admin;
mod compression;
mod config;
mod error;
mod headers;
mod openapi;
mod policy;
mod proxy;
mod ratelimit;
mod readiness;
mod routes;
mod upstream;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::get;
use platform::auth::{JwtKeys, UsersLocation, Verifiers};
use platform::breaker::BreakerMetrics;
use platform::config::Reloader;
use platform::discovery::{Discovery, DiscoveryMetrics, Snapshot};
use platform::health::{Check, Readiness, health_handler, readyz_status_handler};
use platform::http::with_request_layers;
use platform::metrics::{HttpMetrics, MetricsHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use config::Config;
pub use error::GatewayError;
pub use ratelimit::{FailMode, LimitRule, RateLimitBackend, RateLimitConfig};
pub use upstream::{Balancing, OutlierConfig, RetryConfig, Upstream};

use compression::CompressionLayer;
use policy::Policy;
use proxy::direct::DirectPath;
use readiness::UpstreamCheck;
use upstream::{ClientParts, ClientSettings, PoolShape, UpstreamClient, UpstreamMetrics};

/// The gateway's name: its metrics prefix and its spans' `service.name`.
pub const NAME: &str = "gateway";

/// The public port's router: proxied routes, docs, `/health`, the minimal `/readyz` and every layer. Fails
/// on an invalid rule, pattern, origin or route table, so a bad configuration stops the start instead of a
/// request.
pub async fn build(
    config: &Config,
    specs: Vec<utoipa::openapi::OpenApi>,
) -> Result<Router, GatewayError> {
    let lasting = Lasting::new(config, specs, None).await?;
    Ok(lasting.generation(config)?.public)
}

/// Where the gateway listens: the public port and the admin listener.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

/// What outlives a configuration reload: the metrics, the discovery watches, each upstream's client (its
/// breaker, instances and their pooled connections) and the rate limiter's buckets.
struct Lasting {
    specs: Vec<utoipa::openapi::OpenApi>,
    metrics: MetricsHandle,
    http_metrics: HttpMetrics,
    upstream_metrics: UpstreamMetrics,
    breaker_metrics: BreakerMetrics,
    discovery: Discovery,
    limiter: ratelimit::Limiter,
    /// Each upstream's client and the settings it was made with, by name; the discovery watches apply
    /// their changes to whichever client is current.
    upstreams: Arc<Mutex<HashMap<String, (ClientSettings, UpstreamClient)>>>,
    /// Token verification, with LogiCore's public keys fetched from the users upstream and cached across
    /// reloads (`auth.*` takes a restart).
    keys: JwtKeys,
    reloader: Option<Reloader>,
}

/// The routers and routes of one configuration: what a reload replaces as a whole.
struct Generation {
    public: Router,
    admin: Router,
    routes: Vec<(routes::Route, proxy::Target)>,
    cors: bool,
}

impl Lasting {
    async fn new(
        config: &Config,
        specs: Vec<utoipa::openapi::OpenApi>,
        reloader: Option<Reloader>,
    ) -> Result<Self, GatewayError> {
        let mut registry = platform::metrics::registry(NAME);
        let http_metrics = HttpMetrics::register(&mut registry, NAME);
        let upstream_metrics = UpstreamMetrics::register(&mut registry);
        let breaker_metrics = BreakerMetrics::register(&mut registry);
        let discovery =
            Discovery::from_settings(&config.discovery, DiscoveryMetrics::register(&mut registry))
                .map_err(|e| GatewayError::config("discovery.backend", e.to_string()))?;
        let limiter = ratelimit::Limiter::build(&config.rate_limit, &mut registry).await?;
        let upstreams: Arc<Mutex<HashMap<String, (ClientSettings, UpstreamClient)>>> =
            Arc::default();
        let users = {
            let upstreams = upstreams.clone();
            UsersLocation::dynamic(move || {
                let upstreams = upstreams.lock().unwrap_or_else(PoisonError::into_inner);
                upstreams.get("users").map_or_else(Vec::new, |(_, users)| {
                    users
                        .endpoints()
                        .iter()
                        .map(|e| e.url().to_string())
                        .collect()
                })
            })
        };
        let keys = JwtKeys::with_verifiers(
            &config.auth,
            config.revocation.set.clone(),
            Verifiers::remote(users),
        );
        Ok(Self {
            specs,
            metrics: MetricsHandle::new(registry),
            http_metrics,
            upstream_metrics,
            breaker_metrics,
            discovery,
            limiter,
            upstreams,
            keys,
            reloader,
        })
    }

    fn upstreams(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (ClientSettings, UpstreamClient)>> {
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The current client of the upstream `name`.
    fn upstream(&self, name: &str) -> Option<UpstreamClient> {
        self.upstreams().get(name).map(|(_, client)| client.clone())
    }

    /// Each configured upstream's client, in `config`'s order: the running one when its settings are
    /// unchanged (given the configured instances, with the `static` backend), else a new one that starts
    /// from the instances the running one knew.
    fn clients(&self, config: &Config) -> Result<Vec<UpstreamClient>, GatewayError> {
        let configured_instances = self.discovery.backend() == "static";
        let mut upstreams = self.upstreams();
        let mut clients = Vec::with_capacity(config.upstreams.len());
        for upstream in &config.upstreams {
            if upstream.endpoints.is_empty() && !self.discovery.registers() {
                return Err(GatewayError::config(
                    &format!("gateway.upstreams.{}", upstream.name),
                    "names no instance",
                ));
            }
            let settings = ClientSettings {
                timeout: config.request_timeout,
                breaker: config.circuit_breaker.clone(),
                failures: config.breaker_failures,
                retry: config.retry.clone(),
                outlier: config.outlier.clone(),
                balancing: config.load_balancing,
                pool: PoolShape {
                    workers: config.http_workers.get(),
                    max_idle: config.pool_idle_per_host,
                },
            };
            let configured = Snapshot {
                source: self.discovery.backend(),
                endpoints: upstream.endpoints.clone(),
                known: true,
                error: None,
                changed_at: None,
            };
            let running = upstreams.get(&upstream.name);
            if let Some((same, client)) = running
                && *same == settings
            {
                if configured_instances {
                    client.apply(configured);
                }
                clients.push(client.clone());
                continue;
            }
            let initial = match running {
                _ if configured_instances => configured,
                Some((_, client)) => (*client.source()).clone(),
                None => Snapshot {
                    endpoints: Vec::new(),
                    known: false,
                    ..configured
                },
            };
            let client = UpstreamClient::new(
                upstream.clone(),
                ClientParts {
                    settings: settings.clone(),
                    metrics: self.upstream_metrics.clone(),
                    breaker_metrics: self.breaker_metrics.clone(),
                    initial,
                },
            );
            upstreams.insert(upstream.name.clone(), (settings, client.clone()));
            clients.push(client);
        }
        Ok(clients)
    }

    /// The routers and routes of `config`, on the lasting state.
    fn generation(&self, config: &Config) -> Result<Generation, GatewayError> {
        let policy = Policy::compile(self.keys.clone(), &config.public_routes, &config.rbac)?;
        let cors = headers::cors_layer(&config.cors_allowed_origins)?;
        let spec = openapi::merged(self.specs.clone())?;
        let limiter = self.limiter.with_rules(&config.rate_limit)?;
        // A little under the readiness deadline, so a slow upstream is reported by its own check (with
        // its URL) rather than cut off by the outer timeout.
        let check_timeout = config.readiness_timeout.mul_f64(0.9);
        let clients = self.clients(config)?;
        let checks: Vec<Box<dyn Check>> = clients
            .iter()
            .map(|client| {
                Box::new(UpstreamCheck::new(
                    client.clone(),
                    check_timeout,
                    config.readiness_cache,
                )) as Box<dyn Check>
            })
            .collect();
        let by_name: HashMap<String, UpstreamClient> = clients
            .iter()
            .map(|client| (client.name().to_owned(), client.clone()))
            .collect();
        let routes = proxy::targets(
            routes::ROUTE_TABLE,
            &by_name,
            &policy,
            &limiter,
            config.max_body_bytes,
        )?;
        let readiness = Readiness::new(checks, config.readiness_timeout);
        let mut app = proxy::routed::api_router(&routes)
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
        let public = with_request_layers(app, self.http_metrics.clone(), config.max_body_bytes)
            .layer(CompressionLayer)
            .layer(headers::SecurityHeadersLayer);
        let admin = with_request_layers(
            admin::router(
                admin::AdminState {
                    policy,
                    upstreams: clients,
                    reloader: self.reloader.clone(),
                },
                readiness,
                self.metrics.clone(),
            ),
            self.http_metrics.clone(),
            config.max_body_bytes,
        )
        .layer(headers::SecurityHeadersLayer);
        Ok(Generation {
            public,
            admin,
            routes,
            cors: cors_configured,
        })
    }
}

/// Whether `config` would build, checked without building anything: what a reload must pass before it is
/// applied, so the gateway never has to refuse a configuration the reloader already put in force.
fn buildable(config: &Config) -> Result<(), GatewayError> {
    let keys = JwtKeys::with_revocations(&config.auth, config.revocation.set.clone());
    Policy::compile(keys, &config.public_routes, &config.rbac)?;
    headers::cors_layer(&config.cors_allowed_origins)?;
    ratelimit::check(&config.rate_limit)?;
    proxy::check_routing(
        routes::ROUTE_TABLE,
        config
            .upstreams
            .iter()
            .map(|upstream| upstream.name.as_str()),
    )
}

/// A router that hands each request to whichever router `current` holds at that moment, so connections
/// opened before a reload see the new configuration from their next request on.
fn switching(current: Arc<ArcSwap<Router>>) -> Router {
    Router::new().fallback_service(tower::service_fn(move |request: axum::extract::Request| {
        let router = current.load_full();
        async move { (*router).clone().oneshot(request).await }
    }))
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
    run_with(config, specs, listeners, shutdown, None).await
}

/// [`run`], taking in every configuration `reloader` applies: the routes, rules, limits, upstreams and
/// timeouts of each reload replace the running ones at once, between two requests, while breakers,
/// instances, pooled connections and the limiter's buckets of unchanged rules carry on. The admin
/// listener serves `GET /admin/config` and `POST /admin/config/reload` from it.
pub async fn run_with(
    config: Config,
    specs: Vec<utoipa::openapi::OpenApi>,
    listeners: Listeners,
    shutdown: CancellationToken,
    reloader: Option<Reloader>,
) -> Result<(), GatewayError> {
    let lasting = Arc::new(Lasting::new(&config, specs, reloader.clone()).await?);
    let first = lasting.generation(&config)?;
    let public = Arc::new(ArcSwap::from_pointee(first.public));
    let admin = Arc::new(ArcSwap::from_pointee(first.admin));
    let direct = DirectPath::new(
        first.routes,
        switching(public.clone()),
        lasting.http_metrics.clone(),
        first.cors,
        config.connection_limits,
    );
    // A listener that fails stops the other one, the revocation feed, the discovery watches and the
    // reloads too, rather than leaving half a gateway up; the caller's token is left alone.
    let stop = shutdown.child_token();
    let mut tasks = platform::revocation::spawn_feed(
        &config.revocation,
        platform::revocation::UsersFeed::new({
            let lasting = lasting.clone();
            move || {
                lasting.upstream("users").map_or_else(Vec::new, |users| {
                    users.endpoints().iter().map(|e| e.url().clone()).collect()
                })
            }
        }),
        stop.clone(),
    );
    if lasting.discovery.backend() != "static" {
        for upstream in &config.upstreams {
            tasks.extend(follow(&lasting, &upstream.name, &upstream.endpoints, &stop));
        }
    }
    if let Some(reloader) = reloader {
        reloader.add_check(|settings| {
            Config::from_settings(settings)
                .and_then(|config| buildable(&config))
                .map_err(|error| match error {
                    GatewayError::Config { key, reason } => (key, reason),
                    other => ("gateway".to_owned(), other.to_string()),
                })
        });
        tasks.push(tokio::spawn(apply_reloads(
            reloader,
            lasting.clone(),
            [public.clone(), admin.clone()],
            direct.clone(),
            stop.clone(),
        )));
    }
    let public_served = async {
        let result = platform::http::serve_dedicated_with(
            listeners.public,
            Arc::new(direct),
            stop.clone(),
            config.shutdown_grace,
            config.http_workers,
            config.connection_limits.max_connections,
        )
        .await;
        stop.cancel();
        result
    };
    let admin_served = async {
        let result = platform::http::serve(
            listeners.admin,
            switching(admin.clone()),
            stop.clone(),
            config.shutdown_grace,
            config.connection_limits,
        )
        .await;
        stop.cancel();
        result
    };
    let (public_served, admin_served) = tokio::join!(public_served, admin_served);
    futures::future::join_all(tasks).await;
    public_served?;
    admin_served?;
    Ok(())
}

/// Puts each configuration the reloader applies in force: a new generation of routers and routes,
/// swapped in whole. One the gateway cannot build leaves the running one in place.
async fn apply_reloads(
    reloader: Reloader,
    lasting: Arc<Lasting>,
    [public, admin]: [Arc<ArcSwap<Router>>; 2],
    direct: DirectPath,
    stop: CancellationToken,
) {
    let mut settings = reloader.subscribe();
    settings.borrow_and_update();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = settings.changed() => if changed.is_err() { return },
        }
        let current = settings.borrow_and_update().clone();
        let built = Config::from_settings(&current).and_then(|config| lasting.generation(&config));
        match built {
            Ok(generation) => {
                direct.replace(generation.routes, generation.cors);
                public.store(Arc::new(generation.public));
                admin.store(Arc::new(generation.admin));
                tracing::info!("the gateway runs on the reloaded configuration");
            }
            Err(error) => tracing::error!(
                %error,
                "the gateway cannot use the reloaded configuration; it keeps the previous one"
            ),
        }
    }
}

/// Keeps the upstream `name`'s instances in step with the registry until `stop`: the watch, and the task
/// applying each change to whichever client the upstream has then (a reload may have replaced it).
fn follow(
    lasting: &Arc<Lasting>,
    name: &str,
    configured: &[url::Url],
    stop: &CancellationToken,
) -> [tokio::task::JoinHandle<()>; 2] {
    let (mut snapshots, watch) = lasting.discovery.watch(name, configured, stop.clone());
    let lasting = lasting.clone();
    let name = name.to_owned();
    let apply = tokio::spawn(async move {
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            // Under the clients' lock, so a reload replacing the client cannot miss this change.
            if let Some((_, client)) = lasting.upstreams().get(&name) {
                client.apply(snapshot);
            }
            if snapshots.changed().await.is_err() {
                return;
            }
        }
    });
    [watch, apply]
}
