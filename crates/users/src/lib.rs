//! The LogiCore users service: accounts and roles, argon2id passwords, JWT access tokens and rotating
//! refresh tokens, in its own PostgreSQL schema.
//!
//! The binary calls [`run`] with a bound listener and a shutdown token; tests do the same on port 0.
//! Every change of an account records its `user.*` events in the service's outbox in the same transaction;
//! [`run`] relays them and consumes the ones that make a cached profile stale. Deactivation, a role change
//! and logout also revoke access tokens (`revoke`); `GET /internal/revocations` serves them to the gateway.

mod cached;
mod changes;
mod clients;
mod config;
mod consumers;
mod domain;
mod error;
mod events;
mod http;
mod identities;
mod models;
mod passwords;
mod repo;
mod revoke;
mod sessions;
mod signing;
mod state;
mod tokens;

use std::sync::OnceLock;

use platform::auth::JwtKeys;
use skeleton::{Basics, Handles, Launch, Service, StartError, Worker};
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::consumers::profile_eviction::{self, ProfileEviction};
use crate::revoke::Revoker;
use crate::signing::Signer;

pub use config::{Config, UsersSettings};
pub use consumers::profile_eviction::GROUP as PROFILE_CACHE_GROUP;
pub use domain::UserStatus;
pub use error::UsersError;
pub use models::{TokenResponse, UserView};
pub use sessions::{AdminAction, AdminOutcome};
pub use state::AppState;

/// The service's name: its database schema, its metrics prefix and the `producer` of its events.
pub const NAME: &str = "users";

static MIGRATOR: Migrator = sqlx::migrate!();

/// The users service as the skeleton runs it.
pub struct Users {
    config: Config,
    /// Made when the API starts (it needs the database); its reload job runs with the workers.
    signer: OnceLock<Signer>,
}

impl Users {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            signer: OnceLock::new(),
        }
    }
}

impl Launch for Users {
    /// It records revoked tokens; in one process the others share its set.
    const RECORDS_REVOCATIONS: bool = true;

    type Section = UsersSettings;

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

impl Service for Users {
    const NAME: &'static str = NAME;
    const USES_CACHE: bool = true;

    fn basics(&self) -> &Basics {
        &self.config.basics
    }

    fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// Also creates the bootstrap admin (`users.admin_email`) when no admin exists yet.
    async fn api(&self, handles: &Handles) -> Result<axum::Router, StartError> {
        let auth = &self.config.basics.auth;
        let issuing = JwtKeys::with_revocations(auth, self.config.basics.revocation.set.clone());
        // Boxed: loading keys is a one-off at start, and inline it would grow every future that starts
        // the service (`logicore all`'s among them) past the large-future bound.
        let signer = Box::pin(Signer::start(auth, issuing, &handles.db))
            .await
            .map_err(StartError::service)?;
        let state = state::Handles::new(handles, &self.config, signer.clone());
        let _ = self.signer.set(signer);
        bootstrap_admin(&self.config, &state)
            .await
            .map_err(StartError::service)?;
        Ok(router(state))
    }

    /// The consumer of `user.*` events that drops stale cached profiles.
    fn workers(&self, handles: &Handles, shutdown: &CancellationToken) -> Vec<Worker> {
        let eviction = ProfileEviction::new(handles.cache.clone());
        let mut workers = vec![Worker::Consumer(handles.messaging.consumer(
            profile_eviction::GROUP,
            &profile_eviction::PATTERNS,
            eviction,
        ))];
        if let Some(signer) = self.signer.get() {
            workers.push(Worker::job(
                "signing-keys",
                signer.clone().keep_current(shutdown.clone()),
            ));
        }
        workers
    }
}

/// A built users service: router, handles and background (see [`skeleton::App`]).
pub type App = skeleton::App<Users>;

/// Connects, migrates, creates the bootstrap admin if configured and none exists, and builds the router with
/// the platform layers.
pub async fn build(config: &Config) -> Result<App, StartError> {
    App::build(Users::new(config.clone())).await
}

/// The API routes only, without the platform layers, and the internal revocation feed (not in the
/// OpenAPI document: the gateway routes nothing outside `/api` here, so only the internal network sees it).
pub fn router(state: AppState) -> axum::Router {
    let (router, _) = http::api().split_for_parts();
    router
        .route(
            "/internal/revocations",
            axum::routing::get(http::internal::revocations),
        )
        .route(
            platform::auth::external::IDENTITIES_PATH,
            axum::routing::post(http::internal::identities),
        )
        .with_state(state)
}

/// This service's OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::complete(http::api().into_openapi(), NAME)
}

/// Serves on `listener`, relaying events and evicting stale cached profiles, until `shutdown` fires (see
/// [`skeleton::run`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    skeleton::run(Users::new(config), listener, shutdown).await
}

/// Why `logicore users create-admin` or `rotate-key` failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateAdminError {
    #[error("cannot open the users database")]
    Open(#[from] StartError),
    #[error("the users command failed")]
    Create(#[from] UsersError),
}

/// Creates an admin account, or promotes an existing account to admin (`logicore users create-admin`).
pub async fn create_admin(
    config: &Config,
    email: &str,
    password: Option<&str>,
) -> Result<AdminOutcome, CreateAdminError> {
    let mut registry = platform::metrics::registry(NAME);
    // With Redis the cache is the running service's; the in-memory backend of another process it cannot
    // reach, and there `cached::PROFILE_TTL` bounds how long the old role or status is seen. The events are
    // only recorded: the running service's relay delivers them from the shared outbox, and its profile-cache
    // consumer drops what this process's cache could not.
    let handles = Handles::open(&Users::new(config.clone()), &mut registry).await?;
    // Records the revocation of the account's older tokens; running instances read it from the table
    // (or get it pushed through Redis).
    let revoker = revoker(config);
    let result = sessions::create_or_promote_admin(
        &handles.db,
        &handles.cache,
        &handles.messaging,
        &revoker,
        email,
        password,
    )
    .await;
    handles.close().await;
    Ok(result?)
}

/// Adds the next signing key (`logicore users rotate-key`); returns its kid.
pub async fn rotate_signing_key(config: &Config) -> Result<String, CreateAdminError> {
    let mut registry = platform::metrics::registry(NAME);
    let handles = Handles::open(&Users::new(config.clone()), &mut registry).await?;
    let result = signing::rotate(&handles.db, &config.basics.auth).await;
    handles.close().await;
    Ok(result?)
}

/// Revocations last as long as the access tokens they revoke.
fn revoker(config: &Config) -> Revoker {
    Revoker::new(
        &config.basics.revocation,
        std::time::Duration::from_secs(config.basics.auth.access_ttl_secs),
    )
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
