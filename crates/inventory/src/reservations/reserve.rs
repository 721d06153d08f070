//! Reserving stock for an order: all lines or none, from the best warehouses, at most once per order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cache::Cache;
use messaging::Messaging;
use messaging::events::{InventoryReserved, ReservedLine};
use platform::db::Db;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::caching;
use crate::domain::Sku;
use crate::error::{InventoryError, ShortLine};
use crate::events::Outbox;
use crate::metrics::InventoryMetrics;
use crate::models::{Product, Reservation, ReservationHead, ReservationLine, reservation_columns};
use crate::repo::locks::{self, LockedStock};
use crate::repo::products::{self, ProductKey};
use crate::repo::{TxFuture, transaction};

#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub order_id: Uuid,
    /// One entry per requested line, in request order; a sku may repeat (quantities add up).
    pub lines: Vec<(Sku, i32)>,
    pub ttl: Duration,
    pub actor: Option<Uuid>,
}

/// The reservation, and whether this call created it (`false`: the order already had one).
pub type Reserved = (Reservation, bool);

/// Reserves every line or nothing, recording `inventory.reserved` with the reservation. Idempotent on
/// `order_id`: a second call returns the first reservation, whatever its state. 409 `INSUFFICIENT_STOCK`
/// lists every line stock cannot cover. The cached availability of the reserved products goes after the
/// commit, and the reservation (or the refusal) is counted then.
pub async fn reserve(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    metrics: &InventoryMetrics,
    request: &ReserveRequest,
) -> Result<Reserved, InventoryError> {
    if let Some(existing) = find_by_order(db, request.order_id).await? {
        return Ok((existing, false));
    }
    let wanted = resolve(db, cache, &request.lines).await?;
    let claim = Arc::new(Claim {
        id: Uuid::now_v7(),
        order_id: request.order_id,
        ttl_secs: i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX),
        actor: request.actor,
        wanted,
    });
    let attempt = transaction(db, (claim, messaging.clone()), reserve_body).await;
    // The transaction has ended: a shortage rolled it back and is the final answer.
    if let Err(InventoryError::InsufficientStock(lines)) = &attempt {
        metrics.short(lines.len());
    }
    match attempt? {
        Some(reservation) => {
            metrics.reserved(&reservation);
            caching::reservation_changed(cache, &reservation).await;
            Ok((reservation, true))
        }
        None => {
            let existing = find_by_order(db, request.order_id).await?;
            existing
                .map(|r| (r, false))
                .ok_or(InventoryError::NotFound("reservation"))
        }
    }
}

/// What one reservation attempt needs, owned so the transaction can rerun it.
pub(crate) struct Claim {
    pub id: Uuid,
    pub order_id: Uuid,
    pub ttl_secs: i64,
    pub actor: Option<Uuid>,
    /// Distinct products, in product id order.
    pub wanted: Vec<(Product, i64)>,
}

/// How one attempt to reserve ended.
pub(crate) enum Attempt {
    Created(Reservation),
    /// Another request or event for the same order got there first.
    Exists,
    /// Stock cannot cover these lines; nothing was written (but holds that had lapsed may have been expired
    /// on the way, which stands).
    Short(Vec<ShortLine>),
}

