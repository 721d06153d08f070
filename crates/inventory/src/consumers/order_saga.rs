//! The `inventory.order-saga` consumer: inventory's side of the order saga.
//!
//! | event | effect (in the consumer's transaction) | events recorded |
//! |---|---|---|
//! | `order.created` | reserve every line or none (default hold time), idempotent on the order | `inventory.reserved`, or `inventory.reservation_failed` listing the short lines |
//! | `order.confirmed` | commit the order's reservation (it no longer expires) | `inventory.committed`; `inventory.released` (`expired`) when the hold had lapsed |
//! | `order.cancelled`, `order.expired` | release what the reservation still holds | `inventory.released` (`cancelled` / `expired`) |
//! | `shipment.status_changed` to `picked_up` | consume the shipped lines from the reservation (reference: the shipment) | — |
//! | `shipment.status_changed` to `returned` | put the lines back into on_hand, `return` ledger rows, once per shipment | `inventory.adjusted` (`return`) |
//!
//! Every recorded event is caused by the incoming one (same correlation id). A payload that cannot be read or
//! applied is rejected (dead letter); a database failure is retried. The cached availability of the skus
//! involved goes after the commit.

use platform::telemetry::traces::with_span;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cache::Cache;
use futures::future::BoxFuture;
use messaging::events::{
    InventoryReleased, InventoryReservationFailed, OrderCancelled, OrderConfirmed, OrderCreated,
    OrderExpired, ShipmentStatusChanged,
};
use messaging::{Envelope, EventPayload, EventType, Handler, Messaging, Outcome};
use platform::db::Db;
use platform::tally::{ByEvent, Tally};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::caching;
use crate::domain::{QUANTITY_MAX, ReleaseReason, ReservationStatus};
use crate::error::{InventoryError, ShortLine};
use crate::events::Outbox;
use crate::metrics::{Fact, InventoryMetrics};
use crate::repo::products;
use crate::repo::returns::{self, Return};
use crate::reservations::reserve::{self, Attempt, Claim};
use crate::reservations::settle::{self, ConsumeLine, Consumption};

pub const GROUP: &str = "inventory.order-saga";

pub const PATTERNS: [&str; 5] = [
    EventType::OrderCreated.as_str(),
    EventType::OrderConfirmed.as_str(),
    EventType::OrderCancelled.as_str(),
    EventType::OrderExpired.as_str(),
    EventType::ShipmentStatusChanged.as_str(),
];

pub struct OrderSaga {
    db: Db,
    cache: Cache,
    messaging: Messaging,
    metrics: InventoryMetrics,
    /// What each applied event noted, counted by `after_commit` once its transaction committed.
    waiting: ByEvent<Fact>,
    /// How long a reservation made for an order holds unless committed.
    ttl: Duration,
}

impl OrderSaga {
    pub fn new(
        db: Db,
        cache: Cache,
        messaging: Messaging,
        metrics: InventoryMetrics,
        ttl: Duration,
    ) -> Self {
        Self {
            db,
            cache,
            messaging,
            metrics,
            waiting: ByEvent::default(),
            ttl,
        }
    }
}

/// Why an event was not applied.
#[derive(Debug)]
enum Failure {
    /// It can never be applied as it is.
    Reject(String),
    /// It may apply later (the database was unreachable, a lock wait timed out, a deadlock).
    Retry(String),
}

impl From<InventoryError> for Failure {
    fn from(error: InventoryError) -> Self {
        match error {
            InventoryError::Database(_) | InventoryError::DatabaseSetup(_) => {
                Failure::Retry(chain(&error))
            }
            other => Failure::Reject(chain(&other)),
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn decode<P: EventPayload>(event: &Envelope) -> Result<P, Failure> {
    event.data_as::<P>().map_err(|error| {
        Failure::Reject(format!(
            "malformed {} payload: {}",
            event.event_type,
            chain(&error)
        ))
    })
}

impl Handler for OrderSaga {
    fn handle<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        event: &'a Envelope,
        _attempt: u32,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let tally = Tally::default();
            match self.apply(conn, event, &tally).await {
                Ok(()) => {
                    self.waiting.keep(event.id, tally.take());
                    Outcome::Success
                }
                Err(Failure::Reject(reason)) => Outcome::Reject(reason),
                Err(Failure::Retry(reason)) => Outcome::RetryLater(reason),
            }
        })
    }

