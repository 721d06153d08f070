//! One import batch in one transaction: COPY into a temporary staging table, reject what the database
//! knows is wrong, then set-based upserts of products and stock levels with their ledger rows.
//!
//! Locks follow the service's order: product rows (by id), then stock rows (by product, warehouse).

use std::sync::Arc;

use messaging::Messaging;
use platform::db::{Db, copy_rows};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{ImportRowError, Row};
use crate::error::InventoryError;
use crate::events::Outbox;
use crate::repo::{TxFuture, locks, transaction};

#[derive(Debug, Default)]
pub(super) struct BatchOutcome {
    pub applied: u64,
    pub products_created: u64,
    pub movements: u64,
    pub errors: Vec<ImportRowError>,
}

/// The distinct products of the staged rows, the last row of each sku winning.
macro_rules! latest_products {
    () => {
        "(SELECT DISTINCT ON (sku) sku, name, reorder_point FROM import_rows ORDER BY sku, line DESC)"
    };
}

pub(super) async fn apply(
    db: &Db,
    messaging: &Messaging,
    rows: Arc<Vec<Row>>,
    import_id: Uuid,
    actor: Option<Uuid>,
) -> Result<BatchOutcome, InventoryError> {
    let context = (rows, import_id.to_string(), actor, messaging.clone());
    transaction(db, context, apply_body).await
}

/// Builds its outcome from scratch: the body reruns after a deadlock or serialization failure.
fn apply_body(
    db: Db,
    (rows, reference, actor, messaging): (Arc<Vec<Row>>, String, Option<Uuid>, Messaging),
    conn: &mut PgConnection,
) -> TxFuture<'_, BatchOutcome> {
    Box::pin(async move {
        let db = &db;
        let outbox = Outbox::new(&messaging);
        stage(db, conn, &rows).await?;
        let mut outcome = BatchOutcome::default();
        let unknown: Vec<(i64, String)> = timed_rows(
            db,
            conn,
            "inventory.import_unknown_warehouses",
            "DELETE FROM import_rows r WHERE NOT EXISTS \
             (SELECT 1 FROM warehouses w WHERE w.code = r.warehouse_code) \
             RETURNING line, warehouse_code",
        )
        .await?;
        for (line, code) in unknown {
            outcome.errors.push(row_error(
                line,
                "warehouse_code",
                "UNKNOWN_WAREHOUSE",
                format!("no warehouse has code {code}"),
            ));
        }
        // A later row for the same sku and warehouse sets the same level again: only the last one counts.
        let superseded = execute(
            db,
            conn,
            "inventory.import_superseded",
            "DELETE FROM import_rows a USING import_rows b \
             WHERE a.sku = b.sku AND a.warehouse_code = b.warehouse_code AND a.line < b.line",
        )
        .await?;

        let query = sqlx::query_scalar(
            "SELECT p.id FROM products p WHERE p.sku IN (SELECT sku FROM import_rows) \
             ORDER BY p.id FOR NO KEY UPDATE",
        )
        .fetch_all(&mut *conn);
        let existing: Vec<Uuid> = db.timed("inventory.import_lock_products", query).await?;
        locks::lock_products(db, conn, outbox, &existing).await?;
        let query = sqlx::query_as(
            "DELETE FROM import_rows r USING products p, warehouses w, stock_levels s \
             WHERE p.sku = r.sku AND w.code = r.warehouse_code AND s.product_id = p.id \
               AND s.warehouse_id = w.id AND r.quantity < s.reserved AND NOT s.allow_backorder \
             RETURNING r.line, r.quantity, s.reserved",
        )
        .fetch_all(&mut *conn);
        let below: Vec<(i64, i32, i32)> =
            db.timed("inventory.import_below_reserved", query).await?;
        for (line, quantity, reserved) in below {
            outcome.errors.push(row_error(
                line,
                "quantity",
                "STOCK_BELOW_RESERVED",
                format!("quantity {quantity} is below the {reserved} already reserved"),
            ));
        }

        outcome.products_created = execute(
            db,
            conn,
            "inventory.import_products_insert",
            concat!(
                "INSERT INTO products (id, sku, name, reorder_point) ",
                "SELECT uuid_generate_v7(), d.sku, d.name, COALESCE(d.reorder_point, 0) FROM ",
                latest_products!(),
                " d ORDER BY d.sku ON CONFLICT (sku) DO NOTHING"
            ),
        )
        .await?;
        execute(
            db,
            conn,
            "inventory.import_products_update",
            concat!(
                "UPDATE products p SET name = d.name, ",
                "reorder_point = COALESCE(d.reorder_point, p.reorder_point), updated_at = now() FROM ",
                latest_products!(),
                " d WHERE p.sku = d.sku AND (p.name <> d.name ",
                "OR p.reorder_point <> COALESCE(d.reorder_point, p.reorder_point))"
            ),
        )
        .await?;
        execute(
            db,
            conn,
            "inventory.import_stock_insert",
            "INSERT INTO stock_levels (id, product_id, warehouse_id, allow_backorder) \
             SELECT uuid_generate_v7(), p.id, w.id, p.allow_backorder \
             FROM import_rows r JOIN products p ON p.sku = r.sku \
             JOIN warehouses w ON w.code = r.warehouse_code \
             ORDER BY p.id, w.id ON CONFLICT (product_id, warehouse_id) DO NOTHING",
        )
        .await?;
        // One statement sees one snapshot: `old` is read before the UPDATE in the same statement changes
        // it, and the rows are locked, so the ledger delta is exact.
        let movements = sqlx::query(
            "WITH src AS ( \
               SELECT s.id, s.product_id, s.warehouse_id, p.sku, s.on_hand AS old, r.quantity AS new \
               FROM import_rows r JOIN products p ON p.sku = r.sku \
               JOIN warehouses w ON w.code = r.warehouse_code \
               JOIN stock_levels s ON s.product_id = p.id AND s.warehouse_id = w.id \
               WHERE s.on_hand <> r.quantity), \
             updated AS ( \
               UPDATE stock_levels s SET on_hand = src.new, updated_at = now() \
               FROM src WHERE s.id = src.id RETURNING s.id) \
             INSERT INTO movements (id, product_id, warehouse_id, sku, delta, reason, reference, actor, \
                                    resulting_on_hand) \
             SELECT uuid_generate_v7(), product_id, warehouse_id, sku, new - old, 'import', $1, $2, new \
             FROM src",
        )
        .bind(&reference)
        .bind(actor)
        .execute(&mut *conn);
        outcome.movements = db
            .timed("inventory.import_apply", movements)
            .await?
            .rows_affected();

        let query = sqlx::query_scalar(
            "SELECT s.id FROM stock_levels s JOIN products p ON p.id = s.product_id \
             WHERE p.sku IN (SELECT sku FROM import_rows)",
        )
        .fetch_all(&mut *conn);
        let stock_ids: Vec<Uuid> = db.timed("inventory.import_stock_ids", query).await?;
        locks::record_low_stock(db, conn, outbox, &stock_ids).await?;
        let query = sqlx::query_scalar("SELECT count(*) FROM import_rows").fetch_one(&mut *conn);
        let remaining: i64 = db.timed("inventory.import_count", query).await?;
        outcome.applied = u64::try_from(remaining).unwrap_or_default() + superseded;
        Ok(outcome)
    })
}

