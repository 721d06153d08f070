//! Typed payloads (`data`) of the event catalogue. Consumers ignore fields they do not know, so a producer may
//! add optional fields without bumping the type's version; removing or retyping one needs a new version.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::{EventPayload, EventType};

macro_rules! payload {
    ($ty:ident => $kind:ident) => {
        impl EventPayload for $ty {
            const TYPE: EventType = EventType::$kind;
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: Uuid,
    pub email: String,
    pub full_name: String,
    #[serde(default)]
    pub phone: Option<String>,
    pub role: String,
}
payload!(UserCreated => UserCreated);

/// The profile after the change, so consumers keeping a copy need no call back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    pub user_id: Uuid,
    pub email: String,
    pub full_name: String,
    #[serde(default)]
    pub phone: Option<String>,
    pub role: String,
    pub status: String,
    pub updated_at: DateTime<Utc>,
}
payload!(UserUpdated => UserUpdated);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRoleChanged {
    pub user_id: Uuid,
    pub old_role: String,
    pub new_role: String,
    #[serde(default)]
    pub changed_by: Option<Uuid>,
}
payload!(UserRoleChanged => UserRoleChanged);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeactivated {
    pub user_id: Uuid,
    #[serde(default)]
    pub deactivated_by: Option<Uuid>,
}
payload!(UserDeactivated => UserDeactivated);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryAdjusted {
    pub product_id: Uuid,
    pub sku: String,
    pub warehouse_id: Uuid,
    pub delta: i64,
    /// `receipt`, `adjustment`, `count`, `return`, `damage`, `transfer`.
    pub reason: String,
    pub on_hand: i64,
    pub reserved: i64,
}
payload!(InventoryAdjusted => InventoryAdjusted);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: String,
    pub warehouse_id: Uuid,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReserved {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    pub lines: Vec<ReservedLine>,
    pub expires_at: DateTime<Utc>,
}
payload!(InventoryReserved => InventoryReserved);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShortLine {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReservationFailed {
    pub order_id: Uuid,
    pub shortages: Vec<ShortLine>,
}
payload!(InventoryReservationFailed => InventoryReservationFailed);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryReleased {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
    /// `cancelled`, `expired`, `manual`.
    pub reason: String,
}
payload!(InventoryReleased => InventoryReleased);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryCommitted {
    pub reservation_id: Uuid,
    pub order_id: Uuid,
}
payload!(InventoryCommitted => InventoryCommitted);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryLowStock {
    pub product_id: Uuid,
    pub sku: String,
    pub warehouse_id: Uuid,
    pub available: i64,
    pub reorder_point: i64,
}
payload!(InventoryLowStock => InventoryLowStock);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    #[serde(default)]
    pub unit_price: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub lines: Vec<OrderLine>,
    pub currency: String,
}
payload!(OrderCreated => OrderCreated);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmed {
    pub order_id: Uuid,
    #[serde(default)]
    pub reservation_id: Option<Uuid>,
}
payload!(OrderConfirmed => OrderConfirmed);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub order_id: Uuid,
    pub reason: String,
    #[serde(default)]
    pub shortages: Vec<ShortLine>,
}
payload!(OrderRejected => OrderRejected);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: Uuid,
    pub reason: String,
    #[serde(default)]
    pub cancelled_by: Option<Uuid>,
}
payload!(OrderCancelled => OrderCancelled);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderExpired {
    pub order_id: Uuid,
}
payload!(OrderExpired => OrderExpired);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderStatusChanged {
    pub order_id: Uuid,
    pub from: String,
    pub to: String,
}
payload!(OrderStatusChanged => OrderStatusChanged);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentLine {
    pub sku: String,
    pub quantity: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentCreated {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub warehouse_id: Uuid,
    pub tracking_number: String,
    pub lines: Vec<ShipmentLine>,
}
payload!(ShipmentCreated => ShipmentCreated);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentAssigned {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub driver_id: Uuid,
}
payload!(ShipmentAssigned => ShipmentAssigned);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentStatusChanged {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// Where the shipment leaves from and what it carries, so inventory can consume the stock on
    /// `picked_up` and take it back on `returned` without calling the orders service.
    #[serde(default)]
    pub warehouse_id: Option<Uuid>,
    #[serde(default)]
    pub lines: Vec<ShipmentLine>,
}
payload!(ShipmentStatusChanged => ShipmentStatusChanged);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentDelivered {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    pub delivered_at: DateTime<Utc>,
    #[serde(default)]
    pub receiver_name: Option<String>,
}
payload!(ShipmentDelivered => ShipmentDelivered);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentCancelled {
    pub shipment_id: Uuid,
    pub order_id: Uuid,
    #[serde(default)]
    pub reason: Option<String>,
}
payload!(ShipmentCancelled => ShipmentCancelled);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_ignore_fields_added_by_newer_producers() {
        let json = serde_json::json!({
            "order_id": Uuid::nil(),
            "from": "pending",
            "to": "confirmed",
            "note": "added later",
        });
        let parsed: OrderStatusChanged = serde_json::from_value(json).expect("parse");
        assert_eq!(parsed.to, "confirmed");
    }
}
