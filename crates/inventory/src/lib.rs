//! The LogiCore inventory service: warehouses, products, an append-only stock ledger, and reservations
//! that never oversell, even under heavy concurrency.
//!
//! The binary calls [`build`] then [`run`] with a listener and a shutdown token; `logicore inventory
//! import FILE.csv` calls [`import_csv_file`]. Every stock change records its `inventory.*` events in the
//! service's outbox in the same transaction (see `events`); [`run`] relays them, expires lapsed holds and
//! takes part in the order saga by consuming `order.*` and `shipment.status_changed` (see `saga`).

mod caching;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
mod http;
pub mod import;
pub mod models;
pub mod repo;
mod saga;
pub mod state;
mod sweeper;

use std::path::Path;
use std::time::Duration;

use cache::Cache;
use messaging::Messaging;
use platform::db::Db;
use platform::health::{PostgresCheck, Readiness};
use platform::http::{PlatformLayers, with_platform_layers};
use platform::metrics::{HttpMetrics, MetricsHandle};
use platform::revocation::{RevocationOptions, TableFeed};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{InventoryError, ShortLine};
pub use import::{ImportReport, ImportRowError};
pub use repo::reservations::{ReserveRequest, reserve};
pub use repo::settle::{
    ConsumeLine, Consumption, commit_reservation, consume_reservation, release_reservation,
    sweep_expired,
};
/// The consumer group of inventory's part in the order saga.
pub use saga::GROUP as SAGA_GROUP;
pub use state::AppState;

/// The database schema this service owns.
pub const SCHEMA: &str = "inventory";

/// The `producer` of the events this service emits.
pub const PRODUCER: &str = "inventory";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built service: its router (with the platform layers), its database handle, its cache (the library
/// functions that change stock take both, to invalidate after they commit) and its event backbone handle.
pub struct App {
    pub router: axum::Router,
    pub db: Db,
    pub cache: Cache,
    pub messaging: Messaging,
    background: Background,
}

/// What the background tasks need besides the handles.
#[derive(Debug, Clone)]
struct Background {
    sweeper_interval: Duration,
    sweeper_batch: u32,
    reservation_ttl: Duration,
    revocation: RevocationOptions,
}

impl App {
    /// Starts the outbox relay, the expiry sweeper, the `inventory.order-saga` consumer and the revocation
    /// feed, which run until
    /// `shutdown`, and returns once the consumer is subscribed (events relayed from then on reach it).
    /// [`run`] does this itself; this is for callers that serve the router their own way (tests, an
    /// embedding binary), who await the handles after `shutdown` and then call `messaging.close()`.
    pub async fn spawn_background(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        spawn_background(
            self.db.clone(),
            self.cache.clone(),
            self.messaging.clone(),
            self.background.clone(),
            shutdown,
        )
        .await
    }
}

async fn spawn_background(
    db: Db,
    cache: Cache,
    messaging: Messaging,
    settings: Background,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let mut tasks = platform::revocation::spawn_feed(
        &settings.revocation,
        TableFeed::new(db.clone()),
        shutdown.clone(),
    );
    let relay = messaging.relay().spawn(shutdown.clone());
    let sweeper = tokio::spawn(sweeper::run(
        db.clone(),
        cache.clone(),
        messaging.clone(),
        settings.sweeper_interval,
        settings.sweeper_batch,
        shutdown.clone(),
    ));
    let saga = saga::OrderSaga::new(db, cache, messaging.clone(), settings.reservation_ttl);
    let consumer = messaging
        .consumer(saga::GROUP, &saga::PATTERNS, saga)
        .start(shutdown)
        .await;
    tasks.extend([relay, sweeper, consumer]);
    tasks
}

/// Connects to the database (creating it and the `inventory` schema when missing) and applies migrations.
async fn connect(
    config: &Config,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Db, InventoryError> {
    let db = Db::connect(&config.database, SCHEMA, registry).await?;
    db.migrate(&MIGRATOR, SCHEMA).await?;
    Ok(db)
}

/// Connects, migrates and builds the router with `/health`, `/readyz`, `/metrics` and the platform layers.
pub async fn build(config: &Config) -> Result<App, InventoryError> {
    let mut registry = platform::metrics::registry("inventory");
    let db = connect(config, &mut registry).await?;
    let messaging = Messaging::start(&config.messaging, &db, PRODUCER, &mut registry).await?;
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    let http_metrics = HttpMetrics::register(&mut registry);
    let readiness = Readiness::new(
        vec![
            Box::new(PostgresCheck(db.clone())),
            // Not required: without the cache requests go to the database, so readiness is `degraded`.
            Box::new(cache.health_check()),
            // Not required either: with the transport down, changes still commit their events to the
            // outbox for later; the check shows the transport state and the outbox lag.
            Box::new(messaging.readiness_check()),
        ],
        config.readiness_timeout,
    );
    let state = AppState::new(db.clone(), cache.clone(), messaging.clone(), config);
    let router = with_platform_layers(
        router(state),
        PlatformLayers {
            http_metrics,
            metrics: MetricsHandle::new(registry),
            readiness,
            max_body_bytes: config.max_body_bytes,
        },
    );
    Ok(App {
        router,
        db,
        cache,
        messaging,
        background: Background {
            sweeper_interval: config.sweeper_interval,
            sweeper_batch: config.sweeper_batch,
            reservation_ttl: config.reservation_ttl,
            revocation: config.revocation.clone(),
        },
    })
}

/// The inventory routes alone, without the platform layers.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = http::api().split_for_parts();
    router.with_state(state)
}

/// The OpenAPI document of the inventory routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::complete(http::api().into_openapi(), "inventory")
}

