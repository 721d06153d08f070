//! The event envelope of `docs/api.md` ("Events") and the registry of event types.
//!
//! Every event travels as one JSON envelope; its `type` is also the routing key on the `logicore.events`
//! topic exchange, so consumers bind with patterns such as `user.*` or `inventory.#`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("event data cannot be encoded as JSON")]
    Encode(#[source] serde_json::Error),
    #[error("event data does not match {event_type}")]
    Decode {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("expected a {expected} event, got {actual}")]
    WrongType { expected: EventType, actual: String },
    #[error("not an event envelope")]
    Malformed(#[source] serde_json::Error),
}

macro_rules! event_types {
    ($($variant:ident => $name:literal, $aggregate:literal, $doc:literal;)*) => {
        /// Every event type LogiCore publishes: the registry consumers bind against.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $(#[doc = $doc] $variant,)*
        }

        impl EventType {
            /// The whole catalogue, in `docs/api.md` order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            /// The wire name, which is also the routing key.
            pub const fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }

            /// The kind of aggregate whose id the envelope's `aggregate_id` holds. Reservation events use the
            /// order's id, so an order's saga receives them in the order they happened.
            pub const fn aggregate(self) -> &'static str {
                match self { $(EventType::$variant => $aggregate,)* }
            }

            /// One line saying when the event is emitted.
            pub const fn description(self) -> &'static str {
                match self { $(EventType::$variant => $doc,)* }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                match name {
                    $($name => Ok(EventType::$variant),)*
                    other => Err(UnknownEventType(other.to_owned())),
                }
            }
        }
    };
}

event_types! {
    UserCreated => "user.created", "user", "A user registered or was created by an admin.";
    UserUpdated => "user.updated", "user", "A user's profile (name, phone, email) changed.";
    UserRoleChanged => "user.role_changed", "user", "An admin changed a user's role.";
    UserDeactivated => "user.deactivated", "user", "A user was deactivated and can no longer sign in.";
    InventoryAdjusted => "inventory.adjusted", "product", "On-hand stock of a SKU in a warehouse changed.";
    InventoryReserved => "inventory.reserved", "order", "Stock was held for an order.";
    InventoryReservationFailed => "inventory.reservation_failed", "order", "An order's lines could not all be reserved.";
    InventoryReleased => "inventory.released", "order", "An order's reservation was released (cancelled or expired).";
    InventoryCommitted => "inventory.committed", "order", "An order's reservation was committed to shipment.";
    InventoryLowStock => "inventory.low_stock", "product", "Available stock fell to or below the reorder point.";
    OrderCreated => "order.created", "order", "An order was placed (status pending).";
    OrderConfirmed => "order.confirmed", "order", "An order's stock was reserved and it was confirmed.";
    OrderRejected => "order.rejected", "order", "An order could not be fulfilled.";
    OrderCancelled => "order.cancelled", "order", "An order was cancelled by its owner or staff.";
    OrderExpired => "order.expired", "order", "A pending order expired before confirmation.";
    OrderStatusChanged => "order.status_changed", "order", "An order moved from one status to another.";
    ShipmentCreated => "shipment.created", "shipment", "A shipment was created for order lines.";
    ShipmentAssigned => "shipment.assigned", "shipment", "A driver was assigned to a shipment.";
    ShipmentStatusChanged => "shipment.status_changed", "shipment", "A shipment moved from one status to another.";
    ShipmentDelivered => "shipment.delivered", "shipment", "A shipment was delivered.";
    ShipmentCancelled => "shipment.cancelled", "shipment", "A shipment was cancelled before pickup.";
}

impl EventType {
    /// The current schema version of the type's `data`; bumped only for incompatible changes.
    pub const fn version(self) -> u32 {
        1
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

/// A typed event body, tied to its type so it cannot be sent under another name.
pub trait EventPayload: Serialize + DeserializeOwned {
    const TYPE: EventType;
}

/// The envelope every event travels in.
///
/// `event_type` stays a string on the wire side so a consumer can receive (and dead-letter or skip) types
/// newer than its own registry; [`Envelope::kind`] gives the typed view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: DateTime<Utc>,
    /// The service that emitted the event, e.g. `users`.
    pub producer: String,
    /// The entity the event is about; events of one aggregate are delivered in order.
    pub aggregate_id: String,
    /// The id shared by every event of one business flow; a root event's own id.
    pub correlation_id: Uuid,
    /// The event (or request) that caused this one; a root event's own id.
    pub causation_id: Uuid,
    /// W3C trace context of the request that emitted the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub data: serde_json::Value,
}

impl Envelope {
    /// A new root event: `Envelope::new(EventType::UserCreated, "users", user.id, &payload)`.
    pub fn new(
        event_type: EventType,
        producer: &str,
        aggregate_id: impl fmt::Display,
        data: &impl Serialize,
    ) -> Result<Self, EnvelopeError> {
        let data = serde_json::to_value(data).map_err(EnvelopeError::Encode)?;
        let id = Uuid::now_v7();
        Ok(Self {
            id,
            event_type: event_type.as_str().to_owned(),
            version: event_type.version(),
            occurred_at: Utc::now(),
            producer: producer.to_owned(),
            aggregate_id: aggregate_id.to_string(),
            correlation_id: id,
            causation_id: id,
            // The trace of the work that writes the event, so its consumers continue it.
            traceparent: platform::telemetry::traces::current_traceparent(),
            data,
        })
    }

