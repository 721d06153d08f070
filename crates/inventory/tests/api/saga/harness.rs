//! The harness of the saga tests: the inventory service with its background tasks, and a stand-in for the
//! orders service recording events in its own outbox on the same database.

use std::collections::HashMap;
use std::time::Duration;

use messaging::events::{OrderCreated, OrderLine, ShipmentLine, ShipmentStatusChanged};
use messaging::{Envelope, EventPayload, EventType, Messaging};
use platform::db::Db;
use uuid::Uuid;

use crate::helpers::{TestApp, ok, spawn_app_with_events};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// Fast relays and retries, so a test waits milliseconds rather than the production poll interval.
const FAST: [(&str, &str); 2] = [
    ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
    ("LOGICORE_MESSAGING__RETRY_DELAY_MS", "200"),
];

/// The inventory service with its background tasks, and a stand-in for the orders service.
pub struct Saga {
    pub app: TestApp,
    orders: Messaging,
    orders_db: Db,
}

impl Saga {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let mut env = FAST.to_vec();
        env.extend_from_slice(extra);
        let app = spawn_app_with_events(&env).await;
        let mut registry = platform::metrics::registry("orders");
        let orders_db = ok(Db::connect(&app.config.basics.database, "orders", &mut registry).await);
        let orders = ok(Messaging::start(
            &app.config.basics.messaging,
            &orders_db,
            "orders",
            &mut registry,
        )
        .await);
        drop(orders.relay().spawn(app.events.clone()));
        Self {
            app,
            orders,
            orders_db,
        }
    }

    /// Records an event from the orders service; its relay delivers it.
    pub async fn send<P: EventPayload>(&self, aggregate_id: Uuid, payload: &P) -> Envelope {
        let envelope = ok(self.orders.event(P::TYPE, aggregate_id, payload));
        self.resend(&envelope).await;
        envelope
    }

    /// Records the very same envelope (same id) again: a redelivery.
    pub async fn resend(&self, envelope: &Envelope) {
        let mut connection = ok(self.orders_db.acquire().await);
        ok(self.orders.publish_in_tx(&mut connection, envelope).await);
    }

    /// Waits until the saga consumer has applied (committed) `envelope`.
    pub async fn handled(&self, envelope: &Envelope) {
        let db = &self.app.db;
        testkit::eventually("the saga to handle the event", DEADLINE, || async {
            let done: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM inbox WHERE consumer_group = $1 AND event_id = $2)",
            )
            .bind(inventory::SAGA_GROUP)
            .bind(envelope.id)
            .fetch_one(db.pool())
            .await
            .ok()?;
            done.then_some(())
        })
        .await;
    }

    pub async fn send_and_wait<P: EventPayload>(
        &self,
        aggregate_id: Uuid,
        payload: &P,
    ) -> Envelope {
        let envelope = self.send(aggregate_id, payload).await;
        self.handled(&envelope).await;
        envelope
    }

    /// An event the saga ignores, sent after others of the same order: once it is handled, so is everything
    /// the order's lane held before it (events of one aggregate are delivered and handled in order).
    pub async fn barrier(&self, order_id: Uuid) {
        let noop = ShipmentStatusChanged {
            shipment_id: Uuid::now_v7(),
            order_id,
            from: "pending".into(),
            to: "assigned".into(),
            reason: None,
            warehouse_id: None,
            lines: Vec::new(),
        };
        self.send_and_wait(order_id, &noop).await;
    }

    pub async fn order(&self, order_id: Uuid, lines: &[(&str, i64)]) -> Envelope {
        let created = OrderCreated {
            order_id,
            customer_id: Uuid::now_v7(),
            lines: lines
                .iter()
                .map(|(sku, quantity)| OrderLine {
                    sku: (*sku).to_owned(),
                    quantity: *quantity,
                    unit_price: Some(100),
                })
                .collect(),
            currency: "EUR".into(),
        };
        self.send_and_wait(order_id, &created).await
    }

    pub async fn shipment(
        &self,
        order_id: Uuid,
        shipment_id: Uuid,
        to: &str,
        warehouse_id: Uuid,
        lines: &[(&str, i64)],
    ) -> Envelope {
        let change = ShipmentStatusChanged {
            shipment_id,
            order_id,
            from: "assigned".into(),
            to: to.into(),
            reason: None,
            warehouse_id: Some(warehouse_id),
            lines: lines
                .iter()
                .map(|(sku, quantity)| ShipmentLine {
                    sku: (*sku).to_owned(),
                    quantity: *quantity,
                })
                .collect(),
        };
        self.send_and_wait(shipment_id, &change).await
    }

    /// The inventory events of `event_type` in the inventory outbox, in recording order.
    pub async fn published(&self, event_type: EventType) -> Vec<Envelope> {
        let bodies: Vec<String> = ok(sqlx::query_scalar(
            "SELECT envelope::text FROM outbox WHERE event_type = $1 ORDER BY position",
        )
        .bind(event_type.as_str())
        .fetch_all(self.app.db.pool())
        .await);
        bodies
            .iter()
            .map(|body| ok(Envelope::from_json(body.as_bytes())))
            .collect()
    }

    pub async fn only(&self, event_type: EventType) -> Envelope {
        let mut events = self.published(event_type).await;
        assert_eq!(events.len(), 1, "{event_type}: {events:?}");
        events.remove(0)
    }

    /// Per warehouse: (on_hand, reserved) of one product.
    pub async fn stock(&self, product: Uuid) -> HashMap<Uuid, (i64, i64)> {
        let rows: Vec<(Uuid, i32, i32)> = ok(sqlx::query_as(
            "SELECT warehouse_id, on_hand, reserved FROM stock_levels WHERE product_id = $1",
        )
        .bind(product)
        .fetch_all(self.app.db.pool())
        .await);
        rows.into_iter()
            .map(|(w, on_hand, reserved)| (w, (i64::from(on_hand), i64::from(reserved))))
            .collect()
    }

    pub async fn reservation_status(&self, order_id: Uuid) -> Option<String> {
        ok(
            sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
                .bind(order_id)
                .fetch_optional(self.app.db.pool())
                .await,
        )
    }
}

pub fn assert_caused_by(event: &Envelope, cause: &Envelope) {
    assert_eq!(event.causation_id, cause.id, "{event:?}");
    assert_eq!(event.correlation_id, cause.correlation_id, "{event:?}");
    assert_eq!(event.producer, "inventory");
}
