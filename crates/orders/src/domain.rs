//! The order and shipment state machines, in one place: every status change in the service asks these
//! tables first, and anything they do not list is 409 `INVALID_TRANSITION`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::OrdersError;

macro_rules! status_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];
            /// The wire names of [`Self::ALL`], in the same order.
            pub const NAMES: &[&str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                $name::parse(text).ok_or_else(|| format!("unknown {} {text:?}", stringify!($name)).into())
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

status_enum!(
    /// `pending → confirmed | rejected | expired`; `pending | confirmed → cancelled`;
    /// `confirmed → partially_shipped → shipped → delivered` (derived from the shipments' lines).
    OrderStatus {
        Pending => "pending",
        Confirmed => "confirmed",
        Rejected => "rejected",
        Expired => "expired",
        Cancelled => "cancelled",
        PartiallyShipped => "partially_shipped",
        Shipped => "shipped",
        Delivered => "delivered",
    }
);

status_enum!(
    /// `pending → assigned → picked_up → in_transit → out_for_delivery → delivered`;
    /// `out_for_delivery → delivery_failed → out_for_delivery | returned`; `pending | assigned → cancelled`.
    ShipmentStatus {
        Pending => "pending",
        Assigned => "assigned",
        PickedUp => "picked_up",
        InTransit => "in_transit",
        OutForDelivery => "out_for_delivery",
        DeliveryFailed => "delivery_failed",
        Delivered => "delivered",
        Returned => "returned",
        Cancelled => "cancelled",
    }
);

status_enum!(
    /// Why a delivery attempt failed (`delivery_failed`) or the goods came back (`returned`).
    IncidentReason {
        RecipientNotHome => "recipient_not_home",
        AddressNotFound => "address_not_found",
        Damaged => "damaged",
        Refused => "refused",
        AccessDenied => "access_denied",
        Other => "other",
    }
);

status_enum!(
    /// How a delivery was proven.
    ProofKind {
        Signature => "signature",
        Photo => "photo",
        Scan => "scan",
    }
);

impl OrderStatus {
    /// Whether the machine allows `self → to`.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Confirmed | Rejected | Expired | Cancelled)
                | (
                    Confirmed,
                    Cancelled | PartiallyShipped | Shipped | Delivered
                )
                | (PartiallyShipped, Shipped | Delivered)
                | (Shipped, Delivered)
        )
    }

    /// `Ok` when allowed, else the 409 naming both statuses.
    pub fn transition(self, to: OrderStatus) -> Result<OrderStatus, OrdersError> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(OrdersError::InvalidTransition {
                entity: "order",
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }

    /// Whether shipments may still be created for an order in this status.
    pub fn ships(self) -> bool {
        matches!(self, OrderStatus::Confirmed | OrderStatus::PartiallyShipped)
    }
}

impl ShipmentStatus {
    /// Whether the machine allows `self → to`.
    pub fn can_become(self, to: ShipmentStatus) -> bool {
        use ShipmentStatus::*;
        matches!(
            (self, to),
            (Pending, Assigned | Cancelled)
                | (Assigned, PickedUp | Cancelled)
                | (PickedUp, InTransit)
                | (InTransit, OutForDelivery)
                | (OutForDelivery, Delivered | DeliveryFailed)
                | (DeliveryFailed, OutForDelivery | Returned)
        )
    }

    pub fn transition(self, to: ShipmentStatus) -> Result<ShipmentStatus, OrdersError> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(OrdersError::InvalidTransition {
                entity: "shipment",
                from: self.as_str(),
                to: to.as_str(),
            })
        }
    }

    /// The statuses a tracking event may report (the rest are set by assign and cancel).
    pub fn is_tracked(self) -> bool {
        !matches!(
            self,
            ShipmentStatus::Pending | ShipmentStatus::Assigned | ShipmentStatus::Cancelled
        )
    }

    /// Nothing can happen to the shipment any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ShipmentStatus::Delivered | ShipmentStatus::Returned | ShipmentStatus::Cancelled
        )
    }

    /// Still waiting at the warehouse: cancellable, and it holds its lines without having taken them.
    pub fn is_open(self) -> bool {
        matches!(self, ShipmentStatus::Pending | ShipmentStatus::Assigned)
    }
}

/// What an order's lines add up to, for deriving its status after confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineProgress {
    pub quantity: i64,
    pub shipped: i64,
    pub delivered: i64,
    pub returned: i64,
    pub cancelled: i64,
}