    /// A new root event whose type follows from its payload.
    pub fn of<P: EventPayload>(
        producer: &str,
        aggregate_id: impl fmt::Display,
        payload: &P,
    ) -> Result<Self, EnvelopeError> {
        Self::new(P::TYPE, producer, aggregate_id, payload)
    }

    /// Marks this event as caused by `cause`: same correlation id, causation id = the cause's id.
    pub fn caused_by(mut self, cause: &Envelope) -> Self {
        self.correlation_id = cause.correlation_id;
        self.causation_id = cause.id;
        self
    }

    /// Ties the event to a flow started elsewhere (e.g. an HTTP request's id).
    pub fn with_correlation(mut self, correlation_id: Uuid) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// The registered type, `None` for a type this build does not know.
    pub fn kind(&self) -> Option<EventType> {
        self.event_type.parse().ok()
    }

    /// The typed payload, refusing an envelope of another type.
    pub fn data_as<P: EventPayload>(&self) -> Result<P, EnvelopeError> {
        if self.event_type != P::TYPE.as_str() {
            return Err(EnvelopeError::WrongType {
                expected: P::TYPE,
                actual: self.event_type.clone(),
            });
        }
        serde_json::from_value(self.data.clone()).map_err(|source| EnvelopeError::Decode {
            event_type: self.event_type.clone(),
            source,
        })
    }

    pub fn to_json(&self) -> Result<String, EnvelopeError> {
        serde_json::to_string(self).map_err(EnvelopeError::Encode)
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(EnvelopeError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::UserCreated;

    #[test]
    fn every_type_round_trips_through_its_name() {
        for kind in EventType::ALL {
            assert_eq!(kind.as_str().parse::<EventType>(), Ok(*kind));
            assert!(
                kind.as_str()
                    .starts_with(kind.as_str().split('.').next().unwrap_or("?"))
            );
        }
        assert_eq!(EventType::ALL.len(), 21);
        assert!("user.exploded".parse::<EventType>().is_err());
    }

    #[test]
    fn envelope_serializes_with_the_contract_field_names() {
        let user_id = Uuid::now_v7();
        let payload = UserCreated {
            user_id,
            email: "a@example.com".into(),
            full_name: "A".into(),
            phone: None,
            role: "customer".into(),
        };
        let envelope = Envelope::of("users", user_id, &payload).expect("envelope");
        let json: serde_json::Value =
            serde_json::from_str(&envelope.to_json().expect("json")).expect("parse");
        for field in [
            "id",
            "type",
            "version",
            "occurred_at",
            "producer",
            "aggregate_id",
            "correlation_id",
            "causation_id",
            "data",
        ] {
            assert!(json.get(field).is_some(), "missing {field}: {json}");
        }
        assert!(json.get("traceparent").is_none());
        assert_eq!(json["type"], "user.created");
        assert_eq!(json["aggregate_id"], user_id.to_string());
        let back = Envelope::from_json(envelope.to_json().expect("json").as_bytes()).expect("back");
        assert_eq!(back, envelope);
        assert_eq!(back.data_as::<UserCreated>().expect("typed"), payload);
    }

    #[test]
    fn a_caused_event_carries_the_flow_ids() {
        let root = Envelope::new(
            EventType::OrderCreated,
            "orders",
            "o-1",
            &serde_json::json!({}),
        )
        .expect("root");
        let next = Envelope::new(EventType::InventoryReserved, "inventory", "r-1", &())
            .expect("next")
            .caused_by(&root);
        assert_eq!(next.correlation_id, root.id);
        assert_eq!(next.causation_id, root.id);
        assert!(next.data_as::<UserCreated>().is_err());
    }
}
