//! Stock changes that write the ledger (adjustments, transfers) and the stock reads.

use std::sync::Arc;

use cache::Cache;
use messaging::Messaging;
use messaging::events::InventoryAdjusted;
use platform::db::Db;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::caching;
use crate::domain::Reason;
use crate::error::{InventoryError, ShortLine};
use crate::events::Outbox;
use crate::models::{Movement, Product, movement_columns};
use crate::repo::locks::{self, LockedStock};
use crate::repo::{TxFuture, transaction};

/// Creates the stock rows that do not exist yet, each in its own statement outside the caller's
/// transaction: a row inserted inside it would be locked out of the fixed lock order.
pub async fn ensure_rows(db: &Db, pairs: &[(Uuid, Uuid)]) -> Result<(), InventoryError> {
    let mut pairs = pairs.to_vec();
    pairs.sort();
    let (products, warehouses): (Vec<Uuid>, Vec<Uuid>) = pairs.into_iter().unzip();
    let query = sqlx::query(
        "INSERT INTO stock_levels (id, product_id, warehouse_id, allow_backorder) \
         SELECT uuid_generate_v7(), p.id, x.warehouse_id, p.allow_backorder \
         FROM unnest($1::uuid[], $2::uuid[]) AS x(product_id, warehouse_id) \
         JOIN products p ON p.id = x.product_id \
         ON CONFLICT (product_id, warehouse_id) DO NOTHING",
    )
    .bind(&products)
    .bind(&warehouses)
    .execute(db.pool());
    db.timed("inventory.stock_ensure", query).await?;
    Ok(())
}

/// One ledger entry to write together with its change of on_hand.
pub struct Change<'a> {
    pub stock: &'a LockedStock,
    pub sku: &'a str,
    pub delta: i32,
    pub reserved_delta: i32,
    pub reason: Reason,
    pub reference: Option<&'a str>,
    pub note: Option<&'a str>,
    pub actor: Option<Uuid>,
}

/// Changes on_hand (and optionally reserved) of a locked stock row and appends the matching ledger row, so
/// on_hand always equals the sum of the row's movements.
pub async fn apply(
    db: &Db,
    conn: &mut PgConnection,
    change: &Change<'_>,
) -> Result<Movement, InventoryError> {
    const SQL: &str = concat!(
        "WITH updated AS (",
        "  UPDATE stock_levels SET on_hand = on_hand + $3, reserved = reserved + $4, updated_at = now()",
        "  WHERE id = $2 RETURNING product_id, warehouse_id, on_hand) ",
        "INSERT INTO movements (id, product_id, warehouse_id, sku, delta, reason, reference, note, actor, ",
        "resulting_on_hand) SELECT $1, product_id, warehouse_id, $5, $3, $6, $7, $8, $9, on_hand FROM updated ",
        "RETURNING ",
        movement_columns!()
    );
    let query = sqlx::query_as::<_, Movement>(SQL)
        .bind(Uuid::now_v7())
        .bind(change.stock.id)
        .bind(change.delta)
        .bind(change.reserved_delta)
        .bind(change.sku)
        .bind(change.reason.as_str())
        .bind(change.reference)
        .bind(change.note)
        .bind(change.actor)
        .fetch_one(&mut *conn);
    Ok(db.timed("inventory.stock_apply", query).await?)
}

#[derive(Debug, Clone)]
pub struct Adjustment {
    pub product: Product,
    pub warehouse_id: Uuid,
    pub delta: i32,
    pub reason: Reason,
    pub note: Option<String>,
    pub actor: Uuid,
}

/// An applied adjustment: its ledger row and the stock row's new levels.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdjustmentResult {
    pub movement: Movement,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

/// Changes on_hand by `delta` and records `inventory.adjusted`; 409 when it would fall below zero or below
/// what is reserved. The cached availability goes after the commit.
pub async fn adjust(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    adjustment: &Adjustment,
) -> Result<AdjustmentResult, InventoryError> {
    ensure_rows(db, &[(adjustment.product.id, adjustment.warehouse_id)]).await?;
    let context = (Arc::new(adjustment.clone()), messaging.clone());
    let result = transaction(db, context, adjust_body).await;
    // Also on a refusal: `ensure_rows` may have committed a new (empty) warehouse row all the same.
    caching::stock_changed(cache, &[adjustment.product.id]).await;
    result
}

