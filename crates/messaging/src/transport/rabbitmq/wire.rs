//! What goes on the wire besides the body: message properties and the headers that carry attempts, errors
//! and dead-lettering facts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::transport::Outgoing;

/// Header counting delivery attempts (absent = first attempt).
pub(crate) const ATTEMPT_HEADER: &str = "x-attempt";
pub(crate) const LAST_ERROR_HEADER: &str = "x-last-error";
pub(crate) const DEAD_AT_HEADER: &str = "x-dead-lettered-at";
/// Longest error text kept in a header; AMQP headers are not meant for stack traces.
const MAX_ERROR_BYTES: usize = 2_000;

/// Persistent, identified and typed, so the broker's tools show what a message is without parsing it.
pub(super) fn properties(message: &Outgoing) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        "aggregate_id".into(),
        AMQPValue::LongString(message.aggregate_id.as_str().into()),
    );
    if let Some(traceparent) = &message.traceparent {
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(traceparent.as_str().into()),
        );
    }
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_message_id(message.id.to_string().into())
        .with_type(message.event_type.as_str().into())
        .with_timestamp(unix_seconds())
        .with_headers(headers)
}

pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn truncate_error(error: &str) -> String {
    if error.len() <= MAX_ERROR_BYTES {
        return error.to_owned();
    }
    let mut end = MAX_ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

pub(crate) fn header_u32(properties: &BasicProperties, name: &str) -> Option<u32> {
    let value = properties.headers().as_ref()?.inner().get(name)?;
    let number = match value {
        AMQPValue::LongLongInt(v) => *v,
        AMQPValue::LongInt(v) => i64::from(*v),
        AMQPValue::LongUInt(v) => i64::from(*v),
        AMQPValue::ShortInt(v) => i64::from(*v),
        AMQPValue::ShortUInt(v) => i64::from(*v),
        _ => return None,
    };
    u32::try_from(number).ok()
}

pub(crate) fn header_string(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        AMQPValue::ShortString(v) => Some(v.as_str().to_owned()),
        _ => None,
    }
}

/// How long a deliberately delayed message waits, as the AMQP `expiration` property wants it.
pub(crate) fn expiration(delay: Duration) -> ShortString {
    delay.as_millis().max(1).to_string().into()
}
