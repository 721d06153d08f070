//! `/api/v1/orders/{id}/shipments` and `/api/v1/shipments`: dispatchers create and assign shipments,
//! drivers report tracking events and proofs on the shipments assigned to them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use platform::FieldError;
use platform::auth::AuthUser;
use platform::auth::roles::{Driver, Staff, StaffOrDriver};
use platform::created;
use platform::extract::{Path, Query};
use platform::idempotency::Idempotent;
use platform::list;
use platform::pagination::{Page, PageParams};
use platform::problem::check;
use serde::Deserialize;
use utoipa::openapi::schema::Object;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{SHIPMENTS, only_own, sku_lines, text};
use crate::domain::{IncidentReason, ProofKind, ShipmentStatus};
use crate::error::OrdersError;
use crate::events::Recorder;
use crate::idempotent::{self, Answer, check_if_match, effect, set_etag};
use crate::models::{Location, ShipmentView, TrackingEventView};
use crate::repo::shipments::{self, ShipmentFilter};
use crate::shipping::{self, ProofRequest, ShipmentRequest, TrackingRequest};
use crate::state::{AppState, Caller};

/// Fractional-second digits PostgreSQL keeps in a `timestamptz`.
const TIMESTAMP_DIGITS: u16 = 6;
/// How far in the future a tracking event's `occurred_at` may be (clock skew of a driver's device).
const MAX_CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateShipment {
    /// Where it leaves from: inventory must hold the lines there for the order.
    pub warehouse_id: Uuid,
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<ShipmentLineInput>,
    /// Whether `delivered` needs a proof first; the configured default when absent.
    pub proof_required: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentLineInput {
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9._/-]{1,64}[\t\n\x0b\x0c\r ]*$")]
    pub sku: String,
    #[schema(minimum = 1, maximum = 100_000)]
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignShipment {
    pub driver_id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelShipment {
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrackingEvent {
    /// `picked_up`, `in_transit`, `out_for_delivery`, `delivery_failed`, `delivered` or `returned`.
    #[schema(
        pattern = r"^(picked_up|in_transit|out_for_delivery|delivery_failed|delivered|returned)$"
    )]
    pub status: String,
    /// Required with `delivery_failed`, allowed with `returned`: `recipient_not_home`, `address_not_found`,
    /// `damaged`, `refused`, `access_denied`, `other`.
    #[schema(
        pattern = r"^(recipient_not_home|address_not_found|damaged|refused|access_denied|other)$"
    )]
    pub reason: Option<String>,
    pub description: Option<String>,
    pub location: Option<Location>,
    /// When it happened (default now); an event older than the shipment's current status is stored but
    /// moves nothing.
    #[serde(default, deserialize_with = "platform::extract::timestamp::optional")]
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProof {
    /// `signature`, `photo` or `scan`.
    #[serde(rename = "type")]
    #[schema(pattern = r"^(signature|photo|scan)$")]
    pub kind: String,
    pub receiver_name: String,
    /// The signature's, photo's or scan's reference in the document store.
    pub reference: String,
}

fn status_list_schema() -> Object {
    list::one_of_schema(ShipmentStatus::NAMES)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ShipmentQuery {
    /// Comma list of statuses.
    #[param(schema_with = status_list_schema)]
    pub status: Option<String>,
    /// Comma list of driver ids (staff only; drivers always see their own).
    #[param(schema_with = list::uuid_schema)]
    pub driver_id: Option<String>,
    /// Comma list of order ids.
    #[param(schema_with = list::uuid_schema)]
    pub order_id: Option<String>,
    /// Comma list of customer ids: shipments of their orders (staff; customers always see their own).
    #[param(schema_with = list::uuid_schema)]
    pub customer_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

platform::validated_by_parsing!(
    CreateShipment,
    AssignShipment,
    CancelShipment,
    CreateTrackingEvent,
    CreateProof,
    ShipmentQuery
);

/// Ships lines of an order.
#[utoipa::path(post, path = "/api/v1/orders/{id}/shipments", operation_id = "create_shipment", tag = "shipments", request_body = CreateShipment,
    params(("id" = Uuid, Path, description = "The order's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat")),
    security(("bearer_auth" = [])),
    responses((status = 201, body = ShipmentView, description = "with its tracking number",
            headers(("Location" = String, description = "the shipment's path; a replay names the same"))),
        (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "NOTHING_TO_SHIP, or the order cannot ship (INVALID_TRANSITION)"),
        (status = 422, body = platform::Problem)))]
