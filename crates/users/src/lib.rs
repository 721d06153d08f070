//! The LogiCore users service: accounts and roles, argon2id passwords, JWT access tokens and rotating
//! refresh tokens, in its own PostgreSQL schema.
//!
//! The binary calls [`run`] with a bound listener and a shutdown token; tests do the same on port 0.

mod cached;
mod config;
mod domain;
mod error;
mod handlers;
mod models;
mod openapi;
mod passwords;
mod repo;
mod sessions;
mod state;
mod tokens;

use cache::Cache;
use platform::db::Db;
use platform::health::{PostgresCheck, Readiness};
use platform::http::{PlatformLayers, with_platform_layers};
use platform::metrics::{HttpMetrics, MetricsHandle};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use domain::UserStatus;
pub use error::UsersError;
pub use models::{TokenResponse, UserView};
pub use openapi::openapi;
pub use state::AppState;

/// The PostgreSQL schema holding this service's tables.
pub const SCHEMA: &str = "users";

static MIGRATOR: Migrator = sqlx::migrate!();

/// A built service: its full router (API and operations routes, platform layers) and its database.
pub struct App {
    pub router: axum::Router,
    pub db: Db,
}

/// Connects to the database, migrates it, creates the first admin if configured and none exists yet, and
/// assembles the router.
pub async fn build(config: &Config) -> Result<App, UsersError> {
    let mut registry = platform::metrics::registry("users");
    let http_metrics = HttpMetrics::register(&mut registry);
    let db = connect(config, &mut registry).await?;
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    bootstrap_admin(config, &db, &cache).await?;
    let readiness = Readiness::new(
        vec![
            Box::new(PostgresCheck(db.clone())),
            // Not required: without the cache requests go to the database, so readiness is `degraded`.
            Box::new(cache.health_check()),
        ],
        config.readiness_timeout,
    );
    let router = with_platform_layers(
        router(AppState::new(db.clone(), cache, config)),
        PlatformLayers {
            http_metrics,
            metrics: MetricsHandle::new(registry),
            readiness,
            max_body_bytes: config.max_body_bytes,
        },
    );
    Ok(App { router, db })
}

/// The API routes only, without the platform layers.
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = openapi::api_router().split_for_parts();
    router.with_state(state)
}

/// Serves on `listener` until `shutdown` fires, lets in-flight requests finish within the grace period,
/// then closes the pool.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), UsersError> {
    let app = build(&config).await?;
    let served = platform::http::serve(listener, app.router, shutdown, config.shutdown_grace).await;
    app.db.close().await;
    Ok(served?)
}

/// Creates an admin account, or promotes (and reactivates) the account with that email and sets its
/// password. For `logicore users create-admin`.
pub async fn create_admin(
    config: &Config,
    email: &str,
    password: &str,
) -> Result<UserView, UsersError> {
    let mut registry = platform::metrics::registry("users");
    let db = connect(config, &mut registry).await?;
    // With Redis this reaches the running service's cache; the in-memory backend of another process it
    // cannot, and there `cached::PROFILE_TTL` bounds how long the old role or status is seen.
    let cache = Cache::from_settings(&config.redis, &mut registry)?;
    let result = sessions::create_or_promote_admin(&db, &cache, email, password).await;
    db.close().await;
    result.map(UserView::from)
}

async fn connect(
    config: &Config,
    registry: &mut prometheus_client::registry::Registry,
) -> Result<Db, UsersError> {
    let db = Db::connect(&config.database, SCHEMA, registry).await?;
    db.migrate(&MIGRATOR, SCHEMA).await?;
    Ok(db)
}

async fn bootstrap_admin(config: &Config, db: &Db, cache: &Cache) -> Result<(), UsersError> {
    if config.admin_email.is_empty() || repo::admin_exists(db).await? {
        return Ok(());
    }
    sessions::create_or_promote_admin(
        db,
        cache,
        &config.admin_email,
        config.admin_password.expose(),
    )
    .await?;
    Ok(())
}
