//! `/api/v1/track/{tracking_number}`: public, so it shows where a parcel is and nothing about who sent it,
//! who receives it or who drives it. JSON by default; a browser (whose `Accept` ranks `text/html` first) gets
//! the same content as a small HTML page.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use platform::extract::Path;
use platform::negotiate::{self, HTML, JSON};

use super::track_page;
use crate::error::OrdersError;
use crate::models::{PublicTracking, PublicTrackingEvent};
use crate::repo::shipments;
use crate::state::AppState;

/// Longest tracking number worth looking up; longer input cannot be one of ours.
const MAX_TRACKING_NUMBER: usize = 64;

/// Public tracking of a parcel by its tracking number.
#[utoipa::path(get, path = "/api/v1/track/{tracking_number}", operation_id = "track_shipment", tag = "tracking",
    params(("tracking_number" = String, Path, description = "From the shipment, e.g. LC7Q2M…")),
    responses((status = 200, description = "status and tracking events, redacted; `Vary: Accept`",
            content(
                (PublicTracking = "application/json"),
                (String = "text/html", example = "<!doctype html>…"),
            ),
            headers(("Vary" = String, description = "`Accept`: HTML when the client ranks `text/html` above JSON"))),
        (status = 404, body = platform::Problem, content_type = "application/problem+json")))]
pub async fn track(
    State(state): State<AppState>,
    Path(number): Path<String>,
    headers: HeaderMap,
) -> Result<Response, OrdersError> {
    let number = number.trim().to_ascii_uppercase();
    if number.is_empty() || number.len() > MAX_TRACKING_NUMBER {
        return Err(OrdersError::NotFound("shipment"));
    }
    let shipment = shipments::by_tracking_number(&state.db, &number)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))?;
    let events = shipments::tracking(&state.db, shipment.id).await?;
    let tracking = PublicTracking {
        tracking_number: shipment.tracking_number,
        status: shipment.status,
        events: events
            .iter()
            .filter(|e| e.applied)
            .map(PublicTrackingEvent::from)
            .collect(),
    };
    let mut response = if negotiate::preferred(&headers, JSON, &[HTML]) == HTML {
        track_page::response(&tracking)
    } else {
        axum::Json(tracking).into_response()
    };
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}