pub async fn create(
    Staff(user): Staff,
    State(state): State<AppState>,
    Path(order_id): Path<Uuid>,
    Idempotent { key, body }: Idempotent<CreateShipment>,
) -> Result<Response, OrdersError> {
    let caller = Caller::of(&user);
    let mut errors = Vec::new();
    let lines = sku_lines(
        body.lines.iter().map(|l| (l.sku.as_str(), l.quantity)),
        &mut errors,
    );
    check(errors)?;
    let request = ShipmentRequest {
        order_id,
        warehouse_id: body.warehouse_id,
        lines,
        proof_required: body
            .proof_required
            .unwrap_or(state.config.proof_required_by_default),
        actor: caller.id(),
    };
    let messaging = state.messaging.clone();
    let run = effect(move |db, tally, conn| {
        let (messaging, request) = (messaging.clone(), request.clone());
        Box::pin(async move {
            let recorder = Recorder::for_request(&messaging, tally);
            let shipment = shipping::create(&db, conn, &recorder, &request).await?;
            Ok((StatusCode::CREATED, serde_json::to_value(shipment)?))
        })
    });
    let answer = idempotent::run(&state, caller.id(), key, run).await?;
    Ok(answer.located(|body| created::location_of_body(SHIPMENTS, body)))
}

/// Lists shipments.
#[utoipa::path(get, path = "/api/v1/shipments", operation_id = "list_shipments", tag = "shipments", params(ShipmentQuery),
    security(("bearer_auth" = [])),
    responses((status = 200, body = Page<ShipmentView>,
            description = "staff: all; drivers: assigned to them; customers: of their own orders"),
        (status = 403, body = platform::Problem),
        (status = 422, body = platform::Problem)))]
pub async fn list(
    user: AuthUser,
    State(state): State<AppState>,
    Query(query): Query<ShipmentQuery>,
) -> Result<axum::Json<Page<ShipmentView>>, OrdersError> {
    let caller = Caller::of(&user);
    let mut errors = Vec::new();
    let statuses = list::parse(
        query.status.as_deref(),
        "status",
        "a shipment status",
        ShipmentStatus::parse,
        &mut errors,
    );
    let mut drivers = list::uuids(query.driver_id.as_deref(), "driver_id", &mut errors);
    let orders = list::uuids(query.order_id.as_deref(), "order_id", &mut errors);
    let mut customers = list::uuids(query.customer_id.as_deref(), "customer_id", &mut errors);
    let page = PageParams::checked(query.limit, query.cursor.clone(), &mut errors);
    check(errors)?;
    // Filters only narrow what a caller may see: a customer's list is always scoped to their own orders, a
    // driver's to their assignments, whatever else they ask for.
    match caller {
        Caller::Customer(me) => match only_own(&customers, me) {
            Some(own) => customers = own,
            None => return Ok(axum::Json(Page::empty())),
        },
        Caller::Driver(me) => match only_own(&drivers, me) {
            Some(own) => drivers = own,
            None => return Ok(axum::Json(Page::empty())),
        },
        Caller::Staff(_) => {}
    }
    let filter = ShipmentFilter {
        statuses,
        drivers,
        orders,
        customers,
        after: page.after(),
        limit: page.limit(),
    };
    let rows = shipments::list(&state.db, &filter).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |s| s.id)))
}

