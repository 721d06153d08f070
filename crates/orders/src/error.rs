//! The one error type of the orders service and its one mapping to problem+json.

use axum::http::StatusCode;
use platform::db::{DbError, TxError};
use platform::idempotency::IdempotencyError;
use platform::{FieldError, Problem};

/// Everything an orders-service operation can fail with. Client errors carry a stable `code`; server errors
/// keep their cause for the log and answer with a body that reveals nothing.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    #[error("invalid input: {}", describe(.0))]
    Validation(Vec<FieldError>),
    /// Unknown, or not the caller's to see: both are 404, so ids of others' orders reveal nothing.
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the caller's role may not do this")]
    Forbidden(&'static str),
    #[error("an {entity} that is {from} cannot become {to}")]
    InvalidTransition {
        entity: &'static str,
        from: &'static str,
        to: &'static str,
    },
    #[error("the shipment exceeds what is confirmed and not yet shipped")]
    NothingToShip(Vec<FieldError>),
    #[error("the shipment needs a proof of delivery first")]
    ProofRequired,
    #[error("the shipment already has a proof of delivery")]
    ProofExists,
    #[error("If-Match does not match the current version {current}")]
    PreconditionFailed { current: i32 },
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    /// A problem built elsewhere (extractors, role checks), passed through unchanged.
    #[error("{0}")]
    Problem(#[from] Problem),

    #[error("database query failed")]
    Database(#[source] sqlx::Error),
    #[error("database setup failed")]
    DatabaseSetup(#[from] DbError),
    #[error("an event could not be encoded")]
    Event(#[from] messaging::EnvelopeError),
    #[error("a response could not be encoded")]
    Encode(#[from] serde_json::Error),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {} ({})", e.field, e.message, e.code))
        .collect::<Vec<_>>()
        .join("; ")
}

impl OrdersError {
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        OrdersError::Validation(vec![FieldError::new(field, code, message)])
    }
}

impl From<sqlx::Error> for OrdersError {
    fn from(error: sqlx::Error) -> Self {
        OrdersError::Database(error)
    }
}

/// Lets `Db::transaction` see the database error inside, to rerun on serialization failures and deadlocks.
impl TxError for OrdersError {
    fn sqlx_error(&self) -> Option<&sqlx::Error> {
        match self {
            OrdersError::Database(error) => Some(error),
            OrdersError::Idempotency(IdempotencyError::Database(error)) => Some(error),
            _ => None,
        }
    }
}

impl OrdersError {
    /// The response body: specific for client errors, generic for server errors.
    pub fn to_problem(&self) -> Problem {
        match self {
            OrdersError::Validation(errors) => Problem::validation(errors.clone()),
            OrdersError::NotFound(what) => Problem::not_found(format!("no {what} with this id")),
            OrdersError::Forbidden(what) => Problem::forbidden(format!("this role may not {what}")),
            OrdersError::InvalidTransition { entity, from, to } => Problem::new(
                StatusCode::CONFLICT,
                "INVALID_TRANSITION",
                format!("the {entity} is {from} and cannot become {to}"),
            )
            .with_extension("current_status", (*from).into())
            .with_extension("requested_status", (*to).into()),
            OrdersError::NothingToShip(lines) => Problem {
                errors: lines.clone(),
                ..Problem::new(
                    StatusCode::CONFLICT,
                    "NOTHING_TO_SHIP",
                    "the shipment asks for more than is confirmed at that warehouse and not yet shipped",
                )
            },
            OrdersError::ProofRequired => Problem::new(
                StatusCode::CONFLICT,
                "PROOF_REQUIRED",
                "this shipment needs a proof of delivery before it can be delivered",
            ),
            OrdersError::ProofExists => {
                Problem::conflict("the shipment already has its proof of delivery")
            }
            OrdersError::PreconditionFailed { current } => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "PRECONDITION_FAILED",
                format!(
                    "If-Match does not match the current version; the ETag is now \"{current}\""
                ),
            )
            .with_extension("current_version", (*current).into()),
            OrdersError::Idempotency(error) => error.to_problem(),
            OrdersError::Problem(problem) => problem.clone(),
            OrdersError::Database(error) => Problem::database(error),
            OrdersError::DatabaseSetup(_) | OrdersError::Event(_) | OrdersError::Encode(_) => {
                Problem::internal()
            }
        }
    }
}

platform::answers_as_problem!(OrdersError, OrdersError::Validation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_reveal_nothing_about_their_cause() {
        let error =
            OrdersError::Database(sqlx::Error::ColumnNotFound("secret_orders_column".into()));
        let body = serde_json::to_string(&error.to_problem()).unwrap_or_default();
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("\"status\":500"), "{body}");
    }

    #[test]
    fn a_refused_transition_names_both_statuses() {
        let body = serde_json::to_value(
            OrdersError::InvalidTransition {
                entity: "order",
                from: "cancelled",
                to: "confirmed",
            }
            .to_problem(),
        )
        .unwrap_or_default();
        assert_eq!(body["code"], "INVALID_TRANSITION");
        assert_eq!(body["current_status"], "cancelled");
        assert_eq!(body["requested_status"], "confirmed");
    }
}
