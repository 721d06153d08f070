//! The lifecycle every LogiCore service shares, written once: open the database and run the service's
//! migrations, start the event backbone and the cache, build readiness and the platform's HTTP layers, serve
//! (on the shared runtime or dedicated workers), run the background workers (the revocation feed, the outbox
//! relay, the service's consumers and jobs) under one supervisor, register with service discovery once ready,
//! and on shutdown deregister first, then drain and close in order.
//!
//! A service implements [`Service`]: it names itself, says whether it uses the cache, hands over its
//! migrations, builds its API router from the opened [`Handles`] and lists its [`Worker`]s. It writes no
//! start-up of its own, so `logicore all`, a single-service command and the tests start every service the
//! same way.
//!
//! This crate sits above `platform`, `messaging` and `cache` in the crate graph (it composes all three), which
//! is why it is not a module of `platform`: `messaging` and `cache` are themselves built on `platform`.

mod basics;
mod error;
mod launch;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cache::Cache;
use futures::future::BoxFuture;
use messaging::{Consumer, Messaging};
use platform::backoff::Backoff;
use platform::db::Db;
use platform::discovery::{Discovery, DiscoveryMetrics, Instance};
use platform::health::{Check, PostgresCheck, Readiness};
use platform::http::{PlatformLayers, with_platform_layers};
use platform::metrics::{HttpMetrics, MetricsHandle};
use platform::revocation::TableFeed;
use prometheus_client::registry::Registry;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use basics::Basics;
pub use error::StartError;
pub use launch::{Entry, Launch, Launchable};

/// What a service is made of. The skeleton does everything else.
pub trait Service: Send + Sync + 'static {
    /// The service's name: its metrics prefix, its PostgreSQL schema and the `producer` of its events.
    const NAME: &'static str;
    /// Whether the service reads through the cache (Redis or in-process); a service that does not gets an
    /// inert one and no cache line in `/readyz`.
    const USES_CACHE: bool;

    /// The settings every service has (listener, database, transport, cache, limits, revocation).
    fn basics(&self) -> &Basics;

    /// The service's own tables (the outbox and inbox are `messaging`'s).
    fn migrator(&self) -> &'static Migrator;

    /// The API routes with their state, built from the opened handles. Start-up work that needs them (the
    /// users service's bootstrap admin) belongs here; an error stops the start.
    fn api(
        &self,
        handles: &Handles,
    ) -> impl Future<Output = Result<axum::Router, StartError>> + Send;

    /// The service's consumers and jobs, bound to `shutdown`. Called each time the background starts.
    fn workers(&self, handles: &Handles, shutdown: &CancellationToken) -> Vec<Worker>;

    /// Registers the service's own metrics (its business metrics) beside the platform's, before the
    /// handles open; the service keeps the handles to them for its routes and workers.
    fn register_metrics(&self, _registry: &mut Registry) {}
}

/// The connections a service runs on, opened by the skeleton. Cheap to clone.
#[derive(Clone)]
pub struct Handles {
    pub db: Db,
    pub messaging: Messaging,
    pub cache: Cache,
}

impl Handles {
    /// Opens what `service` needs: the database (created with its schema when missing, then migrated), the
    /// event backbone and the cache, their metrics registered in `registry`. For one-off commands (an import,
    /// creating an admin) as much as for serving; [`Handles::close`] ends them.
    pub async fn open<S: Service>(
        service: &S,
        registry: &mut Registry,
    ) -> Result<Self, StartError> {
        let basics = service.basics();
        let db = Db::connect(&basics.database, S::NAME, registry).await?;
        db.migrate(service.migrator(), S::NAME).await?;
        let messaging = Messaging::start(&basics.messaging, &db, S::NAME, registry).await?;
        let cache = if S::USES_CACHE {
            Cache::from_settings(&basics.redis, registry)?
        } else {
            Cache::off(registry)
        };
        Ok(Self {
            db,
            messaging,
            cache,
        })
    }

    /// Closes the transport, then the pool; call after every worker stopped.
    pub async fn close(&self) {
        self.messaging.close().await;
        self.db.close().await;
    }
}

/// Something a service runs beside its HTTP routes until shutdown.
pub enum Worker {
    /// An event consumer; [`App::spawn_background`] returns once it is subscribed.
    Consumer(Consumer),
    /// A job such as a sweeper, already bound to the shutdown token.
    Job {
        name: &'static str,
        run: BoxFuture<'static, ()>,
    },
}

