//! The one error type of the inventory service and its one mapping to problem+json.

use axum::http::StatusCode;
use platform::db::{DbError, TxError, sqlx_state, violated_constraint};
use platform::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A line of a reservation or transfer that stock cannot cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShortLine {
    pub sku: String,
    pub requested: i64,
    pub available: i64,
}

/// Everything an inventory operation can fail with. Client errors carry a stable `code`; server errors keep
/// their cause for the log and answer with a body that reveals nothing.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("invalid input: {}", describe(.0))]
    Validation(Vec<FieldError>),
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the sku is already taken")]
    SkuTaken,
    #[error("the warehouse code is already taken")]
    WarehouseCodeTaken,
    #[error("stock cannot cover {} line(s)", .0.len())]
    InsufficientStock(Vec<ShortLine>),
    #[error("on hand would fall below the reserved quantity")]
    StockBelowReserved { on_hand: i64, reserved: i64 },
    #[error("backorders cannot be turned off while reservations exceed stock")]
    BackordersOutstanding,
    #[error("on hand would fall below zero")]
    NegativeStock { on_hand: i64 },
    #[error("a reservation that is {from} cannot be {action}")]
    InvalidTransition { from: String, action: &'static str },
    #[error("consumption exceeds what the reservation holds for {sku}")]
    OverConsumption { sku: String },
    #[error("unsupported content type")]
    UnsupportedMediaType(&'static str),
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// A problem built elsewhere (extractors, role checks), passed through unchanged.
    #[error("{0}")]
    Problem(#[from] Problem),

    #[error("database query failed")]
    Database(#[source] sqlx::Error),
    #[error("database setup failed")]
    DatabaseSetup(#[from] DbError),
    #[error("reading the import failed")]
    Io(#[from] std::io::Error),
    #[error("an event cannot be recorded")]
    Event(#[from] messaging::EnvelopeError),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {} ({})", e.field, e.message, e.code))
        .collect::<Vec<_>>()
        .join("; ")
}

impl InventoryError {
    pub fn field(field: &str, code: &str, message: &str) -> Self {
        InventoryError::Validation(vec![FieldError::new(field, code, message)])
    }
}

/// SQLSTATE of an integer overflow: a stock level past `i32::MAX`.
const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";

/// The one place constraint names become client errors; any other database error stays a server error.
/// The service checks these rules itself first; the constraints catch what slips past (races, bugs).
impl From<sqlx::Error> for InventoryError {
    fn from(error: sqlx::Error) -> Self {
        if sqlx_state(&error).as_deref() == Some(NUMERIC_VALUE_OUT_OF_RANGE) {
            return InventoryError::field(
                "quantity",
                "OUT_OF_RANGE",
                "the resulting stock level would exceed the largest storable quantity",
            );
        }
        match violated_constraint(&error) {
            Some("products_sku_key") => InventoryError::SkuTaken,
            Some("warehouses_code_key") => InventoryError::WarehouseCodeTaken,
            Some("stock_levels_on_hand_nonnegative") => {
                InventoryError::NegativeStock { on_hand: 0 }
            }
            Some("stock_levels_reserved_within_on_hand") => InventoryError::StockBelowReserved {
                on_hand: 0,
                reserved: 0,
            },
            _ => InventoryError::Database(error),
        }
    }
}

/// Lets `Db::transaction` see the database error inside, to rerun on serialization failures and deadlocks.
impl TxError for InventoryError {
    fn sqlx_error(&self) -> Option<&sqlx::Error> {
        match self {
            InventoryError::Database(error) => Some(error),
            _ => None,
        }
    }
}

impl InventoryError {
    /// The response body: specific for client errors, generic for server errors.
    pub fn to_problem(&self) -> Problem {
        let conflict =
            |code: &str, detail: String| Problem::new(StatusCode::CONFLICT, code, detail);
        match self {
            InventoryError::Validation(errors) => Problem::validation(errors.clone()),
            InventoryError::NotFound(what) => Problem::not_found(format!("no {what} with this id")),
            InventoryError::SkuTaken => {
                conflict("SKU_TAKEN", "a product with this sku already exists".into())
            }
            InventoryError::WarehouseCodeTaken => conflict(
                "WAREHOUSE_CODE_TAKEN",
                "a warehouse with this code already exists".into(),
            ),
            InventoryError::InsufficientStock(lines) => conflict(
                "INSUFFICIENT_STOCK",
                format!("not enough stock for {} line(s)", lines.len()),
            )
            .with_extension(
                "short_lines",
                serde_json::to_value(lines).unwrap_or_default(),
            ),
            InventoryError::StockBelowReserved { on_hand, reserved } => conflict(
                "STOCK_BELOW_RESERVED",
                format!(
                    "on hand ({on_hand}) may not fall below the reserved quantity ({reserved})"
                ),
            ),
            InventoryError::BackordersOutstanding => conflict(
                "BACKORDERS_OUTSTANDING",
                "backorders cannot be turned off while reservations exceed stock on hand".into(),
            ),
            InventoryError::NegativeStock { on_hand } => conflict(
                "NEGATIVE_STOCK",
                format!("on hand ({on_hand}) may not fall below zero"),
            ),
            InventoryError::InvalidTransition { from, action } => conflict(
                "INVALID_TRANSITION",
                format!("a reservation that is {from} cannot be {action}"),
            ),
            InventoryError::OverConsumption { sku } => conflict(
                "OVER_CONSUMPTION",
                format!("the reservation does not hold that much of {sku}"),
            ),
            InventoryError::UnsupportedMediaType(expected) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("the body must be {expected}"),
            ),
            InventoryError::PayloadTooLarge { limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body may be at most {limit} bytes"),
            ),
            InventoryError::Problem(problem) => problem.clone(),
            InventoryError::Database(error) => Problem::database(error),
            InventoryError::DatabaseSetup(_) | InventoryError::Io(_) | InventoryError::Event(_) => {
                Problem::internal()
            }
        }
    }
}

platform::answers_as_problem!(InventoryError, InventoryError::Validation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_reveal_nothing_about_their_cause() {
        let error = InventoryError::Database(sqlx::Error::ColumnNotFound(
            "secret_stock_levels_column".into(),
        ));
        let body = serde_json::to_string(&error.to_problem()).unwrap_or_default();
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("\"status\":500"), "{body}");
    }

    #[test]
    fn insufficient_stock_lists_every_short_line() {
        let problem = InventoryError::InsufficientStock(vec![
            ShortLine {
                sku: "A".into(),
                requested: 5,
                available: 2,
            },
            ShortLine {
                sku: "B".into(),
                requested: 1,
                available: 0,
            },
        ])
        .to_problem();
        assert_eq!(problem.status, 409);
        assert_eq!(problem.code, "INSUFFICIENT_STOCK");
        let body = serde_json::to_value(&problem).unwrap_or_default();
        assert_eq!(body["short_lines"][1]["sku"], "B");
        assert_eq!(body["short_lines"][0]["available"], 2);
    }
}
