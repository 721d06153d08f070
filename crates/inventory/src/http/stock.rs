//! Stock: availability (any caller), stock levels and the ledger (staff), adjustments and transfers
//! (admin, manager).

use axum::extract::State;
use chrono::{DateTime, Utc};
use platform::FieldError;
use platform::auth::AuthUser;
use platform::auth::roles::{Manager, Staff};
use platform::created::Created;
use platform::extract::{Json, Path, Query};
use platform::list;
use platform::pagination::{Page, PageParams};
use platform::problem::{check, collect};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{self, Reason, Sku};
use crate::error::InventoryError;
use crate::models::{Availability, Movement, StockLevel};
use crate::repo::products::{self, ProductKey};
use crate::repo::reads::{self, LevelFilter, MovementFilter};
use crate::repo::stock::{self, Adjustment, AdjustmentResult, Transfer, TransferResult};
use crate::repo::warehouses;
use crate::state::AppState;

/// A product's stock per warehouse and in total.
#[utoipa::path(get, path = "/api/v1/inventory/products/{id}/availability", operation_id = "get_availability", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), security(("bearer_auth" = [])),
    responses((status = 200, body = Availability), (status = 404, body = platform::Problem)))]
pub async fn availability(
    _caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Availability>, InventoryError> {
    let product = products::lookup(&state.db, &state.cache, ProductKey::Id(id))
        .await?
        .ok_or(InventoryError::NotFound("product"))?;
    Ok(axum::Json(
        reads::availability(&state.db, &state.cache, &product).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LevelQuery {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Skus, comma-separated.
    pub sku: Option<String>,
    /// Warehouse ids, comma-separated.
    #[param(schema_with = list::uuid_schema)]
    pub warehouse_id: Option<String>,
    /// Only rows whose available stock is at or below the product's reorder point.
    pub below_reorder: Option<bool>,
}

/// Stock levels per product and warehouse.
#[utoipa::path(get, path = "/api/v1/inventory/stock-levels", operation_id = "list_stock_levels", tag = "inventory",
    params(LevelQuery), security(("bearer_auth" = [])),
    responses((status = 200, body = Page<StockLevel>), (status = 422, body = platform::Problem)))]
pub async fn stock_levels(
    _caller: Staff,
    State(state): State<AppState>,
    Query(query): Query<LevelQuery>,
) -> Result<axum::Json<Page<StockLevel>>, InventoryError> {
    let mut errors = Vec::new();
    let page = PageParams::checked(query.limit, query.cursor, &mut errors);
    let warehouse_ids = list::uuids(query.warehouse_id.as_deref(), "warehouse_id", &mut errors);
    check(errors)?;
    let filter = LevelFilter {
        skus: list::items(query.sku.as_deref())
            .map(str::to_owned)
            .collect(),
        warehouse_ids,
        below_reorder: query.below_reorder.unwrap_or(false),
    };
    let rows = reads::stock_levels(&state.db, &filter, page.after(), page.limit() + 1).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |l| l.id)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MovementQuery {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Skus, comma-separated.
    pub sku: Option<String>,
    /// Warehouse ids, comma-separated.
    #[param(schema_with = list::uuid_schema)]
    pub warehouse_id: Option<String>,
    /// Reasons, comma-separated: receipt, adjustment, count, return, damage, transfer_in, transfer_out,
    /// import, shipment.
    #[param(schema_with = reason_list_schema)]
    pub reason: Option<String>,
    /// Movements at or after this time (RFC 3339).
    #[serde(default, deserialize_with = "platform::extract::timestamp::optional")]
    pub since: Option<DateTime<Utc>>,
    /// Movements before this time (RFC 3339).
    #[serde(default, deserialize_with = "platform::extract::timestamp::optional")]
    pub until: Option<DateTime<Utc>>,
}

/// The movement reasons `?reason=` takes.
fn reason_list_schema() -> utoipa::openapi::schema::Object {
    list::one_of_schema(&Reason::ALL.map(Reason::as_str))
}

/// The stock ledger.
#[utoipa::path(get, path = "/api/v1/inventory/movements", operation_id = "list_movements", tag = "inventory",
    params(MovementQuery), security(("bearer_auth" = [])),
    responses((status = 200, body = Page<Movement>), (status = 422, body = platform::Problem)))]
pub async fn movements(
    _caller: Staff,
    State(state): State<AppState>,
    Query(query): Query<MovementQuery>,
) -> Result<axum::Json<Page<Movement>>, InventoryError> {
    let mut errors = Vec::new();
    let page = PageParams::checked(query.limit, query.cursor, &mut errors);
    let warehouse_ids = list::uuids(query.warehouse_id.as_deref(), "warehouse_id", &mut errors);
    let reasons = list::parse(
        query.reason.as_deref(),
        "reason",
        "a movement reason",
        |reason| Reason::parse(reason).map(Reason::as_str),
        &mut errors,
    );
    if let (Some(since), Some(until)) = (query.since, query.until)
        && since > until
    {
        errors.push(FieldError::new(
            "until",
            "OUT_OF_RANGE",
            "must not be before since",
        ));
    }
    check(errors)?;
    let filter = MovementFilter {
        skus: list::items(query.sku.as_deref())
            .map(str::to_owned)
            .collect(),
        warehouse_ids,
        reasons: reasons.into_iter().map(str::to_owned).collect(),
        since: query.since,
        until: query.until,
    };
    let rows = reads::movements(&state.db, &filter, page.after(), page.limit() + 1).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |m| m.id)))
}

/// Where ledger rows live: an adjustment's `Location` is its movement, a transfer's its outgoing movement.
const MOVEMENTS: &str = "/api/v1/inventory/movements";