impl Worker {
    /// A job named `name` (it names the job in logs when it ends abnormally).
    pub fn job(name: &'static str, run: impl Future<Output = ()> + Send + 'static) -> Self {
        Worker::Job {
            name,
            run: Box::pin(run),
        }
    }

    /// A job that runs `round` every `interval` until `shutdown` fires; a round that overruns delays the next
    /// rather than bunching them. A round handles (logs) its own errors, so one failure never stops the job.
    pub fn every<F, Round>(
        name: &'static str,
        interval: Duration,
        shutdown: CancellationToken,
        mut round: F,
    ) -> Self
    where
        F: FnMut() -> Round + Send + 'static,
        Round: Future<Output = ()> + Send,
    {
        Worker::job(name, async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => round().await,
                }
            }
        })
    }
}

/// A built service: its router with the platform layers (`/health`, `/readyz`, `/metrics`, request ids,
/// metrics, body limits), its handles, and what it runs in the background.
pub struct App<S> {
    pub router: axum::Router,
    pub db: Db,
    pub messaging: Messaging,
    pub cache: Cache,
    /// What `/readyz` reports; registration waits for it to say ready.
    pub readiness: Readiness,
    /// The registry the instance registers with (`discovery.backend`).
    pub discovery: Discovery,
    service: Arc<S>,
}

impl<S: Service> App<S> {
    /// Opens the handles and builds the router. Serving and the background are up to the caller: [`run`]
    /// does both; tests and the one-process binary serve the router their own way.
    pub async fn build(service: S) -> Result<Self, StartError> {
        let mut registry = platform::metrics::registry(S::NAME);
        let http_metrics = HttpMetrics::register(&mut registry, S::NAME);
        let discovery_metrics = DiscoveryMetrics::register(&mut registry);
        service.register_metrics(&mut registry);
        let handles = Handles::open(&service, &mut registry).await?;
        let api = service.api(&handles).await?;
        let basics = service.basics();
        let discovery = Discovery::from_settings(&basics.discovery, discovery_metrics)?;
        let mut checks: Vec<Box<dyn Check>> = vec![Box::new(PostgresCheck(handles.db.clone()))];
        if S::USES_CACHE {
            // Not required: without the cache requests go to the database, so readiness is `degraded`.
            checks.push(Box::new(handles.cache.health_check()));
        }
        // Not required either: with the transport down, changes still commit their events to the outbox for
        // later; the check shows the transport state and the outbox lag.
        checks.push(Box::new(handles.messaging.readiness_check()));
        let readiness = Readiness::new(checks, basics.readiness_timeout);
        let router = with_platform_layers(
            api,
            PlatformLayers {
                http_metrics,
                metrics: MetricsHandle::new(registry),
                readiness: readiness.clone(),
                max_body_bytes: basics.max_body_bytes,
            },
        );
        let Handles {
            db,
            messaging,
            cache,
        } = handles;
        Ok(Self {
            router,
            db,
            messaging,
            cache,
            readiness,
            discovery,
            service: Arc::new(service),
        })
    }

    /// The connections, as the service's workers get them.
    pub fn handles(&self) -> Handles {
        Handles {
            db: self.db.clone(),
            messaging: self.messaging.clone(),
            cache: self.cache.clone(),
        }
    }

    /// Starts the revocation feed, the outbox relay and the service's workers, which run until `shutdown`,
    /// and returns once every consumer is subscribed (events relayed from then on reach them). Each call
    /// starts a fresh set (a test can stop one set and start another).
    pub async fn spawn_background(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let handles = &self.handles();
        let mut tasks = platform::revocation::spawn_feed(
            &self.service.basics().revocation,
            TableFeed::new(handles.db.clone()),
            shutdown.clone(),
        );
        tasks.push(handles.messaging.relay().spawn(shutdown.clone()));
        for worker in self.service.workers(handles, &shutdown) {
            tasks.push(match worker {
                Worker::Consumer(consumer) => consumer.start(shutdown.clone()).await,
                Worker::Job { name, run } => tokio::spawn(async move {
                    run.await;
                    tracing::debug!(job = name, "job stopped");
                }),
            });
        }
        tasks
    }
}

