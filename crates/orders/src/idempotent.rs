//! Runs a create or an action in one transaction with its `Idempotency-Key`: the key is claimed first, the
//! response stored last, so a stored response exists exactly when the effect committed (see
//! `platform::idempotency`).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use platform::created;
use platform::db::{Db, Isolation, TxFuture, tx_body};
use platform::idempotency::{Begin, Idempotency, IdempotencyRequest, StoredResponse};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::OrdersError;
use crate::metrics::{OrderMetrics, Tally};
use crate::state::AppState;

/// The effect of a request: runs in the transaction and answers with a status and a JSON body. It may run
/// more than once (after a serialization failure the whole transaction is rerun), so it owns its inputs.
/// What it notes in the tally (through its `Recorder`) is counted once the transaction committed.
pub trait Effect: Send + Sync + 'static {
    fn apply<'c>(
        &self,
        db: Db,
        tally: Tally,
        conn: &'c mut PgConnection,
    ) -> TxFuture<'c, (StatusCode, serde_json::Value), OrdersError>;
}

impl<F> Effect for F
where
    F: for<'c> Fn(
            Db,
            Tally,
            &'c mut PgConnection,
        ) -> TxFuture<'c, (StatusCode, serde_json::Value), OrdersError>
        + Send
        + Sync
        + 'static,
{
    fn apply<'c>(
        &self,
        db: Db,
        tally: Tally,
        conn: &'c mut PgConnection,
    ) -> TxFuture<'c, (StatusCode, serde_json::Value), OrdersError> {
        self(db, tally, conn)
    }
}

/// Pins down an effect closure's higher-ranked signature, which closure inference cannot see through
/// `Arc<dyn Effect>`.
pub fn effect<F>(body: F) -> Arc<dyn Effect>
where
    F: for<'c> Fn(
            Db,
            Tally,
            &'c mut PgConnection,
        ) -> TxFuture<'c, (StatusCode, serde_json::Value), OrdersError>
        + Send
        + Sync
        + 'static,
{
    Arc::new(body)
}

/// A response, fresh or replayed; either way it carries the body's `version` as its `ETag`.
pub enum Answer {
    Fresh(StatusCode, serde_json::Value),
    Replayed(StoredResponse),
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let (version, mut response) = match self {
            Answer::Fresh(status, body) => (
                body.get("version").and_then(serde_json::Value::as_i64),
                (status, axum::Json(body)).into_response(),
            ),
            Answer::Replayed(stored) => (
                stored
                    .body
                    .get("version")
                    .and_then(serde_json::Value::as_i64),
                stored.into_response(),
            ),
        };
        if let Some(version) = version {
            set_etag(response.headers_mut(), version);
        }
        response
    }
}

impl Answer {
    /// The answer with `Location` on a 201: `location` gets the body, fresh or replayed alike, so a replay
    /// names the same resource as the original answer.
    pub fn located(self, location: impl FnOnce(&serde_json::Value) -> Option<String>) -> Response {
        let (status, body) = match &self {
            Answer::Fresh(status, body) => (*status, body),
            Answer::Replayed(stored) => (stored.status, &stored.body),
        };
        let path = (status == StatusCode::CREATED)
            .then(|| location(body))
            .flatten();
        let mut response = self.into_response();
        if let Some(path) = path {
            created::set_location(response.headers_mut(), &path);
        }
        response
    }
}

/// `ETag: "<version>"`.
pub fn set_etag(headers: &mut HeaderMap, version: i64) {
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        headers.insert(header::ETAG, value);
    }
}

/// Runs `effect` under the caller's key, if any.
pub fn run(
    state: &AppState,
    caller: Uuid,
    key: Option<IdempotencyRequest>,
    effect: Arc<dyn Effect>,
) -> impl Future<Output = Result<Answer, OrdersError>> + Send + 'static {
    // Owned handles only: rustc cannot prove a future holding `&AppState` across the higher-ranked
    // transaction body `Send` for every lifetime, which axum handlers need.
    let (db, metrics) = (state.db.clone(), state.metrics.clone());
    run_owned(db, metrics, state.idempotency, caller, key, effect)
}

async fn run_owned(
    db: Db,
    metrics: OrderMetrics,
    policy: Idempotency,
    caller: Uuid,
    key: Option<IdempotencyRequest>,
    effect: Arc<dyn Effect>,
) -> Result<Answer, OrdersError> {
    let subject = caller.to_string();
    let handle = db.clone();
    let tally = Tally::default();
    let noted = tally.clone();
    // `Db::transaction` reruns the body on serialization failures and deadlocks, like every other
    // transaction. Boxed as a `Send` future here, where its borrow of `db` is a known lifetime: left
    // inside this future's state, rustc asks `Send` of that borrow for every lifetime and fails.
    let transaction: TxFuture<'_, Answer, OrdersError> = Box::pin(db.transaction(
        Isolation::ReadCommitted,
        tx_body(move |conn| {
            attempt(
                handle.clone(),
                policy,
                effect.clone(),
                key.clone(),
                subject.clone(),
                noted.clone(),
                conn,
            )
        }),
    ));
    let answer = transaction.await?;
    // Committed. A replay changed nothing, and its effect did not run: nothing to count.
    if let Answer::Fresh(..) = answer {
        metrics.count(tally.take());
    }
    Ok(answer)
}

/// One run of the transaction body: claim the key (or replay), apply, store the response. It owns its
/// inputs and returns the boxed `Send` future `Db::transaction` needs (see `platform::db::tx_body`).
fn attempt<'c>(
    db: Db,
    policy: Idempotency,
    effect: Arc<dyn Effect>,
    key: Option<IdempotencyRequest>,
    subject: String,
    tally: Tally,
    conn: &'c mut PgConnection,
) -> TxFuture<'c, Answer, OrdersError> {
    Box::pin(async move {
        // A rerun after a serialization failure: the earlier run rolled back, so do its notes.
        tally.restart();
        if let Some(key) = &key
            && let Begin::Replay(stored) = policy.begin(conn, &subject, key).await?
        {
            return Ok(Answer::Replayed(stored));
        }
        let (status, body) = effect.apply(db, tally, conn).await?;
        if let Some(key) = &key {
            policy.complete(conn, &subject, key, status, &body).await?;
        }
        Ok(Answer::Fresh(status, body))
    })
}

/// `If-Match`: absent → any version; `"N"` (or `W/"N"`, or `*`) → must be the current version.
pub fn check_if_match(headers: &HeaderMap, current: i32) -> Result<(), OrdersError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(());
    }
    let matches = text.split(',').any(|tag| {
        let tag = tag.trim().trim_start_matches("W/").trim_matches('"');
        tag.parse::<i32>().is_ok_and(|v| v == current)
    });
    if matches {
        Ok(())
    } else {
        Err(OrdersError::PreconditionFailed { current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_match: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = if_match {
            headers.insert(
                header::IF_MATCH,
                HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
            );
        }
        headers
    }

    #[test]
    fn if_match_compares_the_version() {
        assert!(check_if_match(&headers(None), 3).is_ok());
        assert!(check_if_match(&headers(Some("\"3\"")), 3).is_ok());
        assert!(check_if_match(&headers(Some("W/\"3\"")), 3).is_ok());
        assert!(check_if_match(&headers(Some("\"1\", \"3\"")), 3).is_ok());
        assert!(check_if_match(&headers(Some("*")), 3).is_ok());
        let error = check_if_match(&headers(Some("\"2\"")), 3).expect_err("stale");
        assert_eq!(error.to_problem().status, 412);
        assert!(check_if_match(&headers(Some("garbage")), 3).is_err());
    }
}
