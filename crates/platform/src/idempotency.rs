//! `Idempotency-Key` for POSTs that create or act (docs/api.md conventions), for any service.
//!
//! A key is scoped to the caller (`subject`), the method and the route; the request's fingerprint is the
//! SHA-256 of its method, path and body. The service calls [`Idempotency::begin`] first in the transaction
//! that makes the change and [`Idempotency::complete`] with the response last in it, so the stored response
//! exists exactly when the effect committed:
//!
//! - a new key inserts a row (without a response yet) and the handler proceeds;
//! - a concurrent request with the same key blocks on that row's unique index until the first transaction
//!   ends, and then replays its response (or proceeds, if the first rolled back); after
//!   [`Idempotency::wait`] it gives up with 409 `CONFLICT`, never running the effect twice;
//! - the same key with the same fingerprint replays the stored status and body ([`Begin::Replay`]);
//! - the same key with another fingerprint is 422 `IDEMPOTENCY_KEY_REUSED`.
//!
//! Only committed effects are remembered: a request that failed (its transaction rolled back) may be retried
//! with the same key. Keys expire after [`Idempotency::ttl`] (24 h by default); [`prune`] deletes them.
//!
//! ```ignore
//! async fn create(caller: AuthUser, State(state): State<AppState>,
//!                 Idempotent { key, body }: Idempotent<CreateOrder>) -> Result<Response, Error> {
//!     // in the transaction:
//!     if let Some(key) = &key {
//!         if let Begin::Replay(stored) = state.idempotency.begin(tx, &subject, key).await? {
//!             return Ok(stored.into_response());
//!         }
//!     }
//!     let order = insert_order(tx, &body).await?;
//!     let body = serde_json::to_value(&order)?;
//!     if let Some(key) = &key {
//!         state.idempotency.complete(tx, &subject, key, StatusCode::CREATED, &body).await?;
//!     }
//! }
//! ```

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};

use crate::db::{Db, sqlx_state};
use crate::extract::{Validate, parse_json};
use crate::problem::{FieldError, Problem};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The response header telling a replayed response from a fresh one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// Longest key accepted.
pub const KEY_MAX: usize = 255;
/// How long keys are kept unless the service says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a request waits for a concurrent one with the same key unless the service says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// The DDL of the `idempotency_keys` table, for services that run it from their own migrations;
/// [`migrate`] runs it at start-up for the others.
pub const MIGRATION_SQL: &str = "\
CREATE TABLE IF NOT EXISTS idempotency_keys (
    subject      text        NOT NULL,
    method       text        NOT NULL,
    route        text        NOT NULL,
    key          text        NOT NULL,
    fingerprint  text        NOT NULL,
    status_code  smallint,
    body         jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (subject, method, route, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);
";

/// SQLSTATE of a `lock_timeout`.
const LOCK_NOT_AVAILABLE: &str = "55P03";

/// Creates `idempotency_keys` in the current `search_path` schema when missing. Safe to run at every start
/// and from several instances at once: the DDL runs under a per-schema advisory lock.
pub async fn migrate(db: &Db) -> Result<(), sqlx::Error> {
    let mut connection = db.acquire().await?;
    let mut tx = connection.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('logicore.idempotency.migrate.' || current_schema()))",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(MIGRATION_SQL).execute(&mut *tx).await?;
    tx.commit().await
}

/// Deletes up to `batch` expired keys; returns how many went.
pub async fn prune(db: &Db, batch: i64) -> Result<u64, sqlx::Error> {
    let deleted = db
        .timed(
            "idempotency_prune",
            sqlx::query(
                "DELETE FROM idempotency_keys WHERE (subject, method, route, key) IN ( \
                     SELECT subject, method, route, key FROM idempotency_keys \
                     WHERE expires_at <= now() LIMIT $1)",
            )
            .bind(batch)
            .execute(db.pool()),
        )
        .await?;
    Ok(deleted.rows_affected())
}

/// An `Idempotency-Key` with what it is scoped to and the fingerprint of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRequest {
    key: String,
    method: String,
    route: String,
    fingerprint: String,
}

