//! `/api/v1/orders`: customers order for themselves and see only their own orders; staff order for any
//! customer and see every order; drivers work on shipments, not orders.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use platform::FieldError;
use platform::auth::AuthUser;
use platform::auth::roles::StaffOrCustomer;
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

use super::{ORDERS, only_own, sku_lines, text};
use crate::domain::OrderStatus;
use crate::error::OrdersError;
use crate::events::Recorder;
use crate::idempotent::{self, Answer, check_if_match, effect, set_etag};
use crate::models::{Address, OrderView, TimelineEntry};
use crate::ordering;
use crate::repo::orders::{self, NewOrder, OrderFilter};
use crate::state::{AppState, Caller};

/// Largest unit price (minor units): a billion of the currency's major unit.
const MAX_UNIT_PRICE: i64 = 100_000_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    /// Staff order for this customer (required for them); a customer may only name themselves.
    pub customer_id: Option<Uuid>,
    /// 1-100 lines, each sku once.
    #[schema(min_items = 1, max_items = 100)]
    pub lines: Vec<CreateLine>,
    /// ISO 4217; the configured default (EUR) when absent.
    #[schema(pattern = r"^[A-Z]{3}$")]
    pub currency: Option<String>,
    pub shipping_address: Address,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLine {
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z0-9._/-]{1,64}[\t\n\x0b\x0c\r ]*$")]
    pub sku: String,
    /// 1-100000.
    #[schema(minimum = 1, maximum = 100_000)]
    pub quantity: i64,
    /// Minor units, ≥ 0.
    #[schema(minimum = 0, maximum = 100_000_000_000_f64)]
    pub unit_price: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    /// Why; kept in the timeline and the `order.cancelled` event.
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub reason: Option<String>,
}

fn status_list_schema() -> Object {
    list::one_of_schema(OrderStatus::NAMES)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    /// Comma list of statuses.
    #[param(schema_with = status_list_schema)]
    pub status: Option<String>,
    /// Comma list of customer ids (staff only; customers always see their own).
    #[param(schema_with = list::uuid_schema)]
    pub customer_id: Option<String>,
    #[serde(default, deserialize_with = "platform::extract::timestamp::optional")]
    pub created_after: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "platform::extract::timestamp::optional")]
    pub created_before: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineQuery {
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

platform::validated_by_parsing!(CreateOrder, CancelOrder, OrderQuery, TimelineQuery);

fn address(input: &Address, errors: &mut Vec<FieldError>) -> Address {
    let country = input.country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(FieldError::new(
            "shipping_address.country",
            "INVALID_FORMAT",
            "must be an ISO 3166-1 alpha-2 code such as NL",
        ));
    }
    Address {
        name: text(&input.name, "shipping_address.name", 200, errors),
        street: text(&input.street, "shipping_address.street", 200, errors),
        city: text(&input.city, "shipping_address.city", 100, errors),
        postal_code: text(
            &input.postal_code,
            "shipping_address.postal_code",
            20,
            errors,
        ),
        country,
    }
}

/// Checks the body against the caller: what is wrong with it as field errors, who may order for whom as 403.
fn new_order(
    state: &AppState,
    caller: Caller,
    body: &CreateOrder,
) -> Result<NewOrder, OrdersError> {
    let customer_id = match (caller, body.customer_id) {
        (Caller::Driver(_), _) => return Err(OrdersError::Forbidden("place orders")),
        (Caller::Customer(me), None) => me,
        (Caller::Customer(me), Some(other)) if other == me => me,
        (Caller::Customer(_), Some(_)) => {
            return Err(OrdersError::Forbidden("order for another customer"));
        }
        (Caller::Staff(_), Some(customer)) => customer,
        (Caller::Staff(_), None) => {
            return Err(OrdersError::field(
                "customer_id",
                "REQUIRED",
                "staff must name the customer the order is for",
            ));
        }
    };
    let mut errors = Vec::new();
    let skus = sku_lines(
        body.lines.iter().map(|l| (l.sku.as_str(), l.quantity)),
        &mut errors,
    );
    for (index, line) in body.lines.iter().enumerate() {
        if line
            .unit_price
            .is_some_and(|p| !(0..=MAX_UNIT_PRICE).contains(&p))
        {
            errors.push(FieldError::new(
                format!("lines[{index}].unit_price"),
                "OUT_OF_RANGE",
                format!("must be between 0 and {MAX_UNIT_PRICE} minor units"),
            ));
        }
    }
    let lines = skus
        .into_iter()
        .zip(&body.lines)
        .map(|((sku, quantity), line)| (sku, i32::try_from(quantity).unwrap_or(0), line.unit_price))
        .collect();
    let currency = body.currency.as_deref().map_or_else(
        || state.config.default_currency.clone(),
        |c| c.trim().to_owned(),
    );
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.push(FieldError::new(
            "currency",
            "INVALID_FORMAT",
            "must be an ISO 4217 code of three uppercase letters",
        ));
    } else if !platform::currency::is_active(&currency) {
        errors.push(FieldError::new(
            "currency",
            "INVALID_VALUE",
            "must be an active ISO 4217 currency code, such as EUR",
        ));
    }
    let shipping_address = address(&body.shipping_address, &mut errors);
    check(errors)?;
    let pending_ttl =
        chrono::Duration::from_std(state.config.pending_ttl).unwrap_or(chrono::Duration::MAX);
    Ok(NewOrder {
        id: Uuid::now_v7(),
        customer_id,
        currency,
        shipping_address,
        lines,
        pending_until: Utc::now() + pending_ttl,
        created_by: caller.id(),
    })
}

