//! Bulk import of `sku,name,warehouse_code,quantity[,reorder_point]` CSV: streamed (memory stays bounded
//! by one batch whatever the file size), parsed row by row, applied in batches of set-based upserts. A bad
//! row is reported with its line number and skipped; the valid rows around it are applied.
//!
//! Semantics of a row: the product is created (or its name and, when given, reorder point updated) and its
//! on_hand in that warehouse is **set** to `quantity`, with an `import` ledger row for the difference, so
//! importing the same file twice changes nothing the second time. Within a file, a later row for the same
//! sku and warehouse supersedes an earlier one.
//!
//! Events: an import records no `inventory.adjusted` per row. It is a bulk load that may set thousands of
//! levels at once, and one event per row would multiply its cost for consumers that want a running
//! total, not a bulk snapshot (the `import` ledger rows, with the import id as their reference, hold every
//! change). It does record the transitions the saga and the reorder process rely on, which are few:
//! `inventory.low_stock` for each row that turns low, and `inventory.released` (reason `expired`) for
//! lapsed holds expired while locking.

mod batch;
mod reader;

use std::pin::Pin;

use cache::Cache;
use csv_async::{AsyncReaderBuilder, ByteRecord, Trim};
use messaging::Messaging;
use platform::db::Db;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::caching;
use crate::domain::{self, Sku, WarehouseCode};
use crate::error::InventoryError;

pub use reader::{CountingReader, too_large};

/// At most this many row errors are listed; the counts stay exact.
pub const MAX_REPORTED_ERRORS: usize = 1000;

/// One rejected row (a row with several bad fields has one entry per field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportRowError {
    /// 1-based line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// The column at fault, when there is one.
    pub field: Option<String>,
    pub code: String,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Id of the import, the `reference` of its ledger rows.
    pub id: Uuid,
    /// Data rows read (the header not counted).
    pub rows_total: u64,
    pub rows_applied: u64,
    pub rows_failed: u64,
    pub products_created: u64,
    /// Ledger rows written (rows that changed on_hand).
    pub movements: u64,
    /// Row errors in line order, at most 1000.
    pub errors: Vec<ImportRowError>,
    /// More errors happened than are listed.
    pub errors_truncated: bool,
}

impl ImportReport {
    fn reject(&mut self, error: ImportRowError) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        } else {
            self.errors_truncated = true;
        }
    }
}

/// A row that parsed; still to be checked against the database.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub line: u64,
    pub sku: Sku,
    pub name: String,
    pub warehouse_code: WarehouseCode,
    pub quantity: i32,
    pub reorder_point: Option<i32>,
}

/// Reads CSV from `input` and applies it in batches of `batch_rows`, invalidating the cache after each
/// batch commits.
pub async fn import<R: AsyncRead + Send>(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    input: R,
    batch_rows: usize,
    actor: Option<Uuid>,
) -> Result<ImportReport, InventoryError> {
    let input: Pin<Box<R>> = Box::pin(input);
    let mut csv = AsyncReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(Trim::All)
        .create_reader(input);
    let mut report = ImportReport {
        id: Uuid::now_v7(),
        ..ImportReport::default()
    };
    let mut pending: Vec<Row> = Vec::with_capacity(batch_rows);
    let mut record = ByteRecord::new();
    let mut first = true;
    loop {
        let more = csv
            .read_byte_record(&mut record)
            .await
            .map_err(read_error)?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        if std::mem::take(&mut first) && is_header(&record) {
            continue;
        }
        report.rows_total += 1;
        match parse_row(&record, line) {
            Ok(row) => pending.push(row),
            Err(errors) => {
                report.rows_failed += 1;
                errors.into_iter().for_each(|e| report.reject(e));
            }
        }
        if pending.len() >= batch_rows {
            apply(db, cache, messaging, &mut pending, &mut report, actor).await?;
        }
    }
    apply(db, cache, messaging, &mut pending, &mut report, actor).await?;
    report.errors.sort_by_key(|e| e.line);
    tracing::info!(
        import_id = %report.id,
        rows_total = report.rows_total,
        rows_applied = report.rows_applied,
        rows_failed = report.rows_failed,
        "import finished"
    );
    Ok(report)
}

async fn apply(
    db: &Db,
    cache: &Cache,
    messaging: &Messaging,
    pending: &mut Vec<Row>,
    report: &mut ImportReport,
    actor: Option<Uuid>,
) -> Result<(), InventoryError> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows = std::sync::Arc::new(std::mem::take(pending));
    let outcome = batch::apply(db, messaging, rows, report.id, actor).await?;
    if outcome.applied > 0 {
        caching::bulk_import_applied(cache).await;
    }
    report.rows_applied += outcome.applied;
    report.rows_failed += outcome.errors.len() as u64;
    report.products_created += outcome.products_created;
    report.movements += outcome.movements;
    outcome.errors.into_iter().for_each(|e| report.reject(e));
    Ok(())
}

