//! Bulk import of CSV with the columns `sku`, `name`, `warehouse_code`, `quantity` and optionally
//! `reorder_point`: streamed (memory stays bounded by one batch whatever the file size), parsed row by row,
//! applied in batches of set-based upserts. A bad row is reported with its line number and skipped; the valid
//! rows around it are applied.
//!
//! Columns are matched by the header's names (any order, case and surrounding spaces ignored). A header
//! naming an unknown or repeated column, or missing a required one, fails the whole import before any row
//! is applied. A file whose first row names no column and holds no whole number is still read as a header;
//! a file without a header (its first row holds a quantity) is read in the order above.
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
use crate::metrics::InventoryMetrics;

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
    metrics: &InventoryMetrics,
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
    let mut columns = Columns::positional();
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
            columns = Columns::from_header(&record).map_err(InventoryError::Validation)?;
            continue;
        }
        report.rows_total += 1;
        match parse_row(&record, line, &columns) {
            Ok(row) => pending.push(row),
            Err(errors) => {
                // Rejected without reaching the database: no transaction to wait for.
                metrics.import_rows(0, 1);
                report.rows_failed += 1;
                errors.into_iter().for_each(|e| report.reject(e));
            }
        }
        if pending.len() >= batch_rows {
            apply(
                db,
                cache,
                messaging,
                metrics,
                &mut pending,
                &mut report,
                actor,
            )
            .await?;
        }
    }
    apply(
        db,
        cache,
        messaging,
        metrics,
        &mut pending,
        &mut report,
        actor,
    )
    .await?;
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
    metrics: &InventoryMetrics,
    pending: &mut Vec<Row>,
    report: &mut ImportReport,
    actor: Option<Uuid>,
) -> Result<(), InventoryError> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows = std::sync::Arc::new(std::mem::take(pending));
    let outcome = batch::apply(db, messaging, rows, report.id, actor).await?;
    // The batch committed.
    metrics.import_rows(outcome.applied, outcome.errors.len() as u64);
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

/// The columns of an import, in the order a file without a header has them; the first four are required.
const COLUMNS: [&str; 5] = ["sku", "name", "warehouse_code", "quantity", "reorder_point"];
const REQUIRED_COLUMNS: usize = 4;

/// Where each of [`COLUMNS`] is in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Columns {
    position: [Option<usize>; COLUMNS.len()],
    /// Fields a row may have (the header's).
    width: usize,
    /// Fields a row must have to reach every required column.
    min_width: usize,
}

impl Columns {
    /// A file without a header: the columns in [`COLUMNS`] order, `reorder_point` optional at the end.
    fn positional() -> Self {
        Self {
            position: [Some(0), Some(1), Some(2), Some(3), Some(4)],
            width: COLUMNS.len(),
            min_width: REQUIRED_COLUMNS,
        }
    }

