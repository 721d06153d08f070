//! The RabbitMQ transport (lapin): topic exchange `logicore.events`, one durable queue per consumer group
//! bound by routing-key patterns, persistent messages, publisher confirms, manual acks.
//!
//! Per group `G` (queue `<exchange>.G`) there are two more queues: `<exchange>.G.retry`, where a failed
//! delivery waits out its delay (per-message TTL) before RabbitMQ dead-letters it back to the main queue,
//! and `<exchange>.G.dead`, which keeps deliveries that were rejected or ran out of attempts, with the
//! attempt count and last error in headers. Attempts are counted in the `x-attempt` header.
//!
//! The connection is lapin's without auto-recovery (which retries a stopped broker forever); this module
//! reconnects itself, with exponential backoff and jitter, re-declaring the topology and resuming consumers,
//! and a circuit breaker makes publishers fail fast while the broker is known to be down.

mod consume;
mod dead;
mod wire;

use std::sync::Arc;

use futures::future::{BoxFuture, join_all};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Map, json};
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

use super::{
    Confirms, DeadLetter, Deliveries, GroupDeadLetters, Outgoing, Subscription, Transport,
    TransportError, TransportHealth,
};
use crate::breaker::{BreakerState, ConnectionBreaker};
use crate::metrics::Metrics;
use crate::options::{MessagingOptions, TransportKind};
use wire::properties;
pub(crate) use wire::{
    ATTEMPT_HEADER, DEAD_AT_HEADER, LAST_ERROR_HEADER, expiration, header_string, header_u32,
    truncate_error, unix_seconds,
};

#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
}

pub(crate) struct Inner {
    uri: String,
    options: MessagingOptions,
    metrics: Metrics,
    breaker: ConnectionBreaker,
    live: Mutex<Option<Live>>,
    /// Why the broker last turned the connection away for good (refused credentials), until a connect
    /// succeeds: readiness reports it, and it is logged once rather than at every retry.
    refusal: std::sync::Mutex<Option<String>>,
}

/// Names of a group's queues.
#[derive(Debug, Clone)]
pub(crate) struct Queues {
    pub main: String,
    pub retry: String,
    pub dead: String,
}

impl Queues {
    pub(crate) fn new(exchange: &str, group: &str) -> Self {
        let main = format!("{exchange}.{group}");
        Self {
            retry: format!("{main}.retry"),
            dead: format!("{main}.dead"),
            main,
        }
    }
}

#[derive(Clone)]
pub struct RabbitMqTransport {
    inner: Arc<Inner>,
}

impl RabbitMqTransport {
    /// Does not connect: the first publish, subscription or health check does, so a service starts (and its
    /// outbox accepts events) while the broker is down.
    pub fn new(uri: &str, options: &MessagingOptions, metrics: &Metrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                uri: uri.to_owned(),
                options: options.clone(),
                metrics: metrics.clone(),
                breaker: ConnectionBreaker::new(options.reconnect_min, options.reconnect_max),
                live: Mutex::new(None),
                refusal: std::sync::Mutex::new(None),
            }),
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Deletes the exchange (tests and decommissioning).
    pub async fn delete_exchange(&self) -> Result<(), TransportError> {
        let channel = self.inner.channel().await?;
        channel
            .exchange_delete(
                self.inner.options.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await?;
        close_channel(&channel).await;
        Ok(())
    }

    /// Closes the connection; subscriptions end with it.
    pub async fn close(&self) {
        if let Some(live) = self.inner.live.lock().await.take() {
            let _ = live.connection.close(200, "shutting down".into()).await;
        }
    }
}