fn read_error(error: csv_async::Error) -> InventoryError {
    match error.into_kind() {
        csv_async::ErrorKind::Io(io) => match too_large(&io) {
            Some(limit) => InventoryError::PayloadTooLarge { limit },
            None => InventoryError::Io(io),
        },
        // With flexible byte records only I/O can fail; anything else is reported as such.
        other => InventoryError::Io(std::io::Error::other(format!("{other:?}"))),
    }
}

fn is_header(record: &ByteRecord) -> bool {
    record
        .get(0)
        .is_some_and(|first| first.eq_ignore_ascii_case(b"sku"))
}

fn parse_row(record: &ByteRecord, line: u64) -> Result<Row, Vec<ImportRowError>> {
    let error = |field: Option<&str>, code: &str, message: &str| ImportRowError {
        line,
        field: field.map(str::to_owned),
        code: code.to_owned(),
        message: message.to_owned(),
    };
    if !(4..=5).contains(&record.len()) {
        return Err(vec![error(
            None,
            "WRONG_FIELD_COUNT",
            &format!(
                "expected 4 or 5 fields (sku,name,warehouse_code,quantity[,reorder_point]), found {}",
                record.len()
            ),
        )]);
    }
    let mut errors = Vec::new();
    let mut field = |index: usize, name: &str| match std::str::from_utf8(&record[index]) {
        Ok(text) => Some(text),
        Err(_) => {
            errors.push(error(Some(name), "INVALID_ENCODING", "is not valid UTF-8"));
            None
        }
    };
    let texts = [
        field(0, "sku"),
        field(1, "name"),
        field(2, "warehouse_code"),
        field(3, "quantity"),
        if record.len() == 5 {
            field(4, "reorder_point")
        } else {
            Some("")
        },
    ];
    let [
        Some(sku),
        Some(name),
        Some(code),
        Some(quantity),
        Some(reorder),
    ] = texts
    else {
        return Err(errors);
    };
    let mut bad = |e: platform::FieldError| errors.push(error(Some(&e.field), &e.code, &e.message));
    let sku = Sku::parse(sku, "sku").map_err(&mut bad).ok();
    let name = domain::name(name, "name").map_err(&mut bad).ok();
    let code = WarehouseCode::parse(code, "warehouse_code")
        .map_err(&mut bad)
        .ok();
    let quantity = count(quantity, "quantity").map_err(&mut bad).ok();
    let reorder_point = match reorder {
        "" => Some(None),
        text => count(text, "reorder_point")
            .map(Some)
            .map_err(&mut bad)
            .ok(),
    };
    match (sku, name, code, quantity, reorder_point) {
        (Some(sku), Some(name), Some(warehouse_code), Some(quantity), Some(reorder_point)) => {
            Ok(Row {
                line,
                sku,
                name,
                warehouse_code,
                quantity,
                reorder_point,
            })
        }
        _ => Err(errors),
    }
}

fn count(text: &str, field: &str) -> Result<i32, platform::FieldError> {
    let value = text
        .parse::<i64>()
        .map_err(|_| platform::FieldError::new(field, "INVALID_TYPE", "must be a whole number"))?;
    domain::quantity(value, field, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn a_valid_row_parses_with_or_without_a_reorder_point() {
        let row = parse_row(&record(&["A-1", "Widget", "ber", "5"]), 2).map_err(|e| e.len());
        assert!(
            matches!(&row, Ok(r) if r.reorder_point.is_none() && r.warehouse_code.as_str() == "BER")
        );
        let row = parse_row(&record(&["A-1", "Widget", "BER", "5", "3"]), 2).map_err(|e| e.len());
        assert!(matches!(row, Ok(r) if r.reorder_point == Some(3)));
    }

    #[test]
    fn every_bad_field_of_a_row_is_reported_with_its_line() {
        let errors = parse_row(&record(&["bad sku", "", "BER", "-1", "x"]), 7)
            .err()
            .unwrap_or_default();
        let fields: Vec<_> = errors.iter().filter_map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["sku", "name", "quantity", "reorder_point"]);
        assert!(errors.iter().all(|e| e.line == 7));
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_rejected() {
        let errors = parse_row(&record(&["A", "B", "C"]), 3)
            .err()
            .unwrap_or_default();
        assert_eq!(errors[0].code, "WRONG_FIELD_COUNT");
    }
}
