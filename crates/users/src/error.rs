//! The one error type of the users service and its one mapping to problem+json.

use axum::http::StatusCode;
use platform::db::{DbError, TxError, violated_constraint};
use platform::{FieldError, Problem};

/// Everything a users-service operation can fail with. Client errors carry a stable `code`; server errors
/// keep their cause for the log and answer with a body that reveals nothing.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("invalid input: {}", describe(.0))]
    Validation(Vec<FieldError>),
    #[error("the email is already registered")]
    EmailTaken,
    #[error("a uniqueness rule was violated ({0})")]
    Conflict(String),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error("a spent refresh token was presented again")]
    RefreshTokenReused,
    /// A well-signed token whose user no longer exists or was deactivated.
    #[error("the caller's account is not active")]
    InactiveCaller,
    #[error("the caller's current role may not do this")]
    Forbidden,
    #[error("no such user")]
    NotFound,
    #[error("preferences larger than {limit} bytes")]
    PreferencesTooLarge { limit: usize },
    /// A problem built elsewhere (extractors, role checks), passed through unchanged.
    #[error("{0}")]
    Problem(#[from] Problem),

    #[error("database query failed")]
    Database(#[source] sqlx::Error),
    #[error("database setup failed")]
    DatabaseSetup(#[from] DbError),
    #[error("an event could not be encoded")]
    Event(#[from] messaging::EnvelopeError),
    #[error("password hashing failed")]
    PasswordHash(#[from] argon2::password_hash::Error),
    #[error("access token could not be signed")]
    Token(#[from] platform::auth::TokenError),
    /// The signing keys are missing, unreadable or could not be made.
    #[error("signing keys: {0}")]
    Signing(String),
    #[error("a blocking task failed")]
    Task(#[from] tokio::task::JoinError),
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{} {} ({})", e.field, e.message, e.code))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The one place constraint names become client errors; any other database error stays a server error.
impl From<sqlx::Error> for UsersError {
    fn from(error: sqlx::Error) -> Self {
        match violated_constraint(&error) {
            Some("users_email_key") => UsersError::EmailTaken,
            Some(name) if name.ends_with("_key") => UsersError::Conflict(name.to_owned()),
            _ => UsersError::Database(error),
        }
    }
}

/// Lets `Db::transaction` see the database error inside, to rerun on serialization failures.
impl TxError for UsersError {
    fn sqlx_error(&self) -> Option<&sqlx::Error> {
        match self {
            UsersError::Database(error) => Some(error),
            _ => None,
        }
    }
}

impl UsersError {
    /// The response body: specific for client errors, generic for server errors.
    pub fn to_problem(&self) -> Problem {
        match self {
            UsersError::Validation(errors) => Problem::validation(errors.clone()),
            UsersError::EmailTaken => Problem::new(
                StatusCode::CONFLICT,
                "EMAIL_TAKEN",
                "an account with this email already exists",
            ),
            UsersError::Conflict(_) => {
                Problem::conflict("the request conflicts with an existing record")
            }
            UsersError::InvalidCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "the email or password is incorrect",
            ),
            UsersError::InvalidRefreshToken => Problem::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_REFRESH_TOKEN",
                "the refresh token is unknown, expired or revoked",
            ),
            UsersError::RefreshTokenReused => Problem::new(
                StatusCode::UNAUTHORIZED,
                "REFRESH_TOKEN_REUSED",
                "the refresh token was already used; every token of this session is now revoked",
            ),
            UsersError::InactiveCaller => {
                Problem::unauthorized("the access token's account is no longer active")
            }
            UsersError::Forbidden => Problem::forbidden("your role may not do this"),
            UsersError::NotFound => Problem::not_found("no user with this id"),
            UsersError::PreferencesTooLarge { limit } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("preferences may be at most {limit} bytes of JSON"),
            ),
            UsersError::Problem(problem) => problem.clone(),
            UsersError::Database(error) => Problem::database(error),
            UsersError::DatabaseSetup(_)
            | UsersError::Event(_)
            | UsersError::PasswordHash(_)
            | UsersError::Token(_)
            | UsersError::Signing(_)
            | UsersError::Task(_) => Problem::internal(),
        }
    }
}

platform::answers_as_problem!(UsersError, UsersError::Validation);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_reveal_nothing_about_their_cause() {
        let error =
            UsersError::Database(sqlx::Error::ColumnNotFound("secret_column_of_users".into()));
        let body = serde_json::to_string(&error.to_problem()).unwrap_or_default();
        assert!(!body.contains("secret"), "{body}");
        assert!(body.contains("\"status\":500"), "{body}");
    }

    #[test]
    fn client_errors_carry_a_stable_code() {
        assert_eq!(UsersError::EmailTaken.to_problem().code, "EMAIL_TAKEN");
        assert_eq!(UsersError::EmailTaken.to_problem().status, 409);
        assert_eq!(
            UsersError::RefreshTokenReused.to_problem().code,
            "REFRESH_TOKEN_REUSED"
        );
        assert_eq!(
            UsersError::PreferencesTooLarge { limit: 10 }
                .to_problem()
                .status,
            413
        );
    }
}