/// The shipment if the caller may see it (404 otherwise).
async fn visible(state: &AppState, caller: Caller, id: Uuid) -> Result<ShipmentView, OrdersError> {
    let mut conn = state.db.acquire().await?;
    let shipment = shipments::load(&state.db, &mut conn, id)
        .await?
        .ok_or(OrdersError::NotFound("shipment"))?;
    let visible = match caller {
        Caller::Staff(_) => true,
        Caller::Driver(me) => shipment.driver_id == Some(me),
        Caller::Customer(me) => {
            let order =
                crate::repo::orders::load(&state.db, &mut conn, shipment.order_id, false).await?;
            order.is_some_and(|o| o.customer_id == me)
        }
    };
    if visible {
        Ok(shipment)
    } else {
        Err(OrdersError::NotFound("shipment"))
    }
}

/// One shipment.
#[utoipa::path(get, path = "/api/v1/shipments/{id}", operation_id = "get_shipment", tag = "shipments",
    params(("id" = Uuid, Path, description = "The shipment's id")), security(("bearer_auth" = [])),
    responses((status = 200, body = ShipmentView, description = "with an ETag of its version"),
        (status = 404, body = platform::Problem)))]
pub async fn get(
    user: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, OrdersError> {
    let shipment = visible(&state, Caller::of(&user), id).await?;
    let mut headers = HeaderMap::new();
    set_etag(&mut headers, shipment.version.into());
    Ok((headers, axum::Json(shipment)))
}

/// Assigns a shipment to a driver.
#[utoipa::path(post, path = "/api/v1/shipments/{id}/assign", operation_id = "assign_shipment", tag = "shipments", request_body = AssignShipment,
    params(("id" = Uuid, Path, description = "The shipment's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat"),
        ("If-Match" = Option<String>, Header, description = "Only if the shipment is still at this ETag")),
    security(("bearer_auth" = [])),
    responses((status = 200, body = ShipmentView), (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "INVALID_TRANSITION after pickup"),
        (status = 412, body = platform::Problem)))]
pub async fn assign(
    Staff(user): Staff,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Idempotent { key, body }: Idempotent<AssignShipment>,
) -> Result<Answer, OrdersError> {
    let caller = Caller::of(&user);
    let driver = body.driver_id;
    let messaging = state.messaging.clone();
    let run = effect(move |db, tally, conn| {
        let (messaging, headers) = (messaging.clone(), headers.clone());
        Box::pin(async move {
            let shipment = shipping::lock(&db, conn, id, caller).await?;
            check_if_match(&headers, shipment.version)?;
            let recorder = Recorder::for_request(&messaging, tally);
            let view =
                shipping::assign(&db, conn, &recorder, &shipment, driver, caller.id()).await?;
            Ok((StatusCode::OK, serde_json::to_value(view)?))
        })
    });
    idempotent::run(&state, caller.id(), key, run).await
}

/// Cancels a shipment before pickup.
#[utoipa::path(post, path = "/api/v1/shipments/{id}/cancel", operation_id = "cancel_shipment", tag = "shipments", request_body = CancelShipment,
    params(("id" = Uuid, Path, description = "The shipment's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat"),
        ("If-Match" = Option<String>, Header, description = "Only if the shipment is still at this ETag")),
    security(("bearer_auth" = [])),
    responses((status = 200, body = ShipmentView, description = "cancelled; its lines may ship again"),
        (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "INVALID_TRANSITION after pickup"),
        (status = 412, body = platform::Problem)))]
pub async fn cancel(
    Staff(user): Staff,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Idempotent { key, body }: Idempotent<CancelShipment>,
) -> Result<Answer, OrdersError> {
    let caller = Caller::of(&user);
    let mut errors = Vec::new();
    let reason = body
        .reason
        .as_deref()
        .map(|r| text(r, "reason", 500, &mut errors));
    check(errors)?;
    let messaging = state.messaging.clone();
    let run = effect(move |db, tally, conn| {
        let (messaging, headers, reason) = (messaging.clone(), headers.clone(), reason.clone());
        Box::pin(async move {
            let shipment = shipping::lock(&db, conn, id, caller).await?;
            check_if_match(&headers, shipment.version)?;
            let recorder = Recorder::for_request(&messaging, tally);
            let view =
                shipping::cancel(&db, conn, &recorder, &shipment, reason, caller.id()).await?;
            Ok((StatusCode::OK, serde_json::to_value(view)?))
        })
    });
    idempotent::run(&state, caller.id(), key, run).await
}

