//! The source of truth: the users service's `revocations` table (created by its migrations), written in the
//! transaction of each change and read by every feed. The one place that knows the table's shape.

use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::Revocation;
use crate::auth::now_secs;

/// Rows are read again this long after their `recorded_at`. `recorded_at` is taken when the row is
/// written, the transaction's last statement, so a poll that saw a later row may have missed this one only
/// while its commit was still on the wire; reading the last seconds again catches it.
const OVERLAP_MICROS: i64 = 5_000_000;

/// Live revocations recorded since a watermark, with the next watermark. Also the body of the users
/// service's `GET /internal/revocations`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    pub revocations: Vec<Revocation>,
    /// The latest `recorded_at` seen (Unix microseconds, the database's clock); `None` before any row.
    pub watermark: Option<i64>,
}

/// Records a revocation in the caller's transaction and drops rows whose tokens have all expired.
pub async fn insert(connection: &mut PgConnection, revocation: &Revocation) -> sqlx::Result<()> {
    let (kind, subject, issued_up_to) = match *revocation {
        Revocation::User {
            user_id,
            issued_up_to,
            ..
        } => ("user", user_id, Some(issued_up_to)),
        Revocation::Token { jti, .. } => ("token", jti, None),
    };
    sqlx::query("DELETE FROM users.revocations WHERE keep_until < $1")
        .bind(now_secs())
        .execute(&mut *connection)
        .await?;
    sqlx::query(
        "INSERT INTO users.revocations (kind, subject, issued_up_to, keep_until, recorded_at) \
         VALUES ($1, $2, $3, $4, clock_timestamp())",
    )
    .bind(kind)
    .bind(subject)
    .bind(issued_up_to)
    .bind(revocation.keep_until())
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The live revocations recorded after `since` (minus the overlap); every live one when `since` is `None`.
pub async fn read_since(pool: &sqlx::PgPool, since: Option<i64>) -> sqlx::Result<Batch> {
    let rows = sqlx::query(
        "SELECT kind, subject, issued_up_to, keep_until, \
                (extract(epoch FROM recorded_at) * 1000000)::bigint AS recorded_us \
         FROM users.revocations \
         WHERE keep_until >= $1 \
           AND ($2::bigint IS NULL OR recorded_at > to_timestamp($2::bigint / 1000000.0))",
    )
    .bind(now_secs())
    .bind(since.map(|watermark| watermark - OVERLAP_MICROS))
    .fetch_all(pool)
    .await?;
    let mut batch = Batch {
        revocations: Vec::with_capacity(rows.len()),
        watermark: since,
    };
    for row in rows {
        let subject: Uuid = row.try_get("subject")?;
        let keep_until: i64 = row.try_get("keep_until")?;
        let recorded: i64 = row.try_get("recorded_us")?;
        batch.watermark = Some(batch.watermark.map_or(recorded, |w| w.max(recorded)));
        let kind: String = row.try_get("kind")?;
        batch.revocations.push(match kind.as_str() {
            "user" => Revocation::User {
                user_id: subject,
                issued_up_to: row
                    .try_get::<Option<i64>, _>("issued_up_to")?
                    .unwrap_or(i64::MAX),
                keep_until,
            },
            _ => Revocation::Token {
                jti: subject,
                keep_until,
            },
        });
    }
    Ok(batch)
}