/// `None` when another request for the same order got there first; a shortage is an error, which rolls
/// the claim back.
fn reserve_body(
    db: Db,
    (claim, messaging): (Arc<Claim>, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, Option<Reservation>> {
    Box::pin(async move {
        match reserve_in(&db, conn, Outbox::new(&messaging), &claim).await? {
            Attempt::Created(reservation) => Ok(Some(reservation)),
            Attempt::Exists => Ok(None),
            Attempt::Short(lines) => Err(InventoryError::InsufficientStock(lines)),
        }
    })
}

/// Reserves `claim` on the caller's connection, inside its transaction, and records `inventory.reserved`
/// (aggregate: the order) with the allocation. A shortage leaves nothing of the attempt behind, so the
/// caller may commit (e.g. to record `inventory.reservation_failed` instead).
pub(crate) async fn reserve_in(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    claim: &Claim,
) -> Result<Attempt, InventoryError> {
    // Claim the order first: a concurrent request for the same order waits here, holding nothing, and
    // then finds this reservation instead of reserving twice.
    const CLAIM: &str = concat!(
        "INSERT INTO reservations (id, order_id, expires_at, created_by) ",
        "VALUES ($1, $2, now() + $3 * interval '1 second', $4) ",
        "ON CONFLICT (order_id) DO NOTHING RETURNING ",
        reservation_columns!()
    );
    let insert = sqlx::query_as::<_, ReservationHead>(CLAIM)
        .bind(claim.id)
        .bind(claim.order_id)
        .bind(claim.ttl_secs)
        .bind(claim.actor)
        .fetch_optional(&mut *conn);
    let Some(head) = db.timed("inventory.reservation_claim", insert).await? else {
        return Ok(Attempt::Exists);
    };
    let product_ids: Vec<Uuid> = claim.wanted.iter().map(|(p, _)| p.id).collect();
    let mut rows = locks::lock_products(db, conn, outbox, &product_ids).await?;
    if needs_backorder_row(&claim.wanted, &rows) {
        // Rare: a backorderable product with no stock row yet. Create one in the best warehouse; no
        // other transaction can see the new row, so it cannot break the lock order.
        backorder_rows(db, conn, &claim.wanted, &rows).await?;
        rows = locks::lock_rows(db, conn, &product_ids).await?;
    }
    let pieces = match allocate(&claim.wanted, &rows) {
        Ok(pieces) => pieces,
        Err(InventoryError::InsufficientStock(short)) => {
            // The claim has no lines yet: dropping it undoes the attempt.
            let drop = sqlx::query("DELETE FROM reservations WHERE id = $1")
                .bind(claim.id)
                .execute(&mut *conn);
            db.timed("inventory.reservation_unclaim", drop).await?;
            return Ok(Attempt::Short(short));
        }
        Err(other) => return Err(other),
    };
    // The hot rows stay locked until commit: write everything in one statement and build the answer
    // from what is known rather than reading it back.
    write_lines(db, conn, outbox, claim.id, &pieces).await?;
    let lines: Vec<ReservationLine> = pieces
        .iter()
        .map(|p| ReservationLine {
            sku: p.sku.clone(),
            warehouse_id: p.warehouse_id,
            quantity: p.quantity,
            consumed: 0,
        })
        .collect();
    let reservation = head.with_lines(lines);
    let event = InventoryReserved {
        reservation_id: reservation.id,
        order_id: reservation.order_id,
        lines: reservation
            .lines
            .iter()
            .map(|l| ReservedLine {
                sku: l.sku.clone(),
                warehouse_id: l.warehouse_id,
                quantity: i64::from(l.quantity),
            })
            .collect(),
        expires_at: reservation.expires_at,
    };
    outbox.publish(conn, reservation.order_id, &event).await?;
    Ok(Attempt::Created(reservation))
}

/// Looks up every sku (merging repeated ones), reporting every unknown one (or one asked for in an
/// impossible total) by its line.
async fn resolve(
    db: &Db,
    cache: &Cache,
    lines: &[(Sku, i32)],
) -> Result<Vec<(Product, i64)>, InventoryError> {
    let mut merged: BTreeMap<&Sku, (usize, i64)> = BTreeMap::new();
    for (index, (sku, quantity)) in lines.iter().enumerate() {
        merged.entry(sku).or_insert((index, 0)).1 += i64::from(*quantity);
    }
    let mut wanted = Vec::with_capacity(merged.len());
    let mut unknown = Vec::new();
    for (sku, (index, quantity)) in merged {
        if quantity > crate::domain::QUANTITY_MAX {
            unknown.push(platform::FieldError::new(
                format!("lines[{index}].quantity"),
                "OUT_OF_RANGE",
                "the lines of one sku may add up to at most 1000000000",
            ));
            continue;
        }
        match products::lookup(db, cache, ProductKey::Sku(sku.as_str())).await? {
            Some(product) => wanted.push((product, quantity)),
            None => unknown.push(platform::FieldError::new(
                format!("lines[{index}].sku"),
                "UNKNOWN_SKU",
                "no product has this sku",
            )),
        }
    }
    if !unknown.is_empty() {
        unknown.sort_by(|a, b| a.field.cmp(&b.field));
        return Err(InventoryError::Validation(unknown));
    }
    // The lock order is by product id; allocation order does not matter, but a fixed one keeps it simple.
    wanted.sort_by_key(|(p, _)| p.id);
    Ok(wanted)
}

/// One allocated piece: this much of a product from this stock row.
#[derive(Debug, Clone)]
pub struct Piece {
    pub stock_id: Uuid,
    pub product_id: Uuid,
    pub warehouse_id: Uuid,
    pub sku: String,
    pub quantity: i32,
}

/// Takes each line from active warehouses by priority, then by most available; a backorderable product's
/// remainder goes to its best warehouse. Fails with every short line.
pub fn allocate(
    wanted: &[(Product, i64)],
    rows: &[LockedStock],
) -> Result<Vec<Piece>, InventoryError> {
    let mut pieces = Vec::new();
    let mut short = Vec::new();
    for (product, requested) in wanted {
        let mut candidates: Vec<&LockedStock> = rows
            .iter()
            .filter(|r| r.product_id == product.id && r.active)
            .collect();
        candidates.sort_by(|a, b| {
            (a.priority, std::cmp::Reverse(a.available()), a.warehouse_id).cmp(&(
                b.priority,
                std::cmp::Reverse(b.available()),
                b.warehouse_id,
            ))
        });
        let mut remaining = *requested;
        let take = |stock: &LockedStock, quantity: i64, pieces: &mut Vec<Piece>| {
            pieces.push(Piece {
                stock_id: stock.id,
                product_id: product.id,
                warehouse_id: stock.warehouse_id,
                sku: product.sku.clone(),
                // Bounded by the request, which is at most QUANTITY_MAX per line.
                quantity: i32::try_from(quantity).unwrap_or(i32::MAX),
            });
        };
        for stock in &candidates {
            let quantity = remaining.min(stock.available().max(0));
            if quantity > 0 {
                take(stock, quantity, &mut pieces);
                remaining -= quantity;
            }
        }
        let backorder = candidates.first().filter(|s| s.allow_backorder);
        match backorder {
            // One piece per stock row: the best row may already give its available part.
            Some(best) if remaining > 0 => {
                match pieces.iter_mut().find(|p| p.stock_id == best.id) {
                    Some(piece) => {
                        let total = i64::from(piece.quantity) + remaining;
                        piece.quantity = i32::try_from(total).unwrap_or(i32::MAX);
                    }
                    None => take(best, remaining, &mut pieces),
                }
            }
            _ if remaining > 0 => short.push(ShortLine {
                sku: product.sku.clone(),
                requested: *requested,
                available: candidates.iter().map(|s| s.available().max(0)).sum(),
            }),
            _ => {}
        }
    }
    if short.is_empty() {
        Ok(pieces)
    } else {
        Err(InventoryError::InsufficientStock(short))
    }
}

fn needs_backorder_row(wanted: &[(Product, i64)], rows: &[LockedStock]) -> bool {
    wanted
        .iter()
        .any(|(p, _)| p.allow_backorder && !rows.iter().any(|r| r.product_id == p.id && r.active))
}

async fn backorder_rows(
    db: &Db,
    conn: &mut PgConnection,
    wanted: &[(Product, i64)],
    rows: &[LockedStock],
) -> Result<(), InventoryError> {
    for (product, _) in wanted {
        if !product.allow_backorder || rows.iter().any(|r| r.product_id == product.id && r.active) {
            continue;
        }
        let insert = sqlx::query(
            "INSERT INTO stock_levels (id, product_id, warehouse_id, allow_backorder) \
             SELECT uuid_generate_v7(), $1, w.id, p.allow_backorder FROM warehouses w, products p \
             WHERE w.active AND p.id = $1 ORDER BY w.priority, w.code LIMIT 1 \
             ON CONFLICT (product_id, warehouse_id) DO NOTHING",
        )
        .bind(product.id)
        .execute(&mut *conn);
        db.timed("inventory.stock_backorder_row", insert).await?;
    }
    Ok(())
}

/// Holds the pieces in their stock rows and records them as the reservation's lines, in one statement.
async fn write_lines(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    reservation_id: Uuid,
    pieces: &[Piece],
) -> Result<(), InventoryError> {
    // Line ids in piece order, so reading the lines back by id gives them in this order.
    let ids: Vec<Uuid> = pieces.iter().map(|_| Uuid::now_v7()).collect();
    let stock_ids: Vec<Uuid> = pieces.iter().map(|p| p.stock_id).collect();
    let products: Vec<Uuid> = pieces.iter().map(|p| p.product_id).collect();
    let warehouses: Vec<Uuid> = pieces.iter().map(|p| p.warehouse_id).collect();
    let skus: Vec<&str> = pieces.iter().map(|p| p.sku.as_str()).collect();
    let quantities: Vec<i32> = pieces.iter().map(|p| p.quantity).collect();
    let write = sqlx::query(
        "WITH x AS (SELECT * FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], \
                    $7::int[]) AS x(id, stock_id, product_id, warehouse_id, sku, quantity)), \
         held AS (UPDATE stock_levels s SET reserved = s.reserved + x.quantity, updated_at = now() \
                  FROM x WHERE s.id = x.stock_id) \
         INSERT INTO reservation_lines (id, reservation_id, product_id, warehouse_id, sku, quantity) \
         SELECT id, $1, product_id, warehouse_id, sku, quantity FROM x",
    )
    .bind(reservation_id)
    .bind(&ids)
    .bind(&stock_ids)
    .bind(&products)
    .bind(&warehouses)
    .bind(&skus)
    .bind(&quantities)
    .execute(&mut *conn);
    db.timed("inventory.reservation_hold", write).await?;
    locks::record_low_stock(db, conn, outbox, &stock_ids).await
}

/// A reservation with its lines, read on the caller's connection (inside its transaction).
pub async fn load(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Reservation>, InventoryError> {
    const HEAD: &str = concat!(
        "SELECT ",
        reservation_columns!(),
        " FROM reservations WHERE id = $1"
    );
    let head = sqlx::query_as::<_, ReservationHead>(HEAD)
        .bind(id)
        .fetch_optional(&mut *conn);
    let Some(head) = db.timed("inventory.reservation_find", head).await? else {
        return Ok(None);
    };
    let lines = sqlx::query_as::<_, ReservationLine>(
        "SELECT sku, warehouse_id, quantity, consumed FROM reservation_lines \
         WHERE reservation_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn);
    let lines = db.timed("inventory.reservation_lines", lines).await?;
    Ok(Some(head.with_lines(lines)))
}

pub async fn get(db: &Db, id: Uuid) -> Result<Option<Reservation>, InventoryError> {
    let mut conn = db.acquire().await?;
    load(db, &mut conn, id).await
}

async fn find_by_order(db: &Db, order_id: Uuid) -> Result<Option<Reservation>, InventoryError> {
    let mut conn = db.acquire().await?;
    find_by_order_in(db, &mut conn, order_id).await
}

/// The reservation of an order, read on the caller's connection.
pub(crate) async fn find_by_order_in(
    db: &Db,
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<Reservation>, InventoryError> {
    let query = sqlx::query_scalar::<_, Uuid>("SELECT id FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(&mut *conn);
    match db.timed("inventory.reservation_by_order", query).await? {
        Some(id) => load(db, conn, id).await,
        None => Ok(None),
    }
}
