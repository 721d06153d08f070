//! `/api/v1/inventory/products`: create and change (admin, manager), read (any authenticated caller).

use axum::extract::State;
use platform::auth::AuthUser;
use platform::auth::roles::Manager;
use platform::created::Created;
use platform::extract::{Json, Path, Query};
use platform::list;
use platform::pagination::{Page, PageParams};
use platform::problem::{check, collect};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::domain::{self, Sku};
use crate::error::InventoryError;
use crate::models::Product;
use crate::repo::products::{self, NewProduct, ProductFilter, ProductKey, ProductPatch};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// 1-64 letters, digits, `-`, `_`, `.`, `/`; unique, case-sensitive.
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9._/-]{1,64}[\t\n\x0b\x0c\r ]*$")]
    pub sku: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub weight_grams: Option<i64>,
    /// Default 0.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub reorder_point: Option<i64>,
    /// Default false.
    pub allow_backorder: Option<bool>,
}

/// The sku cannot change: the ledger and reservations refer to it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x09\x0b-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x09\x0b-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "platform::extract::nullable")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000)]
    pub weight_grams: Option<Option<i64>>,
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub reorder_point: Option<i64>,
    pub allow_backorder: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// 1-100, default 20.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Exact skus, comma-separated.
    pub sku: Option<String>,
    /// Case-insensitive text found in the sku or the name.
    pub q: Option<String>,
}

platform::validated_by_parsing!(CreateProduct, UpdateProduct, ProductQuery);

fn count(value: i64, field: &str) -> Result<i32, platform::FieldError> {
    domain::quantity(value, field, 0)
}

/// Creates a product.
#[utoipa::path(post, path = "/api/v1/inventory/products", operation_id = "create_product", tag = "inventory",
    request_body = CreateProduct, security(("bearer_auth" = [])),
    responses((status = 201, body = Product, headers(("Location" = String, description = "the new product's path"))), (status = 409, body = platform::Problem,
        description = "SKU_TAKEN"), (status = 422, body = platform::Problem)))]
pub async fn create(
    _caller: Manager,
    State(state): State<AppState>,
    Json(body): Json<CreateProduct>,
) -> Result<Created<Product>, InventoryError> {
    let mut errors = Vec::new();
    let sku = collect(Sku::parse(&body.sku, "sku"), &mut errors);
    let name = collect(domain::name(&body.name, "name"), &mut errors);
    let weight = match body.weight_grams {
        Some(w) => collect(count(w, "weight_grams"), &mut errors).map(Some),
        None => Some(None),
    };
    let reorder = collect(
        count(body.reorder_point.unwrap_or(0), "reorder_point"),
        &mut errors,
    );
    let (Some(sku), Some(name), Some(weight_grams), Some(reorder_point)) =
        (sku, name, weight, reorder)
    else {
        return Err(InventoryError::Validation(errors));
    };
    let product = NewProduct {
        sku,
        name,
        weight_grams,
        reorder_point,
        allow_backorder: body.allow_backorder.unwrap_or(false),
    };
    let product = products::insert(&state.db, &state.cache, &product).await?;
    Ok(Created::new(
        "/api/v1/inventory/products",
        product.id,
        product,
    ))
}

/// Lists products, by SKU or by name.
#[utoipa::path(get, path = "/api/v1/inventory/products", operation_id = "list_products", tag = "inventory",
    params(ProductQuery), security(("bearer_auth" = [])),
    responses((status = 200, body = Page<Product>), (status = 422, body = platform::Problem)))]
pub async fn list(
    _caller: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<ProductQuery>,
) -> Result<axum::Json<Page<Product>>, InventoryError> {
    let mut errors = Vec::new();
    let page = PageParams::checked(query.limit, query.cursor, &mut errors);
    check(errors)?;
    let filter = ProductFilter {
        skus: list::items(query.sku.as_deref())
            .map(str::to_owned)
            .collect(),
        q: query
            .q
            .map(|q| q.trim().to_lowercase())
            .filter(|q| !q.is_empty()),
    };
    // `?sku=X` alone is the product-by-SKU read clients repeat: it takes the cached lookup, which
    // answers exactly what the query would (at most one product, no next page).
    if let ([sku], None, None) = (filter.skus.as_slice(), &filter.q, page.after()) {
        let found = products::lookup(&state.db, &state.cache, ProductKey::Sku(sku)).await?;
        let rows: Vec<Product> = found.into_iter().collect();
        return Ok(axum::Json(Page::from_rows(rows, page.limit(), |p| p.id)));
    }
    let rows = products::list(&state.db, &filter, page.after(), page.limit() + 1).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |p| p.id)))
}

/// One product.
#[utoipa::path(get, path = "/api/v1/inventory/products/{id}", operation_id = "get_product", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), security(("bearer_auth" = [])),
    responses((status = 200, body = Product), (status = 404, body = platform::Problem)))]
pub async fn get(
    _caller: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Product>, InventoryError> {
    let product = products::lookup(&state.db, &state.cache, ProductKey::Id(id))
        .await?
        .ok_or(InventoryError::NotFound("product"))?;
    Ok(axum::Json(product))
}

/// Changes a product.
#[utoipa::path(patch, path = "/api/v1/inventory/products/{id}", operation_id = "update_product", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), request_body = UpdateProduct, security(("bearer_auth" = [])),
    responses((status = 200, body = Product), (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "BACKORDERS_OUTSTANDING"),
        (status = 422, body = platform::Problem)))]
pub async fn update(
    _caller: Manager,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateProduct>,
) -> Result<axum::Json<Product>, InventoryError> {
    let mut errors = Vec::new();
    let patch = ProductPatch {
        name: body
            .name
            .and_then(|n| collect(domain::name(&n, "name"), &mut errors)),
        weight_grams: match body.weight_grams {
            Some(Some(w)) => collect(count(w, "weight_grams"), &mut errors).map(Some),
            Some(None) => Some(None),
            None => None,
        },
        reorder_point: body
            .reorder_point
            .and_then(|r| collect(count(r, "reorder_point"), &mut errors)),
        allow_backorder: body.allow_backorder,
    };
    check(errors)?;
    let product = products::update(&state.db, &state.cache, &state.messaging, id, &patch)
        .await?
        .ok_or(InventoryError::NotFound("product"))?;
    Ok(axum::Json(product))
}