/// Places an order.
#[utoipa::path(post, path = "/api/v1/orders", operation_id = "create_order", tag = "orders", request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat")),
    security(("bearer_auth" = [])),
    responses((status = 201, body = OrderView, description = "created, pending until inventory answers",
            headers(("Location" = String, description = "the order's path; a replay names the same"))),
        (status = 403, body = platform::Problem), (status = 422, body = platform::Problem)))]
pub async fn create(
    StaffOrCustomer(user): StaffOrCustomer,
    State(state): State<AppState>,
    Idempotent { key, body }: Idempotent<CreateOrder>,
) -> Result<Response, OrdersError> {
    let caller = Caller::of(&user);
    let order = new_order(&state, caller, &body)?;
    let messaging = state.messaging.clone();
    let run = effect(move |db, tally, conn| {
        // A rerun after a serialization failure must not reuse the first attempt's id.
        let order = NewOrder {
            id: Uuid::now_v7(),
            ..order.clone()
        };
        let messaging = messaging.clone();
        Box::pin(async move {
            let recorder = Recorder::for_request(&messaging, tally);
            let view = ordering::create(&db, conn, &recorder, &order).await?;
            Ok((StatusCode::CREATED, serde_json::to_value(view)?))
        })
    });
    let answer = idempotent::run(&state, caller.id(), key, run).await?;
    if let Answer::Fresh(_, body) = &answer {
        tracing::info!(order_id = %body["id"].as_str().unwrap_or_default(), "order created");
    }
    Ok(answer.located(|body| created::location_of_body(ORDERS, body)))
}

/// The order if the caller may see it: staff any, customers their own (404 otherwise, as for no order).
async fn visible(state: &AppState, caller: Caller, id: Uuid) -> Result<OrderView, OrdersError> {
    if let Caller::Driver(_) = caller {
        return Err(OrdersError::Forbidden("read orders"));
    }
    let mut conn = state.db.acquire().await?;
    let order = orders::load(&state.db, &mut conn, id, false)
        .await?
        .ok_or(OrdersError::NotFound("order"))?;
    match caller {
        Caller::Customer(me) if order.customer_id != me => Err(OrdersError::NotFound("order")),
        _ => Ok(order),
    }
}

/// One order with its lines.
#[utoipa::path(get, path = "/api/v1/orders/{id}", operation_id = "get_order", tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id")), security(("bearer_auth" = [])),
    responses((status = 200, body = OrderView, description = "with an ETag of its version"),
        (status = 404, body = platform::Problem)))]
pub async fn get(
    user: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<impl IntoResponse, OrdersError> {
    let order = visible(&state, Caller::of(&user), id).await?;
    let mut headers = HeaderMap::new();
    set_etag(&mut headers, order.version.into());
    Ok((headers, axum::Json(order)))
}

/// Lists orders: a customer's own, or any for staff.
#[utoipa::path(get, path = "/api/v1/orders", operation_id = "list_orders", tag = "orders", params(OrderQuery),
    security(("bearer_auth" = [])),
    responses((status = 200, body = Page<OrderView>), (status = 403, body = platform::Problem),
        (status = 422, body = platform::Problem)))]
