//! Rows as stored and the shapes the API returns; here they coincide.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::{Reason, ReservationStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, ToSchema)]
pub struct Warehouse {
    pub id: Uuid,
    /// Unique, uppercase.
    pub code: String,
    pub name: String,
    pub address: String,
    /// Reservations draw from the lowest number first.
    pub priority: i32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns every warehouse query selects.
macro_rules! warehouse_columns {
    () => {
        "id, code, name, address, priority, active, created_at, updated_at"
    };
}
pub(crate) use warehouse_columns;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, ToSchema)]
pub struct Product {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub weight_grams: Option<i32>,
    /// Available stock at or below this in a warehouse marks it low.
    pub reorder_point: i32,
    /// Reservations may exceed stock on hand.
    pub allow_backorder: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns every product query selects.
macro_rules! product_columns {
    () => {
        "id, sku, name, weight_grams, reorder_point, allow_backorder, created_at, updated_at"
    };
}
pub(crate) use product_columns;

/// Stock of one product in one warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, ToSchema)]
pub struct StockLevel {
    pub id: Uuid,
    pub product_id: Uuid,
    pub sku: String,
    pub warehouse_id: Uuid,
    pub warehouse_code: String,
    pub on_hand: i64,
    /// Held by live reservations (expired holds not yet swept are not counted).
    pub reserved: i64,
    /// `on_hand - reserved`.
    pub available: i64,
    pub reorder_point: i64,
    /// Available is at or below the reorder point.
    pub below_reorder: bool,
    pub low_stock_since: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// One warehouse's part of a product's availability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, ToSchema)]
pub struct WarehouseAvailability {
    pub warehouse_id: Uuid,
    pub warehouse_code: String,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AvailabilityTotals {
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Availability {
    pub product_id: Uuid,
    pub sku: String,
    /// Active warehouses holding or having held the product, best priority first.
    pub warehouses: Vec<WarehouseAvailability>,
    pub totals: AvailabilityTotals,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, ToSchema)]
pub struct Movement {
    pub id: Uuid,
    pub sku: String,
    pub product_id: Uuid,
    pub warehouse_id: Uuid,
    pub delta: i32,
    #[sqlx(try_from = "String")]
    pub reason: Reason,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub actor: Option<Uuid>,
    /// on_hand of the stock row right after this movement.
    pub resulting_on_hand: i32,
    pub created_at: DateTime<Utc>,
}

/// The columns every movement query selects.
macro_rules! movement_columns {
    () => {
        "id, sku, product_id, warehouse_id, delta, reason, reference, note, actor, resulting_on_hand, created_at"
    };
}
pub(crate) use movement_columns;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow, ToSchema)]
pub struct ReservationLine {
    pub sku: String,
    pub warehouse_id: Uuid,
    pub quantity: i32,
    /// Shipped so far.
    pub consumed: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Reservation {
    pub id: Uuid,
    pub order_id: Uuid,
    pub status: ReservationStatus,
    pub lines: Vec<ReservationLine>,
    /// When a held reservation lapses; meaningless once it is committed or settled.
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A reservation row without its lines.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct ReservationHead {
    pub id: Uuid,
    pub order_id: Uuid,
    #[sqlx(try_from = "String")]
    pub status: ReservationStatus,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns every reservation query selects.
macro_rules! reservation_columns {
    () => {
        "id, order_id, status, expires_at, created_at, updated_at"
    };
}
pub(crate) use reservation_columns;

impl ReservationHead {
    pub fn with_lines(self, lines: Vec<ReservationLine>) -> Reservation {
        Reservation {
            id: self.id,
            order_id: self.order_id,
            status: self.status,
            lines,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}