    /// Maps the header's names to columns; every problem with it at once.
    fn from_header(header: &ByteRecord) -> Result<Self, Vec<platform::FieldError>> {
        let mut position = [None; COLUMNS.len()];
        let mut errors = Vec::new();
        for (index, raw) in header.iter().enumerate() {
            let name = String::from_utf8_lossy(raw).trim().to_ascii_lowercase();
            match COLUMNS.iter().position(|column| *column == name) {
                Some(column) if position[column].is_some() => {
                    errors.push(platform::FieldError::new(
                        name,
                        "DUPLICATE_COLUMN",
                        "appears more than once in the header",
                    ))
                }
                Some(column) => position[column] = Some(index),
                None => errors.push(platform::FieldError::new(
                    name,
                    "UNKNOWN_COLUMN",
                    "is not an import column (sku, name, warehouse_code, quantity, reorder_point)",
                )),
            }
        }
        for (column, name) in COLUMNS.iter().enumerate().take(REQUIRED_COLUMNS) {
            if position[column].is_none() {
                errors.push(platform::FieldError::new(
                    *name,
                    "MISSING_COLUMN",
                    "is a required column and missing from the header",
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let min_width = position[..REQUIRED_COLUMNS]
            .iter()
            .flatten()
            .max()
            .map_or(0, |last| last + 1);
        Ok(Self {
            position,
            width: header.len(),
            min_width,
        })
    }
}

/// Whether the first row is a header: it names a column, or has no whole number where every data row has
/// its quantity.
fn is_header(record: &ByteRecord) -> bool {
    let texts: Vec<String> = record
        .iter()
        .map(|field| String::from_utf8_lossy(field).trim().to_ascii_lowercase())
        .collect();
    texts.iter().any(|text| COLUMNS.contains(&text.as_str()))
        || !texts.iter().any(|text| text.parse::<i64>().is_ok())
}

fn parse_row(
    record: &ByteRecord,
    line: u64,
    columns: &Columns,
) -> Result<Row, Vec<ImportRowError>> {
    let error = |field: Option<&str>, code: &str, message: &str| ImportRowError {
        line,
        field: field.map(str::to_owned),
        code: code.to_owned(),
        message: message.to_owned(),
    };
    if !(columns.min_width..=columns.width).contains(&record.len()) {
        return Err(vec![error(
            None,
            "WRONG_FIELD_COUNT",
            &format!(
                "expected {} to {} fields, found {}",
                columns.min_width,
                columns.width,
                record.len()
            ),
        )]);
    }
    let mut errors = Vec::new();
    let mut field = |column: usize| {
        let Some(bytes) = columns.position[column].and_then(|index| record.get(index)) else {
            // An optional column the header or the row leaves out.
            return Some("");
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => Some(text),
            Err(_) => {
                errors.push(error(
                    Some(COLUMNS[column]),
                    "INVALID_ENCODING",
                    "is not valid UTF-8",
                ));
                None
            }
        }
    };
    let texts = [field(0), field(1), field(2), field(3), field(4)];
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
        let row = parse_row(
            &record(&["A-1", "Widget", "ber", "5"]),
            2,
            &Columns::positional(),
        )
        .map_err(|e| e.len());
        assert!(
            matches!(&row, Ok(r) if r.reorder_point.is_none() && r.warehouse_code.as_str() == "BER")
        );
        let row = parse_row(
            &record(&["A-1", "Widget", "BER", "5", "3"]),
            2,
            &Columns::positional(),
        )
        .map_err(|e| e.len());
        assert!(matches!(row, Ok(r) if r.reorder_point == Some(3)));
    }

    #[test]
    fn every_bad_field_of_a_row_is_reported_with_its_line() {
        let errors = parse_row(
            &record(&["bad sku", "", "BER", "-1", "x"]),
            7,
            &Columns::positional(),
        )
        .err()
        .unwrap_or_default();
        let fields: Vec<_> = errors.iter().filter_map(|e| e.field.clone()).collect();
        assert_eq!(fields, ["sku", "name", "quantity", "reorder_point"]);
        assert!(errors.iter().all(|e| e.line == 7));
    }

    #[test]
    fn a_row_with_the_wrong_number_of_fields_is_rejected() {
        let errors = parse_row(&record(&["A", "B", "C"]), 3, &Columns::positional())
            .err()
            .unwrap_or_default();
        assert_eq!(errors[0].code, "WRONG_FIELD_COUNT");
    }

    #[test]
    fn header_names_map_columns_in_any_order_whatever_their_case() {
        let header = record(&[" Quantity ", "WAREHOUSE_CODE", "sku", "Name"]);
        assert!(is_header(&header));
        let columns = Columns::from_header(&header).unwrap_or_else(|e| panic!("{e:?}"));
        let row = parse_row(&record(&["5", "ber", "A-1", "Widget"]), 2, &columns);
        assert!(
            matches!(&row, Ok(r) if r.quantity == 5 && r.sku.as_str() == "A-1" && r.name == "Widget"),
            "{row:?}"
        );
    }

    #[test]
    fn a_header_with_unknown_repeated_or_missing_columns_is_refused_naming_each() {
        let errors = Columns::from_header(&record(&["sku", "qty", "name", "SKU", "colour"]))
            .err()
            .unwrap_or_default();
        let named: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("qty", "UNKNOWN_COLUMN"),
                ("sku", "DUPLICATE_COLUMN"),
                ("colour", "UNKNOWN_COLUMN"),
                ("warehouse_code", "MISSING_COLUMN"),
                ("quantity", "MISSING_COLUMN"),
            ]
        );
    }

    #[test]
    fn a_first_row_with_a_quantity_and_no_column_name_is_data() {
        assert!(!is_header(&record(&["A-1", "Widget", "BER", "5"])));
        assert!(is_header(&record(&["code", "title", "depot", "amount"])));
    }
}