/// Serves on `listener`, relaying events, expiring lapsed holds and consuming the saga's events, until
/// `shutdown` fires; then drains in-flight requests within the grace period, stops the background tasks,
/// closes the transport and the pool.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), InventoryError> {
    let app = build(&config).await?;
    // Serving does not wait for the consumer's subscription: with the broker down, requests still commit
    // their events to the outbox and `/readyz` shows messaging degraded.
    let background = tokio::spawn({
        let (db, cache, messaging) = (app.db.clone(), app.cache.clone(), app.messaging.clone());
        let (settings, token) = (app.background, shutdown.clone());
        async move {
            let tasks = spawn_background(db, cache, messaging, settings, token).await;
            futures::future::join_all(tasks).await
        }
    });
    let served = platform::http::serve_on(
        listener,
        app.router.clone(),
        shutdown.clone(),
        config.shutdown_grace,
        config.http_workers,
        config.connection_limits,
    )
    .await;
    // The server can also stop by failing; make sure the background tasks stop with it.
    shutdown.cancel();
    match background.await {
        Ok(tasks) => {
            for error in tasks.into_iter().filter_map(Result::err) {
                tracing::warn!(error = %error, "a background task ended abnormally");
            }
        }
        Err(error) => tracing::warn!(error = %error, "the background tasks ended abnormally"),
    }
    app.messaging.close().await;
    app.db.close().await;
    served?;
    Ok(())
}

/// Imports a CSV file, the same way as `POST /api/v1/inventory/import`, reporting `progress(bytes read,
/// total bytes)` as it goes (for a progress bar). Applies migrations first, so it works on a fresh database.
pub async fn import_csv_file(
    config: &Config,
    path: &Path,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> Result<ImportReport, InventoryError> {
    let mut registry = platform::metrics::registry("inventory");
    let db = connect(config, &mut registry).await?;
    // With Redis this reaches the running service's cache; the in-memory backend of another process it
    // cannot, and there `caching`'s TTLs bound how long the old products are seen.
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    // Only records the events: the running service's relay delivers them from the shared outbox.
    let messaging = Messaging::start(&config.messaging, &db, PRODUCER, &mut registry).await?;
    let file = tokio::fs::File::open(path).await?;
    let total = file.metadata().await?.len();
    let input =
        import::CountingReader::new(tokio::io::BufReader::new(file), u64::MAX, |read: u64| {
            progress(read, total)
        });
    let report = import::import(
        &db,
        &cache,
        &messaging,
        input,
        config.import_batch_rows,
        None,
    )
    .await;
    messaging.close().await;
    db.close().await;
    report
}