fn tracking_request(
    body: &CreateTrackingEvent,
    actor: Uuid,
) -> Result<TrackingRequest, OrdersError> {
    let mut errors = Vec::new();
    let status = ShipmentStatus::parse(body.status.trim()).filter(|s| s.is_tracked());
    if status.is_none() {
        errors.push(FieldError::new(
            "status",
            "INVALID_VALUE",
            "must be picked_up, in_transit, out_for_delivery, delivery_failed, delivered or returned",
        ));
    }
    let reason = match body.reason.as_deref() {
        None => None,
        Some(text) => {
            let parsed = IncidentReason::parse(text.trim());
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "reason",
                    "INVALID_VALUE",
                    "must be recipient_not_home, address_not_found, damaged, refused, access_denied or other",
                ));
            }
            parsed
        }
    };
    match status {
        Some(ShipmentStatus::DeliveryFailed) if body.reason.is_none() => errors.push(
            FieldError::new("reason", "REQUIRED", "a failed delivery must say why"),
        ),
        Some(ShipmentStatus::DeliveryFailed | ShipmentStatus::Returned) | None => {}
        Some(_) if body.reason.is_some() => errors.push(FieldError::new(
            "reason",
            "NOT_ALLOWED",
            "only delivery_failed and returned take a reason",
        )),
        Some(_) => {}
    }
    let description = body
        .description
        .as_deref()
        .map(|d| text(d, "description", 1000, &mut errors));
    if let Some(location) = &body.location {
        if !(-90.0..=90.0).contains(&location.lat) {
            errors.push(FieldError::new(
                "location.lat",
                "OUT_OF_RANGE",
                "must be between -90 and 90",
            ));
        }
        if !(-180.0..=180.0).contains(&location.lng) {
            errors.push(FieldError::new(
                "location.lng",
                "OUT_OF_RANGE",
                "must be between -180 and 180",
            ));
        }
        if let Some(city) = &location.city {
            text(city, "location.city", 100, &mut errors);
        }
        if location
            .country
            .as_deref()
            .is_some_and(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            errors.push(FieldError::new(
                "location.country",
                "INVALID_FORMAT",
                "must be an ISO 3166-1 alpha-2 code such as NL",
            ));
        }
    }
    let now = Utc::now();
    // At the database's precision (microseconds), so what is compared later is exactly what was stored:
    // PostgreSQL rounds, which could put a status a fraction after the event that reached it.
    let occurred_at = body
        .occurred_at
        .unwrap_or(now)
        .trunc_subsecs(TIMESTAMP_DIGITS);
    if occurred_at > now + MAX_CLOCK_SKEW {
        errors.push(FieldError::new(
            "occurred_at",
            "IN_FUTURE",
            "must not be in the future",
        ));
    }
    check(errors)?;
    let status =
        status.ok_or_else(|| OrdersError::field("status", "INVALID_VALUE", "unknown status"))?;
    Ok(TrackingRequest {
        status,
        reason,
        description,
        location: body.location.clone(),
        occurred_at,
        actor,
    })
}

/// Reports a tracking event of a shipment.
#[utoipa::path(post, path = "/api/v1/shipments/{id}/tracking-events", operation_id = "create_tracking_event", tag = "shipments",
    request_body = CreateTrackingEvent,
    params(("id" = Uuid, Path, description = "The shipment's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat"),
        ("If-Match" = Option<String>, Header, description = "Only if the shipment is still at this ETag")),
    security(("bearer_auth" = [])),
    responses((status = 201, body = TrackingEventView, description = "stored; `applied` says whether it moved the shipment",
            headers(("Location" = String, description = "the shipment's tracking events, where this one is listed"))),
        (status = 403, body = platform::Problem), (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "INVALID_TRANSITION or PROOF_REQUIRED"),
        (status = 412, body = platform::Problem), (status = 422, body = platform::Problem)))]
