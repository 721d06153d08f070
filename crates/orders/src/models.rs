//! What the API returns, and the rows they are read from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use sqlx::types::Json;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{IncidentReason, LineProgress, OrderStatus, ProofKind, ShipmentStatus};

/// Where an order goes. Personal data: never on the public tracking page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Address {
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub street: String,
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub city: String,
    #[schema(
        max_length = 20,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `NL`.
    #[schema(pattern = r"^[\t\n\x0b\x0c\r ]*[A-Za-z]{2}[\t\n\x0b\x0c\r ]*$")]
    pub country: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderLineView {
    pub sku: String,
    pub quantity: i64,
    /// Minor units of the order's currency; absent when the order was placed without prices.
    pub unit_price: Option<i64>,
    /// Picked up by a shipment.
    pub quantity_shipped: i64,
    pub quantity_delivered: i64,
    /// Shipped and brought back.
    pub quantity_returned: i64,
    /// Will never ship (the order was cancelled).
    pub quantity_cancelled: i64,
}

impl OrderLineView {
    pub fn progress(&self) -> LineProgress {
        LineProgress {
            quantity: self.quantity,
            shipped: self.quantity_shipped,
            delivered: self.quantity_delivered,
            returned: self.quantity_returned,
            cancelled: self.quantity_cancelled,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    /// Sequential and human-readable.
    pub number: i64,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// ISO 4217.
    pub currency: String,
    pub shipping_address: Address,
    pub lines: Vec<OrderLineView>,
    /// Sum of quantity × unit price over the priced lines, in minor units.
    pub total_amount: i64,
    /// Inventory's hold for this order, once confirmed.
    pub reservation_id: Option<Uuid>,
    /// Also the `ETag`; send it back in `If-Match` to change the order only if nobody else did.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct OrderRow {
    pub id: Uuid,
    pub number: i64,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub currency: String,
    pub shipping_address: Json<Address>,
    pub total_amount: i64,
    pub reservation_id: Option<Uuid>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRow {
    pub fn into_view(self, lines: Vec<OrderLineView>) -> OrderView {
        OrderView {
            id: self.id,
            number: self.number,
            customer_id: self.customer_id,
            status: self.status,
            currency: self.currency,
            shipping_address: self.shipping_address.0,
            lines,
            total_amount: self.total_amount,
            reservation_id: self.reservation_id,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct LineRow {
    pub order_id: Uuid,
    pub sku: String,
    pub quantity: i32,
    pub unit_price: Option<i64>,
    pub quantity_shipped: i32,
    pub quantity_delivered: i32,
    pub quantity_returned: i32,
    pub quantity_cancelled: i32,
}

impl From<LineRow> for OrderLineView {
    fn from(row: LineRow) -> Self {
        Self {
            sku: row.sku,
            quantity: row.quantity.into(),
            unit_price: row.unit_price,
            quantity_shipped: row.quantity_shipped.into(),
            quantity_delivered: row.quantity_delivered.into(),
            quantity_returned: row.quantity_returned.into(),
            quantity_cancelled: row.quantity_cancelled.into(),
        }
    }
}

/// One entry of an order's append-only timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, FromRow)]
pub struct TimelineEntry {
    pub id: Uuid,
    /// `created`, `status_changed`, `shipment_created`, `shipment_status_changed`, …
    #[serde(rename = "type")]
    #[sqlx(rename = "kind")]
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    /// What else there is to know, e.g. the short lines of a rejection.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Who did it; none for the saga and the sweeper.
    pub actor_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub lat: f64,
    pub lng: f64,
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, FromRow)]
pub struct ShipmentLineView {
    pub sku: String,
    #[sqlx(try_from = "i32")]
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, FromRow)]
pub struct ProofView {
    #[serde(rename = "type")]
    pub kind: ProofKind,
    pub receiver_name: String,
    pub reference: String,
    pub recorded_by: Uuid,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ShipmentView {
    pub id: Uuid,
    pub order_id: Uuid,
    pub warehouse_id: Uuid,
    /// Unique and hard to guess: the key of the public tracking page.
    pub tracking_number: String,
    pub driver_id: Option<Uuid>,
    pub status: ShipmentStatus,
    /// `delivered` needs a proof first.
    pub proof_required: bool,
    pub lines: Vec<ShipmentLineView>,
    pub proof: Option<ProofView>,
    /// Also the `ETag`.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ShipmentRow {
    pub id: Uuid,
    pub order_id: Uuid,
    pub warehouse_id: Uuid,
    pub tracking_number: String,
    pub driver_id: Option<Uuid>,
    pub status: ShipmentStatus,
    pub proof_required: bool,
    pub version: i32,
    pub status_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ShipmentRow {
    pub fn into_view(self, lines: Vec<ShipmentLineView>, proof: Option<ProofView>) -> ShipmentView {
        ShipmentView {
            id: self.id,
            order_id: self.order_id,
            warehouse_id: self.warehouse_id,
            tracking_number: self.tracking_number,
            driver_id: self.driver_id,
            status: self.status,
            proof_required: self.proof_required,
            lines,
            proof,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TrackingEventView {
    pub id: Uuid,
    pub status: ShipmentStatus,
    pub reason: Option<IncidentReason>,
    pub description: Option<String>,
    pub location: Option<Location>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    /// `false`: kept for the record, but it moved nothing (it arrived late, or repeated the status).
    pub applied: bool,
}

#[derive(Debug, Clone, FromRow)]
pub struct TrackingRow {
    pub id: Uuid,
    pub status: ShipmentStatus,
    pub reason: Option<IncidentReason>,
    pub description: Option<String>,
    pub location: Option<Json<Location>>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub recorded_by: Uuid,
    pub applied: bool,
}

impl From<TrackingRow> for TrackingEventView {
    fn from(row: TrackingRow) -> Self {
        Self {
            id: row.id,
            status: row.status,
            reason: row.reason,
            description: row.description,
            location: row.location.map(|l| l.0),
            occurred_at: row.occurred_at,
            recorded_at: row.recorded_at,
            recorded_by: row.recorded_by,
            applied: row.applied,
        }
    }
}

/// The public tracking page: what a parcel's recipient may see without signing in. No names, addresses,
/// ids, coordinates or free text (a driver's note may name people).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicTracking {
    pub tracking_number: String,
    pub status: ShipmentStatus,
    pub events: Vec<PublicTrackingEvent>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PublicTrackingEvent {
    pub status: ShipmentStatus,
    pub reason: Option<IncidentReason>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub occurred_at: DateTime<Utc>,
}

impl From<&TrackingEventView> for PublicTrackingEvent {
    fn from(event: &TrackingEventView) -> Self {
        Self {
            status: event.status,
            reason: event.reason,
            city: event.location.as_ref().and_then(|l| l.city.clone()),
            country: event.location.as_ref().and_then(|l| l.country.clone()),
            occurred_at: event.occurred_at,
        }
    }
}
