//! `POST /api/v1/inventory/import` (admin, manager): a CSV body, streamed into the importer.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use futures::TryStreamExt;
use platform::auth::roles::Manager;
use tokio_util::io::StreamReader;

use crate::error::InventoryError;
use crate::import::{self, CountingReader, ImportReport};
use crate::state::AppState;

const CSV_TYPES: &[&str] = &["text/csv", "application/csv"];

/// Bulk-upserts products and stock from CSV.
#[utoipa::path(post, path = "/api/v1/inventory/import", operation_id = "import_csv", tag = "inventory",
    request_body(content = String, content_type = "text/csv",
        description = "`sku,name,warehouse_code,quantity[,reorder_point]` rows; a first row starting with `sku` \
            is a header. Each row sets on_hand of the sku in that warehouse to `quantity`, creating the product \
            when needed."),
    security(("bearer_auth" = [])),
    responses((status = 200, body = ImportReport, description = "valid rows applied; bad ones listed by line"),
        (status = 413, body = platform::Problem), (status = 415, body = platform::Problem)))]
pub async fn import_csv(
    Manager(caller): Manager,
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::Json<ImportReport>, InventoryError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !CSV_TYPES.contains(&content_type.as_str()) {
        return Err(InventoryError::UnsupportedMediaType(
            "CSV with content-type text/csv",
        ));
    }
    let limit = state.config.import_max_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Refuse a declared oversize body before applying any of it; an undeclared one is cut off while read.
    if declared.is_some_and(|n| n > limit) {
        return Err(InventoryError::PayloadTooLarge { limit });
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let input = CountingReader::new(StreamReader::new(stream), limit, |_| {});
    let report = import::import(
        &state.db,
        &state.cache,
        &state.messaging,
        &state.metrics,
        input,
        state.config.import_batch_rows,
        Some(caller.id()),
    )
    .await?;
    Ok(axum::Json(report))
}