pub async fn add_tracking_event(
    StaffOrDriver(user): StaffOrDriver,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Idempotent { key, body }: Idempotent<CreateTrackingEvent>,
) -> Result<Response, OrdersError> {
    let caller = Caller::of(&user);
    let request = tracking_request(&body, caller.id())?;
    let messaging = state.messaging.clone();
    let run = effect(move |db, tally, conn| {
        let (messaging, headers, request) = (messaging.clone(), headers.clone(), request.clone());
        Box::pin(async move {
            let shipment = shipping::lock(&db, conn, id, caller).await?;
            check_if_match(&headers, shipment.version)?;
            let recorder = Recorder::for_request(&messaging, tally);
            let event = shipping::track(&db, conn, &recorder, &shipment, &request).await?;
            Ok((StatusCode::CREATED, serde_json::to_value(event)?))
        })
    });
    let answer = idempotent::run(&state, caller.id(), key, run).await?;
    Ok(answer.located(|_| {
        Some(format!(
            "{}/tracking-events",
            created::location(SHIPMENTS, id)
        ))
    }))
}

/// A shipment's tracking events.
#[utoipa::path(get, path = "/api/v1/shipments/{id}/tracking-events", operation_id = "list_tracking_events", tag = "shipments",
    params(("id" = Uuid, Path, description = "The shipment's id")), security(("bearer_auth" = [])),
    responses((status = 200, body = Vec<TrackingEventView>, description = "in the order they happened"),
        (status = 403, body = platform::Problem), (status = 404, body = platform::Problem)))]
pub async fn tracking_events(
    StaffOrDriver(user): StaffOrDriver,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Vec<TrackingEventView>>, OrdersError> {
    let caller = Caller::of(&user);
    let shipment = visible(&state, caller, id).await?;
    Ok(axum::Json(
        shipments::tracking(&state.db, shipment.id).await?,
    ))
}

/// Records the proof of delivery.
#[utoipa::path(post, path = "/api/v1/shipments/{id}/proof", operation_id = "create_proof", tag = "shipments", request_body = CreateProof,
    params(("id" = Uuid, Path, description = "The shipment's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat")),
    security(("bearer_auth" = [])),
    responses((status = 201, body = ShipmentView, description = "the shipment with its proof",
            headers(("Location" = String, description = "the shipment's path, which shows the proof"))),
        (status = 403, body = platform::Problem), (status = 404, body = platform::Problem),
        (status = 409, body = platform::Problem, description = "not out for delivery, or proven already"),
        (status = 422, body = platform::Problem)))]
pub async fn proof(
    Driver(user): Driver,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Idempotent { key, body }: Idempotent<CreateProof>,
) -> Result<Response, OrdersError> {
    let caller = Caller::of(&user);
    let mut errors = Vec::new();
    let kind = ProofKind::parse(body.kind.trim());
    if kind.is_none() {
        errors.push(FieldError::new(
            "type",
            "INVALID_VALUE",
            "must be signature, photo or scan",
        ));
    }
    let receiver_name = text(&body.receiver_name, "receiver_name", 200, &mut errors);
    let reference = text(&body.reference, "reference", 500, &mut errors);
    check(errors)?;
    let kind = kind.ok_or_else(|| OrdersError::field("type", "INVALID_VALUE", "unknown type"))?;
    let request = ProofRequest {
        kind,
        receiver_name,
        reference,
        actor: caller.id(),
    };
    // Proving records no event and changes no status: nothing for the business metrics.
    let run = effect(move |db, _tally, conn| {
        let request = request.clone();
        Box::pin(async move {
            let shipment = shipping::lock(&db, conn, id, caller).await?;
            let view = shipping::prove(&db, conn, &shipment, &request).await?;
            Ok((StatusCode::CREATED, serde_json::to_value(view)?))
        })
    });
    let answer = idempotent::run(&state, caller.id(), key, run).await?;
    Ok(answer.located(|_| Some(created::location(SHIPMENTS, id))))
}
