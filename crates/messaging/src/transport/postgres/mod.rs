//! The PostgreSQL transport: no broker, for `logicore all` and small deployments where every service shares
//! one database.
//!
//! The "exchange" is a schema shared by all services (`logicore.events` → `logicore_events`) holding the
//! consumer groups' subscriptions (routing-key patterns) and one delivery row per (group, event): publishing
//! fans an event out to the groups whose patterns match, exactly as a topic exchange copies a message into
//! each bound queue. A delivery row carries its group's state: attempts, next attempt time, lease, last
//! error, dead-lettered time. Consumers claim due rows with `FOR UPDATE SKIP LOCKED` and a lease, so several
//! instances compete safely and a crashed one's deliveries are taken over when its lease ends.

mod claim;
mod sql;

use std::sync::Arc;

use futures::future::BoxFuture;
use platform::db::{Db, quote_ident};
use serde_json::{Map, Value, json};
use sqlx::postgres::PgListener;
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::{Notify, Semaphore, mpsc};
use uuid::Uuid;

use super::{
    Confirms, DeadLetter, Deliveries, GroupDeadLetters, Outgoing, Subscription, Transport,
    TransportError, TransportHealth, topic_matches,
};
use crate::metrics::Metrics;
use crate::options::{MessagingOptions, TransportKind};
use claim::Claimer;
pub use sql::bus_schema;
use sql::{Sql, ddl};

struct Inner {
    db: Db,
    sql: Sql,
    channel: String,
    options: MessagingOptions,
    metrics: Metrics,
}

#[derive(Clone)]
pub struct PostgresTransport {
    inner: Arc<Inner>,
}

impl PostgresTransport {
    /// Creates the shared schema and tables when missing (under an advisory lock, as every service of the
    /// database may start at once).
    pub async fn new(
        db: &Db,
        options: &MessagingOptions,
        metrics: &Metrics,
    ) -> Result<Self, TransportError> {
        let schema = bus_schema(&options.exchange);
        let quoted = quote_ident(&schema);
        let mut connection = db.acquire().await?;
        let mut tx = connection.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('logicore.messaging.bus.' || $1))")
            .bind(&schema)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(ddl(&quoted)))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // The "broker" is the database the service already depends on: up as long as it answers.
        metrics.broker_up.set(1);
        Ok(Self {
            inner: Arc::new(Inner {
                db: db.clone(),
                sql: Sql::new(&quoted),
                channel: schema,
                options: options.clone(),
                metrics: metrics.clone(),
            }),
        })
    }

    async fn fan_out(&self, batch: &[Outgoing]) -> Result<(), TransportError> {
        let inner = &self.inner;
        let subscriptions: Vec<(String, String)> =
            sqlx::query_as(AssertSqlSafe(inner.sql.subscriptions.as_str()))
                .fetch_all(inner.db.pool())
                .await?;
        let (mut groups, mut ids, mut types, mut aggregates, mut bodies) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for message in batch {
            let body = std::str::from_utf8(&message.body)
                .map_err(|e| TransportError::Database(sqlx::Error::Encode(Box::new(e))))?;
            let mut matched: Vec<&str> = subscriptions
                .iter()
                .filter(|(_, pattern)| topic_matches(pattern, &message.event_type))
                .map(|(group, _)| group.as_str())
                .collect();
            matched.dedup();
            for group in matched {
                groups.push(group);
                ids.push(message.id);
                types.push(message.event_type.as_str());
                aggregates.push(message.aggregate_id.as_str());
                bodies.push(body);
            }
        }
        if groups.is_empty() {
            // Like a topic exchange with no matching binding: nobody listens, nothing to keep.
            return Ok(());
        }
        inner
            .db
            .timed(
                "messaging_pg_fan_out",
                sqlx::query(AssertSqlSafe(inner.sql.fan_out.as_str()))
                    .bind(&groups)
                    .bind(&ids)
                    .bind(&types)
                    .bind(&aggregates)
                    .bind(&bodies)
                    .bind(&inner.channel)
                    .execute(inner.db.pool()),
            )
            .await?;
        Ok(())
    }

    async fn start(&self, subscription: &Subscription) -> Result<Deliveries, TransportError> {
        let inner = &self.inner;
        let mut connection = inner.db.acquire().await?;
        let mut tx = connection.begin().await?;
        sqlx::query(AssertSqlSafe(inner.sql.unsubscribe_stale.as_str()))
            .bind(&subscription.group)
            .bind(&subscription.patterns)
            .execute(&mut *tx)
            .await?;
        sqlx::query(AssertSqlSafe(inner.sql.subscribe.as_str()))
            .bind(&subscription.group)
            .bind(&subscription.patterns)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut listener = PgListener::connect_with(inner.db.pool()).await?;
        listener.listen(&inner.channel).await?;
        let prefetch = usize::from(subscription.prefetch.max(1));
        let (sender, receiver) = mpsc::channel(prefetch);
        let claimer = Claimer {
            inner: self.inner.clone(),
            group: subscription.group.clone(),
            permits: Arc::new(Semaphore::new(prefetch)),
            wake: Arc::new(Notify::new()),
            sender,
        };
        tokio::spawn(claimer.run(listener));
        Ok(Deliveries::new(receiver))
    }
}

