//! The outbox relay: delivers committed outbox rows to the transport, in order, and marks them sent only after
//! the transport confirmed them.
//!
//! Each pass runs in one transaction holding a per-schema advisory lock (`pg_try_advisory_xact_lock`): with
//! several instances of a service, one pass runs at a time, so a batch is published and marked before the
//! next is read and the order per aggregate is the outbox order. The lock dies with the transaction, so a
//! crashed instance never blocks the others. A crash between publish and commit republishes the batch; the
//! consumers' inbox makes that harmless. The relay wakes on `LISTEN/NOTIFY` and also polls.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::db::Db;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::options::{MessagingOptions, TransportKind};
use crate::outbox;
use crate::transport::{Confirms, Outgoing, Transport, TransportError};
use platform::backoff::Backoff;

/// Batches one pass (one transaction) relays at most; bounds what a crash makes the next pass republish.
pub const BATCHES_PER_PASS: usize = 20;

/// Batches sent but not yet confirmed, besides the one being sent: enough to keep the broker busy while
/// confirms travel back.
const IN_FLIGHT: usize = 8;

/// How often sent rows older than the retention period are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// This many events were confirmed and marked sent.
    Relayed(usize),
    /// Nothing was waiting.
    Idle,
    /// Another instance is relaying this schema's outbox right now.
    NotLeader,
}

pub struct Relay {
    db: Db,
    transport: Arc<dyn Transport>,
    options: MessagingOptions,
    metrics: Metrics,
}

