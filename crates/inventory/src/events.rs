//! The `inventory.*` events, recorded in the service's outbox inside the transaction that makes the change
//! they describe: an event exists exactly when its change committed, and the relay delivers it afterwards.
//!
//! Aggregates: reservation events (`reserved`, `reservation_failed`, `released`, `committed`) carry the
//! order's id, so the orders saga receives an order's events in the order they happened; `adjusted` and
//! `low_stock` carry the product's id.

use messaging::{Envelope, EventPayload, Messaging};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::InventoryError;

/// Where the events of one change go and what caused them: the service's messaging handle and, while a
/// consumer handles an incoming event, that event (its events then share its correlation id and name it as
/// their cause). Cheap to copy; every stock-changing transaction body takes one.
#[derive(Clone, Copy)]
pub struct Outbox<'a> {
    messaging: &'a Messaging,
    cause: Option<&'a Envelope>,
}

impl<'a> Outbox<'a> {
    /// Events of a change made by a request (or a background task): root events, tied to the HTTP request's
    /// id when there is one.
    pub fn new(messaging: &'a Messaging) -> Self {
        Self {
            messaging,
            cause: None,
        }
    }

    /// Events of a change made while handling `cause`.
    pub fn caused_by(messaging: &'a Messaging, cause: &'a Envelope) -> Self {
        Self {
            messaging,
            cause: Some(cause),
        }
    }

    /// The same outbox without the cause: for side effects on other aggregates that the cause did not ask
    /// for (another order's lapsed hold expired in passing belongs to that order's flow, not this one).
    pub fn detached(self) -> Self {
        Self {
            cause: None,
            ..self
        }
    }

    /// Records one event about `aggregate_id` in the caller's transaction.
    pub async fn publish<P: EventPayload>(
        self,
        conn: &mut PgConnection,
        aggregate_id: Uuid,
        payload: &P,
    ) -> Result<(), InventoryError> {
        let envelope = self.envelope(aggregate_id, payload)?;
        self.messaging.publish_in_tx(conn, &envelope).await?;
        Ok(())
    }

    /// Records several events of one type in one round trip, in order.
    pub async fn publish_all<P: EventPayload>(
        self,
        conn: &mut PgConnection,
        events: &[(Uuid, P)],
    ) -> Result<(), InventoryError> {
        let envelopes = events
            .iter()
            .map(|(aggregate_id, payload)| self.envelope(*aggregate_id, payload))
            .collect::<Result<Vec<_>, _>>()?;
        self.messaging.publish_all_in_tx(conn, &envelopes).await?;
        Ok(())
    }

    fn envelope<P: EventPayload>(
        self,
        aggregate_id: Uuid,
        payload: &P,
    ) -> Result<Envelope, InventoryError> {
        let envelope = self.messaging.event(P::TYPE, aggregate_id, payload)?;
        if let Some(cause) = self.cause {
            return Ok(envelope.caused_by(cause));
        }
        // Request ids are UUIDs unless the caller sent its own `x-request-id` in another form; such an id
        // cannot be a correlation id, so the event then starts its own flow.
        let request = platform::request_id::current().and_then(|id| Uuid::parse_str(&id).ok());
        Ok(match request {
            Some(request) => envelope.with_correlation(request),
            None => envelope,
        })
    }
}
