//! The HTTP surface: routes of the Inventory table in docs/api.md, documented for OpenAPI as they are
//! registered, and the small parsing helpers every handler shares.

mod import;
mod products;
mod reservations;
mod stock;
mod warehouses;

use platform::FieldError;
use platform::openapi::BearerAuth;
use serde::{Deserialize, Deserializer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::InventoryError;
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "LogiCore inventory service", description = "Warehouses, products, the stock ledger and reservations."),
    modifiers(&BearerAuth),
    components(schemas(platform::Problem, platform::FieldError, crate::error::ShortLine)),
    tags((name = "inventory", description = "Warehouses, products, stock, reservations and bulk import"))
)]
struct ApiDoc;

/// Every inventory route with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(warehouses::create, warehouses::list))
        .routes(routes!(warehouses::get, warehouses::update))
        .routes(routes!(products::create, products::list))
        .routes(routes!(products::get, products::update))
        .routes(routes!(stock::availability))
        .routes(routes!(stock::stock_levels))
        .routes(routes!(stock::adjust))
        .routes(routes!(stock::transfer))
        .routes(routes!(stock::movements))
        .routes(routes!(stock::movement))
        .routes(routes!(reservations::create))
        .routes(routes!(reservations::get))
        .routes(routes!(reservations::release))
        .routes(routes!(import::import_csv))
}

/// Fails with every collected field error, if any.
pub(crate) fn check(errors: Vec<FieldError>) -> Result<(), InventoryError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InventoryError::Validation(errors))
    }
}

/// For PATCH bodies: an absent field is `None`, an explicit `null` is `Some(None)`.
pub(crate) fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
