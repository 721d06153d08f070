//! What happens to an order: creation, cancellation, the saga's answers and expiry. Each function runs
//! inside the caller's transaction (a request's, the saga consumer's or the sweeper's) and records its
//! timeline entries and events there, so the change, its history and its events commit together.

use messaging::events::{
    InventoryReservationFailed, InventoryReserved, OrderCancelled, OrderConfirmed, OrderCreated,
    OrderExpired, OrderLine, OrderRejected, ShipmentCancelled,
};
use platform::db::Db;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{self, OrderStatus, ShipmentStatus};
use crate::error::OrdersError;
use crate::events::Recorder;
use crate::metrics::Fact;
use crate::models::OrderView;
use crate::repo::orders::{self, Happened, NewOrder, Progress};
use crate::repo::shipments;

pub async fn create(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    order: &NewOrder,
) -> Result<OrderView, OrdersError> {
    let view = orders::insert(db, conn, order).await?;
    orders::append_timeline(
        db,
        conn,
        view.id,
        Happened {
            kind: "created",
            from: None,
            to: Some(OrderStatus::Pending.as_str().to_owned()),
            detail: json!({"lines": view.lines.len(), "total_amount": view.total_amount}),
            actor: Some(order.created_by),
        },
    )
    .await?;
    let payload = OrderCreated {
        order_id: view.id,
        customer_id: view.customer_id,
        lines: view
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                quantity: l.quantity,
                unit_price: l.unit_price,
            })
            .collect(),
        currency: view.currency.clone(),
    };
    recorder.record(conn, view.id, &payload).await?;
    recorder.note(Fact::OrderCreated);
    Ok(view)
}

/// Moves a locked order to `to` (the machine decides), with its timeline entry and `order.status_changed`.
async fn move_to(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    order: &OrderView,
    to: OrderStatus,
    actor: Option<Uuid>,
    detail: serde_json::Value,
) -> Result<(), OrdersError> {
    order.status.transition(to)?;
    orders::set_status(db, conn, order.id, to).await?;
    orders::append_timeline(
        db,
        conn,
        order.id,
        Happened::status(order.status, to, actor, detail),
    )
    .await?;
    recorder
        .order_status(conn, order.id, order.status, to)
        .await
}

/// Cancels a locked order: whatever has not shipped never will, open shipments are cancelled with it, and
/// `order.cancelled` makes inventory release the hold.
pub async fn cancel(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    order: &OrderView,
    reason: &str,
    actor: Option<Uuid>,
) -> Result<(), OrdersError> {
    move_to(
        db,
        conn,
        recorder,
        order,
        OrderStatus::Cancelled,
        actor,
        json!({"reason": reason}),
    )
    .await?;
    for shipment in shipments::lock_open_of_order(db, conn, order.id).await? {
        shipments::set_status(
            db,
            conn,
            shipment.id,
            ShipmentStatus::Cancelled,
            chrono::Utc::now(),
        )
        .await?;
        // What the shipment carried, so inventory can act on the event alone (as for any other change).
        let lines: Vec<(String, i64)> = shipments::lines(db, conn, shipment.id)
            .await?
            .into_iter()
            .map(|l| (l.sku, l.quantity))
            .collect();
        recorder
            .shipment_status(
                conn,
                &shipment,
                &lines,
                ShipmentStatus::Cancelled,
                Some("order_cancelled".into()),
            )
            .await?;
        orders::append_timeline(
            db,
            conn,
            order.id,
            Happened::note(
                "shipment_cancelled",
                actor,
                json!({"shipment_id": shipment.id, "reason": "order_cancelled"}),
            ),
        )
        .await?;
        let payload = ShipmentCancelled {
            shipment_id: shipment.id,
            order_id: order.id,
            reason: Some("order_cancelled".into()),
        };
        recorder.record(conn, order.id, &payload).await?;
    }
    orders::add_progress(db, conn, order.id, Progress::CancelRest, &[]).await?;
    let payload = OrderCancelled {
        order_id: order.id,
        reason: reason.to_owned(),
        cancelled_by: actor,
    };
    recorder.record(conn, order.id, &payload).await
}

/// The order an answer from inventory is about, locked, if it still waits for one. `None` for an unknown
/// order (logged) and for one that moved on meanwhile, whose timeline then notes the answer as `late`
/// with `details` and the order's status.
async fn awaiting_stock(
    db: &Db,
    conn: &mut PgConnection,
    order_id: Uuid,
    late: &'static str,
    mut details: serde_json::Value,
) -> Result<Option<OrderView>, OrdersError> {
    let Some(order) = orders::load(db, conn, order_id, true).await? else {
        tracing::warn!(%order_id, answer = late, "inventory's answer for an unknown order ignored");
        return Ok(None);
    };
    if order.status == OrderStatus::Pending {
        return Ok(Some(order));
    }
    details["order_status"] = json!(order.status);
    orders::append_timeline(db, conn, order.id, Happened::note(late, None, details)).await?;
    Ok(None)
}