pub async fn list(
    StaffOrCustomer(user): StaffOrCustomer,
    State(state): State<AppState>,
    Query(query): Query<OrderQuery>,
) -> Result<axum::Json<Page<OrderView>>, OrdersError> {
    let caller = Caller::of(&user);
    let mut errors = Vec::new();
    let statuses = list::parse(
        query.status.as_deref(),
        "status",
        "an order status",
        OrderStatus::parse,
        &mut errors,
    );
    let mut customers = list::uuids(query.customer_id.as_deref(), "customer_id", &mut errors);
    let page = PageParams::checked(query.limit, query.cursor.clone(), &mut errors);
    check(errors)?;
    match caller {
        Caller::Driver(_) => return Err(OrdersError::Forbidden("read orders")),
        // Their own orders, whatever else they asked for: another customer's id just finds nothing.
        Caller::Customer(me) => match only_own(&customers, me) {
            Some(own) => customers = own,
            None => return Ok(axum::Json(Page::empty())),
        },
        Caller::Staff(_) => {}
    }
    let filter = OrderFilter {
        statuses,
        customers,
        created_after: query.created_after,
        created_before: query.created_before,
        after: page.after(),
        limit: page.limit(),
    };
    let rows = orders::list(&state.db, &filter).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |o| o.id)))
}

/// Cancels an order and releases its stock.
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", operation_id = "cancel_order", tag = "orders", request_body = CancelOrder,
    params(("id" = Uuid, Path, description = "The order's id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Replays the stored response for a repeat"),
        ("If-Match" = Option<String>, Header, description = "Cancel only if the order is still at this ETag")),
    security(("bearer_auth" = [])),
    responses((status = 200, body = OrderView, description = "cancelled; inventory releases the stock"),
        (status = 404, body = platform::Problem), (status = 409, body = platform::Problem, description = "INVALID_TRANSITION"),
        (status = 412, body = platform::Problem)))]
pub async fn cancel(
    StaffOrCustomer(user): StaffOrCustomer,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Idempotent { key, body }: Idempotent<CancelOrder>,
) -> Result<Answer, OrdersError> {
    let caller = Caller::of(&user);
    let mut errors = Vec::new();
    let reason = body
        .reason
        .as_deref()
        .map(|r| text(r, "reason", 500, &mut errors))
        .unwrap_or_else(|| "no reason given".into());
    check(errors)?;
    let messaging = state.messaging.clone();
    let run = effect(move |db, tally, conn| {
        let (messaging, headers, reason) = (messaging.clone(), headers.clone(), reason.clone());
        Box::pin(async move {
            let order = orders::load(&db, conn, id, true)
                .await?
                .filter(|o| !matches!(caller, Caller::Customer(me) if o.customer_id != me))
                .ok_or(OrdersError::NotFound("order"))?;
            check_if_match(&headers, order.version)?;
            let recorder = Recorder::for_request(&messaging, tally);
            ordering::cancel(&db, conn, &recorder, &order, &reason, Some(caller.id())).await?;
            let view = orders::load(&db, conn, id, false)
                .await?
                .ok_or(OrdersError::NotFound("order"))?;
            Ok((StatusCode::OK, serde_json::to_value(view)?))
        })
    });
    idempotent::run(&state, caller.id(), key, run).await
}

/// An order's timeline.
#[utoipa::path(get, path = "/api/v1/orders/{id}/events", operation_id = "list_order_events", tag = "orders",
    params(("id" = Uuid, Path, description = "The order's id"), TimelineQuery),
    security(("bearer_auth" = [])),
    responses((status = 200, body = Page<TimelineEntry>, description = "oldest first"),
        (status = 404, body = platform::Problem)))]
pub async fn timeline(
    user: AuthUser,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<TimelineQuery>,
) -> Result<axum::Json<Page<TimelineEntry>>, OrdersError> {
    let mut errors = Vec::new();
    let page = PageParams::checked(query.limit, query.cursor, &mut errors);
    check(errors)?;
    let order = visible(&state, Caller::of(&user), id).await?;
    let rows = orders::timeline(&state.db, order.id, page.after(), page.limit()).await?;
    Ok(axum::Json(Page::from_rows(rows, page.limit(), |e| e.id)))
}