impl IdempotencyRequest {
    /// `route` is the matched route template (e.g. `/api/v1/orders/{id}/cancel`), `path` the actual path
    /// and query. 422 when the key is blank, too long or not visible ASCII.
    pub fn new(
        key: &str,
        method: &Method,
        route: &str,
        path: &str,
        body: &[u8],
    ) -> Result<Self, Problem> {
        let valid = !key.is_empty()
            && key.len() <= KEY_MAX
            && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if !valid || key.trim().is_empty() {
            return Err(Problem::validation(vec![FieldError::new(
                "Idempotency-Key",
                "INVALID_FORMAT",
                "must be 1-255 visible ASCII characters",
            )]));
        }
        Ok(Self {
            key: key.to_owned(),
            method: method.as_str().to_owned(),
            route: route.to_owned(),
            fingerprint: fingerprint(method.as_str(), path, body),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The hex SHA-256 of method, path and body, each length-prefixed so no two requests share an input.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A JSON body with its optional `Idempotency-Key`. Rejections are those of [`crate::extract::Json`]; an
/// empty body counts as `{}`, for actions whose fields are all optional.
#[derive(Debug, Clone)]
pub struct Idempotent<T> {
    pub key: Option<IdempotencyRequest>,
    pub body: T,
}

impl<S, T> FromRequest<S> for Idempotent<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = request.method().clone();
        let path = request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |p| p.as_str().to_owned(),
        );
        let route = request.extensions().get::<MatchedPath>().map_or_else(
            || request.uri().path().to_owned(),
            |m| m.as_str().to_owned(),
        );
        let mut keys = request.headers().get_all(HEADER).iter();
        let key = match (keys.next(), keys.next()) {
            (None, _) => None,
            (Some(value), None) => Some(value.to_str().map_err(|_| invalid_key())?.to_owned()),
            (Some(_), Some(_)) => return Err(invalid_key()),
        };
        let has_content_type = request.headers().contains_key(header::CONTENT_TYPE);
        let json_content_type = is_json(request.headers().get(header::CONTENT_TYPE));
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "the request body is larger than this endpoint accepts",
                )
            } else {
                Problem::bad_request("BAD_REQUEST", "the request body could not be read")
            }
        })?;
        let body: T = if bytes.is_empty() && (!has_content_type || json_content_type) {
            parse_json(b"{}")?
        } else if !json_content_type {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON with content-type application/json",
            ));
        } else {
            parse_json(&bytes)?
        };
        body.validate().map_err(Problem::validation)?;
        let key = key
            .map(|key| IdempotencyRequest::new(&key, &method, &route, &path, &bytes))
            .transpose()?;
        Ok(Self { key, body })
    }
}

fn invalid_key() -> Problem {
    Problem::validation(vec![FieldError::new(
        "Idempotency-Key",
        "INVALID_FORMAT",
        "must be one header of 1-255 visible ASCII characters",
    )])
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(essence) = content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
    else {
        return false;
    };
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// What [`Idempotency::begin`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// A new (or expired) key: run the effect and [`Idempotency::complete`] in this transaction.
    Proceed,
    /// The key was used for this very request before: answer with its stored response, change nothing.
    Replay(StoredResponse),
}

/// A response stored with its key; as a response it carries `idempotent-replayed: true`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub body: serde_json::Value,
}

impl IntoResponse for StoredResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        response
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("the idempotency key was used with a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still in progress")]
    InProgress,
    #[error("idempotency key storage failed")]
    Database(#[from] sqlx::Error),
}

impl IdempotencyError {
    /// The response body; a database error is a 500 that reveals nothing (log it first).
    pub fn to_problem(&self) -> Problem {
        match self {
            IdempotencyError::KeyReused => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different request",
            ),
            IdempotencyError::InProgress => Problem::conflict(
                "a request with this Idempotency-Key is still in progress; retry shortly",
            ),
            IdempotencyError::Database(_) => Problem::internal(),
        }
    }
}

/// A service's idempotency policy. Cheap to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idempotency {
    /// How long a key and its response are kept.
    pub ttl: Duration,
    /// How long a request waits for a concurrent one holding the same key.
    pub wait: Duration,
}

impl Default for Idempotency {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            wait: DEFAULT_WAIT,
        }
    }
}

