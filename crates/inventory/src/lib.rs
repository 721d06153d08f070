//! The LogiCore inventory service: warehouses, products, an append-only stock ledger, and reservations
//! that never oversell, even under heavy concurrency.
//!
//! The binary calls [`build`] then [`run`] with a listener and a shutdown token; `logicore inventory
//! import FILE.csv` calls [`import_csv_file`]. Every stock change records its `inventory.*` events in the
//! service's outbox in the same transaction (see `events`); [`run`] relays them, expires lapsed holds and
//! takes part in the order saga by consuming `order.*` and `shipment.status_changed` (see `saga`).

mod caching;
pub mod config;
mod consumers;
pub mod domain;
pub mod error;
pub mod events;
mod http;
pub mod import;
mod jobs;
pub mod metrics;
pub mod models;
pub mod repo;
pub mod reservations;
pub mod state;

use std::path::Path;

use consumers::order_saga;
use metrics::InventoryMetrics;
use prometheus_client::registry::Registry;
use skeleton::{Basics, Handles, Launch, Service, StartError, Worker};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, InventorySettings};
/// The consumer group of inventory's part in the order saga.
pub use consumers::order_saga::GROUP as SAGA_GROUP;
pub use error::{InventoryError, ShortLine};
pub use import::{ImportReport, ImportRowError};
pub use reservations::reserve::{ReserveRequest, reserve};
pub use reservations::settle::{
    ConsumeLine, Consumption, commit_reservation, consume_reservation, release_reservation,
    sweep_expired,
};
pub use state::AppState;

/// The service's name: its database schema, its metrics prefix and the `producer` of its events.
pub const NAME: &str = "inventory";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The inventory service as the skeleton runs it.
pub struct Inventory {
    config: Config,
    metrics: InventoryMetrics,
}

impl Inventory {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            metrics: InventoryMetrics::default(),
        }
    }
}

impl Launch for Inventory {
    type Section = InventorySettings;

    fn from_settings(
        settings: &platform::config::Settings,
    ) -> Result<Self, platform::config::ConfigError> {
        Config::from_settings(settings).map(Self::new)
    }

    fn basics_mut(&mut self) -> &mut Basics {
        &mut self.config.basics
    }

    fn openapi() -> utoipa::openapi::OpenApi {
        openapi()
    }
}

impl Service for Inventory {
    const NAME: &'static str = NAME;
    const USES_CACHE: bool = true;

    fn basics(&self) -> &Basics {
        &self.config.basics
    }

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    async fn api(&self, handles: &Handles) -> Result<axum::Router, StartError> {
        let state = state::Handles::new(handles, &self.config, self.metrics.clone());
        Ok(router(state))
    }

    /// Reservations, shortages, import rows and stock below reorder point.
    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The expiry sweeper, the low-stock gauge's refresh and the `inventory.order-saga` consumer.
    fn workers(&self, handles: &Handles, shutdown: &CancellationToken) -> Vec<Worker> {
        let Handles {
            db,
            messaging,
            cache,
        } = handles.clone();
        let config = &self.config;
        let batch = config.sweeper_batch;
        let sweeper = Worker::every(
            "reservation expiry sweeper",
            config.sweeper_interval,
            shutdown.clone(),
            {
                let handles = handles.clone();
                move || jobs::expire_reservations::round(handles.clone(), batch)
            },
        );
        let gauge = Worker::every(
            "low stock gauge refresh",
            config.stock_gauge_interval,
            shutdown.clone(),
            {
                let (db, metrics) = (db.clone(), self.metrics.clone());
                move || {
                    let (db, metrics) = (db.clone(), metrics.clone());
                    async move { metrics::refresh_low_stock(&db, &metrics).await }
                }
            },
        );
        let saga = order_saga::OrderSaga::new(
            db,
            cache,
            messaging.clone(),
            self.metrics.clone(),
            config.reservation_ttl,
        );
        vec![
            sweeper,
            gauge,
            Worker::Consumer(messaging.consumer(order_saga::GROUP, &order_saga::PATTERNS, saga)),
        ]
    }
}

/// A built inventory service: router, handles and background (see [`skeleton::App`]).
pub type App = skeleton::App<Inventory>;

/// Connects, migrates and builds the router with `/health`, `/readyz`, `/metrics` and the platform layers.
pub async fn build(config: &Config) -> Result<App, StartError> {
    App::build(Inventory::new(config.clone())).await
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
/// `shutdown` fires (see [`skeleton::run`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    skeleton::run(Inventory::new(config), listener, shutdown).await
}

/// Why `logicore inventory import FILE` failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportFileError {
    #[error("cannot open the inventory database")]
    Open(#[from] StartError),
    #[error("cannot read the file")]
    Read(#[from] std::io::Error),
    #[error("the import failed")]
    Import(#[from] InventoryError),
}

/// Imports a CSV file, the same way as `POST /api/v1/inventory/import`, reporting `progress(bytes read,
/// total bytes)` as it goes (for a progress bar). Applies migrations first, so it works on a fresh database.
pub async fn import_csv_file(
    config: &Config,
    path: &Path,
    progress: impl Fn(u64, u64) + Send + Sync,
) -> Result<ImportReport, ImportFileError> {
    let mut registry = platform::metrics::registry(NAME);
    // With Redis the cache is the running service's; the in-memory backend of another process it cannot
    // reach, and there `caching`'s TTLs bound how long the old products are seen. The events are only
    // recorded: the running service's relay delivers them from the shared outbox.
    let handles = Handles::open(&Inventory::new(config.clone()), &mut registry).await?;
    let file = tokio::fs::File::open(path).await?;
    let total = file.metadata().await?.len();
    let input =
        import::CountingReader::new(tokio::io::BufReader::new(file), u64::MAX, |read: u64| {
            progress(read, total)
        });
    let report = import::import(
        &handles.db,
        &handles.cache,
        &handles.messaging,
        // A one-off command that nothing scrapes: the running service counts its own imports.
        &InventoryMetrics::default(),
        input,
        config.import_batch_rows,
        None,
    )
    .await;
    handles.close().await;
    Ok(report?)
}
