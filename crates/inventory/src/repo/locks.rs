//! Row locking, hold settlement and low-stock recording: the pieces every stock-changing transaction shares.
//!
//! Lock order, which is what keeps concurrent transactions from deadlocking:
//! 1. a reservation row (`FOR UPDATE`) is only ever waited for while holding no stock row;
//! 2. stock rows are always locked in `(product_id, warehouse_id)` order;
//! 3. while holding stock rows, reservation rows are only taken with `SKIP LOCKED`, never waited for.

use std::collections::BTreeSet;

use messaging::events::{InventoryLowStock, InventoryReleased};
use platform::db::Db;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::domain::{ReleaseReason, ReservationStatus};
use crate::error::InventoryError;
use crate::events::Outbox;

/// A stock row locked by the current transaction, with what allocation needs of its warehouse.
#[derive(Debug, Clone, FromRow)]
pub struct LockedStock {
    pub id: Uuid,
    pub product_id: Uuid,
    pub warehouse_id: Uuid,
    pub on_hand: i32,
    pub reserved: i32,
    pub allow_backorder: bool,
    pub priority: i32,
    pub active: bool,
}

impl LockedStock {
    pub fn available(&self) -> i64 {
        i64::from(self.on_hand) - i64::from(self.reserved)
    }
}

/// SQL: the quantity of `s` (a stock_levels alias) still counted in `reserved` by holds that have already
/// expired but were not swept yet. Reads subtract it, so availability ignores expired holds at once.
macro_rules! expired_holds_of_s {
    () => {
        "COALESCE((SELECT sum(l.quantity - l.consumed) \
         FROM reservations r JOIN reservation_lines l ON l.reservation_id = r.id \
         WHERE r.status = 'held' AND r.expires_at <= now() \
         AND l.product_id = s.product_id AND l.warehouse_id = s.warehouse_id), 0)"
    };
}
pub(crate) use expired_holds_of_s;

const LOCK_ROWS: &str = "SELECT s.id, s.product_id, s.warehouse_id, s.on_hand, s.reserved, \
     s.allow_backorder, w.priority, w.active \
     FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id \
     WHERE s.product_id = ANY($1) ORDER BY s.product_id, s.warehouse_id FOR UPDATE OF s";

/// Locks every stock row of `products` in the fixed order, after releasing the expired holds on them, so
/// the rows returned count only live holds. Holds another transaction is settling are skipped: it is
/// releasing them anyway, and waiting for it here could deadlock. Each hold expired here is announced
/// (`inventory.released`, reason `expired`) as an event of its own order's flow.
pub async fn lock_products(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    products: &[Uuid],
) -> Result<Vec<LockedStock>, InventoryError> {
    // Expired holds on these products may also hold other products; lock those rows too, in the same
    // single ordered statement, so releasing the holds needs no lock taken out of order.
    let query = sqlx::query_scalar(
        "SELECT DISTINCT l.product_id FROM reservations r \
         JOIN reservation_lines l ON l.reservation_id = r.id \
         WHERE r.status = 'held' AND r.expires_at <= now() AND EXISTS ( \
           SELECT 1 FROM reservation_lines m WHERE m.reservation_id = r.id AND m.product_id = ANY($1))",
    )
    .bind(products)
    .fetch_all(&mut *conn);
    let touched: Vec<Uuid> = db.timed("inventory.expired_holds_touching", query).await?;
    if touched.is_empty() {
        return lock_rows(db, conn, products).await;
    }
    let all: Vec<Uuid> = products
        .iter()
        .chain(&touched)
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    lock_rows(db, conn, &all).await?;
    let query = sqlx::query_scalar(
        "SELECT r.id FROM reservations r \
         WHERE r.status = 'held' AND r.expires_at <= now() \
           AND EXISTS (SELECT 1 FROM reservation_lines l \
                       WHERE l.reservation_id = r.id AND l.product_id = ANY($1)) \
           AND NOT EXISTS (SELECT 1 FROM reservation_lines l \
                           WHERE l.reservation_id = r.id AND NOT (l.product_id = ANY($2))) \
         FOR UPDATE SKIP LOCKED",
    )
    .bind(products)
    .bind(&all)
    .fetch_all(&mut *conn);
    let expired: Vec<Uuid> = db.timed("inventory.lock_expired_holds", query).await?;
    settle_holds(
        db,
        conn,
        outbox.detached(),
        &expired,
        ReservationStatus::Expired,
        ReleaseReason::Expired,
    )
    .await?;
    // Re-read: settling changed `reserved`. The rows are ours already, so this waits for nobody.
    lock_rows(db, conn, products).await
}

/// Locks every stock row of `products` in the fixed order and returns them.
pub async fn lock_rows(
    db: &Db,
    conn: &mut PgConnection,
    products: &[Uuid],
) -> Result<Vec<LockedStock>, InventoryError> {
    let query = sqlx::query_as::<_, LockedStock>(LOCK_ROWS)
        .bind(products)
        .fetch_all(&mut *conn);
    Ok(db.timed("inventory.lock_stock", query).await?)
}