impl Idempotency {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            ..Self::default()
        }
    }

    /// Claims `request`'s key for `subject` in the caller's transaction, or finds its stored response.
    pub async fn begin(
        &self,
        tx: &mut PgConnection,
        subject: &str,
        request: &IdempotencyRequest,
    ) -> Result<Begin, IdempotencyError> {
        // Wait at most `wait` for a concurrent holder of the key, then restore the caller's lock timeout.
        let previous: String = sqlx::query_scalar(
            "SELECT previous FROM (SELECT current_setting('lock_timeout') AS previous) AS p, \
                    set_config('lock_timeout', $1, true)",
        )
        .bind(format!("{}ms", self.wait.as_millis().max(1)))
        .fetch_one(&mut *tx)
        .await?;
        let claimed = sqlx::query_scalar::<_, i32>(
            "INSERT INTO idempotency_keys (subject, method, route, key, fingerprint, expires_at) \
             VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6)) \
             ON CONFLICT (subject, method, route, key) DO UPDATE \
               SET fingerprint = EXCLUDED.fingerprint, status_code = NULL, body = NULL, \
                   created_at = now(), expires_at = EXCLUDED.expires_at \
               WHERE idempotency_keys.expires_at <= now() \
             RETURNING 1",
        )
        .bind(subject)
        .bind(&request.method)
        .bind(&request.route)
        .bind(&request.key)
        .bind(&request.fingerprint)
        .bind(self.ttl.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|error| {
            if sqlx_state(&error).as_deref() == Some(LOCK_NOT_AVAILABLE) {
                IdempotencyError::InProgress
            } else {
                IdempotencyError::Database(error)
            }
        })?;
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(previous)
            .execute(&mut *tx)
            .await?;
        if claimed.is_some() {
            return Ok(Begin::Proceed);
        }
        let stored: Option<(String, Option<i16>, Option<serde_json::Value>)> = sqlx::query_as(
            "SELECT fingerprint, status_code, body FROM idempotency_keys \
             WHERE subject = $1 AND method = $2 AND route = $3 AND key = $4",
        )
        .bind(subject)
        .bind(&request.method)
        .bind(&request.route)
        .bind(&request.key)
        .fetch_optional(&mut *tx)
        .await?;
        match stored {
            Some((fingerprint, _, _)) if fingerprint != request.fingerprint => {
                Err(IdempotencyError::KeyReused)
            }
            Some((_, Some(status), Some(body))) => Ok(Begin::Replay(StoredResponse {
                status: u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::OK),
                body,
            })),
            // Pruned or never completed between the two statements: let the client retry.
            _ => Err(IdempotencyError::InProgress),
        }
    }

    /// Stores the response of the request whose key [`Idempotency::begin`] claimed in this transaction.
    pub async fn complete(
        &self,
        tx: &mut PgConnection,
        subject: &str,
        request: &IdempotencyRequest,
        status: StatusCode,
        body: &serde_json::Value,
    ) -> Result<(), IdempotencyError> {
        sqlx::query(
            "UPDATE idempotency_keys SET status_code = $5, body = $6 \
             WHERE subject = $1 AND method = $2 AND route = $3 AND key = $4",
        )
        .bind(subject)
        .bind(&request.method)
        .bind(&request.route)
        .bind(&request.key)
        .bind(status.as_u16() as i16)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &str, path: &str, body: &[u8]) -> Result<IdempotencyRequest, Problem> {
        IdempotencyRequest::new(key, &Method::POST, "/api/v1/orders", path, body)
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let base = fingerprint("POST", "/a", b"{}");
        assert_eq!(base.len(), 64);
        assert_eq!(base, fingerprint("POST", "/a", b"{}"));
        assert_ne!(base, fingerprint("PUT", "/a", b"{}"));
        assert_ne!(base, fingerprint("POST", "/b", b"{}"));
        assert_ne!(base, fingerprint("POST", "/a", b"{ }"));
        // Length prefixes keep the parts apart.
        assert_ne!(
            fingerprint("POST", "/ab", b"c"),
            fingerprint("POST", "/a", b"bc")
        );
    }

    #[test]
    fn keys_must_be_short_visible_ascii() {
        assert!(request("order-42", "/api/v1/orders", b"{}").is_ok());
        for bad in ["", "   ", "tab\there", "é", &"k".repeat(KEY_MAX + 1)] {
            let problem = request(bad, "/api/v1/orders", b"{}").expect_err(bad);
            assert_eq!(problem.status, 422);
            assert_eq!(problem.errors[0].field, "Idempotency-Key");
        }
    }

    #[test]
    fn errors_map_to_the_contract_codes() {
        assert_eq!(
            IdempotencyError::KeyReused.to_problem().code,
            "IDEMPOTENCY_KEY_REUSED"
        );
        assert_eq!(IdempotencyError::KeyReused.to_problem().status, 422);
        assert_eq!(IdempotencyError::InProgress.to_problem().status, 409);
        assert_eq!(IdempotencyError::InProgress.to_problem().code, "CONFLICT");
    }
}
