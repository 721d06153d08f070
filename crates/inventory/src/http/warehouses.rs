//! `/api/v1/inventory/warehouses`: create and change (admin, manager), read (staff).

use axum::extract::State;
use platform::auth::roles::{Manager, Staff};
use platform::created::Created;
use platform::extract::{Json, Path, Query};
use platform::list;
use platform::pagination::{Page, PageParams};
use platform::problem::{check, collect};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{self, WarehouseCode};
use crate::error::InventoryError;
use crate::models::Warehouse;
use crate::repo::warehouses::{self, NewWarehouse, WarehouseFilter, WarehousePatch};
use crate::state::AppState;

const PRIORITY_MAX: i64 = 1_000_000;
const DEFAULT_PRIORITY: i32 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWarehouse {
    /// 1-32 letters, digits, `-`, `_`; stored uppercase, unique.
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9_-]{1,32}[\t\n\x0b\x0c\r ]*$")]
    pub code: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$")]
    pub address: String,
    /// 0-1000000; reservations draw from the lowest number first. Default 100.
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub priority: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWarehouse {
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    #[schema(max_length = 500, pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*$")]
    pub address: Option<String>,
    #[schema(minimum = 0, maximum = 1_000_000)]
    pub priority: Option<i64>,
    /// Inactive warehouses are never reserved from.
    pub active: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WarehouseQuery {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Codes, comma-separated.
    pub code: Option<String>,
    pub active: Option<bool>,
}

platform::validated_by_parsing!(CreateWarehouse, UpdateWarehouse, WarehouseQuery);

fn priority(value: i64) -> Result<i32, platform::FieldError> {
    i32::try_from(value)
        .ok()
        .filter(|p| (0..=PRIORITY_MAX).contains(&i64::from(*p)))
        .ok_or_else(|| {
            platform::FieldError::new("priority", "OUT_OF_RANGE", "must be between 0 and 1000000")
        })
}

/// Creates a warehouse.
#[utoipa::path(post, path = "/api/v1/inventory/warehouses", operation_id = "create_warehouse", tag = "inventory",
    request_body = CreateWarehouse, security(("bearer_auth" = [])),
    responses((status = 201, body = Warehouse, headers(("Location" = String, description = "the new warehouse's path"))), (status = 409, body = platform::Problem,
        description = "WAREHOUSE_CODE_TAKEN"), (status = 422, body = platform::Problem)))]
pub async fn create(
    _caller: Manager,
    State(state): State<AppState>,
    Json(body): Json<CreateWarehouse>,
) -> Result<Created<Warehouse>, InventoryError> {
    let mut errors = Vec::new();
    let code = collect(WarehouseCode::parse(&body.code, "code"), &mut errors);
    let name = collect(domain::name(&body.name, "name"), &mut errors);
    let address = collect(domain::address(&body.address, "address"), &mut errors);
    let priority = collect(
        priority(body.priority.unwrap_or(i64::from(DEFAULT_PRIORITY))),
        &mut errors,
    );
    let (Some(code), Some(name), Some(address), Some(priority)) = (code, name, address, priority)
    else {
        return Err(InventoryError::Validation(errors));
    };
    let warehouse = warehouses::insert(
        &state.db,
        &NewWarehouse {
            code,
            name,
            address,
            priority,
        },
    )
    .await?;
    Ok(Created::new(
        "/api/v1/inventory/warehouses",
        warehouse.id,
        warehouse,
    ))
}

/// Lists warehouses.
#[utoipa::path(get, path = "/api/v1/inventory/warehouses", operation_id = "list_warehouses", tag = "inventory",
    params(WarehouseQuery), security(("bearer_auth" = [])),
    responses((status = 200, body = Page<Warehouse>), (status = 422, body = platform::Problem)))]
pub async fn list(
    _caller: Staff,
    State(state): State<AppState>,
    Query(query): Query<WarehouseQuery>,
) -> Result<axum::Json<Page<Warehouse>>, InventoryError> {
    let mut errors = Vec::new();
    let page = PageParams::checked(query.limit, query.cursor, &mut errors);
    check(errors)?;
    let filter = WarehouseFilter {
        codes: list::items(query.code.as_deref())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        active: query.active,
    };
    let rows = warehouses::list(&state.db, &filter, page.after(), page.limit() + 1).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |w| w.id)))
}

/// One warehouse.
#[utoipa::path(get, path = "/api/v1/inventory/warehouses/{id}", operation_id = "get_warehouse", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), security(("bearer_auth" = [])),
    responses((status = 200, body = Warehouse), (status = 404, body = platform::Problem)))]
pub async fn get(
    _caller: Staff,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Warehouse>, InventoryError> {
    let warehouse = warehouses::find(&state.db, id)
        .await?
        .ok_or(InventoryError::NotFound("warehouse"))?;
    Ok(axum::Json(warehouse))
}

/// Changes a warehouse.
#[utoipa::path(patch, path = "/api/v1/inventory/warehouses/{id}", operation_id = "update_warehouse", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), request_body = UpdateWarehouse, security(("bearer_auth" = [])),
    responses((status = 200, body = Warehouse), (status = 404, body = platform::Problem),
        (status = 422, body = platform::Problem)))]
pub async fn update(
    _caller: Manager,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateWarehouse>,
) -> Result<axum::Json<Warehouse>, InventoryError> {
    let mut errors = Vec::new();
    let patch = WarehousePatch {
        name: body
            .name
            .and_then(|n| collect(domain::name(&n, "name"), &mut errors)),
        address: body
            .address
            .and_then(|a| collect(domain::address(&a, "address"), &mut errors)),
        priority: body
            .priority
            .and_then(|p| collect(priority(p), &mut errors)),
        active: body.active,
    };
    check(errors)?;
    let warehouse = warehouses::update(&state.db, &state.cache, id, &patch)
        .await?
        .ok_or(InventoryError::NotFound("warehouse"))?;
    Ok(axum::Json(warehouse))
}
