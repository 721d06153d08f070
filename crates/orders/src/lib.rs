//! The LogiCore orders service: orders with a strict status machine, shipments with tracking events and
//! proof of delivery, and the orders side of the order saga, in its own PostgreSQL schema.
//!
//! Every change records its `order.*` / `shipment.*` events in the service's outbox in the same
//! transaction; inventory answers `order.created` with `inventory.reserved` or
//! `inventory.reservation_failed`, which the `orders.saga` consumer turns into `confirmed` or `rejected`.

mod config;
pub mod domain;
pub mod error;
mod events;
mod http;
mod idempotent;
pub mod models;
mod ordering;
mod repo;
mod saga;
mod shipping;
mod state;
mod sweeper;

use messaging::Messaging;
use platform::db::Db;
use platform::health::{PostgresCheck, Readiness};
use platform::http::{PlatformLayers, with_platform_layers};
use platform::metrics::{HttpMetrics, MetricsHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::OrdersError;
pub use saga::GROUP as SAGA_GROUP;
pub use state::AppState;
pub use sweeper::expire_lapsed;

/// The PostgreSQL schema holding this service's tables.
pub const SCHEMA: &str = "orders";

/// The `producer` of the events this service emits.
pub const PRODUCER: &str = "orders";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A built service: its full router (API and operations routes, platform layers), its database and its
/// event backbone handle.
pub struct App {
    pub router: axum::Router,
    pub db: Db,
    pub messaging: Messaging,
    config: Config,
}

impl App {
    /// Starts the outbox relay, the `orders.saga` consumer, the expiry sweeper and the revocation feed, which run until
    /// `shutdown`, and returns once the consumer is subscribed. [`run`] does this itself; this is for callers
    /// that serve the router their own way (tests, an embedding binary), who await the handles after
    /// `shutdown` and then call `messaging.close()`.
    pub async fn spawn_background(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = platform::revocation::spawn_feed(
            &self.config.revocation,
            platform::revocation::TableFeed::new(self.db.clone()),
            shutdown.clone(),
        );
        let relay = self.messaging.relay().spawn(shutdown.clone());
        let sweeper = tokio::spawn(sweeper::run(
            self.db.clone(),
            self.messaging.clone(),
            self.config.sweeper_interval,
            self.config.sweeper_batch,
            shutdown.clone(),
        ));
        let consumer = self
            .messaging
            .consumer(
                saga::GROUP,
                &saga::PATTERNS,
                saga::SagaHandler::new(self.db.clone(), self.messaging.clone()),
            )
            .start(shutdown)
            .await;
        tasks.extend([relay, sweeper, consumer]);
        tasks
    }
}

/// Connects to the database, migrates it (outbox, inbox and idempotency keys included) and assembles the
/// router.
pub async fn build(config: &Config) -> Result<App, OrdersError> {
    let mut registry = platform::metrics::registry("orders");
    let http_metrics = HttpMetrics::register(&mut registry);
    let db = Db::connect(&config.database, SCHEMA, &mut registry).await?;
    db.migrate(&MIGRATOR, SCHEMA).await?;
    platform::idempotency::migrate(&db).await?;
    let messaging = Messaging::start(&config.messaging, &db, PRODUCER, &mut registry).await?;
    let readiness = Readiness::new(
        vec![
            Box::new(PostgresCheck(db.clone())),
            // Not required: with the transport down, changes still commit their events to the outbox.
            Box::new(messaging.readiness_check()),
        ],
        config.readiness_timeout,
    );
    let state = AppState::new(db.clone(), messaging.clone(), config);
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
        messaging,
        config: config.clone(),
    })
}

/// The API routes only, without the platform layers.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = http::api().split_for_parts();
    router.with_state(state)
}

/// This service's OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::complete(http::api().into_openapi(), "orders")
}

/// Serves on `listener`, relaying events, consuming inventory's answers and expiring lapsed orders until
/// `shutdown` fires; then lets in-flight requests finish within the grace period, stops the background
/// tasks, closes the transport and the pool.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), OrdersError> {
    let app = build(&config).await?;
    let background = app.spawn_background(shutdown.clone()).await;
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
    for task in futures::future::join_all(background).await {
        if let Err(error) = task {
            tracing::warn!(error = %error, "an orders background task ended abnormally");
        }
    }
    app.messaging.close().await;
    app.db.close().await;
    Ok(served?)
}