impl Transport for PostgresTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Postgres
    }

    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, Result<Confirms, TransportError>> {
        Box::pin(async move {
            // The insert has committed when it returns: nothing is left to confirm.
            self.fan_out(batch).await?;
            let confirmed: Confirms = Box::pin(async { Ok(()) });
            Ok(confirmed)
        })
    }

    fn subscribe<'a>(
        &'a self,
        subscription: &'a Subscription,
    ) -> BoxFuture<'a, Result<Deliveries, TransportError>> {
        Box::pin(self.start(subscription))
    }

    fn queue_depth<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let depth: i64 = sqlx::query_scalar(AssertSqlSafe(self.inner.sql.depth.as_str()))
                .bind(group)
                .fetch_one(self.inner.db.pool())
                .await?;
            Ok(u64::try_from(depth).unwrap_or(0))
        })
    }

    fn groups<'a>(
        &'a self,
        _expected: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<GroupDeadLetters>, TransportError>> {
        // Every group that ever subscribed is in the table, so there is nothing to probe.
        Box::pin(async move {
            let rows: Vec<(String, i64)> =
                sqlx::query_as(AssertSqlSafe(self.inner.sql.groups.as_str()))
                    .fetch_all(self.inner.db.pool())
                    .await?;
            Ok(rows
                .into_iter()
                .map(|(group, dead)| GroupDeadLetters {
                    group,
                    dead_letters: u64::try_from(dead).unwrap_or(0),
                })
                .collect())
        })
    }

    fn dead_letters<'a>(
        &'a self,
        group: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, TransportError>> {
        Box::pin(async move {
            type Row = (
                Uuid,
                String,
                i32,
                String,
                Option<chrono::DateTime<chrono::Utc>>,
                Value,
            );
            let rows: Vec<Row> = sqlx::query_as(AssertSqlSafe(self.inner.sql.list_dead.as_str()))
                .bind(group)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(self.inner.db.pool())
                .await?;
            Ok(rows
                .into_iter()
                .map(
                    |(event_id, event_type, attempts, last_error, at, envelope)| DeadLetter {
                        event_id,
                        event_type,
                        group: group.to_owned(),
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        last_error,
                        dead_lettered_at: at,
                        envelope,
                    },
                )
                .collect())
        })
    }

    fn replay<'a>(
        &'a self,
        group: &'a str,
        event_ids: Option<&'a [Uuid]>,
    ) -> BoxFuture<'a, Result<u64, TransportError>> {
        Box::pin(async move {
            let replayed = sqlx::query(AssertSqlSafe(self.inner.sql.replay.as_str()))
                .bind(group)
                .bind(event_ids)
                .execute(self.inner.db.pool())
                .await?
                .rows_affected();
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(&self.inner.channel)
                .execute(self.inner.db.pool())
                .await?;
            Ok(replayed)
        })
    }

    fn health(&self) -> BoxFuture<'_, TransportHealth> {
        Box::pin(async move {
            let mut details = Map::new();
            details.insert("transport".into(), json!("postgres"));
            details.insert("schema".into(), json!(self.inner.channel));
            let answered = sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(self.inner.db.pool())
                .await;
            self.inner
                .metrics
                .broker_up
                .set(i64::from(answered.is_ok()));
            TransportHealth {
                up: answered.is_ok(),
                details,
                error: answered.err().map(|e| e.to_string()),
                fatal: false,
            }
        })
    }

    fn delete_group<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<(), TransportError>> {
        Box::pin(async move {
            for sql in [
                &self.inner.sql.delete_subscriptions,
                &self.inner.sql.delete_deliveries,
            ] {
                sqlx::query(AssertSqlSafe(sql.as_str()))
                    .bind(group)
                    .execute(self.inner.db.pool())
                    .await?;
            }
            Ok(())
        })
    }
}
