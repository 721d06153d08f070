//! One publish/consume API over two transports: RabbitMQ (a topic exchange with a durable queue per consumer
//! group) and PostgreSQL (a delivery table per group in a shared schema, for `logicore all` and small
//! deployments). Both pass the same conformance suite.

pub mod postgres;
pub mod rabbitmq;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use platform::config::MessagingSettings;
use platform::db::Db;
use serde_json::{Map, Value};
use sqlx::PgConnection;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::envelope::{Envelope, EnvelopeError};
use crate::metrics::Metrics;
use crate::options::{MessagingOptions, TransportKind};

pub use postgres::PostgresTransport;
pub use rabbitmq::RabbitMqTransport;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the broker is unavailable (circuit open); next try in {} ms", retry_after.as_millis())]
    Unavailable { retry_after: Duration },
    #[error("broker error")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused event {0}")]
    Refused(Uuid),
    #[error("no answer from the broker within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("invalid event")]
    Envelope(#[from] EnvelopeError),
}

impl TransportError {
    /// The broker turned the connection away for a reason reconnecting cannot fix: credentials it refuses
    /// (ACCESS_REFUSED, 403), a virtual host the user may not open (NOT_ALLOWED, 530), or a failing
    /// authentication provider.
    pub fn is_refusal(&self) -> bool {
        let TransportError::Broker(error) = self else {
            return false;
        };
        match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => matches!(amqp.get_id(), 403 | 530),
            lapin::ErrorKind::AuthProviderError(_) => true,
            _ => false,
        }
    }
}

/// One event ready for the wire: the envelope's JSON plus the fields the transport routes by.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: Uuid,
    /// The routing key.
    pub event_type: String,
    pub aggregate_id: String,
    /// The service that wrote the event.
    pub producer: String,
    /// The trace the event continues (the envelope's `traceparent`), also sent as a message header.
    pub traceparent: Option<String>,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn from_envelope(envelope: &Envelope) -> Result<Self, TransportError> {
        Ok(Self {
            id: envelope.id,
            event_type: envelope.event_type.clone(),
            aggregate_id: envelope.aggregate_id.clone(),
            producer: envelope.producer.clone(),
            traceparent: envelope.traceparent.clone(),
            body: envelope.to_json()?.into_bytes(),
        })
    }
}

/// A consumer group and the routing-key patterns it is bound with (`*` one word, `#` any number).
#[derive(Debug, Clone)]
pub struct Subscription {
    pub group: String,
    pub patterns: Vec<String>,
    pub prefetch: u16,
}

/// Publisher confirms of a sent batch, still to come.
pub type Confirms = BoxFuture<'static, Result<(), TransportError>>;

/// Acks a delivery inside the handler's own transaction (a transport living in the same database), so the
/// effects and the ack commit together. Called again if the transaction is rerun.
pub type TxAck = Arc<
    dyn for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<(), sqlx::Error>> + Send + Sync,
>;

/// Settles one delivery with the transport. Exactly one settling method is called, once.
pub trait Acknowledge: Send {
    /// The in-transaction ack, for transports that have one; after that transaction commits the consumer
    /// calls [`Acknowledge::acked_in_tx`] instead of [`Acknowledge::ack`].
    fn tx_ack(&self) -> Option<TxAck> {
        None
    }
    /// The in-transaction ack committed: nothing is left to do but release local resources.
    fn acked_in_tx(self: Box<Self>) {}
    /// Done: remove it from the queue.
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>>;
    /// Deliver again after `delay`, counting one more attempt.
    fn retry(
        self: Box<Self>,
        delay: Duration,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>>;
    /// Move to the group's dead letters with the attempt count and `error`.
    fn dead_letter(
        self: Box<Self>,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>>;
}

/// One delivery of one event to one consumer group.
pub struct Delivery {
    pub body: Vec<u8>,
    /// 1 for the first delivery, counting retries (not broker redeliveries after a crash).
    pub attempt: u32,
    pub settle: Box<dyn Acknowledge>,
}

/// The deliveries of one subscription. Dropping it stops the subscription; unsettled deliveries then go
/// back to the queue.
pub struct Deliveries {
    pub(crate) receiver: mpsc::Receiver<Delivery>,
}

impl Deliveries {
    pub fn new(receiver: mpsc::Receiver<Delivery>) -> Self {
        Self { receiver }
    }

    pub async fn next(&mut self) -> Option<Delivery> {
        self.receiver.recv().await
    }
}

/// A delivery that exhausted its attempts or was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub event_id: Uuid,
    pub event_type: String,
    pub group: String,
    pub attempts: u32,
    pub last_error: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// The envelope as delivered (JSON), or `null` when the body was not JSON.
    pub envelope: Value,
}

/// A consumer group and how many dead letters it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDeadLetters {
    pub group: String,
    pub dead_letters: u64,
}

