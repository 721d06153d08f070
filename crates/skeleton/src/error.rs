//! Why a service could not start (or stopped serving), kept apart from the errors its handlers answer with.

/// A start-up or serving failure; the binary prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the database could not be opened")]
    Database(#[from] platform::db::DbError),
    #[error("the event backbone could not start")]
    Messaging(#[from] messaging::MessagingError),
    #[error("the cache could not start")]
    Cache(#[from] cache::CacheError),
    #[error("the service registry could not be set up")]
    Discovery(#[from] platform::discovery::DiscoveryError),
    #[error("serving HTTP failed")]
    Serve(#[source] std::io::Error),
    /// A service's own start-up step failed (e.g. creating the bootstrap admin).
    #[error("a start-up step of the service failed")]
    Service(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StartError {
    /// A failure of a service's own start-up step.
    pub fn service(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StartError::Service(Box::new(error))
    }
}
