//! Shipments, their lines, tracking events and proofs of delivery.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use platform::db::Db;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, FromRow, PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::{IncidentReason, ProofKind, ShipmentStatus};
use crate::error::OrdersError;
use crate::models::{
    Location, ProofView, ShipmentLineView, ShipmentRow, ShipmentView, TrackingEventView,
    TrackingRow,
};

const SHIPMENT_COLUMNS: &str = "id, order_id, warehouse_id, tracking_number, driver_id, status, proof_required, \
     version, status_at, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct NewShipment {
    pub id: Uuid,
    pub order_id: Uuid,
    pub warehouse_id: Uuid,
    pub tracking_number: String,
    pub proof_required: bool,
    pub lines: Vec<(String, i64)>,
    pub created_by: Uuid,
}

pub async fn insert(
    db: &Db,
    conn: &mut PgConnection,
    shipment: &NewShipment,
) -> Result<(), OrdersError> {
    let insert = sqlx::query(
        "INSERT INTO shipments (id, order_id, warehouse_id, tracking_number, status, proof_required, created_by) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $6)",
    )
    .bind(shipment.id)
    .bind(shipment.order_id)
    .bind(shipment.warehouse_id)
    .bind(&shipment.tracking_number)
    .bind(shipment.proof_required)
    .bind(shipment.created_by)
    .execute(&mut *conn);
    db.timed("orders.shipment_insert", insert).await?;
    let mut lines = QueryBuilder::new("INSERT INTO shipment_lines (shipment_id, sku, quantity) ");
    lines.push_values(&shipment.lines, |mut row, (sku, quantity)| {
        row.push_bind(shipment.id)
            .push_bind(sku)
            .push_bind(i32::try_from(*quantity).unwrap_or(i32::MAX));
    });
    db.timed(
        "orders.shipment_lines_insert",
        lines.build().execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// The shipment row; `lock` takes the row lock. Lock the order first when both are locked.
pub async fn row(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<ShipmentRow>, OrdersError> {
    let sql = format!(
        "SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let query = sqlx::query_as::<_, ShipmentRow>(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn);
    Ok(db.timed("orders.shipment_row", query).await?)
}

/// Which order a shipment belongs to (to lock the order before the shipment).
pub async fn order_of(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Uuid>, OrdersError> {
    let query = sqlx::query_scalar::<_, Uuid>("SELECT order_id FROM shipments WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn);
    Ok(db.timed("orders.shipment_order", query).await?)
}

pub async fn lines(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Vec<ShipmentLineView>, OrdersError> {
    let query = sqlx::query_as::<_, ShipmentLineView>(
        "SELECT sku, quantity FROM shipment_lines WHERE shipment_id = $1 ORDER BY sku",
    )
    .bind(id)
    .fetch_all(&mut *conn);
    Ok(db.timed("orders.shipment_lines", query).await?)
}

pub async fn proof(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<ProofView>, OrdersError> {
    let query = sqlx::query_as::<_, ProofView>(
        "SELECT kind, receiver_name, reference, recorded_by, recorded_at FROM delivery_proofs WHERE shipment_id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn);
    Ok(db.timed("orders.shipment_proof", query).await?)
}

/// The whole shipment view.
pub async fn view(
    db: &Db,
    conn: &mut PgConnection,
    row: ShipmentRow,
) -> Result<ShipmentView, OrdersError> {
    views(db, conn, vec![row])
        .await?
        .pop()
        .ok_or(OrdersError::NotFound("shipment"))
}

#[derive(FromRow)]
struct LineOf {
    shipment_id: Uuid,
    #[sqlx(flatten)]
    line: ShipmentLineView,
}

#[derive(FromRow)]
struct ProofOf {
    shipment_id: Uuid,
    #[sqlx(flatten)]
    proof: ProofView,
}

/// The views of many shipments with two queries in all (their lines, their proofs), not two per shipment.
async fn views(
    db: &Db,
    conn: &mut PgConnection,
    rows: Vec<ShipmentRow>,
) -> Result<Vec<ShipmentView>, OrdersError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let query = sqlx::query_as::<_, LineOf>(
        "SELECT shipment_id, sku, quantity FROM shipment_lines WHERE shipment_id = ANY($1) \
         ORDER BY shipment_id, sku",
    )
    .bind(&ids)
    .fetch_all(&mut *conn);
    let mut lines: HashMap<Uuid, Vec<ShipmentLineView>> = HashMap::new();
    for row in db.timed("orders.shipment_lines_of", query).await? {
        lines.entry(row.shipment_id).or_default().push(row.line);
    }
    let query = sqlx::query_as::<_, ProofOf>(
        "SELECT shipment_id, kind, receiver_name, reference, recorded_by, recorded_at FROM delivery_proofs \
         WHERE shipment_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn);
    let mut proofs: HashMap<Uuid, ProofView> = db
        .timed("orders.shipment_proofs_of", query)
        .await?
        .into_iter()
        .map(|row| (row.shipment_id, row.proof))
        .collect();
    Ok(rows
        .into_iter()
        .map(|row| {
            let (lines, proof) = (
                lines.remove(&row.id).unwrap_or_default(),
                proofs.remove(&row.id),
            );
            row.into_view(lines, proof)
        })
        .collect())
}

pub async fn load(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<ShipmentView>, OrdersError> {
    match row(db, conn, id, false).await? {
        Some(row) => Ok(Some(view(db, conn, row).await?)),
        None => Ok(None),
    }
}

/// The open (not yet picked up) shipments of an order, locked.
pub async fn lock_open_of_order(
    db: &Db,
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<ShipmentRow>, OrdersError> {
    let sql = format!(
        "SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE order_id = $1 AND status IN ('pending', 'assigned') \
         ORDER BY id FOR UPDATE"
    );
    let query = sqlx::query_as::<_, ShipmentRow>(AssertSqlSafe(sql))
        .bind(order_id)
        .fetch_all(&mut *conn);
    Ok(db.timed("orders.shipment_open", query).await?)
}

/// Sets the status (the caller checked the machine), when it was reached, and bumps the version.
pub async fn set_status(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    status: ShipmentStatus,
    at: DateTime<Utc>,
) -> Result<(), OrdersError> {
    let query = sqlx::query(
        "UPDATE shipments SET status = $2, status_at = $3, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(at)
    .execute(&mut *conn);
    db.timed("orders.shipment_status", query).await?;
    Ok(())
}

pub async fn set_driver(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    driver: Uuid,
    status: ShipmentStatus,
) -> Result<(), OrdersError> {
    let query = sqlx::query(
        "UPDATE shipments SET driver_id = $2, status = $3, status_at = now(), version = version + 1, \
         updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(driver)
    .bind(status)
    .execute(&mut *conn);
    db.timed("orders.shipment_driver", query).await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct NewTracking {
    pub status: ShipmentStatus,
    pub reason: Option<IncidentReason>,
    pub description: Option<String>,
    pub location: Option<Location>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub applied: bool,
}

pub async fn insert_tracking(
    db: &Db,
    conn: &mut PgConnection,
    shipment_id: Uuid,
    event: &NewTracking,
) -> Result<TrackingEventView, OrdersError> {
    let query = sqlx::query_as::<_, TrackingRow>(
        "INSERT INTO tracking_events (id, shipment_id, status, reason, description, location, occurred_at, \
         recorded_by, applied) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         RETURNING id, status, reason, description, location, occurred_at, recorded_at, recorded_by, applied",
    )
    .bind(Uuid::now_v7())
    .bind(shipment_id)
    .bind(event.status)
    .bind(event.reason)
    .bind(&event.description)
    .bind(event.location.as_ref().map(Json))
    .bind(event.occurred_at)
    .bind(event.recorded_by)
    .bind(event.applied)
    .fetch_one(&mut *conn);
    Ok(db.timed("orders.tracking_insert", query).await?.into())
}

/// The shipment's tracking events in the order they happened.
pub async fn tracking(db: &Db, shipment_id: Uuid) -> Result<Vec<TrackingEventView>, OrdersError> {
    let query = sqlx::query_as::<_, TrackingRow>(
        "SELECT id, status, reason, description, location, occurred_at, recorded_at, recorded_by, applied \
         FROM tracking_events WHERE shipment_id = $1 ORDER BY occurred_at, id",
    )
    .bind(shipment_id)
    .fetch_all(db.pool());
    Ok(db
        .timed("orders.tracking", query)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

pub async fn by_tracking_number(db: &Db, number: &str) -> Result<Option<ShipmentRow>, OrdersError> {
    let sql = format!("SELECT {SHIPMENT_COLUMNS} FROM shipments WHERE tracking_number = $1");
    let query = sqlx::query_as::<_, ShipmentRow>(AssertSqlSafe(sql))
        .bind(number)
        .fetch_optional(db.pool());
    Ok(db.timed("orders.shipment_by_tracking", query).await?)
}

pub async fn insert_proof(
    db: &Db,
    conn: &mut PgConnection,
    shipment_id: Uuid,
    kind: ProofKind,
    receiver_name: &str,
    reference: &str,
    recorded_by: Uuid,
) -> Result<(), OrdersError> {
    let query = sqlx::query(
        "INSERT INTO delivery_proofs (shipment_id, kind, receiver_name, reference, recorded_by) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(shipment_id)
    .bind(kind)
    .bind(receiver_name)
    .bind(reference)
    .bind(recorded_by)
    .execute(&mut *conn);
    db.timed("orders.proof_insert", query).await?;
    // The proof is part of the shipment: its version (the ETag) moves.
    let query =
        sqlx::query("UPDATE shipments SET version = version + 1, updated_at = now() WHERE id = $1")
            .bind(shipment_id)
            .execute(&mut *conn);
    db.timed("orders.shipment_touch", query).await?;
    Ok(())
}

/// What a list of shipments is filtered by; empty means any.
#[derive(Debug, Clone, Default)]
pub struct ShipmentFilter {
    pub statuses: Vec<ShipmentStatus>,
    pub drivers: Vec<Uuid>,
    pub orders: Vec<Uuid>,
    /// Shipments of these customers' orders.
    pub customers: Vec<Uuid>,
    pub after: Option<Uuid>,
    pub limit: u32,
}

/// Up to `limit + 1` shipments in id (creation) order.
pub async fn list(db: &Db, filter: &ShipmentFilter) -> Result<Vec<ShipmentView>, OrdersError> {
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    // The customers' orders only when asked for: as one arm of an OR the subquery stays a filter run on
    // every shipment in id order, while alone it becomes a join from the customers' orders (by
    // `orders_customer`) to their shipments (by `shipments_order`).
    let by_customer = if filter.customers.is_empty() {
        ""
    } else {
        "AND order_id IN (SELECT id FROM orders WHERE customer_id = ANY($6)) "
    };
    let sql = format!(
        "SELECT {SHIPMENT_COLUMNS} FROM shipments \
         WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
           AND (cardinality($2::uuid[]) = 0 OR driver_id = ANY($2)) \
           AND (cardinality($3::uuid[]) = 0 OR order_id = ANY($3)) \
           AND ($4::uuid IS NULL OR id > $4) \
           {by_customer}\
         ORDER BY id LIMIT $5"
    );
    let mut conn = db.acquire().await?;
    let query = sqlx::query_as::<_, ShipmentRow>(AssertSqlSafe(sql))
        .bind(&statuses)
        .bind(&filter.drivers)
        .bind(&filter.orders)
        .bind(filter.after)
        .bind(i64::from(filter.limit) + 1)
        .bind(&filter.customers)
        .fetch_all(&mut *conn);
    let rows = db.timed("orders.shipment_list", query).await?;
    views(db, &mut conn, rows).await
}