/// Whether the transport can be reached, for `/readyz`.
#[derive(Debug, Clone)]
pub struct TransportHealth {
    pub up: bool,
    pub details: Map<String, Value>,
    pub error: Option<String>,
    /// Down for a reason reconnecting cannot fix, such as credentials the broker refuses.
    pub fatal: bool,
}

pub trait Transport: Send + Sync {
    fn kind(&self) -> TransportKind;

    /// Sends a batch, in order, and returns the confirms still to come: the transport durably holds every
    /// message once they resolve to `Ok`; an error means some may not have been taken and the batch must be
    /// sent again. Batches sent one after another keep their order.
    fn send<'a>(&'a self, batch: &'a [Outgoing])
    -> BoxFuture<'a, Result<Confirms, TransportError>>;

    /// Sends a batch and waits for its confirms.
    fn publish<'a>(&'a self, batch: &'a [Outgoing]) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move { self.send(batch).await?.await })
    }

    /// Declares the group's queues and bindings and starts delivering; keeps delivering across broker
    /// restarts until the returned [`Deliveries`] is dropped.
    fn subscribe<'a>(
        &'a self,
        subscription: &'a Subscription,
    ) -> BoxFuture<'a, Result<Deliveries, TransportError>>;

    /// Deliveries waiting in the group's queue (retries and dead letters excluded).
    fn queue_depth<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, TransportError>>;

    /// The consumer groups the transport knows, by name, each with its dead-letter count: every group it
    /// can enumerate (the PostgreSQL transport's subscriptions and deliveries) and those of `expected`
    /// whose queues exist (AMQP offers no way to list queues).
    fn groups<'a>(
        &'a self,
        expected: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<GroupDeadLetters>, TransportError>>;

    /// Up to `limit` dead letters of `group`, oldest first.
    fn dead_letters<'a>(
        &'a self,
        group: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>>;

    /// Puts dead letters back on the group's queue with a fresh attempt count: those with the given event
    /// ids, or all when `event_ids` is `None`. Returns how many were replayed.
    fn replay<'a>(
        &'a self,
        group: &'a str,
        event_ids: Option<&'a [Uuid]>,
    ) -> BoxFuture<'a, Result<u64, TransportError>>;

    fn health(&self) -> BoxFuture<'_, TransportHealth>;

    /// Removes the group's queues or deliveries, dead letters included (tests and decommissioning).
    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>>;

    /// Releases the connection at shutdown, after consumers and the relay stopped.
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// The transport the settings select (see [`TransportKind::resolve`]), with options from the settings.
pub async fn connect(
    settings: &MessagingSettings,
    db: &Db,
    metrics: &Metrics,
) -> Result<Arc<dyn Transport>, TransportError> {
    let options = MessagingOptions::from_settings(settings);
    connect_with(
        TransportKind::resolve(settings),
        settings.rabbitmq_url.expose(),
        db,
        &options,
        metrics,
    )
    .await
}

/// Builds a transport of `kind`. RabbitMQ connects lazily: a broker that is down at start does not stop the
/// service, whose outbox keeps accepting events.
pub async fn connect_with(
    kind: TransportKind,
    rabbitmq_url: &str,
    db: &Db,
    options: &MessagingOptions,
    metrics: &Metrics,
) -> Result<Arc<dyn Transport>, TransportError> {
    Ok(match kind {
        TransportKind::RabbitMq => Arc::new(RabbitMqTransport::new(rabbitmq_url, options, metrics)),
        TransportKind::Postgres => Arc::new(PostgresTransport::new(db, options, metrics).await?),
    })
}

/// Whether a topic pattern (`*` = one word, `#` = zero or more words) matches a routing key.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|skip| go(rest, &key[skip..])),
            Some((word, rest)) => match key.split_first() {
                Some((first, key_rest)) => (*word == "*" || word == first) && go(rest, key_rest),
                None => false,
            },
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let key: Vec<&str> = key.split('.').collect();
    go(&pattern, &key)
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn topic_patterns_follow_amqp_rules() {
        assert!(topic_matches("user.created", "user.created"));
        assert!(topic_matches("user.*", "user.created"));
        assert!(!topic_matches("user.*", "user.created.extra"));
        assert!(topic_matches("#", "inventory.low_stock"));
        assert!(topic_matches("inventory.#", "inventory"));
        assert!(topic_matches("inventory.#", "inventory.reserved"));
        assert!(topic_matches("#.cancelled", "order.cancelled"));
        assert!(topic_matches("*.cancelled", "shipment.cancelled"));
        assert!(!topic_matches("*.cancelled", "order.created"));
        assert!(!topic_matches("user.created", "user.updated"));
    }
}