fn adjust_body(
    db: Db,
    (adjustment, messaging): (Arc<Adjustment>, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, AdjustmentResult> {
    Box::pin(async move {
        let outbox = Outbox::new(&messaging);
        let rows = locks::lock_products(&db, conn, outbox, &[adjustment.product.id]).await?;
        let stock = find_row(&rows, adjustment.warehouse_id)?;
        let on_hand = i64::from(stock.on_hand) + i64::from(adjustment.delta);
        if on_hand < 0 {
            return Err(InventoryError::NegativeStock { on_hand });
        }
        let reserved = i64::from(stock.reserved);
        if on_hand < reserved && !stock.allow_backorder {
            return Err(InventoryError::StockBelowReserved { on_hand, reserved });
        }
        let change = Change {
            stock,
            sku: &adjustment.product.sku,
            delta: adjustment.delta,
            reserved_delta: 0,
            reason: adjustment.reason,
            reference: None,
            note: adjustment.note.as_deref(),
            actor: Some(adjustment.actor),
        };
        let movement = apply(&db, conn, &change).await?;
        let event = adjusted(&change, adjustment.product.id, adjustment.reason.as_str());
        outbox.publish(conn, adjustment.product.id, &event).await?;
        locks::record_low_stock(&db, conn, outbox, &[stock.id]).await?;
        Ok(AdjustmentResult {
            on_hand,
            reserved,
            available: on_hand - reserved,
            movement,
        })
    })
}

/// The `inventory.adjusted` of an applied change (aggregate: the product).
pub(crate) fn adjusted(change: &Change<'_>, product_id: Uuid, reason: &str) -> InventoryAdjusted {
    InventoryAdjusted {
        product_id,
        sku: change.sku.to_owned(),
        warehouse_id: change.stock.warehouse_id,
        delta: i64::from(change.delta),
        reason: reason.to_owned(),
        on_hand: i64::from(change.stock.on_hand) + i64::from(change.delta),
        reserved: i64::from(change.stock.reserved) + i64::from(change.reserved_delta),
    }
}

pub(crate) fn find_row(
    rows: &[LockedStock],
    warehouse_id: Uuid,
) -> Result<&LockedStock, InventoryError> {
    // ensure_rows created it; only a concurrent deletion (which the service never does) could remove it.
    rows.iter()
        .find(|r| r.warehouse_id == warehouse_id)
        .ok_or(InventoryError::NotFound("stock level"))
}

#[derive(Debug, Clone)]
pub struct Transfer {
    pub product: Product,
    pub from_warehouse_id: Uuid,
    pub to_warehouse_id: Uuid,
    pub quantity: i32,
    pub actor: Uuid,
}

/// A completed transfer: both ledger rows carry its id as their reference.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransferResult {
    pub id: Uuid,
    pub sku: String,
    pub from_warehouse_id: Uuid,
    pub to_warehouse_id: Uuid,
    pub quantity: i32,
    /// The `transfer_out` row, then the `transfer_in` row.
    pub movements: Vec<Movement>,
}

/// Moves available (unreserved) stock between warehouses in one transaction, recording an
/// `inventory.adjusted` (reason `transfer`) for each side; the cached availability goes after the commit.
pub async fn transfer(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    transfer: &Transfer,
) -> Result<TransferResult, InventoryError> {
    let product_id = transfer.product.id;
    ensure_rows(
        db,
        &[
            (product_id, transfer.from_warehouse_id),
            (product_id, transfer.to_warehouse_id),
        ],
    )
    .await?;
    let context = (
        Uuid::now_v7(),
        Arc::new(transfer.clone()),
        messaging.clone(),
    );
    let result = transaction(db, context, transfer_body).await;
    // Also on a refusal: `ensure_rows` may have committed new (empty) warehouse rows all the same.
    caching::stock_changed(cache, &[product_id]).await;
    result
}

fn transfer_body(
    db: Db,
    (id, transfer, messaging): (Uuid, Arc<Transfer>, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, TransferResult> {
    Box::pin(async move {
        let outbox = Outbox::new(&messaging);
        let reference = id.to_string();
        let sku = transfer.product.sku.as_str();
        let product_id = transfer.product.id;
        let rows = locks::lock_products(&db, conn, outbox, &[product_id]).await?;
        let source = find_row(&rows, transfer.from_warehouse_id)?;
        let target = find_row(&rows, transfer.to_warehouse_id)?;
        let available = source.available().max(0);
        if i64::from(transfer.quantity) > available {
            return Err(InventoryError::InsufficientStock(vec![ShortLine {
                sku: sku.to_owned(),
                requested: i64::from(transfer.quantity),
                available,
            }]));
        }
        let mut movements = Vec::with_capacity(2);
        let mut events = Vec::with_capacity(2);
        for (stock, delta, reason) in [
            (source, -transfer.quantity, Reason::TransferOut),
            (target, transfer.quantity, Reason::TransferIn),
        ] {
            let change = Change {
                stock,
                sku,
                delta,
                reserved_delta: 0,
                reason,
                reference: Some(&reference),
                note: None,
                actor: Some(transfer.actor),
            };
            movements.push(apply(&db, conn, &change).await?);
            events.push((product_id, adjusted(&change, product_id, "transfer")));
        }
        outbox.publish_all(conn, &events).await?;
        locks::record_low_stock(&db, conn, outbox, &[source.id, target.id]).await?;
        Ok(TransferResult {
            id,
            sku: sku.to_owned(),
            from_warehouse_id: transfer.from_warehouse_id,
            to_warehouse_id: transfer.to_warehouse_id,
            quantity: transfer.quantity,
            movements,
        })
    })
}