    /// One event per transaction: every event locks stock rows, and a batch would hold them until its last
    /// event commits, taken in event order, so concurrent lanes would wait on (and deadlock with) each other.
    fn max_batch(&self) -> usize {
        1
    }

    fn after_commit<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, ()> {
        self.metrics.count(self.waiting.committed(event.id));
        Box::pin(self.invalidate(event))
    }
}

impl OrderSaga {
    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &Envelope,
        tally: &Tally<Fact>,
    ) -> Result<(), Failure> {
        let outbox = Outbox::caused_by(&self.messaging, event);
        match event.kind() {
            Some(EventType::OrderCreated) => {
                let created = decode(event)?;
                with_span("reserve", self.reserve(conn, outbox, created, tally)).await
            }
            Some(EventType::OrderConfirmed) => {
                let confirmed: OrderConfirmed = decode(event)?;
                with_span("confirm", self.commit(conn, outbox, confirmed.order_id)).await
            }
            Some(EventType::OrderCancelled) => {
                let cancelled: OrderCancelled = decode(event)?;
                let reason = ReleaseReason::Cancelled;
                let released = self.release(conn, outbox, cancelled.order_id, reason);
                with_span("release", released).await
            }
            Some(EventType::OrderExpired) => {
                let expired: OrderExpired = decode(event)?;
                let reason = ReleaseReason::Expired;
                let released = self.release(conn, outbox, expired.order_id, reason);
                with_span("release", released).await
            }
            Some(EventType::ShipmentStatusChanged) => {
                let change: ShipmentStatusChanged = decode(event)?;
                match change.to.as_str() {
                    "picked_up" => self.consume(conn, &change).await,
                    "returned" => self.restock(conn, outbox, &change).await,
                    _ => Ok(()),
                }
            }
            // Not bound to anything else; a newer type under a bound pattern is none of its business.
            _ => Ok(()),
        }
    }

    /// Reserves the order's lines, or records why not. Lines that can never be reserved (unknown sku,
    /// quantity outside 1..=1000000000) are reported short with `available: 0` without trying the rest.
    async fn reserve(
        &self,
        conn: &mut PgConnection,
        outbox: Outbox<'_>,
        order: OrderCreated,
        tally: &Tally<Fact>,
    ) -> Result<(), Failure> {
        if order.lines.is_empty() {
            return Err(Failure::Reject("an order.created without lines".into()));
        }
        // A new event for an order that has its reservation already (e.g. re-sent after a crash of the
        // orders service): the first reservation stands, and its `inventory.reserved` was recorded then.
        if reserve::find_by_order_in(&self.db, conn, order.order_id)
            .await?
            .is_some()
        {
            return Ok(());
        }
        let mut merged: BTreeMap<&str, i64> = BTreeMap::new();
        let mut invalid: BTreeSet<&str> = BTreeSet::new();
        for line in &order.lines {
            let total = merged.entry(line.sku.as_str()).or_default();
            *total = total.saturating_add(line.quantity);
            if line.quantity < 1 {
                invalid.insert(line.sku.as_str());
            }
        }
        let skus: Vec<&str> = merged.keys().copied().collect();
        let found = products::by_skus_in(&self.db, conn, &skus).await?;
        let mut shortages = Vec::new();
        let mut wanted = Vec::with_capacity(found.len());
        for (sku, requested) in &merged {
            let product = found.iter().find(|p| p.sku == *sku);
            let valid = !invalid.contains(sku) && (1..=QUANTITY_MAX).contains(requested);
            match product {
                Some(product) if valid => wanted.push((product.clone(), *requested)),
                _ => shortages.push(ShortLine {
                    sku: (*sku).to_owned(),
                    requested: *requested,
                    available: 0,
                }),
            }
        }
        if shortages.is_empty() {
            wanted.sort_by_key(|(p, _)| p.id);
            let claim = Claim {
                id: Uuid::now_v7(),
                order_id: order.order_id,
                ttl_secs: i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX),
                actor: None,
                wanted,
            };
            match reserve::reserve_in(&self.db, conn, outbox, &claim).await? {
                Attempt::Created(reservation) => {
                    tally.note(Fact::Reserved(reservation));
                    return Ok(());
                }
                Attempt::Exists => return Ok(()),
                Attempt::Short(lines) => shortages = lines,
            }
        }
        tracing::info!(order_id = %order.order_id, short_lines = shortages.len(), "reservation for an order failed");
        let failed = InventoryReservationFailed {
            order_id: order.order_id,
            shortages: shortages
                .into_iter()
                .map(|line| messaging::events::ShortLine {
                    sku: line.sku,
                    requested: line.requested,
                    available: line.available,
                })
                .collect(),
        };
        outbox.publish(conn, order.order_id, &failed).await?;
        tally.note(Fact::Short(failed.shortages.len()));
        Ok(())
    }

    /// Commits the order's reservation. A hold that lapsed or expired meanwhile is announced as
    /// `inventory.released` (`expired`) for this flow, so the orders service learns the order lost its
    /// stock.
    async fn commit(
        &self,
        conn: &mut PgConnection,
        outbox: Outbox<'_>,
        order_id: Uuid,
    ) -> Result<(), Failure> {
        let Some(reservation) = reserve::find_by_order_in(&self.db, conn, order_id).await? else {
            tracing::warn!(%order_id, "an order was confirmed without a reservation; nothing to commit");
            return Ok(());
        };
        match settle::commit_in(&self.db, conn, outbox, reservation.id).await? {
            Ok(_) => Ok(()),
            // A hold that lapsed just now was expired by `commit_in`, which recorded the release.
            Err(InventoryError::InvalidTransition { .. })
                if reservation.status == ReservationStatus::Expired =>
            {
                let released = InventoryReleased {
                    reservation_id: reservation.id,
                    order_id,
                    reason: ReleaseReason::Expired.as_str().to_owned(),
                };
                outbox.publish(conn, order_id, &released).await?;
                Ok(())
            }
            Err(InventoryError::InvalidTransition { from, .. }) => {
                tracing::warn!(%order_id, from, "an order was confirmed after its reservation ended");
                Ok(())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Releases what the order's reservation still holds; a fully shipped one has nothing to give back.
    async fn release(
        &self,
        conn: &mut PgConnection,
        outbox: Outbox<'_>,
        order_id: Uuid,
        reason: ReleaseReason,
    ) -> Result<(), Failure> {
        let Some(reservation) = reserve::find_by_order_in(&self.db, conn, order_id).await? else {
            return Ok(());
        };
        match settle::release_in(&self.db, conn, outbox, reservation.id, reason).await {
            Ok(_) => Ok(()),
            Err(InventoryError::InvalidTransition { from, .. }) => {
                tracing::info!(%order_id, from, "nothing left to release for the order");
                Ok(())
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Takes a picked-up shipment's lines out of the order's reservation (on_hand and reserved alike).
    async fn consume(
        &self,
        conn: &mut PgConnection,
        change: &ShipmentStatusChanged,
    ) -> Result<(), Failure> {
        let lines = shipment_lines(change)?;
        let Some(reservation) = reserve::find_by_order_in(&self.db, conn, change.order_id).await?
        else {
            return Err(Failure::Reject(format!(
                "shipment {} was picked up for order {}, which has no reservation",
                change.shipment_id, change.order_id
            )));
        };
        let consumption = Consumption {
            reference: change.shipment_id.to_string(),
            lines: lines
                .into_iter()
                .map(|(sku, quantity)| ConsumeLine {
                    sku,
                    warehouse_id: change.warehouse_id,
                    // At most QUANTITY_MAX, checked by `shipment_lines`.
                    quantity: i32::try_from(quantity).unwrap_or(i32::MAX),
                })
                .collect(),
            actor: None,
        };
        settle::consume_in(&self.db, conn, reservation.id, &consumption).await?;
        Ok(())
    }

    /// Puts a returned shipment's lines back into stock at its warehouse.
    async fn restock(
        &self,
        conn: &mut PgConnection,
        outbox: Outbox<'_>,
        change: &ShipmentStatusChanged,
    ) -> Result<(), Failure> {
        let lines = shipment_lines(change)?;
        let Some(warehouse_id) = change.warehouse_id else {
            return Err(Failure::Reject(format!(
                "returned shipment {} names no warehouse",
                change.shipment_id
            )));
        };
        let returned = Return {
            shipment_id: change.shipment_id,
            order_id: change.order_id,
            warehouse_id,
            lines,
        };
        if !returns::restock_in(&self.db, conn, outbox, &returned).await? {
            tracing::debug!(shipment_id = %change.shipment_id, "returned shipment restocked already");
        }
        Ok(())
    }

    /// Drops the cached availability of the skus the event touched, once its effects are visible.
    async fn invalidate(&self, event: &Envelope) {
        let skus: Vec<String> = match event.kind() {
            Some(EventType::OrderCreated) => match event.data_as::<OrderCreated>() {
                Ok(order) => order.lines.into_iter().map(|l| l.sku).collect(),
                Err(_) => return,
            },
            Some(EventType::ShipmentStatusChanged) => {
                match event.data_as::<ShipmentStatusChanged>() {
                    Ok(change) => change.lines.into_iter().map(|l| l.sku).collect(),
                    Err(_) => return,
                }
            }
            Some(
                EventType::OrderConfirmed | EventType::OrderCancelled | EventType::OrderExpired,
            ) => {
                let Some(order_id) = event
                    .data
                    .get("order_id")
                    .and_then(|v| v.as_str())
                    .and_then(|v| Uuid::parse_str(v).ok())
                else {
                    return;
                };
                match self.reserved_skus(order_id).await {
                    Ok(skus) => skus,
                    Err(error) => {
                        // The short availability TTL bounds how long the old value is served.
                        tracing::warn!(error = %error, %order_id, "cannot find the skus to invalidate");
                        return;
                    }
                }
            }
            _ => return,
        };
        caching::skus_changed(&self.cache, skus.iter().map(String::as_str)).await;
    }

    async fn reserved_skus(&self, order_id: Uuid) -> Result<Vec<String>, sqlx::Error> {
        let query = sqlx::query_scalar(
            "SELECT DISTINCT l.sku FROM reservations r \
             JOIN reservation_lines l ON l.reservation_id = r.id WHERE r.order_id = $1",
        )
        .bind(order_id)
        .fetch_all(self.db.pool());
        self.db.timed("inventory.saga_order_skus", query).await
    }
}

/// A shipment's lines as `(sku, quantity)`: at least one, each quantity within 1..=1000000000.
fn shipment_lines(change: &ShipmentStatusChanged) -> Result<Vec<(String, i64)>, Failure> {
    if change.lines.is_empty() {
        return Err(Failure::Reject(format!(
            "shipment {} changed to {} without lines",
            change.shipment_id, change.to
        )));
    }
    change
        .lines
        .iter()
        .map(|line| {
            if (1..=QUANTITY_MAX).contains(&line.quantity) {
                Ok((line.sku.clone(), line.quantity))
            } else {
                Err(Failure::Reject(format!(
                    "shipment {} carries {} of {}",
                    change.shipment_id, line.quantity, line.sku
                )))
            }
        })
        .collect()
}
