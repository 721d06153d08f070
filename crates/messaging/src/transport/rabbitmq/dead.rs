//! Reading and replaying a group's dead-letter queue.
//!
//! Messages are fetched with `basic.get` without acking; closing the channel afterwards hands back every
//! message that was only looked at, in its original order.

use chrono::{DateTime, Utc};
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use serde_json::Value;
use uuid::Uuid;

use super::{
    ATTEMPT_HEADER, DEAD_AT_HEADER, Inner, LAST_ERROR_HEADER, Queues, close_channel, header_string,
    header_u32, waiting_messages,
};
use crate::transport::{DeadLetter, GroupDeadLetters, TransportError};

pub(super) async fn list(
    inner: &Inner,
    group: &str,
    limit: usize,
) -> Result<Vec<DeadLetter>, TransportError> {
    let queues = Queues::new(&inner.options.exchange, group);
    let channel = inner.channel().await?;
    let result = async {
        let mut letters = Vec::new();
        while letters.len() < limit {
            let Some(message) = get(&channel, &queues.dead).await? else {
                break;
            };
            letters.push(dead_letter(group, &message));
        }
        Ok(letters)
    }
    .await;
    close_channel(&channel).await;
    result
}

/// The groups of `expected` whose dead-letter queue exists, with its length. A passive declare of a
/// missing queue closes the channel (404), so each probe gets its own.
pub(super) async fn groups(
    inner: &Inner,
    expected: &[&str],
) -> Result<Vec<GroupDeadLetters>, TransportError> {
    let mut found = Vec::new();
    for group in expected {
        let queues = Queues::new(&inner.options.exchange, group);
        let channel = inner.channel().await?;
        let waiting = waiting_messages(&channel, &queues.dead).await;
        close_channel(&channel).await;
        match waiting {
            Ok(count) => found.push(GroupDeadLetters {
                group: (*group).to_owned(),
                dead_letters: u64::from(count),
            }),
            Err(error) if error.is_amqp_soft_error() => {}
            Err(error) => return Err(error.into()),
        }
    }
    found.sort_by(|a, b| a.group.cmp(&b.group));
    Ok(found)
}

pub(super) async fn replay(
    inner: &Inner,
    group: &str,
    event_ids: Option<&[Uuid]>,
) -> Result<u64, TransportError> {
    let queues = Queues::new(&inner.options.exchange, group);
    let channel = inner.channel().await?;
    let result = async {
        let waiting = waiting_messages(&channel, &queues.dead).await?;
        let mut replayed = 0;
        // Only the messages present at the start: skipped ones stay unacked (so are not fetched again), and
        // newly dead-lettered ones wait for the next replay.
        for _ in 0..waiting {
            let Some(message) = get(&channel, &queues.dead).await? else {
                break;
            };
            let wanted =
                event_ids.is_none_or(|ids| event_id(&message).is_some_and(|id| ids.contains(&id)));
            if !wanted {
                continue;
            }
            let confirmation = channel
                .basic_publish(
                    "".into(),
                    queues.main.as_str().into(),
                    BasicPublishOptions::default(),
                    &message.data,
                    fresh_properties(&message.properties),
                )
                .await?
                .await?;
            if !confirmation.is_ack() {
                return Err(TransportError::Refused(
                    event_id(&message).unwrap_or_default(),
                ));
            }
            message.acker.ack(BasicAckOptions::default()).await?;
            replayed += 1;
        }
        Ok(replayed)
    }
    .await;
    close_channel(&channel).await;
    result
}

async fn get(channel: &Channel, queue: &str) -> Result<Option<AmqpDelivery>, TransportError> {
    let message = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await?;
    Ok(message.map(|m| m.delivery))
}

/// The dead letter's properties without its attempt count and error, so the replay starts at attempt 1.
fn fresh_properties(properties: &BasicProperties) -> BasicProperties {
    let mut headers = FieldTable::default();
    if let Some(old) = properties.headers() {
        for (key, value) in old {
            if ![ATTEMPT_HEADER, LAST_ERROR_HEADER, DEAD_AT_HEADER].contains(&key.as_str()) {
                headers.insert(key.clone(), value.clone());
            }
        }
    }
    properties.clone().with_headers(headers)
}

fn event_id(message: &AmqpDelivery) -> Option<Uuid> {
    let from_property = message
        .properties
        .message_id()
        .as_ref()
        .and_then(|id| id.as_str().parse().ok());
    from_property.or_else(|| {
        serde_json::from_slice::<Value>(&message.data)
            .ok()?
            .get("id")?
            .as_str()?
            .parse()
            .ok()
    })
}

fn dead_letter(group: &str, message: &AmqpDelivery) -> DeadLetter {
    let envelope: Value = serde_json::from_slice(&message.data).unwrap_or(Value::Null);
    let event_type = envelope
        .get("type")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            message
                .properties
                .kind()
                .as_ref()
                .map(|k| k.as_str().to_owned())
        })
        .unwrap_or_default();
    let dead_lettered_at = match message
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(DEAD_AT_HEADER))
    {
        Some(AMQPValue::Timestamp(seconds)) => {
            DateTime::<Utc>::from_timestamp(i64::try_from(*seconds).unwrap_or(0), 0)
        }
        _ => None,
    };
    DeadLetter {
        event_id: event_id(message).unwrap_or_default(),
        event_type,
        group: group.to_owned(),
        attempts: header_u32(&message.properties, ATTEMPT_HEADER).unwrap_or(1),
        last_error: header_string(&message.properties, LAST_ERROR_HEADER).unwrap_or_default(),
        dead_lettered_at,
        envelope,
    }
}