/// `inventory.reserved`: a pending order is confirmed and remembers where its stock is held. An order that
/// moved on meanwhile (expired, cancelled) keeps its status: inventory releases the hold when it handles
/// that order's `order.expired` or `order.cancelled`, which follows this reservation in the order's stream.
pub async fn reserved(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    event: &InventoryReserved,
) -> Result<(), OrdersError> {
    let late = json!({"reservation_id": event.reservation_id});
    let Some(order) = awaiting_stock(db, conn, event.order_id, "late_reservation", late).await?
    else {
        return Ok(());
    };
    let allocations: Vec<(String, Uuid, i32)> = event
        .lines
        .iter()
        .map(|l| {
            (
                l.sku.clone(),
                l.warehouse_id,
                i32::try_from(l.quantity).unwrap_or(i32::MAX),
            )
        })
        .collect();
    orders::set_reservation(db, conn, order.id, event.reservation_id, &allocations).await?;
    move_to(
        db,
        conn,
        recorder,
        &order,
        OrderStatus::Confirmed,
        None,
        json!({"reservation_id": event.reservation_id, "lines": event.lines}),
    )
    .await?;
    let payload = OrderConfirmed {
        order_id: order.id,
        reservation_id: Some(event.reservation_id),
    };
    recorder.record(conn, order.id, &payload).await?;
    // Measured here rather than from the event's time: this is when the customer's order became confirmed.
    let waited = (chrono::Utc::now() - order.created_at)
        .to_std()
        .unwrap_or_default();
    recorder.note(Fact::OrderConfirmedAfter(waited));
    Ok(())
}

/// `inventory.reservation_failed`: a pending order is rejected, its timeline naming every short line.
pub async fn reservation_failed(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    event: &InventoryReservationFailed,
) -> Result<(), OrdersError> {
    let late = json!({"shortages": event.shortages});
    let Some(order) = awaiting_stock(db, conn, event.order_id, "late_rejection", late).await?
    else {
        return Ok(());
    };
    move_to(
        db,
        conn,
        recorder,
        &order,
        OrderStatus::Rejected,
        None,
        json!({"reason": "insufficient_stock", "shortages": event.shortages}),
    )
    .await?;
    let payload = OrderRejected {
        order_id: order.id,
        reason: "insufficient_stock".into(),
        shortages: event.shortages.clone(),
    };
    recorder.record(conn, order.id, &payload).await
}

/// `inventory.released` that the order did not ask for (its hold lapsed, or staff released it): a pending
/// order expires, a confirmed one is cancelled (it can no longer ship). Releases that follow the order's own
/// cancellation or expiry find it settled and only note it.
pub async fn released(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    order_id: Uuid,
    reservation_id: Uuid,
    reason: &str,
) -> Result<(), OrdersError> {
    let Some(order) = orders::load(db, conn, order_id, true).await? else {
        return Ok(());
    };
    match order.status {
        OrderStatus::Pending => expire(db, conn, recorder, &order).await,
        OrderStatus::Confirmed => {
            cancel(
                db,
                conn,
                recorder,
                &order,
                &format!("reservation_{reason}"),
                None,
            )
            .await
        }
        _ => {
            orders::append_timeline(
                db,
                conn,
                order.id,
                Happened::note(
                    "reservation_released",
                    None,
                    json!({"reservation_id": reservation_id, "reason": reason}),
                ),
            )
            .await
        }
    }
}

/// Expires a locked pending order.
pub async fn expire(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    order: &OrderView,
) -> Result<(), OrdersError> {
    move_to(
        db,
        conn,
        recorder,
        order,
        OrderStatus::Expired,
        None,
        json!({"reason": "not confirmed in time"}),
    )
    .await?;
    recorder
        .record(conn, order.id, &OrderExpired { order_id: order.id })
        .await
}

/// After a shipment moved its lines' progress: the order's status follows its lines forward, never
/// backwards; when the status stays, the order's version still moves (its lines changed).
pub async fn follow_lines(
    db: &Db,
    conn: &mut PgConnection,
    recorder: &Recorder<'_>,
    order_id: Uuid,
    actor: Option<Uuid>,
) -> Result<(), OrdersError> {
    let Some(order) = orders::load(db, conn, order_id, false).await? else {
        return Err(OrdersError::NotFound("order"));
    };
    let progress: Vec<_> = order.lines.iter().map(|l| l.progress()).collect();
    if let Some(next) = domain::advance(order.status, &progress) {
        move_to(
            db,
            conn,
            recorder,
            &order,
            next,
            actor,
            json!({"derived_from": "shipments"}),
        )
        .await
    } else {
        orders::touch(db, conn, order.id).await
    }
}
