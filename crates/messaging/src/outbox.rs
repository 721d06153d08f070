//! The transactional outbox: events are rows written in the caller's transaction, so they exist exactly when
//! the state change they describe was committed. The relay delivers them afterwards.

use std::time::Duration;

use platform::db::Db;
use sqlx::{Connection, PgConnection};

use crate::envelope::Envelope;

/// The DDL of the `outbox` and `inbox` tables, for services that run it from their own migrations.
pub const MIGRATION_SQL: &str = include_str!("schema.sql");

/// Creates `outbox` and `inbox` in the current `search_path` schema when missing. Safe to run at every
/// start and from several instances at once: the DDL runs under a per-schema advisory lock.
pub async fn migrate(db: &Db) -> Result<(), sqlx::Error> {
    let mut connection = db.acquire().await?;
    let mut tx = connection.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('logicore.messaging.migrate.' || current_schema()))",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::raw_sql(MIGRATION_SQL).execute(&mut *tx).await?;
    tx.commit().await
}

/// Records `envelope` in the outbox inside the caller's transaction:
///
/// ```ignore
/// let envelope = Envelope::new(EventType::UserCreated, "users", user.id, &payload)?;
/// messaging::publish_in_tx(&mut tx, &envelope).await?;
/// ```
///
/// Events of one aggregate are relayed in the order they were recorded. Record them after the statement that
/// changes (and so locks) the aggregate's row, so two transactions on one aggregate record in commit order.
pub async fn publish_in_tx(tx: &mut PgConnection, envelope: &Envelope) -> Result<(), sqlx::Error> {
    publish_all_in_tx(tx, std::slice::from_ref(envelope)).await
}

/// Records several events in one round trip, in slice order.
pub async fn publish_all_in_tx(
    tx: &mut PgConnection,
    envelopes: &[Envelope],
) -> Result<(), sqlx::Error> {
    if envelopes.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(envelopes.len());
    let mut types = Vec::with_capacity(envelopes.len());
    let mut aggregates = Vec::with_capacity(envelopes.len());
    let mut bodies = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        ids.push(envelope.id);
        types.push(envelope.event_type.as_str());
        aggregates.push(envelope.aggregate_id.as_str());
        bodies.push(
            envelope
                .to_json()
                .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
        );
    }
    // One statement inserts the rows and wakes the relay; the notification is delivered at commit only, and
    // PostgreSQL folds repeated notifications of one transaction into one.
    sqlx::query(
        "WITH inserted AS ( \
             INSERT INTO outbox (id, event_type, aggregate_id, envelope) \
             SELECT id, event_type, aggregate_id, envelope::json \
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
                  WITH ORDINALITY AS u(id, event_type, aggregate_id, envelope, n) \
             ORDER BY n \
             RETURNING 1) \
         SELECT pg_notify(left('lc_outbox_' || current_schema(), 63), '') \
         FROM (SELECT 1 FROM inserted LIMIT 1) AS any_row",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&aggregates)
    .bind(&bodies)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The notification channel the relay of the current schema listens on.
pub(crate) async fn channel(connection: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query_scalar("SELECT left('lc_outbox_' || current_schema(), 63)")
        .fetch_one(connection)
        .await
}

/// How far the relay is behind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxStats {
    /// Committed events not yet confirmed by the transport.
    pub pending: i64,
    /// Age of the oldest pending event; 0 when none is pending.
    pub lag: Duration,
}

pub async fn outbox_stats(db: &Db) -> Result<OutboxStats, sqlx::Error> {
    let (pending, lag): (i64, f64) = db
        .timed(
            "messaging_outbox_stats",
            sqlx::query_as(
                "SELECT count(*), \
                        COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 \
                 FROM outbox WHERE sent_at IS NULL",
            )
            .fetch_one(db.pool()),
        )
        .await?;
    Ok(OutboxStats {
        pending,
        lag: Duration::from_secs_f64(lag.max(0.0)),
    })
}

/// Deletes sent events older than `retention`, a bounded batch at a time so no statement holds locks long.
pub(crate) async fn prune(db: &Db, retention: Duration) -> Result<u64, sqlx::Error> {
    const BATCH: i64 = 5_000;
    let mut total = 0;
    loop {
        let deleted = db
            .timed(
                "messaging_outbox_prune",
                // `= ANY (ARRAY(…))`, not `IN (…)`: the batch is collected first (by the BRIN index) and its
                // rows deleted by key, where `IN` let the planner hash the batch and read the whole outbox
                // to find it (docs/indexing.md).
                sqlx::query(
                    "DELETE FROM outbox WHERE position = ANY (ARRAY( \
                         SELECT position FROM outbox \
                         WHERE sent_at < now() - make_interval(secs => $1) LIMIT $2))",
                )
                .bind(retention.as_secs_f64())
                .bind(BATCH)
                .execute(db.pool()),
            )
            .await?
            .rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}
