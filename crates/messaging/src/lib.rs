//! LogiCore's event backbone.
//!
//! A service records events in its own `outbox` table in the same transaction as the state change
//! ([`publish_in_tx`]); a [`Relay`] delivers committed rows to the [`Transport`] (RabbitMQ, or PostgreSQL when
//! no broker is configured) in order per aggregate; [`Consumer`]s of a group handle each event once in effect
//! thanks to an `inbox` written in the handler's transaction, with retries after a delay and dead letters.
//!
//! ```ignore
//! // start-up
//! let messaging = Messaging::start(&settings.messaging, &db, "users", &mut registry).await?;
//! messaging.relay().spawn(shutdown.clone());
//! messaging
//!     .consumer("users.profile-cache", &["user.updated"], CacheProfiles)
//!     .start(shutdown.clone())
//!     .await;
//! checks.push(Box::new(messaging.readiness_check()));
//!
//! // in a request's transaction
//! let envelope = Envelope::new(EventType::UserCreated, "users", user.id, &payload)?;
//! messaging::publish_in_tx(&mut tx, &envelope).await?;
//! ```

mod breaker;
pub mod consumer;
pub mod dead_letters;
pub mod envelope;
pub mod events;
pub mod health;
pub mod metrics;
pub mod options;
pub mod outbox;
pub mod relay;
pub mod transport;

use std::fmt;
use std::sync::Arc;

use platform::config::MessagingSettings;
use platform::db::Db;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sqlx::PgConnection;

pub use breaker::BreakerState;
pub use consumer::{Consumer, Handler, Outcome};
pub use dead_letters::{
    dead_letter_groups, list_dead_letters, replay_dead_letter, replay_dead_letters,
};
pub use envelope::{Envelope, EnvelopeError, EventPayload, EventType, UnknownEventType};
pub use health::MessagingCheck;
pub use metrics::Metrics;
pub use options::{EXCHANGE, MessagingOptions, TransportKind};
pub use outbox::{
    MIGRATION_SQL, OutboxStats, migrate, outbox_stats, publish_all_in_tx, publish_in_tx,
};
pub use relay::{Pass, Relay};
pub use transport::{
    DeadLetter, GroupDeadLetters, Transport, TransportError, connect, connect_with,
};

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error("cannot prepare the messaging tables")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Everything a service needs, as one cheap handle: its database, the transport, options and metrics.
#[derive(Clone)]
pub struct Messaging {
    db: Db,
    transport: Arc<dyn Transport>,
    options: MessagingOptions,
    metrics: Metrics,
    producer: String,
}

impl Messaging {
    /// Creates the outbox and inbox in the service's schema, registers the metrics and builds the
    /// configured transport (RabbitMQ connects lazily, so a broker outage does not stop the start).
    pub async fn start(
        settings: &MessagingSettings,
        db: &Db,
        producer: &str,
        registry: &mut Registry,
    ) -> Result<Self, MessagingError> {
        migrate(db).await?;
        let metrics = Metrics::register(registry);
        let options = MessagingOptions::from_settings(settings);
        let kind = TransportKind::resolve(settings);
        let transport =
            connect_with(kind, settings.rabbitmq_url.expose(), db, &options, &metrics).await?;
        tracing::info!(transport = %kind, producer, "messaging ready");
        Ok(Self::with_transport(
            db, transport, options, metrics, producer,
        ))
    }

    /// Assembles a handle from parts (tests, tools, a shared transport).
    pub fn with_transport(
        db: &Db,
        transport: Arc<dyn Transport>,
        options: MessagingOptions,
        metrics: Metrics,
        producer: &str,
    ) -> Self {
        Self {
            db: db.clone(),
            transport,
            options,
            metrics,
            producer: producer.to_owned(),
        }
    }

    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn options(&self) -> &MessagingOptions {
        &self.options
    }

    /// A root event from this service.
    pub fn event(
        &self,
        event_type: EventType,
        aggregate_id: impl fmt::Display,
        data: &impl Serialize,
    ) -> Result<Envelope, EnvelopeError> {
        Envelope::new(event_type, &self.producer, aggregate_id, data)
    }

    /// [`publish_in_tx`], counted in `messaging_events_published`.
    pub async fn publish_in_tx(
        &self,
        tx: &mut PgConnection,
        envelope: &Envelope,
    ) -> Result<(), sqlx::Error> {
        publish_in_tx(tx, envelope).await?;
        self.metrics.published.inc();
        Ok(())
    }

    /// [`publish_all_in_tx`], counted in `messaging_events_published`.
    pub async fn publish_all_in_tx(
        &self,
        tx: &mut PgConnection,
        envelopes: &[Envelope],
    ) -> Result<(), sqlx::Error> {
        publish_all_in_tx(tx, envelopes).await?;
        self.metrics.published.inc_by(envelopes.len() as u64);
        Ok(())
    }

    /// The relay of this service's outbox; `spawn` it once per instance (instances take turns safely).
    pub fn relay(&self) -> Relay {
        Relay::new(
            &self.db,
            self.transport.clone(),
            &self.options,
            &self.metrics,
        )
    }

    /// A consumer of `group`, bound to routing-key `patterns`.
    pub fn consumer(&self, group: &str, patterns: &[&str], handler: impl Handler) -> Consumer {
        Consumer::new(
            &self.db,
            self.transport.clone(),
            group,
            patterns,
            handler,
            &self.options,
            &self.metrics,
        )
    }

    /// The `/readyz` check: transport connectivity and outbox lag.
    pub fn readiness_check(&self) -> MessagingCheck {
        MessagingCheck::new(&self.db, self.transport.clone())
    }

    /// Closes the transport; call after the relay and consumers stopped.
    pub async fn close(&self) {
        self.transport.close().await;
    }
}