/// The status a confirmed order's lines imply: delivered once every piece is delivered or settled otherwise
/// (returned, cancelled) with at least one delivered; shipped once every piece left a warehouse; partially
/// shipped once one did. `None` when nothing shipped yet (the order stays as it is).
pub fn derived_status(lines: &[LineProgress]) -> Option<OrderStatus> {
    let total = |f: fn(&LineProgress) -> i64| lines.iter().map(f).sum::<i64>();
    let all_settled = lines
        .iter()
        .all(|l| l.delivered + l.returned + l.cancelled >= l.quantity);
    let all_shipped = lines.iter().all(|l| l.shipped + l.cancelled >= l.quantity);
    if all_settled && total(|l| l.delivered) > 0 {
        Some(OrderStatus::Delivered)
    } else if all_shipped && total(|l| l.shipped) > 0 {
        Some(OrderStatus::Shipped)
    } else if total(|l| l.shipped) > 0 {
        Some(OrderStatus::PartiallyShipped)
    } else {
        None
    }
}

/// The order's next status given what its lines imply: only forward moves the machine allows, so a
/// returned shipment never takes a shipped order back to partially shipped.
pub fn advance(current: OrderStatus, lines: &[LineProgress]) -> Option<OrderStatus> {
    derived_status(lines).filter(|next| *next != current && current.can_become(*next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_machine_allows_exactly_the_contract_moves() {
        use OrderStatus::*;
        let allowed = [
            (Pending, Confirmed),
            (Pending, Rejected),
            (Pending, Expired),
            (Pending, Cancelled),
            (Confirmed, Cancelled),
            (Confirmed, PartiallyShipped),
            (Confirmed, Shipped),
            (Confirmed, Delivered),
            (PartiallyShipped, Shipped),
            (PartiallyShipped, Delivered),
            (Shipped, Delivered),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    from.can_become(*to),
                    allowed.contains(&(*from, *to)),
                    "{from} → {to}"
                );
            }
        }
        let error = Delivered.transition(Cancelled).expect_err("final");
        let problem = error.to_problem();
        assert_eq!(problem.status, 409);
        assert_eq!(problem.code, "INVALID_TRANSITION");
        assert!(problem.detail.contains("delivered") && problem.detail.contains("cancelled"));
    }

    #[test]
    fn the_shipment_machine_allows_exactly_the_contract_moves() {
        use ShipmentStatus::*;
        let allowed = [
            (Pending, Assigned),
            (Assigned, PickedUp),
            (PickedUp, InTransit),
            (InTransit, OutForDelivery),
            (OutForDelivery, Delivered),
            (OutForDelivery, DeliveryFailed),
            (DeliveryFailed, OutForDelivery),
            (DeliveryFailed, Returned),
            (Pending, Cancelled),
            (Assigned, Cancelled),
        ];
        for from in ShipmentStatus::ALL {
            for to in ShipmentStatus::ALL {
                assert_eq!(
                    from.can_become(*to),
                    allowed.contains(&(*from, *to)),
                    "{from} → {to}"
                );
            }
        }
    }

    fn line(quantity: i64, shipped: i64, delivered: i64, returned: i64) -> LineProgress {
        LineProgress {
            quantity,
            shipped,
            delivered,
            returned,
            cancelled: 0,
        }
    }

    #[test]
    fn the_order_status_follows_its_lines_forward_only() {
        use OrderStatus::*;
        assert_eq!(derived_status(&[line(5, 0, 0, 0)]), None);
        assert_eq!(
            derived_status(&[line(5, 3, 0, 0), line(2, 0, 0, 0)]),
            Some(PartiallyShipped)
        );
        assert_eq!(
            derived_status(&[line(5, 5, 0, 0), line(2, 2, 0, 0)]),
            Some(Shipped)
        );
        assert_eq!(
            derived_status(&[line(5, 5, 5, 0), line(2, 2, 2, 0)]),
            Some(Delivered)
        );
        // Everything returned: it left and came back, nothing was delivered; the order stays shipped.
        assert_eq!(derived_status(&[line(2, 2, 0, 2)]), Some(Shipped));
        assert_eq!(advance(Shipped, &[line(2, 2, 0, 2)]), None);
        // A part delivered and the rest returned is as delivered as the order gets.
        assert_eq!(advance(Shipped, &[line(4, 4, 3, 1)]), Some(Delivered));
        // Never backwards.
        assert_eq!(advance(Shipped, &[line(5, 3, 0, 0)]), None);
        assert_eq!(advance(Cancelled, &[line(5, 5, 0, 0)]), None);
    }

    #[test]
    fn statuses_round_trip_through_their_text() {
        for status in ShipmentStatus::ALL {
            assert_eq!(ShipmentStatus::parse(status.as_str()), Some(*status));
        }
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(*status));
        }
        assert_eq!(OrderStatus::parse("lost"), None);
    }
}