/// Creates the staging table (dropped at commit) and COPYs the batch into it.
async fn stage(db: &Db, conn: &mut PgConnection, rows: &[Row]) -> Result<(), InventoryError> {
    let create = sqlx::query(
        "CREATE TEMPORARY TABLE import_rows (line bigint NOT NULL, sku text NOT NULL, \
         name text NOT NULL, warehouse_code text NOT NULL, quantity integer NOT NULL, \
         reorder_point integer) ON COMMIT DROP",
    )
    .execute(&mut *conn);
    db.timed("inventory.import_stage", create).await?;
    let values = rows.iter().map(staged_values);
    let copy = copy_rows(
        conn,
        "import_rows (line, sku, name, warehouse_code, quantity, reorder_point)",
        values,
    );
    db.timed("inventory.import_copy", copy).await?;
    Ok(())
}

/// A row as COPY text; a fn rather than a closure so the future stays provably `Send`.
fn staged_values(row: &Row) -> [Option<String>; 6] {
    [
        Some(row.line.to_string()),
        Some(row.sku.as_str().to_owned()),
        Some(row.name.clone()),
        Some(row.warehouse_code.as_str().to_owned()),
        Some(row.quantity.to_string()),
        row.reorder_point.map(|r| r.to_string()),
    ]
}

async fn execute(
    db: &Db,
    conn: &mut PgConnection,
    name: &'static str,
    sql: &'static str,
) -> Result<u64, InventoryError> {
    let query = sqlx::query(sql).execute(&mut *conn);
    Ok(db.timed(name, query).await?.rows_affected())
}

async fn timed_rows(
    db: &Db,
    conn: &mut PgConnection,
    name: &'static str,
    sql: &'static str,
) -> Result<Vec<(i64, String)>, InventoryError> {
    let query = sqlx::query_as(sql).fetch_all(&mut *conn);
    Ok(db.timed(name, query).await?)
}

fn row_error(line: i64, field: &str, code: &str, message: String) -> ImportRowError {
    ImportRowError {
        line: u64::try_from(line).unwrap_or_default(),
        field: Some(field.to_owned()),
        code: code.to_owned(),
        message,
    }
}
