//! The LogiCore users service: accounts and roles, argon2id passwords, JWT access tokens and rotating
//! refresh tokens, in its own PostgreSQL schema.
//!
//! The binary calls [`run`] with a bound listener and a shutdown token; tests do the same on port 0.
//! Every change of an account records its `user.*` events in the service's outbox in the same transaction;
//! [`run`] relays them and consumes the ones that make a cached profile stale. Deactivation, a role change
//! and logout also revoke access tokens (`revoke`); `GET /internal/revocations` serves them to the gateway.

mod cached;
mod changes;
mod config;
mod domain;
mod error;
mod events;
mod handlers;
mod models;
mod openapi;
mod passwords;
mod profile_cache;
mod repo;
mod revoke;
mod sessions;
mod state;
mod tokens;

use cache::Cache;
use messaging::Messaging;
use platform::db::Db;
use platform::health::{PostgresCheck, Readiness};
use platform::http::{PlatformLayers, with_platform_layers};
use platform::metrics::{HttpMetrics, MetricsHandle};
use platform::revocation::{RevocationOptions, TableFeed};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::profile_cache::ProfileEviction;
use crate::revoke::Revoker;

pub use config::Config;
pub use domain::UserStatus;
pub use error::UsersError;
pub use models::{TokenResponse, UserView};
pub use openapi::openapi;
pub use profile_cache::GROUP as PROFILE_CACHE_GROUP;
pub use sessions::{AdminAction, AdminOutcome};
pub use state::AppState;

/// The PostgreSQL schema holding this service's tables.
pub const SCHEMA: &str = "users";

/// The `producer` of the events this service emits.
pub const PRODUCER: &str = "users";

static MIGRATOR: Migrator = sqlx::migrate!();

/// A built service: its full router (API and operations routes, platform layers), its database and its
/// event backbone handle.
pub struct App {
    pub router: axum::Router,
    pub db: Db,
    pub messaging: Messaging,
    cache: Cache,
    revocation: RevocationOptions,
}

impl App {
    /// Starts the outbox relay, the `users.profile-cache` consumer and the revocation feed, which run until
    /// `shutdown`, and returns once the consumer is subscribed (events relayed from then on reach it). [`run`] does this
    /// itself; this is for callers that serve the router their own way (tests, an embedding binary), who
    /// await the handles after `shutdown` and then call `messaging.close()`.
    pub async fn spawn_background(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        start_background(self.background(), shutdown).await
    }

    fn background(&self) -> Background {
        Background {
            db: self.db.clone(),
            messaging: self.messaging.clone(),
            cache: self.cache.clone(),
            revocation: self.revocation.clone(),
        }
    }
}

/// The handles the background tasks need.
struct Background {
    db: Db,
    messaging: Messaging,
    cache: Cache,
    revocation: RevocationOptions,
}

async fn start_background(
    background: Background,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    let Background {
        db,
        messaging,
        cache,
        revocation,
    } = background;
    // Other instances of this service (and `users create-admin`) record revocations too.
    let mut tasks =
        platform::revocation::spawn_feed(&revocation, TableFeed::new(db), shutdown.clone());
    let relay = messaging.relay().spawn(shutdown.clone());
    let consumer = messaging
        .consumer(
            profile_cache::GROUP,
            &profile_cache::PATTERNS,
            ProfileEviction::new(cache),
        )
        .start(shutdown)
        .await;
    tasks.extend([relay, consumer]);
    tasks
}

/// Connects to the database, migrates it (the outbox and inbox included), creates the first admin if
/// configured and none exists yet, and assembles the router.
pub async fn build(config: &Config) -> Result<App, UsersError> {
    let mut registry = platform::metrics::registry("users");
    let http_metrics = HttpMetrics::register(&mut registry);
    let db = connect(config, &mut registry).await?;
    let messaging = Messaging::start(&config.messaging, &db, PRODUCER, &mut registry).await?;
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    let state = AppState::new(db.clone(), cache.clone(), messaging.clone(), config);
    bootstrap_admin(config, &state).await?;
    let readiness = Readiness::new(
        vec![
            Box::new(PostgresCheck(db.clone())),
            // Not required: without the cache requests go to the database, so readiness is `degraded`.
            Box::new(cache.health_check()),
            // Not required either: with the transport down, writes still commit their events to the outbox
            // for later; the check shows the transport state and the outbox lag.
            Box::new(messaging.readiness_check()),
        ],
        config.readiness_timeout,
    );
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
        cache,
        revocation: config.revocation.clone(),
    })
}

/// The API routes only, without the platform layers, and the internal revocation feed (not in the
/// OpenAPI document: the gateway routes nothing outside `/api` here, so only the internal network sees it).
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = openapi::api_router().split_for_parts();
    router
        .route(
            "/internal/revocations",
            axum::routing::get(handlers::internal::revocations),
        )
        .with_state(state)
}

/// Serves on `listener`, relaying events and consuming the profile-cache ones, until `shutdown` fires; then
/// lets in-flight requests finish within the grace period, stops the relay and the consumer, closes the
/// transport and the pool.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), UsersError> {
    let app = build(&config).await?;
    // Serving does not wait for the consumer's subscription: with the broker down, requests still commit
    // their events to the outbox and `/readyz` shows messaging degraded.
    let background = tokio::spawn({
        let (background, token) = (app.background(), shutdown.clone());
        async move { futures::future::join_all(start_background(background, token).await).await }
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
                tracing::warn!(error = %error, "an event task ended abnormally");
            }
        }
        Err(error) => tracing::warn!(error = %error, "the event tasks ended abnormally"),
    }
    app.messaging.close().await;
    app.db.close().await;
    Ok(served?)
}

/// Creates an admin account, or makes the account with that email an active admin, keeping its password
/// unless one is given. For `logicore users create-admin`.
pub async fn create_admin(
    config: &Config,
    email: &str,
    password: Option<&str>,
) -> Result<AdminOutcome, UsersError> {
    let mut registry = platform::metrics::registry("users");
    let db = connect(config, &mut registry).await?;
    // With Redis this reaches the running service's cache; the in-memory backend of another process it
    // cannot, and there `cached::PROFILE_TTL` bounds how long the old role or status is seen.
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    // Only records the events: the running service's relay delivers them from the shared outbox, and its
    // profile-cache consumer drops what this process's cache could not.
    let messaging = Messaging::start(&config.messaging, &db, PRODUCER, &mut registry).await?;
    // Records the revocation of the account's older tokens; running instances read it from the table
    // (or get it pushed through Redis).
    let revoker = Revoker::new(
        &config.revocation,
        std::time::Duration::from_secs(config.auth.access_ttl_secs),
    );
    let result =
        sessions::create_or_promote_admin(&db, &cache, &messaging, &revoker, email, password).await;
    messaging.close().await;
    db.close().await;
    result
}

async fn connect(
    config: &Config,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Db, UsersError> {
    let db = Db::connect(&config.database, SCHEMA, registry).await?;
    db.migrate(&MIGRATOR, SCHEMA).await?;
    Ok(db)
}

async fn bootstrap_admin(config: &Config, state: &AppState) -> Result<(), UsersError> {
    if config.admin_email.is_empty() || repo::admin_exists(&state.db).await? {
        return Ok(());
    }
    sessions::create_or_promote_admin(
        &state.db,
        &state.cache,
        &state.messaging,
        &state.revoker,
        &config.admin_email,
        Some(config.admin_password.expose()),
    )
    .await?;
    Ok(())
}