/// Ends holds the caller has locked: gives back to `reserved` what their lines still hold, moves them to
/// `status` (released or expired) and records an `inventory.released` with `reason` for each. Returns the
/// stock rows changed.
pub async fn settle_holds(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    reservations: &[Uuid],
    status: ReservationStatus,
    reason: ReleaseReason,
) -> Result<Vec<Uuid>, InventoryError> {
    if reservations.is_empty() {
        return Ok(Vec::new());
    }
    // Lock before updating: a multi-row UPDATE locks in scan order, which could invert the fixed order.
    let lock = sqlx::query(
        "SELECT s.id FROM stock_levels s \
         WHERE (s.product_id, s.warehouse_id) IN ( \
           SELECT product_id, warehouse_id FROM reservation_lines WHERE reservation_id = ANY($1)) \
         ORDER BY s.product_id, s.warehouse_id FOR UPDATE OF s",
    )
    .bind(reservations)
    .fetch_all(&mut *conn);
    db.timed("inventory.lock_hold_stock", lock).await?;
    let update = sqlx::query_scalar(
        "UPDATE stock_levels s SET reserved = s.reserved - x.qty, updated_at = now() \
         FROM (SELECT product_id, warehouse_id, sum(quantity - consumed)::int AS qty \
               FROM reservation_lines WHERE reservation_id = ANY($1) GROUP BY 1, 2) x \
         WHERE s.product_id = x.product_id AND s.warehouse_id = x.warehouse_id AND x.qty > 0 \
         RETURNING s.id",
    )
    .bind(reservations)
    .fetch_all(&mut *conn);
    let changed: Vec<Uuid> = db.timed("inventory.return_holds", update).await?;
    let mark = sqlx::query_as::<_, (Uuid, Uuid)>(
        "UPDATE reservations SET status = $2, updated_at = now() WHERE id = ANY($1) \
         RETURNING id, order_id",
    )
    .bind(reservations)
    .bind(status.as_str())
    .fetch_all(&mut *conn);
    let settled = db.timed("inventory.settle_reservations", mark).await?;
    let released: Vec<(Uuid, InventoryReleased)> = settled
        .into_iter()
        .map(|(reservation_id, order_id)| {
            let event = InventoryReleased {
                reservation_id,
                order_id,
                reason: reason.as_str().to_owned(),
            };
            (order_id, event)
        })
        .collect();
    outbox.publish_all(conn, &released).await?;
    record_low_stock(db, conn, outbox, &changed).await?;
    Ok(changed)
}

/// A stock row whose available quantity just fell to or below its product's reorder point.
#[derive(Debug, Clone, FromRow)]
pub struct LowStock {
    pub stock_id: Uuid,
    pub product_id: Uuid,
    pub warehouse_id: Uuid,
    pub sku: String,
    pub available: i32,
    pub reorder_point: i32,
}

/// Recomputes the low-stock flag of the given (locked) stock rows and reports those that just became low.
pub async fn record_low_stock(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    stock_ids: &[Uuid],
) -> Result<(), InventoryError> {
    if stock_ids.is_empty() {
        return Ok(());
    }
    let query = sqlx::query_as::<_, LowStock>(
        "WITH flagged AS ( \
           UPDATE stock_levels s \
           SET low_stock = (s.on_hand - s.reserved) <= p.reorder_point, \
               low_stock_since = CASE WHEN (s.on_hand - s.reserved) <= p.reorder_point THEN now() END \
           FROM products p \
           WHERE s.id = ANY($1) AND p.id = s.product_id \
             AND s.low_stock <> ((s.on_hand - s.reserved) <= p.reorder_point) \
           RETURNING s.id AS stock_id, s.product_id, s.warehouse_id, p.sku, \
                     s.on_hand - s.reserved AS available, p.reorder_point, s.low_stock) \
         SELECT stock_id, product_id, warehouse_id, sku, available, reorder_point \
         FROM flagged WHERE low_stock",
    )
    .bind(stock_ids)
    .fetch_all(&mut *conn);
    let became_low = db.timed("inventory.record_low_stock", query).await?;
    low_stock_reached(conn, outbox, &became_low).await
}

/// The one place a stock row turning low is announced: `inventory.low_stock` (aggregate: the product),
/// recorded in the transaction that caused it. Only the transition is announced, not every change of a
/// row that stays low.
async fn low_stock_reached(
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    became_low: &[LowStock],
) -> Result<(), InventoryError> {
    let events: Vec<(Uuid, InventoryLowStock)> = became_low
        .iter()
        .map(|low| {
            tracing::info!(
                sku = %low.sku,
                product_id = %low.product_id,
                warehouse_id = %low.warehouse_id,
                available = low.available,
                reorder_point = low.reorder_point,
                "stock fell to the reorder point"
            );
            let event = InventoryLowStock {
                product_id: low.product_id,
                sku: low.sku.clone(),
                warehouse_id: low.warehouse_id,
                available: i64::from(low.available),
                reorder_point: i64::from(low.reorder_point),
            };
            (low.product_id, event)
        })
        .collect();
    outbox.publish_all(conn, &events).await
}
