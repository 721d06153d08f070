//! Orders, their lines, allocations and timeline.

use chrono::{DateTime, Utc};
use platform::db::Db;
use sqlx::types::Json;
use sqlx::{AssertSqlSafe, PgConnection, QueryBuilder};
use uuid::Uuid;

use crate::domain::OrderStatus;
use crate::error::OrdersError;
use crate::models::{Address, LineRow, OrderLineView, OrderRow, OrderView, TimelineEntry};

const ORDER_COLUMNS: &str = "id, number, customer_id, status, currency, shipping_address, total_amount, \
     reservation_id, version, created_at, updated_at";

/// A validated order to insert.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub currency: String,
    pub shipping_address: Address,
    /// (sku, quantity, unit price), skus distinct.
    pub lines: Vec<(String, i32, Option<i64>)>,
    pub pending_until: DateTime<Utc>,
    pub created_by: Uuid,
}

impl NewOrder {
    fn total(&self) -> i64 {
        self.lines
            .iter()
            .filter_map(|(_, quantity, price)| {
                price.map(|p| p.saturating_mul(i64::from(*quantity)))
            })
            .fold(0i64, i64::saturating_add)
    }
}

pub async fn insert(
    db: &Db,
    conn: &mut PgConnection,
    order: &NewOrder,
) -> Result<OrderView, OrdersError> {
    let insert = sqlx::query(
        "INSERT INTO orders (id, customer_id, status, currency, shipping_address, total_amount, pending_until, \
         created_by) VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7)",
    )
    .bind(order.id)
    .bind(order.customer_id)
    .bind(&order.currency)
    .bind(Json(&order.shipping_address))
    .bind(order.total())
    .bind(order.pending_until)
    .bind(order.created_by)
    .execute(&mut *conn);
    db.timed("orders.order_insert", insert).await?;
    let mut lines = QueryBuilder::new(
        "INSERT INTO order_lines (order_id, line_no, sku, quantity, unit_price) ",
    );
    lines.push_values(
        order.lines.iter().enumerate(),
        |mut row, (index, (sku, quantity, price))| {
            row.push_bind(order.id)
                .push_bind(index as i32 + 1)
                .push_bind(sku)
                .push_bind(quantity)
                .push_bind(price);
        },
    );
    db.timed(
        "orders.order_lines_insert",
        lines.build().execute(&mut *conn),
    )
    .await?;
    load(db, conn, order.id, false)
        .await?
        .ok_or(OrdersError::NotFound("order"))
}

/// The order with its lines; `lock` takes the row lock that serializes every change of the order.
pub async fn load(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    lock: bool,
) -> Result<Option<OrderView>, OrdersError> {
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let query = sqlx::query_as::<_, OrderRow>(AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn);
    let Some(row) = db.timed("orders.order_load", query).await? else {
        return Ok(None);
    };
    let mut lines = lines_of(db, conn, &[id]).await?;
    Ok(Some(row.into_view(lines.remove(&id).unwrap_or_default())))
}

