//! `/api/v1/inventory/reservations` (staff, and other services acting for an order).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use platform::FieldError;
use platform::auth::roles::Staff;
use platform::created::{self, Created};
use platform::extract::{Json, Path};
use platform::problem::collect;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{self, Sku};
use crate::error::InventoryError;
use crate::models::Reservation;
use crate::reservations::reserve::{self, ReserveRequest};
use crate::reservations::settle;
use crate::state::AppState;

/// Most lines one reservation may have.
const MAX_LINES: usize = 200;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReservation {
    /// Reserving again for the same order returns the first reservation.
    pub order_id: Uuid,
    /// 1-200 lines; a sku may repeat (quantities add up).
    #[schema(min_items = 1, max_items = 200)]
    pub lines: Vec<LineRequest>,
    /// How long the hold lasts unless committed; default from configuration (15 minutes).
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9._/-]{1,64}[\t\n\x0b\x0c\r ]*$")]
    pub sku: String,
    /// At least 1.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: i64,
}

platform::validated_by_parsing!(CreateReservation);

/// Reserves stock for an order, all lines or none.
#[utoipa::path(post, path = "/api/v1/inventory/reservations", operation_id = "create_reservation", tag = "inventory",
    request_body = CreateReservation, security(("bearer_auth" = [])),
    responses((status = 201, body = Reservation, description = "reserved",
            headers(("Location" = String, description = "the reservation's path"))),
        (status = 200, body = Reservation, description = "the order already had this reservation",
            headers(("Location" = String, description = "the reservation's path, as when it was created"))),
        (status = 409, body = platform::Problem, description = "INSUFFICIENT_STOCK with short_lines"),
        (status = 422, body = platform::Problem)))]
pub async fn create(
    Staff(caller): Staff,
    State(state): State<AppState>,
    Json(body): Json<CreateReservation>,
) -> Result<Response, InventoryError> {
    let mut errors = Vec::new();
    if body.lines.is_empty() {
        errors.push(FieldError::new(
            "lines",
            "REQUIRED",
            "must have at least one line",
        ));
    }
    if body.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "lines",
            "TOO_MANY",
            "must have at most 200 lines",
        ));
    }
    let mut lines = Vec::with_capacity(body.lines.len());
    for (index, line) in body.lines.iter().enumerate() {
        let sku = collect(
            Sku::parse(&line.sku, &format!("lines[{index}].sku")),
            &mut errors,
        );
        let quantity = collect(
            domain::quantity(line.quantity, &format!("lines[{index}].quantity"), 1),
            &mut errors,
        );
        if let (Some(sku), Some(quantity)) = (sku, quantity) {
            lines.push((sku, quantity));
        }
    }
    let max_ttl = state.config.reservation_max_ttl.as_secs();
    let ttl = match body.ttl_seconds {
        None => Some(state.config.reservation_ttl),
        Some(secs) => u64::try_from(secs)
            .ok()
            .filter(|s| (1..=max_ttl).contains(s))
            .map(Duration::from_secs)
            .or_else(|| {
                let message = format!("must be between 1 and {max_ttl}");
                errors.push(FieldError::new("ttl_seconds", "OUT_OF_RANGE", message));
                None
            }),
    };
    let Some(ttl) = ttl.filter(|_| errors.is_empty()) else {
        return Err(InventoryError::Validation(errors));
    };
    let request = ReserveRequest {
        order_id: body.order_id,
        lines,
        ttl,
        actor: Some(caller.id()),
    };
    let (reservation, created) = reserve::reserve(
        &state.db,
        &state.cache,
        &state.messaging,
        &state.metrics,
        &request,
    )
    .await?;
    let location = created::location("/api/v1/inventory/reservations", reservation.id);
    if created {
        return Ok(Created {
            location,
            body: reservation,
        }
        .into_response());
    }
    // The order's reservation again: the same resource as the first answer, so the same `Location`.
    let mut response = axum::Json(reservation).into_response();
    created::set_location(response.headers_mut(), &location);
    Ok(response)
}

/// One reservation.
#[utoipa::path(get, path = "/api/v1/inventory/reservations/{id}", operation_id = "get_reservation", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), security(("bearer_auth" = [])),
    responses((status = 200, body = Reservation), (status = 404, body = platform::Problem)))]
pub async fn get(
    _caller: Staff,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Reservation>, InventoryError> {
    let reservation = reserve::get(&state.db, id)
        .await?
        .ok_or(InventoryError::NotFound("reservation"))?;
    Ok(axum::Json(reservation))
}

/// Releases a held reservation.
#[utoipa::path(post, path = "/api/v1/inventory/reservations/{id}/release", operation_id = "release_reservation", tag = "inventory",
    params(("id" = uuid::Uuid, Path)), security(("bearer_auth" = [])),
    responses((status = 200, body = Reservation, description = "released (or already released or expired)"),
        (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "INVALID_TRANSITION: already consumed")))]
pub async fn release(
    _caller: Staff,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Reservation>, InventoryError> {
    Ok(axum::Json(
        settle::release_reservation(&state.db, &state.cache, &state.messaging, id).await?,
    ))
}
