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
use uuid::Uuid;

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

/// `a,b,c` → its non-blank items.
pub(crate) fn comma_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A comma list of UUIDs, or a field error naming the parameter.
pub(crate) fn uuid_list(raw: Option<&str>, field: &str) -> Result<Vec<Uuid>, FieldError> {
    comma_list(raw)
        .iter()
        .map(|s| Uuid::parse_str(s))
        .collect::<Result<_, _>>()
        .map_err(|_| FieldError::new(field, "INVALID_FORMAT", "must be UUIDs separated by commas"))
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

/// Collects the error of a parse into `errors`, keeping the value when it parsed.
pub(crate) fn collect<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}
