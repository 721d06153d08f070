//! The LogiCore orders service: orders with a strict status machine, shipments with tracking events and
//! proof of delivery, and the orders side of the order saga, in its own PostgreSQL schema.
//!
//! Every change records its `order.*` / `shipment.*` events in the service's outbox in the same
//! transaction; inventory answers `order.created` with `inventory.reserved` or
//! `inventory.reservation_failed`, which the `orders.saga` consumer turns into `confirmed` or `rejected`.

mod config;
mod consumers;
pub mod domain;
pub mod error;
mod events;
mod http;
mod idempotent;
mod jobs;
mod metrics;
pub mod models;
mod ordering;
mod repo;
mod shipping;
mod state;

use consumers::order_saga;
use metrics::OrderMetrics;
use prometheus_client::registry::Registry;
use skeleton::{Basics, Handles, Launch, Service, StartError, Worker};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, OrdersSettings};
pub use consumers::order_saga::GROUP as SAGA_GROUP;
pub use error::OrdersError;
pub use jobs::expire_pending_orders::expire_lapsed;
pub use state::AppState;

/// The service's name: its database schema, its metrics prefix and the `producer` of its events.
pub const NAME: &str = "orders";

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The orders service as the skeleton runs it.
pub struct Orders {
    config: Config,
    metrics: OrderMetrics,
}

impl Orders {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            metrics: OrderMetrics::default(),
        }
    }
}

impl Launch for Orders {
    type Section = OrdersSettings;

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

impl Service for Orders {
    const NAME: &'static str = NAME;
    const USES_CACHE: bool = false;

    fn basics(&self) -> &Basics {
        &self.config.basics
    }

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// Also creates the table of idempotency keys.
    async fn api(&self, handles: &Handles) -> Result<axum::Router, StartError> {
        platform::idempotency::migrate(&handles.db)
            .await
            .map_err(platform::db::DbError::Query)?;
        let state = state::Handles::new(handles, &self.config, self.metrics.clone());
        Ok(router(state))
    }

    /// Orders created, statuses reached, confirmation latency, shipments and deliveries.
    fn register_metrics(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The `orders.saga` consumer and the expiry sweeper of lapsed pending orders.
    fn workers(&self, handles: &Handles, shutdown: &CancellationToken) -> Vec<Worker> {
        let Handles { db, messaging, .. } = handles.clone();
        let batch = self.config.sweeper_batch;
        let sweeper = Worker::every(
            "pending order expiry sweeper",
            self.config.sweeper_interval,
            shutdown.clone(),
            {
                let (handles, metrics) = (handles.clone(), self.metrics.clone());
                move || jobs::expire_pending_orders::round(handles.clone(), metrics.clone(), batch)
            },
        );
        let saga = order_saga::SagaHandler::new(db, messaging.clone(), self.metrics.clone());
        vec![
            Worker::Consumer(messaging.consumer(order_saga::GROUP, &order_saga::PATTERNS, saga)),
            sweeper,
        ]
    }
}

/// A built orders service: router, handles and background (see [`skeleton::App`]).
pub type App = skeleton::App<Orders>;

/// Connects to the database, migrates it (outbox, inbox and idempotency keys included) and assembles the
/// router.
pub async fn build(config: &Config) -> Result<App, StartError> {
    App::build(Orders::new(config.clone())).await
}

/// The API routes only, without the platform layers.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = http::api().split_for_parts();
    router.with_state(state)
}

/// This service's OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::complete(http::api().into_openapi(), NAME)
}

/// Serves on `listener`, relaying events, consuming inventory's answers and expiring lapsed orders until
/// `shutdown` fires (see [`skeleton::run`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    skeleton::run(Orders::new(config), listener, shutdown).await
}