impl Inner {
    /// The live connection and publisher channel, connecting when there is none; fails fast while the
    /// breaker is open.
    async fn live(&self) -> Result<Live, TransportError> {
        self.breaker
            .allow()
            .map_err(|retry_after| TransportError::Unavailable { retry_after })?;
        let mut guard = self.live.lock().await;
        if let Some(live) = guard.as_ref()
            && live.connection.status().connected()
        {
            if live.publisher.status().connected() {
                return Ok(live.clone());
            }
            // The channel died on its own (a channel-level error): a new one on the same connection.
            if let Ok(publisher) = open_publisher(&live.connection, &self.options).await {
                let live = Live {
                    connection: live.connection.clone(),
                    publisher,
                };
                *guard = Some(live.clone());
                return Ok(live);
            }
        }
        // Another task may have failed while this one waited for the lock.
        self.breaker
            .allow()
            .map_err(|retry_after| TransportError::Unavailable { retry_after })?;
        let timeout = self.options.connect_timeout;
        let connected = match tokio::time::timeout(timeout, self.connect()).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout(timeout)),
        };
        match connected {
            Ok(live) => {
                self.breaker.record_success();
                self.metrics.broker_up.set(1);
                self.set_refusal(None);
                tracing::info!(exchange = %self.options.exchange, "connected to rabbitmq");
                *guard = Some(live.clone());
                Ok(live)
            }
            Err(error) => {
                self.breaker.record_failure();
                self.metrics.broker_up.set(0);
                *guard = None;
                if error.is_refusal() {
                    let reason =
                        format!("rabbitmq refused the connection: {}", broker_reason(&error));
                    if self.set_refusal(Some(reason.clone())) {
                        tracing::error!(
                            reason = %reason,
                            "rabbitmq refuses messaging.rabbitmq_url's credentials; events stay in the \
                             outbox and the service reports not ready until they are fixed"
                        );
                    }
                } else {
                    tracing::warn!(error = %error, "cannot connect to rabbitmq");
                }
                Err(error)
            }
        }
    }

    async fn connect(&self) -> Result<Live, TransportError> {
        let properties = ConnectionProperties::default().with_connection_name("logicore".into());
        let connection = Arc::new(Connection::connect(&self.uri, properties).await?);
        let publisher = open_publisher(&connection, &self.options).await?;
        Ok(Live {
            connection,
            publisher,
        })
    }

    /// Replaces the remembered refusal; `true` when a refusal is new (so it is logged once).
    fn set_refusal(&self, refusal: Option<String>) -> bool {
        let mut current = self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let is_new = refusal.is_some() && current.is_none();
        *current = refusal;
        is_new
    }

    fn refusal(&self) -> Option<String> {
        self.refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records a failure that may mean the broker went away, so publishers fail fast until it is back.
    fn connection_failed(&self, live: &Live) {
        if !live.connection.status().connected() {
            self.breaker.record_failure();
            self.metrics.broker_up.set(0);
        }
    }

    /// A fresh channel in confirm mode, for a consumer or an operations task.
    pub(crate) async fn channel(&self) -> Result<Channel, TransportError> {
        let live = self.live().await?;
        let opened = async {
            let channel = live.connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await;
        opened.map_err(|error| {
            self.connection_failed(&live);
            error.into()
        })
    }

    /// Hands every message of the batch to the connection and returns the confirms still to come, so the
    /// caller can send the next batch (or do other work) while the broker confirms this one.
    async fn send(self: &Arc<Self>, batch: &[Outgoing]) -> Result<Confirms, TransportError> {
        let live = self.live().await?;
        let exchange = ShortString::from(self.options.exchange.as_str());
        let timeout = self.options.publish_timeout;
        // Bounded too: a broker under a resource alarm blocks publishers instead of refusing them.
        let sent = tokio::time::timeout(timeout, async {
            let mut confirms = Vec::with_capacity(batch.len());
            for message in batch {
                let confirm = live
                    .publisher
                    .basic_publish(
                        exchange.clone(),
                        message.event_type.as_str().into(),
                        BasicPublishOptions::default(),
                        &message.body,
                        properties(message),
                    )
                    .await?;
                confirms.push(confirm);
            }
            Ok::<_, lapin::Error>(confirms)
        })
        .await;
        let confirms = match sent {
            Ok(Ok(confirms)) => confirms,
            Ok(Err(error)) => {
                self.connection_failed(&live);
                return Err(error.into());
            }
            Err(_) => {
                self.connection_failed(&live);
                return Err(TransportError::Timeout(timeout));
            }
        };
        let ids: Vec<Uuid> = batch.iter().map(|message| message.id).collect();
        let inner = self.clone();
        Ok(Box::pin(async move {
            let timeout = inner.options.publish_timeout;
            let outcome = tokio::time::timeout(timeout, async {
                for (id, confirmation) in ids.iter().zip(join_all(confirms).await) {
                    if !confirmation?.is_ack() {
                        return Err(TransportError::Refused(*id));
                    }
                }
                Ok(())
            })
            .await;
            let result = outcome.unwrap_or(Err(TransportError::Timeout(timeout)));
            if result.is_err() {
                inner.connection_failed(&live);
            }
            result
        }))
    }
}

async fn open_publisher(
    connection: &Connection,
    options: &MessagingOptions,
) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    declare_exchange(&channel, &options.exchange).await?;
    Ok(channel)
}

