//! The orders side of the order saga: inventory's answers to `order.created` confirm, reject or expire
//! orders. Runs as the consumer group `orders.saga`; every effect commits with the inbox entry, so a
//! redelivered answer changes nothing twice.

use futures::future::BoxFuture;
use messaging::events::{InventoryReleased, InventoryReservationFailed, InventoryReserved};
use messaging::{Envelope, EventPayload, EventType, Handler, Messaging, Outcome};
use platform::db::Db;
use platform::telemetry::traces::with_span;
use sqlx::PgConnection;

use crate::error::OrdersError;
use crate::events::Recorder;
use crate::ordering;

pub const GROUP: &str = "orders.saga";
pub const PATTERNS: [&str; 3] = [
    "inventory.reserved",
    "inventory.reservation_failed",
    "inventory.released",
];

pub struct SagaHandler {
    db: Db,
    messaging: Messaging,
}

impl SagaHandler {
    pub fn new(db: Db, messaging: Messaging) -> Self {
        Self { db, messaging }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope,
    ) -> Result<Outcome, OrdersError> {
        let recorder = Recorder::caused_by(&self.messaging, event);
        let Some(kind) = event.kind() else {
            return Ok(Outcome::Reject(format!(
                "unknown event type {}",
                event.event_type
            )));
        };
        match kind {
            EventType::InventoryReserved => {
                let Some(data) = decode::<InventoryReserved>(event) else {
                    return Ok(Outcome::Reject("malformed inventory.reserved".into()));
                };
                with_span(
                    "confirm",
                    ordering::reserved(&self.db, conn, &recorder, &data),
                )
                .await?;
            }
            EventType::InventoryReservationFailed => {
                let Some(data) = decode::<InventoryReservationFailed>(event) else {
                    return Ok(Outcome::Reject(
                        "malformed inventory.reservation_failed".into(),
                    ));
                };
                with_span(
                    "reject",
                    ordering::reservation_failed(&self.db, conn, &recorder, &data),
                )
                .await?;
            }
            EventType::InventoryReleased => {
                let Some(data) = decode::<InventoryReleased>(event) else {
                    return Ok(Outcome::Reject("malformed inventory.released".into()));
                };
                let released = ordering::released(
                    &self.db,
                    conn,
                    &recorder,
                    data.order_id,
                    data.reservation_id,
                    &data.reason,
                );
                with_span("release", released).await?;
            }
            // Bound by routing key to the three above; anything else is not ours to act on.
            _ => {}
        }
        Ok(Outcome::Success)
    }
}

fn decode<P: EventPayload>(event: &Envelope) -> Option<P> {
    event
        .data_as::<P>()
        .inspect_err(
            |error| tracing::warn!(event_id = %event.id, error = %error, "undecodable event"),
        )
        .ok()
}

impl Handler for SagaHandler {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Envelope,
        _attempt: u32,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.apply(tx, event).await {
                Ok(outcome) => outcome,
                // The machine refusing a move the saga asked for is permanent: retrying changes nothing.
                Err(error @ OrdersError::InvalidTransition { .. }) => {
                    Outcome::Reject(error.to_string())
                }
                Err(error) => Outcome::RetryLater(error.to_string()),
            }
        })
    }
}
