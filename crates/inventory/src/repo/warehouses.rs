//! Warehouse queries.

use cache::Cache;
use platform::db::Db;
use uuid::Uuid;

use crate::caching;
use crate::domain::WarehouseCode;
use crate::error::InventoryError;
use crate::models::{Warehouse, warehouse_columns};

#[derive(Debug)]
pub struct NewWarehouse {
    pub code: WarehouseCode,
    pub name: String,
    pub address: String,
    pub priority: i32,
}

/// Fields to change; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct WarehousePatch {
    pub name: Option<String>,
    pub address: Option<String>,
    pub priority: Option<i32>,
    pub active: Option<bool>,
}

#[derive(Debug, Default)]
pub struct WarehouseFilter {
    pub codes: Vec<String>,
    pub active: Option<bool>,
}

pub async fn insert(db: &Db, warehouse: &NewWarehouse) -> Result<Warehouse, InventoryError> {
    const SQL: &str = concat!(
        "INSERT INTO warehouses (id, code, name, address, priority) VALUES ($1, $2, $3, $4, $5) ",
        "RETURNING ",
        warehouse_columns!()
    );
    let query = sqlx::query_as::<_, Warehouse>(SQL)
        .bind(Uuid::now_v7())
        .bind(warehouse.code.as_str())
        .bind(&warehouse.name)
        .bind(&warehouse.address)
        .bind(warehouse.priority)
        .fetch_one(db.pool());
    Ok(db.timed("inventory.warehouse_insert", query).await?)
}

pub async fn find(db: &Db, id: Uuid) -> Result<Option<Warehouse>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        warehouse_columns!(),
        " FROM warehouses WHERE id = $1"
    );
    let query = sqlx::query_as::<_, Warehouse>(SQL)
        .bind(id)
        .fetch_optional(db.pool());
    Ok(db.timed("inventory.warehouse_find", query).await?)
}

/// The warehouse, or a 422 naming `field` when there is none: the id came in a request body.
pub async fn require(db: &Db, id: Uuid, field: &str) -> Result<Warehouse, InventoryError> {
    find(db, id).await?.ok_or_else(|| {
        InventoryError::field(field, "UNKNOWN_WAREHOUSE", "no warehouse has this id")
    })
}

/// Changes a warehouse. Availability lists active warehouses by priority, so a change drops it for every
/// product (warehouse changes are rare; their products are not known here).
pub async fn update(
    db: &Db,
    cache: &Cache,
    id: Uuid,
    patch: &WarehousePatch,
) -> Result<Option<Warehouse>, InventoryError> {
    const SQL: &str = concat!(
        "UPDATE warehouses SET name = COALESCE($2, name), address = COALESCE($3, address), ",
        "priority = COALESCE($4, priority), active = COALESCE($5, active), updated_at = now() ",
        "WHERE id = $1 RETURNING ",
        warehouse_columns!()
    );
    let query = sqlx::query_as::<_, Warehouse>(SQL)
        .bind(id)
        .bind(patch.name.as_deref())
        .bind(patch.address.as_deref())
        .bind(patch.priority)
        .bind(patch.active)
        .fetch_optional(db.pool());
    let updated = db.timed("inventory.warehouse_update", query).await?;
    if updated.is_some() {
        caching::all_stock_changed(cache).await;
    }
    Ok(updated)
}

/// Up to `limit` warehouses after `after` in id (creation) order.
pub async fn list(
    db: &Db,
    filter: &WarehouseFilter,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Warehouse>, InventoryError> {
    const SQL: &str = concat!(
        "SELECT ",
        warehouse_columns!(),
        " FROM warehouses WHERE ($1::uuid IS NULL OR id > $1) ",
        "AND (cardinality($2::text[]) = 0 OR code = ANY($2)) ",
        "AND ($3::boolean IS NULL OR active = $3) ORDER BY id LIMIT $4"
    );
    let query = sqlx::query_as::<_, Warehouse>(SQL)
        .bind(after)
        .bind(&filter.codes)
        .bind(filter.active)
        .bind(i64::from(limit))
        .fetch_all(db.pool());
    Ok(db.timed("inventory.warehouse_list", query).await?)
}
