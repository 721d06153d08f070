//! A consumer group's subscription: declares the group's queues, consumes with manual acks and prefetch, and
//! starts over (re-declaring everything) whenever the channel or connection is lost, until the subscriber
//! drops its [`Deliveries`](crate::transport::Deliveries).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Acker, BasicProperties, Channel, Consumer};
use tokio::sync::mpsc;

use super::{
    ATTEMPT_HEADER, DEAD_AT_HEADER, Inner, LAST_ERROR_HEADER, Queues, close_channel,
    declare_exchange, expiration, header_u32, truncate_error, unix_seconds,
};
use crate::transport::{Acknowledge, Delivery, Subscription, TransportError};
use platform::backoff::Backoff;

enum Ended {
    /// The subscriber is gone: stop for good.
    Unsubscribed,
    /// The channel or connection broke: subscribe again.
    Broken,
}

/// Declares the group's topology and starts consuming: done before `subscribe` returns when the broker is up,
/// so events published right after are already routed to the group's queue.
pub(super) async fn first_open(
    inner: &Inner,
    subscription: &Subscription,
) -> Result<(Channel, Consumer), TransportError> {
    open(
        inner,
        subscription,
        &Queues::new(&inner.options.exchange, &subscription.group),
    )
    .await
}

pub(super) async fn run(
    inner: Arc<Inner>,
    subscription: Subscription,
    sender: mpsc::Sender<Delivery>,
    mut opened: Option<(Channel, Consumer)>,
) {
    let queues = Arc::new(Queues::new(&inner.options.exchange, &subscription.group));
    let mut backoff = Backoff::new(inner.options.reconnect_min, inner.options.reconnect_max);
    loop {
        let attempt = match opened.take() {
            Some(pair) => Ok(pair),
            None => open(&inner, &subscription, &queues).await,
        };
        let delay = match attempt {
            Ok((channel, consumer)) => {
                backoff.reset();
                tracing::info!(group = %subscription.group, "consuming");
                match forward(&channel, consumer, &queues, &sender).await {
                    Ended::Unsubscribed => {
                        close_channel(&channel).await;
                        return;
                    }
                    Ended::Broken => {
                        tracing::warn!(group = %subscription.group, "consumer lost; resubscribing");
                        close_channel(&channel).await;
                        backoff.next_delay()
                    }
                }
            }
            Err(TransportError::Unavailable { retry_after }) => retry_after,
            Err(error) => {
                tracing::warn!(group = %subscription.group, error = %error, "cannot subscribe");
                backoff.next_delay()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay.max(Duration::from_millis(10))) => {}
            () = sender.closed() => return,
        }
    }
}

fn queue_arguments(inner: &Inner) -> FieldTable {
    let mut arguments = FieldTable::default();
    if let Some(expires) = inner.options.queue_expires {
        let millis = i64::try_from(expires.as_millis()).unwrap_or(i64::MAX);
        arguments.insert("x-expires".into(), AMQPValue::LongLongInt(millis));
    }
    arguments
}

