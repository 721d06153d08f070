//! The `order.*` and `shipment.*` events, recorded in the outbox inside the transaction making the change.
//!
//! Every event's aggregate is the ORDER, shipment events included: the relay and the consumers keep events
//! of one aggregate in order, so inventory always sees `order.created` before `order.cancelled` and a
//! shipment's `picked_up` after the order's confirmation.

use messaging::events::{OrderStatusChanged, ShipmentLine, ShipmentStatusChanged};
use messaging::{Envelope, EventPayload, Messaging};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{OrderStatus, ShipmentStatus};
use crate::error::OrdersError;
use crate::metrics::{Fact, Tally};
use crate::models::ShipmentRow;

/// Records events for one change: tied to the HTTP request being handled, or caused by the event being
/// handled. Also notes in the transaction's tally what the business metrics count, which its runner counts
/// once the change committed: every status change passes through here, so none is missed.
pub struct Recorder<'a> {
    messaging: &'a Messaging,
    cause: Option<&'a Envelope>,
    tally: Tally,
}

impl<'a> Recorder<'a> {
    /// For a change made by a request (its request id, when a UUID, becomes the correlation id).
    pub fn for_request(messaging: &'a Messaging, tally: Tally) -> Self {
        Self {
            messaging,
            cause: None,
            tally,
        }
    }

    /// For a change made while handling `cause` (same correlation, `cause` as causation).
    pub fn caused_by(messaging: &'a Messaging, cause: &'a Envelope, tally: Tally) -> Self {
        Self {
            messaging,
            cause: Some(cause),
            tally,
        }
    }

    /// Notes something the business metrics count that is not a status change (those are noted by
    /// [`Self::order_status`] and [`Self::shipment_status`]).
    pub fn note(&self, fact: Fact) {
        self.tally.note(fact);
    }

    pub async fn record<P: EventPayload>(
        &self,
        conn: &mut PgConnection,
        order_id: Uuid,
        payload: &P,
    ) -> Result<(), OrdersError> {
        let envelope = self.messaging.event(P::TYPE, order_id, payload)?;
        let envelope = match self.cause {
            Some(cause) => envelope.caused_by(cause),
            None => {
                let request =
                    platform::request_id::current().and_then(|id| Uuid::parse_str(&id).ok());
                match request {
                    Some(request) => envelope.with_correlation(request),
                    None => envelope,
                }
            }
        };
        self.messaging.publish_in_tx(conn, &envelope).await?;
        Ok(())
    }

    pub async fn order_status(
        &self,
        conn: &mut PgConnection,
        order_id: Uuid,
        from: OrderStatus,
        to: OrderStatus,
    ) -> Result<(), OrdersError> {
        let payload = OrderStatusChanged {
            order_id,
            from: from.as_str().to_owned(),
            to: to.as_str().to_owned(),
        };
        self.record(conn, order_id, &payload).await?;
        self.note(Fact::OrderStatus(to));
        Ok(())
    }

    /// `shipment.status_changed` with what the shipment carries, so inventory can act on it alone.
    pub async fn shipment_status(
        &self,
        conn: &mut PgConnection,
        shipment: &ShipmentRow,
        lines: &[(String, i64)],
        to: ShipmentStatus,
        reason: Option<String>,
    ) -> Result<(), OrdersError> {
        let payload = ShipmentStatusChanged {
            shipment_id: shipment.id,
            order_id: shipment.order_id,
            from: shipment.status.as_str().to_owned(),
            to: to.as_str().to_owned(),
            reason,
            warehouse_id: Some(shipment.warehouse_id),
            lines: lines
                .iter()
                .map(|(sku, quantity)| ShipmentLine {
                    sku: sku.clone(),
                    quantity: *quantity,
                })
                .collect(),
        };
        self.record(conn, shipment.order_id, &payload).await?;
        self.note(Fact::ShipmentStatus(to));
        Ok(())
    }
}
