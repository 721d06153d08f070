//! The HTTP surface: the "Orders and shipments" table of docs/api.md, documented for OpenAPI as the routes
//! are registered, and the parsing helpers the handlers share.

mod orders;
mod shipments;
mod track;
mod track_page;

use platform::FieldError;
use platform::openapi::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "LogiCore orders service",
        description = "Orders, shipments, tracking and proof of delivery. Creates and actions take an `Idempotency-Key`; changes take `If-Match` with the `ETag` (the version) they were read at.",
    ),
    modifiers(&BearerAuth),
    components(schemas(platform::Problem, platform::FieldError)),
    tags(
        (name = "orders", description = "Orders and their timeline"),
        (name = "shipments", description = "Shipments, tracking events and proof of delivery"),
        (name = "tracking", description = "The public tracking page"),
    )
)]
struct ApiDoc;

/// Every orders route with its OpenAPI description.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(orders::create, orders::list))
        .routes(routes!(orders::get))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::timeline))
        .routes(routes!(shipments::create))
        .routes(routes!(shipments::list))
        .routes(routes!(shipments::get))
        .routes(routes!(shipments::assign))
        .routes(routes!(
            shipments::add_tracking_event,
            shipments::tracking_events
        ))
        .routes(routes!(shipments::proof))
        .routes(routes!(shipments::cancel))
        .routes(routes!(track::track))
}

/// The collection orders live in: a new order's `Location` is this plus its id.
pub(crate) const ORDERS: &str = "/api/v1/orders";
/// The collection shipments live in.
pub(crate) const SHIPMENTS: &str = "/api/v1/shipments";

/// The ids a caller limited to their own may filter by: `[me]`, or `None` when they asked for someone
/// else's (which then just finds nothing, revealing nothing).
pub(crate) fn only_own(asked: &[Uuid], me: Uuid) -> Option<Vec<Uuid>> {
    asked.iter().all(|id| *id == me).then(|| vec![me])
}

/// Most lines one order or shipment may have.
pub(crate) const MAX_LINES: usize = 100;
/// Most pieces of one line.
pub(crate) const MAX_QUANTITY: i64 = 100_000;

/// The `(sku, quantity)` of an order's or a shipment's lines: 1-100 lines, each sku once, quantities
/// 1-100000; every problem is added to `errors` with the line's path.
pub(crate) fn sku_lines<'a>(
    lines: impl ExactSizeIterator<Item = (&'a str, i64)>,
    errors: &mut Vec<FieldError>,
) -> Vec<(String, i64)> {
    if lines.len() == 0 {
        errors.push(FieldError::new(
            "lines",
            "REQUIRED",
            "must have at least one line",
        ));
    }
    if lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            "TOO_MANY",
            format!("must have at most {MAX_LINES} lines"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut parsed = Vec::with_capacity(lines.len());
    for (index, (sku, quantity)) in lines.enumerate() {
        let sku = text(sku, &format!("lines[{index}].sku"), 64, errors);
        if !sku.is_empty() && !seen.insert(sku.clone()) {
            errors.push(FieldError::new(
                format!("lines[{index}].sku"),
                "DUPLICATE",
                "each sku may appear on one line only",
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&quantity) {
            errors.push(FieldError::new(
                format!("lines[{index}].quantity"),
                "OUT_OF_RANGE",
                format!("must be between 1 and {MAX_QUANTITY}"),
            ));
        }
        parsed.push((sku, quantity));
    }
    parsed
}

/// A required text field: trimmed, 1..=`max` characters, no control characters.
pub(crate) fn text(value: &str, field: &str, max: usize, errors: &mut Vec<FieldError>) -> String {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        errors.push(FieldError::new(field, "REQUIRED", "must not be blank"));
    } else if trimmed.chars().count() > max {
        errors.push(FieldError::new(
            field,
            "TOO_LONG",
            format!("must be at most {max} characters"),
        ));
    } else if trimmed.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "INVALID_FORMAT",
            "must not contain control characters",
        ));
    }
    trimmed.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "Orders and shipments" table of docs/api.md.
    const CONTRACT: &[(&str, &str)] = &[
        ("post", "/api/v1/orders"),
        ("get", "/api/v1/orders"),
        ("get", "/api/v1/orders/{id}"),
        ("post", "/api/v1/orders/{id}/cancel"),
        ("get", "/api/v1/orders/{id}/events"),
        ("post", "/api/v1/orders/{id}/shipments"),
        ("get", "/api/v1/shipments"),
        ("get", "/api/v1/shipments/{id}"),
        ("post", "/api/v1/shipments/{id}/assign"),
        ("post", "/api/v1/shipments/{id}/tracking-events"),
        ("get", "/api/v1/shipments/{id}/tracking-events"),
        ("post", "/api/v1/shipments/{id}/proof"),
        ("post", "/api/v1/shipments/{id}/cancel"),
        ("get", "/api/v1/track/{tracking_number}"),
    ];

    #[test]
    fn every_route_of_the_contract_is_documented_and_only_tracking_is_public() {
        let json = serde_json::to_value(api().into_openapi()).unwrap_or_default();
        assert_eq!(json["openapi"], "3.1.0");
        for (method, path) in CONTRACT {
            let operation = &json["paths"][path][method];
            assert!(
                operation.is_object(),
                "{method} {path} is missing from the OpenAPI document"
            );
            let public = path.starts_with("/api/v1/track/");
            assert_eq!(
                operation["security"].is_null(),
                public,
                "{method} {path}: bearer security {}",
                if public {
                    "on a public route"
                } else {
                    "missing"
                }
            );
        }
        let documented: usize = json["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .values()
                    .map(|item| item.as_object().map_or(0, |ops| ops.len()))
                    .sum()
            })
            .unwrap_or_default();
        assert_eq!(
            documented,
            CONTRACT.len(),
            "routes beyond the contract: {json}"
        );
    }
}