async fn lines_of(
    db: &Db,
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<OrderLineView>>, OrdersError> {
    let query = sqlx::query_as::<_, LineRow>(
        "SELECT order_id, sku, quantity, unit_price, quantity_shipped, quantity_delivered, quantity_returned, \
         quantity_cancelled FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no",
    )
    .bind(ids)
    .fetch_all(&mut *conn);
    let mut by_order: std::collections::HashMap<Uuid, Vec<OrderLineView>> =
        std::collections::HashMap::new();
    for row in db.timed("orders.order_lines", query).await? {
        by_order.entry(row.order_id).or_default().push(row.into());
    }
    Ok(by_order)
}

/// Sets the status (the caller checked the machine) and bumps the version.
pub async fn set_status(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    status: OrderStatus,
) -> Result<(), OrdersError> {
    let query = sqlx::query(
        "UPDATE orders SET status = $2, version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .execute(&mut *conn);
    db.timed("orders.order_status", query).await?;
    Ok(())
}

/// Bumps the version of an order whose representation changed without a status change (its lines'
/// progress), so its `ETag` moves with it.
pub async fn touch(db: &Db, conn: &mut PgConnection, id: Uuid) -> Result<(), OrdersError> {
    let query =
        sqlx::query("UPDATE orders SET version = version + 1, updated_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *conn);
    db.timed("orders.order_touch", query).await?;
    Ok(())
}

/// Records inventory's hold: the reservation and where each sku is held.
pub async fn set_reservation(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    reservation_id: Uuid,
    allocations: &[(String, Uuid, i32)],
) -> Result<(), OrdersError> {
    let query = sqlx::query("UPDATE orders SET reservation_id = $2 WHERE id = $1")
        .bind(id)
        .bind(reservation_id)
        .execute(&mut *conn);
    db.timed("orders.order_reservation", query).await?;
    if allocations.is_empty() {
        return Ok(());
    }
    let mut insert =
        QueryBuilder::new("INSERT INTO order_allocations (order_id, sku, warehouse_id, quantity) ");
    insert.push_values(allocations, |mut row, (sku, warehouse, quantity)| {
        row.push_bind(id)
            .push_bind(sku)
            .push_bind(warehouse)
            .push_bind(quantity);
    });
    insert.push(
        " ON CONFLICT (order_id, sku, warehouse_id) DO UPDATE SET quantity = order_allocations.quantity + EXCLUDED.quantity",
    );
    db.timed(
        "orders.order_allocations_insert",
        insert.build().execute(&mut *conn),
    )
    .await?;
    Ok(())
}

/// Per (sku, warehouse): what inventory holds for the order, and what its live shipments (any but
/// cancelled ones) already take.
pub async fn shippable(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Vec<(String, Uuid, i64, i64)>, OrdersError> {
    let query = sqlx::query_as::<_, (String, Uuid, i64, i64)>(
        "SELECT a.sku, a.warehouse_id, a.quantity::bigint, \
                COALESCE((SELECT sum(l.quantity) FROM shipment_lines l JOIN shipments s ON s.id = l.shipment_id \
                          WHERE s.order_id = a.order_id AND s.warehouse_id = a.warehouse_id \
                            AND l.sku = a.sku AND s.status <> 'cancelled'), 0)::bigint \
         FROM order_allocations a WHERE a.order_id = $1",
    )
    .bind(id)
    .fetch_all(&mut *conn);
    Ok(db.timed("orders.order_shippable", query).await?)
}

/// Which progress counter of the order's lines a shipment moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Shipped,
    Delivered,
    Returned,
    /// Everything not shipped yet will never ship.
    CancelRest,
}

/// Adds `lines` (sku, quantity) to the counter; `CancelRest` ignores `lines` and cancels every unshipped piece.
pub async fn add_progress(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    progress: Progress,
    lines: &[(String, i64)],
) -> Result<(), OrdersError> {
    let column = match progress {
        Progress::Shipped => "quantity_shipped",
        Progress::Delivered => "quantity_delivered",
        Progress::Returned => "quantity_returned",
        Progress::CancelRest => {
            let query = sqlx::query(
                "UPDATE order_lines SET quantity_cancelled = quantity - quantity_shipped WHERE order_id = $1",
            )
            .bind(id)
            .execute(&mut *conn);
            db.timed("orders.order_lines_cancel", query).await?;
            return Ok(());
        }
    };
    let (skus, quantities): (Vec<String>, Vec<i64>) = lines.iter().cloned().unzip();
    let sql = format!(
        "UPDATE order_lines l SET {column} = l.{column} + d.quantity::integer \
         FROM unnest($2::text[], $3::bigint[]) AS d(sku, quantity) \
         WHERE l.order_id = $1 AND l.sku = d.sku"
    );
    let query = sqlx::query(AssertSqlSafe(sql))
        .bind(id)
        .bind(&skus)
        .bind(&quantities)
        .execute(&mut *conn);
    db.timed("orders.order_lines_progress", query).await?;
    Ok(())
}

/// A timeline entry to append.
#[derive(Debug, Clone)]
pub struct Happened {
    pub kind: &'static str,
    pub from: Option<String>,
    pub to: Option<String>,
    pub detail: serde_json::Value,
    pub actor: Option<Uuid>,
}

impl Happened {
    pub fn status(
        from: OrderStatus,
        to: OrderStatus,
        actor: Option<Uuid>,
        detail: serde_json::Value,
    ) -> Self {
        Self {
            kind: "status_changed",
            from: Some(from.as_str().to_owned()),
            to: Some(to.as_str().to_owned()),
            detail,
            actor,
        }
    }

    pub fn note(kind: &'static str, actor: Option<Uuid>, detail: serde_json::Value) -> Self {
        Self {
            kind,
            from: None,
            to: None,
            detail,
            actor,
        }
    }
}

pub async fn append_timeline(
    db: &Db,
    conn: &mut PgConnection,
    order_id: Uuid,
    happened: Happened,
) -> Result<(), OrdersError> {
    let query = sqlx::query(
        "INSERT INTO order_events (id, order_id, kind, from_status, to_status, detail, actor_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(Uuid::now_v7())
    .bind(order_id)
    .bind(happened.kind)
    .bind(happened.from)
    .bind(happened.to)
    .bind(happened.detail)
    .bind(happened.actor)
    .execute(&mut *conn);
    db.timed("orders.timeline_append", query).await?;
    Ok(())
}

pub async fn timeline(
    db: &Db,
    order_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<TimelineEntry>, OrdersError> {
    let query = sqlx::query_as::<_, TimelineEntry>(
        "SELECT id, kind, from_status, to_status, detail, actor_id, occurred_at FROM order_events \
         WHERE order_id = $1 AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3",
    )
    .bind(order_id)
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(db.pool());
    Ok(db.timed("orders.timeline", query).await?)
}

/// What a list of orders is filtered by; empty means any.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub statuses: Vec<OrderStatus>,
    pub customers: Vec<Uuid>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub after: Option<Uuid>,
    pub limit: u32,
}

/// Up to `limit + 1` orders in id (creation) order.
pub async fn list(db: &Db, filter: &OrderFilter) -> Result<Vec<OrderView>, OrdersError> {
    let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders \
         WHERE (cardinality($1::text[]) = 0 OR status = ANY($1)) \
           AND (cardinality($2::uuid[]) = 0 OR customer_id = ANY($2)) \
           AND ($3::timestamptz IS NULL OR created_at > $3) \
           AND ($4::timestamptz IS NULL OR created_at < $4) \
           AND ($5::uuid IS NULL OR id > $5) \
         ORDER BY id LIMIT $6"
    );
    let mut conn = db.acquire().await?;
    let query = sqlx::query_as::<_, OrderRow>(AssertSqlSafe(sql))
        .bind(&statuses)
        .bind(&filter.customers)
        .bind(filter.created_after)
        .bind(filter.created_before)
        .bind(filter.after)
        .bind(i64::from(filter.limit) + 1)
        .fetch_all(&mut *conn);
    let rows = db.timed("orders.order_list", query).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut lines = lines_of(db, &mut conn, &ids).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let id = row.id;
            row.into_view(lines.remove(&id).unwrap_or_default())
        })
        .collect())
}

/// Locks up to `batch` pending orders past their deadline that no other sweeper holds.
pub async fn lock_lapsed(
    db: &Db,
    conn: &mut PgConnection,
    batch: u32,
) -> Result<Vec<Uuid>, OrdersError> {
    let query = sqlx::query_scalar::<_, Uuid>(
        "SELECT id FROM orders WHERE status = 'pending' AND pending_until <= now() \
         ORDER BY pending_until LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(i64::from(batch))
    .fetch_all(&mut *conn);
    Ok(db.timed("orders.order_lapsed", query).await?)
}
