//! The LogiCore inventory service: warehouses, products, an append-only stock ledger, and reservations
//! that never oversell, even under heavy concurrency.
//!
//! The binary calls [`build`] then [`run`] with a listener and a shutdown token; `logicore inventory
//! import FILE.csv` calls [`import_csv_file`]. The saga of the orders service will use
//! [`commit_reservation`] and [`consume_reservation`].

mod caching;
pub mod config;
pub mod domain;
pub mod error;
mod http;
pub mod import;
pub mod models;
pub mod repo;
pub mod state;
mod sweeper;

use std::path::Path;
use std::time::Duration;

use cache::Cache;
use platform::db::Db;
use platform::health::{PostgresCheck, Readiness};
use platform::http::{PlatformLayers, with_platform_layers};
use platform::metrics::{HttpMetrics, MetricsHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::{InventoryError, ShortLine};
pub use import::{ImportReport, ImportRowError};
pub use repo::reservations::{ReserveRequest, reserve};
pub use repo::settle::{
    ConsumeLine, Consumption, commit_reservation, consume_reservation, release_reservation,
    sweep_expired,
};
pub use state::AppState;

/// The database schema this service owns.
pub const SCHEMA: &str = "inventory";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built service: its router (with the platform layers), its database handle and its cache (the library
/// functions that change stock take both, to invalidate after they commit).
pub struct App {
    pub router: axum::Router,
    pub db: Db,
    pub cache: Cache,
    sweeper: SweeperSettings,
}

#[derive(Debug, Clone, Copy)]
struct SweeperSettings {
    interval: Duration,
    batch: u32,
}

impl App {
    /// Runs the expiry sweeper until `shutdown` fires; [`run`] does this itself. For callers that serve the
    /// router their own way (tests, an embedding binary).
    pub fn spawn_sweeper(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(sweeper::run(
            self.db.clone(),
            self.cache.clone(),
            self.sweeper.interval,
            self.sweeper.batch,
            shutdown,
        ))
    }
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
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    let http_metrics = HttpMetrics::register(&mut registry);
    let readiness = Readiness::new(
        vec![
            Box::new(PostgresCheck(db.clone())),
            // Not required: without the cache requests go to the database, so readiness is `degraded`.
            Box::new(cache.health_check()),
        ],
        config.readiness_timeout,
    );
    let router = with_platform_layers(
        router(AppState::new(db.clone(), cache.clone(), config)),
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
        sweeper: SweeperSettings {
            interval: config.sweeper_interval,
            batch: config.sweeper_batch,
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
    http::api().into_openapi()
}

/// Serves on `listener` and runs the expiry sweeper until `shutdown` fires; then drains in-flight requests
/// within the grace period, stops the sweeper and closes the pool.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), InventoryError> {
    let app = build(&config).await?;
    let sweeper = app.spawn_sweeper(shutdown.clone());
    let served = platform::http::serve(
        listener,
        app.router.clone(),
        shutdown.clone(),
        config.shutdown_grace,
    )
    .await;
    // The server can also stop by failing; make sure the sweeper stops with it.
    shutdown.cancel();
    if let Err(error) = sweeper.await {
        tracing::warn!(error = %error, "reservation sweeper ended abnormally");
    }
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
    let file = tokio::fs::File::open(path).await?;
    let total = file.metadata().await?.len();
    let input =
        import::CountingReader::new(tokio::io::BufReader::new(file), u64::MAX, |read: u64| {
            progress(read, total)
        });
    let report = import::import(&db, &cache, input, config.import_batch_rows, None).await;
    db.close().await;
    report
}