/// Serves `service` on `listener` with its background running, until `shutdown` fires; then lets in-flight
/// requests finish within the grace period, stops the background and closes the transport and the pool.
///
/// Once `/readyz` says ready, the instance registers with service discovery; when `shutdown` fires it
/// deregisters first and keeps serving for `discovery.deregister_delay_ms`, so callers have dropped it
/// before it stops accepting.
///
/// Serving does not wait for the consumers' subscriptions: with the broker down, requests still commit their
/// events to the outbox and `/readyz` shows messaging degraded.
pub async fn run<S: Service>(
    service: S,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let port = listener.local_addr().map_err(StartError::Serve)?.port();
    let app = Arc::new(App::build(service).await?);
    let background = tokio::spawn({
        let (app, token) = (app.clone(), shutdown.clone());
        async move { futures::future::join_all(app.spawn_background(token).await).await }
    });
    let basics = app.service.basics();
    let serving = CancellationToken::new();
    let announced = tokio::spawn(announce(
        app.discovery.clone(),
        basics
            .advertise_address
            .as_deref()
            .map(|address| Instance::new(S::NAME, address, port, &basics.version)),
        app.readiness.clone(),
        Duration::from_millis(basics.discovery.deregister_delay_ms),
        shutdown.clone(),
        serving.clone(),
    ));
    let served = platform::http::serve_on(
        listener,
        app.router.clone(),
        serving.clone(),
        basics.shutdown_grace,
        basics.http_workers,
        basics.connection_limits,
    )
    .await;
    // The server can also stop by failing; make sure the registration and the background stop with it.
    serving.cancel();
    shutdown.cancel();
    if let Err(error) = announced.await {
        tracing::warn!(service = S::NAME, error = %error, "the registration task ended abnormally");
    }
    match background.await {
        Ok(tasks) => {
            for error in tasks.into_iter().filter_map(Result::err) {
                tracing::warn!(service = S::NAME, error = %error, "a background task ended abnormally");
            }
        }
        Err(error) => {
            tracing::warn!(service = S::NAME, error = %error, "the background ended abnormally");
        }
    }
    app.handles().close().await;
    served.map_err(StartError::Serve)
}

/// The instance's life in the registry: registered once `/readyz` says ready (retried while the registry
/// is unreachable), deregistered when `shutdown` fires; then, after the deregistration delay, `serving` is
/// cancelled and the listener drains. Without a registering backend `serving` follows `shutdown` at once.
async fn announce(
    discovery: Discovery,
    instance: Option<Instance>,
    readiness: Readiness,
    deregister_delay: Duration,
    shutdown: CancellationToken,
    serving: CancellationToken,
) {
    let registered = match instance {
        Some(instance) if discovery.registers() => {
            register_when_ready(&discovery, &instance, &readiness, &shutdown)
                .await
                .then_some(instance)
        }
        _ => None,
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = serving.cancelled() => {}
    }
    if let Some(instance) = registered {
        match discovery.deregister(&instance).await {
            Ok(()) => {
                tracing::info!(instance = %instance.id, backend = discovery.backend(), "deregistered")
            }
            Err(error) => tracing::warn!(
                instance = %instance.id,
                backend = discovery.backend(),
                error = %error,
                "deregistering failed; the registry drops the instance when its health check or lease runs out"
            ),
        }
        if !serving.is_cancelled() {
            tokio::select! {
                () = tokio::time::sleep(deregister_delay) => {}
                () = serving.cancelled() => {}
            }
        }
    }
    serving.cancel();
}

/// Waits for readiness, then registers; `false` when `shutdown` came first.
async fn register_when_ready(
    discovery: &Discovery,
    instance: &Instance,
    readiness: &Readiness,
    shutdown: &CancellationToken,
) -> bool {
    // Readiness is asked often at first (a service is usually ready within a second of serving), the
    // registry less and less often while it stays unreachable.
    let mut not_ready = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let mut unreachable = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut warned = false;
    loop {
        let wait = if readiness.report().await.0 {
            match discovery.register(instance).await {
                Ok(()) => {
                    tracing::info!(
                        instance = %instance.id,
                        address = %instance.address,
                        port = instance.port,
                        backend = discovery.backend(),
                        "registered"
                    );
                    return true;
                }
                Err(error) => {
                    if !warned {
                        tracing::warn!(
                            instance = %instance.id,
                            backend = discovery.backend(),
                            error = %error,
                            "cannot register yet; retrying"
                        );
                        warned = true;
                    }
                    unreachable.next_delay()
                }
            }
        } else {
            not_ready.next_delay()
        };
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
