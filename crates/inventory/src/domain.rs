//! Values parsed once at the edge: once a handler holds a `Sku` or a `WarehouseCode`, it is a valid one.

use std::fmt;

use platform::FieldError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const SKU_MAX: usize = 64;
const CODE_MAX: usize = 32;
const NAME_MAX: usize = 200;
const ADDRESS_MAX: usize = 500;
const NOTE_MAX: usize = 1000;
/// Largest quantity one request may move; far below `i32::MAX` so sums of a few lines cannot overflow.
pub const QUANTITY_MAX: i64 = 1_000_000_000;

/// A stock-keeping unit: 1-64 of letters, digits, `-`, `_`, `.`, `/`. Case is kept: SKUs are the
/// customer's identifiers, and some catalogues tell `ab-1` from `AB-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let sku = raw.trim();
        if sku.is_empty() {
            return Err(FieldError::new(field, "REQUIRED", "must not be blank"));
        }
        if sku.chars().count() > SKU_MAX {
            return Err(FieldError::new(
                field,
                "TOO_LONG",
                "must be at most 64 characters",
            ));
        }
        if !sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        {
            return Err(FieldError::new(
                field,
                "INVALID_FORMAT",
                "may contain only letters, digits, '-', '_', '.' and '/'",
            ));
        }
        Ok(Self(sku.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A warehouse code: 1-32 of letters, digits, `-`, `_`, stored uppercase so it is unique regardless of case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WarehouseCode(String);

impl WarehouseCode {
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldError> {
        let code = raw.trim().to_ascii_uppercase();
        if code.is_empty() {
            return Err(FieldError::new(field, "REQUIRED", "must not be blank"));
        }
        if code.len() > CODE_MAX {
            return Err(FieldError::new(
                field,
                "TOO_LONG",
                "must be at most 32 characters",
            ));
        }
        if !code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(FieldError::new(
                field,
                "INVALID_FORMAT",
                "may contain only letters, digits, '-' and '_'",
            ));
        }
        Ok(Self(code))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A trimmed, non-blank text of at most `max` characters.
fn text(raw: &str, field: &str, max: usize, required: bool) -> Result<String, FieldError> {
    let value = raw.trim();
    if required && value.is_empty() {
        return Err(FieldError::new(field, "REQUIRED", "must not be blank"));
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            "TOO_LONG",
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(FieldError::new(
            field,
            "INVALID_FORMAT",
            "must not contain control characters",
        ));
    }
    Ok(value.to_owned())
}

pub fn name(raw: &str, field: &str) -> Result<String, FieldError> {
    text(raw, field, NAME_MAX, true)
}

pub fn address(raw: &str, field: &str) -> Result<String, FieldError> {
    text(raw, field, ADDRESS_MAX, false)
}

pub fn note(raw: &str, field: &str) -> Result<String, FieldError> {
    text(raw, field, NOTE_MAX, false)
}

/// A count within `min..=QUANTITY_MAX`.
pub fn quantity(value: i64, field: &str, min: i64) -> Result<i32, FieldError> {
    if value < min {
        return Err(FieldError::new(
            field,
            "OUT_OF_RANGE",
            format!("must be at least {min}"),
        ));
    }
    if value > QUANTITY_MAX {
        return Err(FieldError::new(
            field,
            "OUT_OF_RANGE",
            "must be at most 1000000000",
        ));
    }
    i32::try_from(value).map_err(|_| FieldError::new(field, "OUT_OF_RANGE", "is too large"))
}

/// Why on_hand changed. The first five are what a person may record with an adjustment; the rest are
/// written by the service itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Receipt,
    Adjustment,
    Count,
    Return,
    Damage,
    TransferIn,
    TransferOut,
    Import,
    Shipment,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Receipt,
        Reason::Adjustment,
        Reason::Count,
        Reason::Return,
        Reason::Damage,
        Reason::TransferIn,
        Reason::TransferOut,
        Reason::Import,
        Reason::Shipment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Receipt => "receipt",
            Reason::Adjustment => "adjustment",
            Reason::Count => "count",
            Reason::Return => "return",
            Reason::Damage => "damage",
            Reason::TransferIn => "transfer_in",
            Reason::TransferOut => "transfer_out",
            Reason::Import => "import",
            Reason::Shipment => "shipment",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// Whether a person may record this reason through `POST /adjustments`.
    pub fn is_manual(self) -> bool {
        matches!(
            self,
            Reason::Receipt | Reason::Adjustment | Reason::Count | Reason::Return | Reason::Damage
        )
    }
}

impl TryFrom<String> for Reason {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Reason::parse(&value).ok_or_else(|| format!("unknown movement reason {value:?}"))
    }
}

/// Why a reservation's hold ended, as `inventory.released` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseReason {
    /// Its order was cancelled.
    Cancelled,
    /// The hold lapsed, or its order expired.
    Expired,
    /// Staff released it (`POST /reservations/{id}/release`).
    Manual,
}

impl ReleaseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::Cancelled => "cancelled",
            ReleaseReason::Expired => "expired",
            ReleaseReason::Manual => "manual",
        }
    }
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    Held,
    Committed,
    Consumed,
    Released,
    Expired,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Held => "held",
            ReservationStatus::Committed => "committed",
            ReservationStatus::Consumed => "consumed",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            ReservationStatus::Held,
            ReservationStatus::Committed,
            ReservationStatus::Consumed,
            ReservationStatus::Released,
            ReservationStatus::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == value)
    }
}

impl TryFrom<String> for ReservationStatus {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        ReservationStatus::parse(&value)
            .ok_or_else(|| format!("unknown reservation status {value:?}"))
    }
}

impl fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_trimmed_and_keep_their_case() {
        assert_eq!(
            Sku::parse("  ab-1/X.2 ", "sku").map(|s| s.as_str().to_owned()),
            Ok("ab-1/X.2".to_owned())
        );
        assert_eq!(
            Sku::parse(" ", "sku").map_err(|e| e.code),
            Err("REQUIRED".into())
        );
        assert_eq!(
            Sku::parse("a b", "sku").map_err(|e| e.code),
            Err("INVALID_FORMAT".into())
        );
        assert_eq!(
            Sku::parse(&"x".repeat(65), "sku").map_err(|e| e.code),
            Err("TOO_LONG".into())
        );
    }

    #[test]
    fn warehouse_codes_are_uppercased() {
        assert_eq!(
            WarehouseCode::parse("ber-1", "code").map(|c| c.as_str().to_owned()),
            Ok("BER-1".to_owned())
        );
        assert!(WarehouseCode::parse("bér", "code").is_err());
    }

    #[test]
    fn quantities_outside_the_range_name_the_field() {
        assert_eq!(
            quantity(0, "lines[1].quantity", 1).map_err(|e| e.field),
            Err("lines[1].quantity".into())
        );
        assert_eq!(quantity(5, "q", 1), Ok(5));
        assert!(quantity(QUANTITY_MAX + 1, "q", 0).is_err());
    }

    #[test]
    fn only_the_first_five_reasons_are_manual() {
        let manual: Vec<&str> = Reason::ALL
            .into_iter()
            .filter(|r| r.is_manual())
            .map(Reason::as_str)
            .collect();
        assert_eq!(
            manual,
            ["receipt", "adjustment", "count", "return", "damage"]
        );
        assert_eq!(Reason::parse("transfer_in"), Some(Reason::TransferIn));
    }
}