/// One ledger row.
#[utoipa::path(get, path = "/api/v1/inventory/movements/{id}", operation_id = "get_movement", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), security(("bearer_auth" = [])),
    responses((status = 200, body = Movement), (status = 404, body = platform::Problem)))]
pub async fn movement(
    _caller: Staff,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Movement>, InventoryError> {
    let movement = reads::movement(&state.db, id)
        .await?
        .ok_or(InventoryError::NotFound("movement"))?;
    Ok(axum::Json(movement))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdjustment {
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9._/-]{1,64}[\t\n\x0b\x0c\r ]*$")]
    pub sku: String,
    pub warehouse_id: Uuid,
    /// Non-zero change of on_hand.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: i64,
    /// receipt, adjustment, count, return or damage.
    #[schema(pattern = r"^(receipt|adjustment|count|return|damage)$")]
    pub reason: String,
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$")]
    pub note: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransfer {
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9._/-]{1,64}[\t\n\x0b\x0c\r ]*$")]
    pub sku: String,
    pub from_warehouse_id: Uuid,
    pub to_warehouse_id: Uuid,
    /// At least 1; at most what is available (unreserved) at the source.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: i64,
}

platform::validated_by_parsing!(LevelQuery, MovementQuery, CreateAdjustment, CreateTransfer);

/// Adjusts the stock of a SKU in a warehouse.
#[utoipa::path(post, path = "/api/v1/inventory/adjustments", operation_id = "create_adjustment", tag = "inventory",
    request_body = CreateAdjustment, security(("bearer_auth" = [])),
    responses((status = 201, body = AdjustmentResult,
            headers(("Location" = String, description = "the ledger row it wrote"))),
        (status = 409, body = platform::Problem, description = "NEGATIVE_STOCK or STOCK_BELOW_RESERVED"),
        (status = 422, body = platform::Problem)))]
pub async fn adjust(
    Manager(caller): Manager,
    State(state): State<AppState>,
    Json(body): Json<CreateAdjustment>,
) -> Result<Created<AdjustmentResult>, InventoryError> {
    let mut errors = Vec::new();
    let sku = collect(Sku::parse(&body.sku, "sku"), &mut errors);
    let reason = Reason::parse(&body.reason).filter(|r| r.is_manual());
    if reason.is_none() {
        errors.push(FieldError::new(
            "reason",
            "INVALID_VALUE",
            "must be one of receipt, adjustment, count, return, damage",
        ));
    }
    let magnitude = collect(
        domain::quantity(body.delta.saturating_abs(), "delta", 1),
        &mut errors,
    );
    let note = match body.note.as_deref() {
        Some(n) => {
            collect(domain::note(n, "note"), &mut errors).map(|n| Some(n).filter(|n| !n.is_empty()))
        }
        None => Some(None),
    };
    let (Some(sku), Some(reason), Some(magnitude), Some(note)) = (sku, reason, magnitude, note)
    else {
        return Err(InventoryError::Validation(errors));
    };
    let product = products::require_sku(&state.db, &state.cache, &sku, "sku").await?;
    warehouses::require(&state.db, body.warehouse_id, "warehouse_id").await?;
    let adjustment = Adjustment {
        product,
        warehouse_id: body.warehouse_id,
        delta: magnitude * body.delta.signum() as i32,
        reason,
        note,
        actor: caller.id(),
    };
    let result = stock::adjust(&state.db, &state.cache, &state.messaging, &adjustment).await?;
    Ok(Created::new(MOVEMENTS, result.movement.id, result))
}

/// Moves stock between two warehouses at once.
#[utoipa::path(post, path = "/api/v1/inventory/transfers", operation_id = "create_transfer", tag = "inventory",
    request_body = CreateTransfer, security(("bearer_auth" = [])),
    responses((status = 201, body = TransferResult,
            headers(("Location" = String, description = "its outgoing ledger row, whose `reference` names both"))),
        (status = 409, body = platform::Problem, description = "INSUFFICIENT_STOCK with short_lines"),
        (status = 422, body = platform::Problem)))]
pub async fn transfer(
    Manager(caller): Manager,
    State(state): State<AppState>,
    Json(body): Json<CreateTransfer>,
) -> Result<Created<TransferResult>, InventoryError> {
    let mut errors = Vec::new();
    let sku = collect(Sku::parse(&body.sku, "sku"), &mut errors);
    let quantity = collect(domain::quantity(body.quantity, "quantity", 1), &mut errors);
    if body.from_warehouse_id == body.to_warehouse_id {
        errors.push(FieldError::new(
            "to_warehouse_id",
            "SAME_WAREHOUSE",
            "must differ from from_warehouse_id",
        ));
    }
    let (Some(sku), Some(quantity)) = (sku, quantity) else {
        return Err(InventoryError::Validation(errors));
    };
    check(errors)?;
    let product = products::require_sku(&state.db, &state.cache, &sku, "sku").await?;
    warehouses::require(&state.db, body.from_warehouse_id, "from_warehouse_id").await?;
    warehouses::require(&state.db, body.to_warehouse_id, "to_warehouse_id").await?;
    let transfer = Transfer {
        product,
        from_warehouse_id: body.from_warehouse_id,
        to_warehouse_id: body.to_warehouse_id,
        quantity,
        actor: caller.id(),
    };
    let result = stock::transfer(&state.db, &state.cache, &state.messaging, &transfer).await?;
    let outgoing = result.movements.first().map_or(result.id, |m| m.id);
    Ok(Created::new(MOVEMENTS, outgoing, result))
}
