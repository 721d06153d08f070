//! `/api/v1/track/{tracking_number}`: public, so it shows where a parcel is and nothing about who sent it,
//! who receives it or who drives it.

use axum::extract::{Path, State};

use crate::error::OrdersError;
use crate::models::{PublicTracking, PublicTrackingEvent};
use crate::repo::shipments;
use crate::state::AppState;

/// Longest tracking number worth looking up; longer input cannot be one of ours.
const MAX_TRACKING_NUMBER: usize = 64;

/// Public tracking of a parcel by its tracking number.
#[utoipa::path(get, path = "/api/v1/track/{tracking_number}", operation_id = "track_shipment", tag = "tracking",
    params(("tracking_number" = String, Path, description = "From the shipment, e.g. LC7Q2M…")),
    responses((status = 200, body = PublicTracking, description = "status and tracking events, redacted"),
        (status = 404, body = platform::Problem)))]
pub async fn track(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> Result<axum::Json<PublicTracking>, OrdersError> {
    let number = number.trim().to_ascii_uppercase();
    if number.is_empty() || number.len() > MAX_TRACKING_NUMBER {
        return Err(OrdersError::NotFound("shipment"));
    }
    let shipment = shipments::by_tracking_number(&state.db, &number)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))?;
    let events = shipments::tracking(&state.db, shipment.id).await?;
    Ok(axum::Json(PublicTracking {
        tracking_number: shipment.tracking_number,
        status: shipment.status,
        events: events
            .iter()
            .filter(|e| e.applied)
            .map(PublicTrackingEvent::from)
            .collect(),
    }))
}
