//! The rest of a reservation's life: release, commit, consume (shipping), and expiry by the sweeper. Every
//! operation is idempotent: repeating it returns the reservation as it is.

use std::collections::BTreeSet;
use std::sync::Arc;

use cache::Cache;
use messaging::Messaging;
use messaging::events::InventoryCommitted;
use platform::db::Db;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::caching;
use crate::domain::{Reason, ReleaseReason, ReservationStatus};
use crate::error::InventoryError;
use crate::events::Outbox;
use crate::models::{Reservation, ReservationHead};
use crate::repo::locks;
use crate::repo::stock::{self, Change};
use crate::repo::{TxFuture, transaction};
use crate::reservations::reserve::load;

#[derive(Debug, FromRow)]
struct LockedHead {
    #[sqlx(flatten)]
    head: ReservationHead,
    /// Held, but past its expiry and not swept yet.
    lapsed: bool,
}

/// Locks the reservation row. Called before any stock row is locked (see `locks` for the order).
async fn lock_head(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<LockedHead, InventoryError> {
    let query = sqlx::query_as::<_, LockedHead>(
        "SELECT id, order_id, status, expires_at, created_at, updated_at, \
         (status = 'held' AND expires_at <= now()) AS lapsed \
         FROM reservations WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *conn);
    db.timed("inventory.reservation_lock", query)
        .await?
        .ok_or(InventoryError::NotFound("reservation"))
}

async fn reload(db: &Db, conn: &mut PgConnection, id: Uuid) -> Result<Reservation, InventoryError> {
    load(db, conn, id)
        .await?
        .ok_or(InventoryError::NotFound("reservation"))
}

/// Gives the held stock back and records `inventory.released` (reason `manual`). Released and expired
/// reservations are returned as they are; a consumed one is 409 `INVALID_TRANSITION`. A committed one may
/// be released (an order cancelled after confirmation): whatever it has not shipped goes back. The cached
/// availability goes after the commit (of every operation here).
pub async fn release_reservation(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    id: Uuid,
) -> Result<Reservation, InventoryError> {
    let reservation = transaction(db, (id, messaging.clone()), release_body).await?;
    caching::reservation_changed(cache, &reservation).await;
    Ok(reservation)
}

fn release_body(
    db: Db,
    (id, messaging): (Uuid, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, Reservation> {
    Box::pin(async move {
        let outbox = Outbox::new(&messaging);
        release_in(&db, conn, outbox, id, ReleaseReason::Manual).await
    })
}

/// [`release_reservation`]'s body on the caller's connection: `inventory.released` carries `reason`, or
/// `expired` when the hold had lapsed already (the reservation then becomes expired, not released).
/// Releasing a released or expired reservation changes nothing and records nothing.
pub(crate) async fn release_in(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    id: Uuid,
    reason: ReleaseReason,
) -> Result<Reservation, InventoryError> {
    let locked = lock_head(db, conn, id).await?;
    let (status, reason) = match locked.head.status {
        ReservationStatus::Released | ReservationStatus::Expired => {
            return reload(db, conn, id).await;
        }
        ReservationStatus::Consumed => {
            return Err(refused(ReservationStatus::Consumed, "released"));
        }
        // Its hold had lapsed already; record what really happened.
        ReservationStatus::Held if locked.lapsed => {
            (ReservationStatus::Expired, ReleaseReason::Expired)
        }
        ReservationStatus::Held | ReservationStatus::Committed => {
            (ReservationStatus::Released, reason)
        }
    };
    locks::settle_holds(db, conn, outbox, &[id], status, reason).await?;
    reload(db, conn, id).await
}

/// Makes a held reservation permanent (it no longer expires), e.g. once its order is paid, and records
/// `inventory.committed`. Committed and consumed ones are returned as they are; released, expired or
/// lapsed ones are 409 `INVALID_TRANSITION` (a lapsed one is expired on the way, with its
/// `inventory.released`).
pub async fn commit_reservation(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    id: Uuid,
) -> Result<Reservation, InventoryError> {
    // A lapsed hold is expired (and that is kept) before the refusal, so the body reports the refusal as
    // a value: an error would roll the expiry back. (Expiring a lapsed hold leaves availability as it
    // was: it already ignored the hold.)
    let reservation = transaction(db, (id, messaging.clone()), commit_body).await??;
    // A committed hold no longer lapses, which availability would otherwise have counted on.
    caching::reservation_changed(cache, &reservation).await;
    Ok(reservation)
}

fn commit_body(
    db: Db,
    (id, messaging): (Uuid, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, Result<Reservation, InventoryError>> {
    Box::pin(async move { commit_in(&db, conn, Outbox::new(&messaging), id).await })
}

/// [`commit_reservation`]'s body on the caller's connection; the inner error is the refusal, which leaves
/// the transaction fit to commit.
pub(crate) async fn commit_in(
    db: &Db,
    conn: &mut PgConnection,
    outbox: Outbox<'_>,
    id: Uuid,
) -> Result<Result<Reservation, InventoryError>, InventoryError> {
    let locked = lock_head(db, conn, id).await?;
    match locked.head.status {
        ReservationStatus::Committed | ReservationStatus::Consumed => {
            Ok(Ok(reload(db, conn, id).await?))
        }
        ReservationStatus::Held if locked.lapsed => {
            let (status, reason) = (ReservationStatus::Expired, ReleaseReason::Expired);
            locks::settle_holds(db, conn, outbox, &[id], status, reason).await?;
            Ok(Err(refused(ReservationStatus::Expired, "committed")))
        }
        ReservationStatus::Held => {
            set_status(db, conn, id, ReservationStatus::Committed).await?;
            let event = InventoryCommitted {
                reservation_id: id,
                order_id: locked.head.order_id,
            };
            outbox.publish(conn, locked.head.order_id, &event).await?;
            Ok(Ok(reload(db, conn, id).await?))
        }
        other => Ok(Err(refused(other, "committed"))),
    }
}

fn refused(from: ReservationStatus, action: &'static str) -> InventoryError {
    InventoryError::InvalidTransition {
        from: from.to_string(),
        action,
    }
}

async fn set_status(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    status: ReservationStatus,
) -> Result<(), InventoryError> {
    let query =
        sqlx::query("UPDATE reservations SET status = $2, updated_at = now() WHERE id = $1")
            .bind(id)
            .bind(status.as_str())
            .execute(&mut *conn);
    db.timed("inventory.reservation_status", query).await?;
    Ok(())
}

/// Part of a reservation that left the warehouse.
#[derive(Debug, Clone)]
pub struct ConsumeLine {
    pub sku: String,
    /// Only lines reserved in this warehouse; `None` takes from any of the sku's lines.
    pub warehouse_id: Option<Uuid>,
    pub quantity: i32,
}

/// A shipment of reserved stock.
#[derive(Debug, Clone)]
pub struct Consumption {
    /// Identifies the shipment: consuming twice with the same reference changes nothing the second time.
    pub reference: String,
    /// What shipped; empty means everything the reservation still holds.
    pub lines: Vec<ConsumeLine>,
    pub actor: Option<Uuid>,
}

#[derive(Debug, FromRow)]
struct HeldLine {
    id: Uuid,
    product_id: Uuid,
    warehouse_id: Uuid,
    sku: String,
    quantity: i32,
    consumed: i32,
}

/// Ships reserved stock: on_hand and reserved both drop by what shipped, each piece writes a `shipment`
/// ledger row, and the reservation becomes consumed once nothing is left (committed until then).
pub async fn consume_reservation(
    db: &Db,
    cache: &Cache,
    id: Uuid,
    consumption: &Consumption,
) -> Result<Reservation, InventoryError> {
    let reservation = transaction(db, (id, Arc::new(consumption.clone())), consume_body).await?;
    caching::reservation_changed(cache, &reservation).await;
    Ok(reservation)
}

fn consume_body(
    db: Db,
    (id, consumption): (Uuid, Arc<Consumption>),
    conn: &mut PgConnection,
) -> TxFuture<'_, Reservation> {
    Box::pin(async move { consume_in(&db, conn, id, &consumption).await })
}

/// [`consume_reservation`]'s body on the caller's connection.
pub(crate) async fn consume_in(
    db: &Db,
    conn: &mut PgConnection,
    id: Uuid,
    consumption: &Consumption,
) -> Result<Reservation, InventoryError> {
    let locked = lock_head(db, conn, id).await?;
    let seen = sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM reservation_consumptions \
         WHERE reservation_id = $1 AND reference = $2)",
    )
    .bind(id)
    .bind(&consumption.reference)
    .fetch_one(&mut *conn);
    if db.timed("inventory.consumption_seen", seen).await? {
        return reload(db, conn, id).await;
    }
    match locked.head.status {
        ReservationStatus::Held if locked.lapsed => {
            return Err(refused(ReservationStatus::Expired, "consumed"));
        }
        ReservationStatus::Held | ReservationStatus::Committed => {}
        other => return Err(refused(other, "consumed")),
    }
    let query = sqlx::query_as::<_, HeldLine>(
        "SELECT id, product_id, warehouse_id, sku, quantity, consumed \
         FROM reservation_lines WHERE reservation_id = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&mut *conn);
    let mut lines = db.timed("inventory.reservation_lines", query).await?;
    let takes = plan(&lines, &consumption.lines)?;
    ship(db, conn, &lines, &takes, consumption).await?;
    let record = sqlx::query(
        "INSERT INTO reservation_consumptions (reservation_id, reference) VALUES ($1, $2)",
    )
    .bind(id)
    .bind(&consumption.reference)
    .execute(&mut *conn);
    db.timed("inventory.consumption_record", record).await?;
    for (index, quantity) in &takes {
        lines[*index].consumed += quantity;
    }
    let status = if lines.iter().all(|l| l.consumed == l.quantity) {
        ReservationStatus::Consumed
    } else {
        ReservationStatus::Committed
    };
    set_status(db, conn, id, status).await?;
    reload(db, conn, id).await
}

/// Takes the planned quantities out of stock (on_hand and reserved alike) with `shipment` ledger rows.
async fn ship(
    db: &Db,
    conn: &mut PgConnection,
    lines: &[HeldLine],
    takes: &[(usize, i32)],
    consumption: &Consumption,
) -> Result<(), InventoryError> {
    let products: Vec<Uuid> = takes
        .iter()
        .map(|(i, _)| lines[*i].product_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = locks::lock_rows(db, conn, &products).await?;
    for (index, quantity) in takes {
        let line = &lines[*index];
        let stock = rows
            .iter()
            .find(|r| r.product_id == line.product_id && r.warehouse_id == line.warehouse_id)
            .ok_or(InventoryError::NotFound("stock level"))?;
        let change = Change {
            stock,
            sku: &line.sku,
            delta: -quantity,
            reserved_delta: -quantity,
            reason: Reason::Shipment,
            reference: Some(&consumption.reference),
            note: None,
            actor: consumption.actor,
        };
        stock::apply(db, conn, &change).await?;
    }
    let line_ids: Vec<Uuid> = takes.iter().map(|(i, _)| lines[*i].id).collect();
    let quantities: Vec<i32> = takes.iter().map(|(_, q)| *q).collect();
    let update = sqlx::query(
        "UPDATE reservation_lines l SET consumed = l.consumed + x.quantity \
         FROM unnest($1::uuid[], $2::int[]) AS x(id, quantity) WHERE l.id = x.id",
    )
    .bind(&line_ids)
    .bind(&quantities)
    .execute(&mut *conn);
    db.timed("inventory.reservation_consume_lines", update)
        .await?;
    Ok(())
}

/// Which reservation lines give how much: `(index into lines, quantity)`.
fn plan(lines: &[HeldLine], wanted: &[ConsumeLine]) -> Result<Vec<(usize, i32)>, InventoryError> {
    let mut left: Vec<i32> = lines.iter().map(|l| l.quantity - l.consumed).collect();
    let mut takes: Vec<(usize, i32)> = Vec::new();
    if wanted.is_empty() {
        return Ok(left
            .iter()
            .enumerate()
            .filter(|(_, q)| **q > 0)
            .map(|(i, q)| (i, *q))
            .collect());
    }
    for want in wanted {
        let mut remaining = want.quantity;
        for (index, line) in lines.iter().enumerate() {
            let matches =
                line.sku == want.sku && want.warehouse_id.is_none_or(|w| w == line.warehouse_id);
            if !matches || remaining == 0 || left[index] == 0 {
                continue;
            }
            let quantity = remaining.min(left[index]);
            left[index] -= quantity;
            remaining -= quantity;
            match takes.iter_mut().find(|(i, _)| *i == index) {
                Some((_, q)) => *q += quantity,
                None => takes.push((index, quantity)),
            }
        }
        if remaining > 0 {
            return Err(InventoryError::OverConsumption {
                sku: want.sku.clone(),
            });
        }
    }
    Ok(takes)
}

/// Expires every held reservation past its time, `batch` per transaction, recording an
/// `inventory.released` (reason `expired`) for each. Safe with several instances sweeping at once: each
/// skips the reservations another has locked.
pub async fn sweep_expired(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    batch: u32,
) -> Result<u64, InventoryError> {
    let mut total = 0u64;
    loop {
        let swept = transaction(db, (batch, messaging.clone()), sweep_body).await?;
        if swept > 0 {
            // Coarse: the batch's products are not at hand, and a sweep that finds anything is rare.
            caching::all_stock_changed(cache).await;
        }
        total += swept;
        if swept < u64::from(batch) {
            return Ok(total);
        }
    }
}

fn sweep_body(
    db: Db,
    (batch, messaging): (u32, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, u64> {
    Box::pin(async move {
        let query = sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM reservations WHERE status = 'held' AND expires_at <= now() \
             ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::from(batch))
        .fetch_all(&mut *conn);
        let ids = db.timed("inventory.sweep_select", query).await?;
        let outbox = Outbox::new(&messaging);
        let (status, reason) = (ReservationStatus::Expired, ReleaseReason::Expired);
        locks::settle_holds(&db, conn, outbox, &ids, status, reason).await?;
        Ok(ids.len() as u64)
    })
}