impl Relay {
    pub fn new(
        db: &Db,
        transport: Arc<dyn Transport>,
        options: &MessagingOptions,
        metrics: &Metrics,
    ) -> Self {
        Self {
            db: db.clone(),
            transport,
            options: options.clone(),
            metrics: metrics.clone(),
        }
    }

    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Relays until `shutdown`; a pass in progress finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match self.listen().await {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(error = %error, "relay cannot listen for outbox notifications; polling only");
                None
            }
        };
        let mut backoff = Backoff::new(self.options.reconnect_min, self.options.reconnect_max);
        let mut last_sample: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let (wait, wake_on_notify) = match self.relay_once().await {
                Ok(Pass::Relayed(count)) if count >= self.options.relay_batch => {
                    backoff.reset();
                    (Duration::ZERO, true)
                }
                Ok(_) => {
                    backoff.reset();
                    (self.options.relay_poll, true)
                }
                Err(TransportError::Unavailable { retry_after }) => {
                    // The breaker is open: new events cannot go out before it lets a trial through.
                    self.metrics.relay_failures.inc();
                    (retry_after.max(Duration::from_millis(10)), false)
                }
                Err(error) => {
                    self.metrics.relay_failures.inc();
                    tracing::warn!(error = %error, "relay pass failed; will retry");
                    (backoff.next_delay(), false)
                }
            };
            if last_sample.is_none_or(|at| at.elapsed() >= self.options.sample_every) {
                last_sample = Some(Instant::now());
                self.sample().await;
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                match outbox::prune(&self.db, self.options.retention).await {
                    Ok(0) => {}
                    Ok(deleted) => tracing::info!(deleted, "pruned sent outbox rows"),
                    Err(error) => tracing::warn!(error = %error, "pruning the outbox failed"),
                }
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = notified(listener.as_mut(), wake_on_notify) => {}
                () = tokio::time::sleep(wait) => {}
            }
            if let Some(listener) = listener.as_mut() {
                while listener.next_buffered().is_some() {}
            }
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let channel = {
            let mut connection = self.db.acquire().await?;
            outbox::channel(&mut connection).await?
        };
        let mut listener = PgListener::connect_with(self.db.pool()).await?;
        listener.listen(&channel).await?;
        Ok(listener)
    }

    async fn sample(&self) {
        if let Ok(stats) = outbox::outbox_stats(&self.db).await {
            self.metrics.outbox_lag.set(stats.lag.as_secs_f64());
            self.metrics.outbox_pending.set(stats.pending);
        }
    }

    /// One pass, if this instance gets the lease: up to [`BATCHES_PER_PASS`] batches of `relay_batch`
    /// events in one transaction, committed (marking them sent) at the end.
    ///
    /// Batches are sent in outbox order on one channel, which keeps that order on the wire, but without
    /// waiting for earlier batches' confirms (up to `IN_FLIGHT` wait at once); while the broker confirms,
    /// the same transaction marks confirmed batches sent and reads the next one, so broker and database work
    /// overlap instead of adding up. Any failure abandons the pass: nothing of it is marked, and
    /// the next pass sends it again (duplicates the consumers' inbox absorbs).
    pub async fn relay_once(&self) -> Result<Pass, TransportError> {
        let mut connection = self.db.acquire().await?;
        let mut tx = connection.begin().await?;
        let leader: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtext('logicore.outbox.relay.' || current_schema()))",
        )
        .fetch_one(&mut *tx)
        .await?;
        if !leader {
            tx.rollback().await?;
            return Ok(Pass::NotLeader);
        }
        // Losing this commit in a database crash only means sending the pass again: not worth a WAL flush.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let (mut positions, mut batch) = self.next_batch(&mut tx, 0).await?;
        if batch.is_empty() {
            tx.commit().await?;
            return Ok(Pass::Idle);
        }
        // Sent and awaiting confirms (oldest first), and confirmed but not yet marked.
        let mut in_flight: VecDeque<(Vec<i64>, Confirms)> = VecDeque::with_capacity(IN_FLIGHT + 1);
        let mut to_mark: Vec<i64> = Vec::new();
        let mut relayed = 0;
        for round in 1..=BATCHES_PER_PASS {
            let publishing = publish_spans(&batch, self.transport.kind());
            let confirms = self.transport.send(&batch).await?;
            drop(publishing);
            relayed += batch.len();
            let last = positions.last().copied().unwrap_or(0);
            in_flight.push_back((std::mem::take(&mut positions), confirms));
            let oldest = (in_flight.len() > IN_FLIGHT)
                .then(|| in_flight.pop_front())
                .flatten();
            let marking = std::mem::take(&mut to_mark);
            let database = async {
                if !marking.is_empty() {
                    self.mark_sent(&mut tx, &marking).await?;
                }
                if round < BATCHES_PER_PASS {
                    self.next_batch(&mut tx, last).await
                } else {
                    Ok((Vec::new(), Vec::new()))
                }
            };
            let confirming = async {
                match oldest {
                    Some((done, confirms)) => confirms.await.map(|()| done),
                    None => Ok(Vec::new()),
                }
            };
            let (confirmed, next) = tokio::join!(confirming, database);
            to_mark = confirmed?;
            (positions, batch) = next?;
            if batch.is_empty() {
                break;
            }
        }
        for (done, confirms) in in_flight {
            confirms.await?;
            to_mark.extend(done);
        }
        if !to_mark.is_empty() {
            self.mark_sent(&mut tx, &to_mark).await?;
        }
        tx.commit().await?;
        self.metrics.relayed.inc_by(relayed as u64);
        Ok(Pass::Relayed(relayed))
    }

    async fn mark_sent(&self, tx: &mut PgConnection, positions: &[i64]) -> Result<(), sqlx::Error> {
        self.db
            .timed(
                "messaging_outbox_mark_sent",
                sqlx::query("UPDATE outbox SET sent_at = now() WHERE position = ANY($1)")
                    .bind(positions)
                    .execute(&mut *tx),
            )
            .await?;
        Ok(())
    }

    /// The next unsent events after `after` (rows of this pass already marked are skipped by position).
    async fn next_batch(
        &self,
        tx: &mut PgConnection,
        after: i64,
    ) -> Result<(Vec<i64>, Vec<Outgoing>), sqlx::Error> {
        let rows: Vec<OutboxRow> = self
            .db
            .timed(
                "messaging_outbox_next_batch",
                sqlx::query_as(
                    "SELECT position, id, event_type, aggregate_id, envelope::text, \
                     envelope->>'producer', envelope->>'traceparent' FROM outbox \
                     WHERE sent_at IS NULL AND position > $2 ORDER BY position LIMIT $1",
                )
                .bind(i64::try_from(self.options.relay_batch).unwrap_or(500))
                .bind(after)
                .fetch_all(&mut *tx),
            )
            .await?;
        let mut positions = Vec::with_capacity(rows.len());
        let mut batch = Vec::with_capacity(rows.len());
        for (position, id, event_type, aggregate_id, body, producer, traceparent) in rows {
            positions.push(position);
            batch.push(Outgoing {
                id,
                event_type,
                aggregate_id,
                producer,
                traceparent,
                body: body.into_bytes(),
            });
        }
        Ok((positions, batch))
    }
}

/// An outbox row as the relay reads it: position, id, event type, aggregate id, envelope, producer and
/// the trace the event continues.
type OutboxRow = (i64, Uuid, String, String, String, String, Option<String>);

/// One producer span per traced event of a batch, under the trace the event was written in: each ends
/// when the batch has been handed to the broker.
fn publish_spans(batch: &[Outgoing], transport: TransportKind) -> Vec<tracing::Span> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if !platform::telemetry::traces::enabled() {
        return Vec::new();
    }
    batch
        .iter()
        .filter(|message| message.traceparent.is_some())
        .map(|message| {
            let span = tracing::info_span!(
                parent: None,
                "publish",
                otel.name = format!("publish {}", message.event_type),
                otel.kind = "producer",
                messaging.system = transport.system(),
                messaging.operation.type = "send",
                messaging.destination.name = message.event_type.as_str(),
                messaging.message.id = %message.id,
            );
            let mut cx = platform::telemetry::traces::continued(message.traceparent.as_deref());
            if let Some(service) = platform::telemetry::traces::intern(&message.producer) {
                cx = platform::telemetry::traces::enter(cx, service);
            }
            let _ = span.set_parent(cx);
            span
        })
        .collect()
}

/// Resolves on an outbox notification; never when there is no listener, it is broken or not wanted.
async fn notified(listener: Option<&mut PgListener>, wanted: bool) {
    match listener {
        Some(listener) if wanted => {
            if listener.recv().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
