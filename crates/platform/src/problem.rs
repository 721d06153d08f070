//! RFC 9457 problem details, the one error body every LogiCore endpoint returns.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::request_id;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `email` or `lines[2].quantity`.
    pub field: String,
    /// Stable machine-readable code, e.g. `REQUIRED`, `TOO_SHORT`, `INVALID_FORMAT`.
    pub code: String,
    pub message: String,
}

/// Every field error of a request that failed its checks; each service's error type turns it into its own
/// validation error (422 naming every field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

/// Fails with every collected field error, if there is any.
pub fn check(errors: Vec<FieldError>) -> Result<(), Invalid> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

/// Keeps the value of a check that passed; adds the error of one that failed to `errors`, so a handler can check
/// every field and answer with all their errors at once.
pub fn collect<T>(result: Result<T, FieldError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result.map_err(|error| errors.push(error)).ok()
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// An `application/problem+json` response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable UPPER_SNAKE code, e.g. `VALIDATION_FAILED`.
    pub code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Seconds until a retry may succeed; sent as the `Retry-After` header, not in the body.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
    /// Extra members for specific problems (e.g. the short lines of `INSUFFICIENT_STOCK`).
    #[serde(flatten, default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        Self {
            kind: format!(
                "https://logicore.dev/problems/{}",
                code.to_ascii_lowercase().replace('_', "-")
            ),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            request_id: None,
            retry_after_secs: None,
            extensions: serde_json::Map::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
                detail,
            )
        }
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", detail)
    }

    /// A 500 whose body says nothing about the cause; log the cause before returning this.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "an unexpected error occurred; quote the request id when reporting it",
        )
    }

    /// The answer to a failed query: 503 `DATABASE_UNAVAILABLE` with `Retry-After` when no pooled connection
    /// could be had in time or the connection broke (busy, unreachable or restarting: worth retrying), a 400
    /// `UNSTORABLE_VALUE` when PostgreSQL refused a value the request carried, otherwise a 500 that says
    /// nothing more.
    pub fn database(error: &sqlx::Error) -> Self {
        let connection_lost = match error {
            // A broken stream shows as an I/O or a protocol error (a connection cut mid-handshake).
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Protocol(_) => true,
            // Class 08 (connection exception) and 57P01–57P03 (the server shutting down or starting).
            sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
            }),
            _ => false,
        };
        match error {
            _ if connection_lost => Self::unavailable(
                "DATABASE_UNAVAILABLE",
                "the database is busy or unreachable; retry shortly",
                1,
            ),
            sqlx::Error::Database(db) if db.code().is_some_and(|c| refused_value(&c)) => {
                // The boundary checks should have caught it; the log says which value slipped through.
                tracing::warn!(code = ?db.code(), error = db.message(), "the database refused a request's value");
                Self::bad_request(
                    "UNSTORABLE_VALUE",
                    "a value in the request is out of the range or size the service can store",
                )
            }
            _ => Self::internal(),
        }
    }

    pub fn unavailable(code: &str, detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
        }
    }

    pub fn with_extension(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(key.to_owned(), value);
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// SQLSTATEs PostgreSQL answers for a value it cannot hold rather than for a fault of the service: a last
/// line behind the extractors' checks, so one request's content is never a server error (nor counts against
/// a breaker as one). Data exceptions of class 22 a query computes itself (division by zero, say) stay 500s.
fn refused_value(code: &str) -> bool {
    matches!(
        code,
        "22001" // string_data_right_truncation: longer than a varchar(n)
            | "22003" // numeric_value_out_of_range
            | "22007" // invalid_datetime_format
            | "22008" // datetime_field_overflow
            | "22021" // character_not_in_repertoire: NUL in text
            | "22P05" // untranslatable_character: \u0000 in jsonb
            | "54000" // program_limit_exceeded: a value too large for an index entry
    )
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        if self.request_id.is_none() {
            self.request_id = request_id::current();
        }
        let status = self.status_code();
        let retry_after = self.retry_after_secs;
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Marks a response another service wrote, which a proxy passes on as it came: [`as_problem`] leaves it
/// alone, so the gateway's two paths forward an upstream's error alike.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded;

/// An error response written in some other format — axum's plain-text rejections, a static file
/// server's 404, a timeout layer's empty 408 — rewritten as problem+json, so every error a client sees
/// has one shape and a request id. Its headers (`Allow`, `Retry-After`, …) are kept; its body is not.
/// A JSON error body (a problem, or a readiness report's 503) is LogiCore's own document and stays, and
/// so does a response marked [`Forwarded`].
pub fn as_problem(response: Response) -> Response {
    if response.extensions().get::<Forwarded>().is_some() {
        return response;
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            let essence = value.split(';').next().unwrap_or_default().trim();
            essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
        });
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, _) = response.into_parts();
    let problem = if status == StatusCode::INTERNAL_SERVER_ERROR {
        Problem::internal()
    } else {
        let reason = status.canonical_reason().unwrap_or("error");
        let code = reason.to_ascii_uppercase().replace([' ', '-'], "_");
        let detail = match status {
            StatusCode::BAD_REQUEST => "the request is malformed",
            StatusCode::NOT_FOUND => "no such route",
            StatusCode::METHOD_NOT_ALLOWED => "this route does not accept that method",
            _ => reason,
        };
        Problem::new(status, &code, detail.to_ascii_lowercase())
    };
    let mut rewritten = problem.into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE
            && name != header::CONTENT_LENGTH
            && name != header::CONTENT_ENCODING
        {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// The response for a service error: the problem as is, with the error's whole cause chain logged first when
/// it is a server error (whose body, by design, says nothing about the cause).
pub fn respond<E: std::error::Error + 'static>(error: &E, problem: Problem) -> Response {
    if problem.status >= 500 {
        tracing::error!(
            error = error as &dyn std::error::Error,
            "request failed with a server error"
        );
    }
    problem.into_response()
}

/// Makes a service's error enum answer as a problem: `From<Invalid>` into its validation variant (so `?`
/// on [`check`] works in handlers) and `IntoResponse` through [`respond`], using the enum's own
/// `to_problem(&self) -> Problem`. One line per service instead of the same two impls in each.
#[macro_export]
macro_rules! answers_as_problem {
    ($error:ty, $validation:path) => {
        impl ::core::convert::From<$crate::problem::Invalid> for $error {
            fn from(invalid: $crate::problem::Invalid) -> Self {
                $validation(invalid.0)
            }
        }

        impl ::axum::response::IntoResponse for $error {
            fn into_response(self) -> ::axum::response::Response {
                $crate::problem::respond(&self, self.to_problem())
            }
        }
    };
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.detail)
    }
}

impl std::error::Error for Problem {}
