//! The orders side of the order saga: inventory's answers to `order.created` confirm, reject or expire
//! orders. Runs as the consumer group `orders.saga`; every effect commits with the inbox entry, so a
//! redelivered answer changes nothing twice.

use futures::future::BoxFuture;
use messaging::events::{InventoryReleased, InventoryReservationFailed, InventoryReserved};
use messaging::{Envelope, EventPayload, EventType, Handler, Messaging, Outcome};
use platform::db::Db;
use platform::tally::ByEvent;
use platform::telemetry::traces::with_span;
use sqlx::PgConnection;

use crate::error::OrdersError;
use crate::events::Recorder;
use crate::metrics::{Fact, OrderMetrics, Tally};
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
    metrics: OrderMetrics,
    /// What each applied event noted, counted by `after_commit` once its transaction committed.
    waiting: ByEvent<Fact>,
}

impl SagaHandler {
    pub fn new(db: Db, messaging: Messaging, metrics: OrderMetrics) -> Self {
        Self {
            db,
            messaging,
            metrics,
            waiting: ByEvent::default(),
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope,
        tally: Tally,
    ) -> Result<Outcome, OrdersError> {
        let recorder = Recorder::caused_by(&self.messaging, event, tally);
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
            let tally = Tally::default();
            match self.apply(tx, event, tally.clone()).await {
                Ok(outcome) => {
                    if let Outcome::Success = outcome {
                        self.waiting.keep(event.id, tally.take());
                    }
                    outcome
                }
                // The machine refusing a move the saga asked for is permanent: retrying changes nothing.
                Err(error @ OrdersError::InvalidTransition { .. }) => {
                    Outcome::Reject(error.to_string())
                }
                Err(error) => Outcome::RetryLater(error.to_string()),
            }
        })
    }

    fn after_commit<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, ()> {
        self.metrics.count(self.waiting.committed(event.id));
        Box::pin(async {})
    }
}
