//! Read-only views of stock: availability, stock levels and the ledger. None of them writes, and each
//! subtracts expired-but-unswept holds, so availability ignores an expired hold the moment it lapses.

use cache::Cache;
use chrono::{DateTime, Utc};
use platform::db::Db;
use uuid::Uuid;

use crate::caching::{self, AVAILABILITY_TTL};
use crate::error::InventoryError;
use crate::models::{
    Availability, AvailabilityTotals, Movement, Product, StockLevel, WarehouseAvailability,
    movement_columns,
};
use crate::repo::locks::expired_holds_of_s;

/// The columns of [`StockLevel`] over `stock_levels s`, `products p`, `warehouses w` and [`expired_join`].
macro_rules! level_columns {
    () => {
        "s.id, s.product_id, p.sku, s.warehouse_id, w.code AS warehouse_code, \
         s.on_hand::bigint AS on_hand, (s.reserved - x.expired)::bigint AS reserved, \
         (s.on_hand - s.reserved + x.expired)::bigint AS available, \
         p.reorder_point::bigint AS reorder_point, s.low_stock AS below_reorder, s.low_stock_since, \
         s.updated_at"
    };
}

/// `x.expired`: the expired-but-unswept holds of stock row `s`.
macro_rules! expired_join {
    () => {
        concat!(
            " CROSS JOIN LATERAL (SELECT ",
            expired_holds_of_s!(),
            "::bigint AS expired) x "
        )
    };
}

/// A product's stock per active warehouse (best priority first) and in total, cached briefly (see
/// `caching`).
pub async fn availability(
    db: &Db,
    cache: &Cache,
    product: &Product,
) -> Result<Availability, InventoryError> {
    let (key, tags) = caching::availability_entry(product);
    cache
        .get_or_set(&key, AVAILABILITY_TTL, &tags, || {
            load_availability(db, product)
        })
        .await
}

async fn load_availability(db: &Db, product: &Product) -> Result<Availability, InventoryError> {
    const SQL: &str = concat!(
        "SELECT s.warehouse_id, w.code AS warehouse_code, s.on_hand::bigint AS on_hand, ",
        "(s.reserved - x.expired)::bigint AS reserved, ",
        "(s.on_hand - s.reserved + x.expired)::bigint AS available ",
        "FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id",
        expired_join!(),
        "WHERE s.product_id = $1 AND w.active ORDER BY w.priority, w.code"
    );
    let query = sqlx::query_as::<_, WarehouseAvailability>(SQL)
        .bind(product.id)
        .fetch_all(db.pool());
    let warehouses = db.timed("inventory.availability", query).await?;
    let totals = AvailabilityTotals {
        on_hand: warehouses.iter().map(|w| w.on_hand).sum(),
        reserved: warehouses.iter().map(|w| w.reserved).sum(),
        available: warehouses.iter().map(|w| w.available).sum(),
    };
    Ok(Availability {
        product_id: product.id,
        sku: product.sku.clone(),
        warehouses,
        totals,
    })
}

#[derive(Debug, Default)]
pub struct LevelFilter {
    pub skus: Vec<String>,
    pub warehouse_ids: Vec<Uuid>,
    pub below_reorder: bool,
}

/// Up to `limit` stock levels after `after` in id order.
pub async fn stock_levels(
    db: &Db,
    filter: &LevelFilter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<StockLevel>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        level_columns!(),
        " FROM stock_levels s JOIN products p ON p.id = s.product_id ",
        "JOIN warehouses w ON w.id = s.warehouse_id",
        expired_join!(),
        "WHERE ($1::uuid IS NULL OR s.id > $1) ",
        "AND (cardinality($2::text[]) = 0 OR p.sku = ANY($2)) ",
        "AND (cardinality($3::uuid[]) = 0 OR s.warehouse_id = ANY($3)) ",
        "AND (NOT $4 OR s.low_stock) ORDER BY s.id LIMIT $5"
    );
    let query = sqlx::query_as::<_, StockLevel>(SQL)
        .bind(after)
        .bind(&filter.skus)
        .bind(&filter.warehouse_ids)
        .bind(filter.below_reorder)
        .bind(i64::from(limit))
        .fetch_all(db.pool());
    Ok(db.timed("inventory.stock_levels", query).await?)
}

#[derive(Debug, Default)]
pub struct MovementFilter {
    pub skus: Vec<String>,
    pub warehouse_ids: Vec<Uuid>,
    pub reasons: Vec<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One ledger row.
pub async fn movement(db: &Db, id: Uuid) -> Result<Option<Movement>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        movement_columns!(),
        " FROM movements WHERE id = $1"
    );
    let query = sqlx::query_as::<_, Movement>(SQL)
        .bind(id)
        .fetch_optional(db.pool());
    Ok(db.timed("inventory.movement", query).await?)
}

/// Up to `limit` ledger rows after `after` in id (that is, time) order.
pub async fn movements(
    db: &Db,
    filter: &MovementFilter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Movement>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        movement_columns!(),
        " FROM movements WHERE ($1::uuid IS NULL OR id > $1) ",
        "AND (cardinality($2::text[]) = 0 OR sku = ANY($2)) ",
        "AND (cardinality($3::uuid[]) = 0 OR warehouse_id = ANY($3)) ",
        "AND (cardinality($4::text[]) = 0 OR reason = ANY($4)) ",
        "AND ($5::timestamptz IS NULL OR created_at >= $5) ",
        "AND ($6::timestamptz IS NULL OR created_at < $6) ORDER BY id LIMIT $7"
    );
    let query = sqlx::query_as::<_, Movement>(SQL)
        .bind(after)
        .bind(&filter.skus)
        .bind(&filter.warehouse_ids)
        .bind(&filter.reasons)
        .bind(filter.since)
        .bind(filter.until)
        .bind(i64::from(limit))
        .fetch_all(db.pool());
    Ok(db.timed("inventory.movements", query).await?)
}