/// Declares the exchange and the group's three queues, binds the patterns and starts consuming.
async fn open(
    inner: &Inner,
    subscription: &Subscription,
    queues: &Queues,
) -> Result<(Channel, Consumer), TransportError> {
    let channel = inner.channel().await?;
    let declared = async {
        let durable = QueueDeclareOptions::durable();
        declare_exchange(&channel, &inner.options.exchange).await?;
        channel
            .queue_declare(queues.main.as_str().into(), durable, queue_arguments(inner))
            .await?;
        for pattern in &subscription.patterns {
            channel
                .queue_bind(
                    queues.main.as_str().into(),
                    inner.options.exchange.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        // Expired retries are dead-lettered through the default exchange straight into the main queue.
        let mut retry_arguments = queue_arguments(inner);
        retry_arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        retry_arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queues.main.as_str().into()),
        );
        channel
            .queue_declare(queues.retry.as_str().into(), durable, retry_arguments)
            .await?;
        channel
            .queue_declare(queues.dead.as_str().into(), durable, queue_arguments(inner))
            .await?;
        channel
            .basic_qos(subscription.prefetch.max(1), BasicQosOptions::default())
            .await?;
        channel
            .basic_consume(
                queues.main.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    }
    .await;
    match declared {
        Ok(consumer) => Ok((channel, consumer)),
        Err(error) => {
            close_channel(&channel).await;
            Err(error.into())
        }
    }
}

async fn forward(
    channel: &Channel,
    mut consumer: Consumer,
    queues: &Arc<Queues>,
    sender: &mpsc::Sender<Delivery>,
) -> Ended {
    loop {
        let next = tokio::select! {
            next = consumer.next() => next,
            () = sender.closed() => return Ended::Unsubscribed,
        };
        let delivery = match next {
            Some(Ok(delivery)) => delivery,
            Some(Err(error)) => {
                tracing::warn!(error = %error, "consumer stream failed");
                return Ended::Broken;
            }
            None => return Ended::Broken,
        };
        let attempt = attempt_of(&delivery.properties);
        let settle = RabbitSettle {
            channel: channel.clone(),
            queues: queues.clone(),
            acker: delivery.acker,
            properties: delivery.properties,
            routing_key: delivery.routing_key,
            body: delivery.data.clone(),
            attempt,
        };
        let delivery = Delivery {
            body: delivery.data,
            attempt,
            settle: Box::new(settle),
        };
        if sender.send(delivery).await.is_err() {
            return Ended::Unsubscribed;
        }
    }
}

struct RabbitSettle {
    channel: Channel,
    queues: Arc<Queues>,
    acker: Acker,
    properties: BasicProperties,
    routing_key: ShortString,
    body: Vec<u8>,
    attempt: u32,
}

impl RabbitSettle {
    /// Publishes a copy to one of the group's own queues, and acks the original only once the broker has
    /// confirmed the copy: a crash in between delivers the event twice (the inbox absorbs that), never zero
    /// times.
    async fn move_to(self, queue: &str, properties: BasicProperties) -> Result<(), TransportError> {
        let confirmation = self
            .channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                &self.body,
                properties,
            )
            .await?
            .await?;
        if !confirmation.is_ack() {
            return Err(TransportError::Refused(uuid::Uuid::nil()));
        }
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    fn headers(&self) -> FieldTable {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(
            "x-original-routing-key".into(),
            AMQPValue::LongString(self.routing_key.as_str().into()),
        );
        headers
    }
}

impl Acknowledge for RabbitSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            self.acker.ack(BasicAckOptions::default()).await?;
            Ok(())
        })
    }

    fn retry(
        self: Box<Self>,
        delay: Duration,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let mut headers = self.headers();
            headers.insert(
                ATTEMPT_HEADER.into(),
                AMQPValue::LongLongInt(i64::from(self.attempt) + 1),
            );
            headers.insert(
                LAST_ERROR_HEADER.into(),
                AMQPValue::LongString(truncate_error(&error).into()),
            );
            let properties = self
                .properties
                .clone()
                .with_headers(headers)
                .with_expiration(expiration(delay));
            let queue = self.queues.retry.clone();
            self.move_to(&queue, properties).await
        })
    }

    fn dead_letter(
        self: Box<Self>,
        error: String,
    ) -> BoxFuture<'static, Result<(), TransportError>> {
        Box::pin(async move {
            let mut headers = self.headers();
            headers.insert(
                ATTEMPT_HEADER.into(),
                AMQPValue::LongLongInt(i64::from(self.attempt)),
            );
            headers.insert(
                LAST_ERROR_HEADER.into(),
                AMQPValue::LongString(truncate_error(&error).into()),
            );
            headers.insert(DEAD_AT_HEADER.into(), AMQPValue::Timestamp(unix_seconds()));
            // A dead letter must not expire on its way to (or inside) the dead-letter queue.
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_headers(headers);
            let properties = match self.properties.message_id() {
                Some(id) => properties.with_message_id(id.clone()),
                None => properties,
            };
            let properties = match self.properties.kind() {
                Some(kind) => properties.with_type(kind.clone()),
                None => properties,
            };
            let queue = self.queues.dead.clone();
            self.move_to(&queue, properties).await
        })
    }
}

/// The attempt a delivery is on, as counted in its headers.
fn attempt_of(properties: &BasicProperties) -> u32 {
    header_u32(properties, ATTEMPT_HEADER).unwrap_or(1).max(1)
}
