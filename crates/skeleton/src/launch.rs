//! What the binary needs to run a service it knows only by its type, so that listing a service is one line
//! in the binary's service list.

use futures::future::BoxFuture;
use platform::config::{ConfigError, Section, SectionSpec, Settings};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{App, Basics, Service, StartError};

/// A service the binary can configure from the settings, run, migrate and describe.
pub trait Launch: Service + Sized {
    /// Whether this service records revoked tokens (the users service). In one process the others share
    /// its set instead of reading the revocations table themselves.
    const RECORDS_REVOCATIONS: bool = false;

    /// The service's own section of the settings (`[<NAME>]`), which the binary registers with the loader.
    type Section: Section;

    /// The service, configured from the settings.
    fn from_settings(settings: &Settings) -> Result<Self, ConfigError>;

    /// The settings every service has, for the binary to adjust: the `PORT` override of a single-service
    /// command, the revocation set shared in `logicore all`.
    fn basics_mut(&mut self) -> &mut Basics;

    /// The service's OpenAPI 3.1 document, which the gateway merges.
    fn openapi() -> utoipa::openapi::OpenApi;
}

/// A configured service whose type is erased, as the binary holds several in one list.
pub trait Launchable: Send {
    fn basics(&mut self) -> &mut Basics;

    /// Serves on `listener` until `shutdown` fires (see [`crate::run`]).
    fn run(
        self: Box<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), StartError>>;

    /// Connects and migrates the database, then closes everything: what `logicore migrate` does.
    fn migrate(self: Box<Self>) -> BoxFuture<'static, Result<(), StartError>>;
}

impl<S: Launch> Launchable for S {
    fn basics(&mut self) -> &mut Basics {
        self.basics_mut()
    }

    fn run(
        self: Box<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, Result<(), StartError>> {
        Box::pin(crate::run(*self, listener, shutdown))
    }

    fn migrate(self: Box<Self>) -> BoxFuture<'static, Result<(), StartError>> {
        Box::pin(async move {
            let app = App::build(*self).await?;
            app.handles().close().await;
            Ok(())
        })
    }
}

/// One line of the binary's service list: a service's name, its section of the settings, how to configure
/// it, and its OpenAPI document.
pub struct Entry {
    pub name: &'static str,
    pub section: SectionSpec,
    pub records_revocations: bool,
    pub openapi: fn() -> utoipa::openapi::OpenApi,
    configure: fn(&Settings) -> Result<Box<dyn Launchable>, ConfigError>,
}

impl Entry {
    pub const fn of<S: Launch>() -> Self {
        Self {
            name: S::NAME,
            section: SectionSpec::of::<S::Section>(),
            records_revocations: S::RECORDS_REVOCATIONS,
            openapi: S::openapi,
            configure: configure::<S>,
        }
    }

    /// The service configured from the settings.
    pub fn configure(&self, settings: &Settings) -> Result<Box<dyn Launchable>, ConfigError> {
        (self.configure)(settings)
    }
}

fn configure<S: Launch>(settings: &Settings) -> Result<Box<dyn Launchable>, ConfigError> {
    Ok(Box::new(S::from_settings(settings)?))
}
