//! Returned shipments: what comes back goes into on_hand at the warehouse it left from, once per shipment.

use std::collections::BTreeMap;

use platform::db::Db;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::{QUANTITY_MAX, Reason};
use crate::error::InventoryError;
use crate::events::Outbox;
use crate::repo::locks;
use crate::repo::products;
use crate::repo::stock::{self, Change};

/// A shipment that came back, and what it carried.
#[derive(Debug, Clone)]
pub struct Return {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub warehouse_id: Uuid,
    /// `(sku, quantity)`, each quantity at least 1; a sku may repeat (quantities add up).
    pub lines: Vec<(String, i64)>,
}

/// Puts the returned lines back into on_hand at the shipment's warehouse, each with a `return` ledger row
/// referencing the shipment and an `inventory.adjusted` (reason `return`). Idempotent per shipment: a
/// second call changes nothing and returns `false`. An unknown sku is
/// `NotFound("product")`, an unknown warehouse `NotFound("warehouse")`.
pub(crate) async fn restock_in(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    returned: &Return,
) -> Result<bool, InventoryError> {
    let mut merged: BTreeMap<&str, i64> = BTreeMap::new();
    for (sku, quantity) in &returned.lines {
        *merged.entry(sku.as_str()).or_default() += quantity;
    }
    if let Some((sku, _)) = merged.iter().find(|(_, q)| **q > QUANTITY_MAX) {
        return Err(InventoryError::field(
            "lines",
            "OUT_OF_RANGE",
            &format!("the lines of {sku} add up to more than 1000000000"),
        ));
    }
    let record = sqlx::query(
        "INSERT INTO shipment_returns (shipment_id, order_id, warehouse_id) VALUES ($1, $2, $3) \
         ON CONFLICT (shipment_id) DO NOTHING",
    )
    .bind(returned.shipment_id)
    .bind(returned.order_id)
    .bind(returned.warehouse_id)
    .execute(&mut *conn);
    if db
        .timed("inventory.return_record", record)
        .await?
        .rows_affected()
        == 0
    {
        return Ok(false);
    }
    let skus: Vec<&str> = merged.keys().copied().collect();
    let found = products::by_skus_in(db, conn, &skus).await?;
    if found.len() != skus.len() {
        return Err(InventoryError::NotFound("product"));
    }
    let mut product_ids: Vec<Uuid> = found.iter().map(|p| p.id).collect();
    product_ids.sort();
    // The rows usually exist (the stock left from them); a new one is invisible to other transactions
    // until commit, so creating it here cannot break the lock order.
    let insert = sqlx::query(
        "INSERT INTO stock_levels (id, product_id, warehouse_id, allow_backorder) \
         SELECT uuid_generate_v7(), p.id, w.id, p.allow_backorder FROM products p, warehouses w \
         WHERE p.id = ANY($1) AND w.id = $2 ORDER BY p.id \
         ON CONFLICT (product_id, warehouse_id) DO NOTHING",
    )
    .bind(&product_ids)
    .bind(returned.warehouse_id)
    .execute(&mut *conn);
    db.timed("inventory.return_stock_rows", insert).await?;
    let rows = locks::lock_products(db, conn, outbox, &product_ids).await?;
    let reference = returned.shipment_id.to_string();
    let mut events = Vec::with_capacity(found.len());
    let mut stock_ids = Vec::with_capacity(found.len());
    for product in &found {
        let stock = rows
            .iter()
            .find(|r| r.product_id == product.id && r.warehouse_id == returned.warehouse_id)
            .ok_or(InventoryError::NotFound("warehouse"))?;
        let quantity = merged
            .get(product.sku.as_str())
            .copied()
            .unwrap_or_default();
        let change = Change {
            stock,
            sku: &product.sku,
            // At most QUANTITY_MAX, checked above.
            delta: i32::try_from(quantity).unwrap_or(i32::MAX),
            reserved_delta: 0,
            reason: Reason::Return,
            reference: Some(&reference),
            note: None,
            actor: None,
        };
        stock::apply(db, conn, &change).await?;
        events.push((
            product.id,
            stock::adjusted(&change, product.id, Reason::Return.as_str()),
        ));
        stock_ids.push(stock.id);
    }
    outbox.publish_all(conn, &events).await?;
    locks::record_low_stock(db, conn, outbox, &stock_ids).await?;
    Ok(true)
}
