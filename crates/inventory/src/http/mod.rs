//! The HTTP surface: routes of the Inventory table in docs/api.md, documented for OpenAPI as they are
//! registered. The parsing helpers every handler shares are in `platform` (`list`, `problem`, `extract`).

mod import;
mod products;
mod reservations;
mod stock;
mod warehouses;

use platform::openapi::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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