pub(crate) async fn declare_exchange(
    channel: &Channel,
    exchange: &str,
) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// The broker's own words for a refusal (`ACCESS_REFUSED - Login was refused …`), without the password.
fn broker_reason(error: &TransportError) -> String {
    match error {
        TransportError::Broker(inner) => match inner.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => amqp.to_string(),
            _ => inner.to_string(),
        },
        other => other.to_string(),
    }
}

/// How many messages wait in a queue, by a passive declare: an error (a soft one, which closes the
/// channel) when the queue does not exist.
pub(crate) async fn waiting_messages(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let declared = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?;
    Ok(declared.message_count())
}

pub(crate) async fn close_channel(channel: &Channel) {
    // Closing hands unacknowledged deliveries back to the queue; an already closed channel is fine.
    let _ = channel.close(200, "done".into()).await;
}

impl Transport for RabbitMqTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::RabbitMq
    }

    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, Result<Confirms, TransportError>> {
        Box::pin(self.inner.send(batch))
    }

    fn subscribe<'a>(
        &'a self,
        subscription: &'a Subscription,
    ) -> BoxFuture<'a, Result<Deliveries, TransportError>> {
        Box::pin(async move {
            let prefetch = usize::from(subscription.prefetch.max(1));
            let (sender, receiver) = mpsc::channel(prefetch);
            // A broker that is down now is not an error: the subscription keeps trying in the background.
            let opened = match consume::first_open(&self.inner, subscription).await {
                Ok(opened) => Some(opened),
                Err(error) => {
                    tracing::warn!(group = %subscription.group, error = %error, "broker unavailable; will subscribe when it is back");
                    None
                }
            };
            tokio::spawn(consume::run(
                self.inner.clone(),
                subscription.clone(),
                sender,
                opened,
            ));
            Ok(Deliveries::new(receiver))
        })
    }

    fn queue_depth<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let queues = Queues::new(&self.inner.options.exchange, group);
            let channel = self.inner.channel().await?;
            let waiting = waiting_messages(&channel, &queues.main).await;
            close_channel(&channel).await;
            Ok(u64::from(waiting?))
        })
    }

    fn groups<'a>(
        &'a self,
        expected: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<GroupDeadLetters>, TransportError>> {
        Box::pin(dead::groups(&self.inner, expected))
    }

    fn dead_letters<'a>(
        &'a self,
        group: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>> {
        Box::pin(dead::list(&self.inner, group, limit))
    }

    fn replay<'a>(
        &'a self,
        group: &'a str,
        event_ids: Option<&'a [Uuid]>,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(dead::replay(&self.inner, group, event_ids))
    }

    fn health(&self) -> BoxFuture<'_, TransportHealth> {
        Box::pin(async move {
            let result = self.inner.live().await;
            let mut details = Map::new();
            details.insert("transport".into(), json!("rabbitmq"));
            details.insert("breaker".into(), json!(self.inner.breaker.state().as_str()));
            match result {
                Ok(_) => TransportHealth {
                    up: true,
                    details,
                    error: None,
                    fatal: false,
                },
                // While the breaker holds retries back the error only says so; the refusal says why.
                Err(error) => match self.inner.refusal() {
                    Some(refusal) => TransportHealth {
                        up: false,
                        details,
                        error: Some(refusal),
                        fatal: true,
                    },
                    None => TransportHealth {
                        up: false,
                        details,
                        error: Some(error.to_string()),
                        fatal: false,
                    },
                },
            }
        })
    }

    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            let queues = Queues::new(&self.inner.options.exchange, group);
            let channel = self.inner.channel().await?;
            for queue in [&queues.main, &queues.retry, &queues.dead] {
                channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await?;
            }
            close_channel(&channel).await;
            Ok(())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(RabbitMqTransport::close(self))
    }
}
