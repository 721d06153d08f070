//! Applying deliveries: one lane handles its events in order, several per database transaction when they
//! queue up, each under its own savepoint, so a busy lane pays one commit (one WAL flush) for many events
//! while a declined event still rolls back alone.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument as _;

use futures::FutureExt;
use sqlx::{Connection, PgConnection};
use tokio::sync::mpsc;

use super::{Context, Outcome};
use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::transport::{Delivery, TxAck};

pub(super) async fn lane(
    context: Arc<Context>,
    mut receiver: mpsc::Receiver<(Envelope, Delivery)>,
) {
    let max_chunk = context.handler.max_batch().max(1);
    let mut chunk = Vec::with_capacity(max_chunk);
    // `recv_many` takes what is already queued (at least one): one event when idle, a batch when busy.
    while receiver.recv_many(&mut chunk, max_chunk).await > 0 {
        apply_chunk(&context, std::mem::take(&mut chunk)).await;
    }
}

/// Why an event's changes were rolled back.
enum Declined {
    Database(sqlx::Error),
    Retry(String),
    Reject(String),
}

impl From<sqlx::Error> for Declined {
    fn from(error: sqlx::Error) -> Self {
        Declined::Database(error)
    }
}

/// `Ok(true)` applied, `Ok(false)` already in the inbox (a redelivery).
type Applied = Result<bool, Declined>;

async fn apply_chunk(context: &Context, chunk: Vec<(Envelope, Delivery)>) {
    let started = Instant::now();
    let (envelopes, deliveries): (Vec<Envelope>, Vec<Delivery>) = chunk.into_iter().unzip();
    let attempts: Vec<u32> = deliveries.iter().map(|d| d.attempt).collect();
    let acks: Vec<Option<TxAck>> = deliveries.iter().map(|d| d.settle.tx_ack()).collect();
    // Each traced event's span covers its handling, the commit and its settlement.
    let spans: Vec<Option<tracing::Span>> = envelopes
        .iter()
        .zip(&attempts)
        .map(|(envelope, attempt)| process_span(context, envelope, *attempt))
        .collect();
    let mut results: Vec<Applied> = Vec::with_capacity(envelopes.len());
    let committed =
        run_transaction(context, &envelopes, &attempts, &acks, &spans, &mut results).await;
    if let Err(error) = committed {
        // Nothing of the chunk is committed: every event that looked applied has to be tried again.
        let reason = format!("database error: {error}");
        results.truncate(0);
        results.extend(
            envelopes
                .iter()
                .map(|_| Err(Declined::Retry(reason.clone()))),
        );
    }
    for (envelope, result) in envelopes.iter().zip(&results) {
        if matches!(result, Ok(true)) {
            // Like `handle`, a panicking hook must not take the lane down with it.
            let hook = AssertUnwindSafe(context.handler.after_commit(envelope)).catch_unwind();
            if hook.await.is_err() {
                tracing::warn!(group = %context.group, event_id = %envelope.id, "after-commit hook panicked");
            }
        }
    }
    let labels = Metrics::group(&context.group);
    let elapsed = started.elapsed().as_secs_f64();
    for ((((envelope, delivery), result), ack), span) in envelopes
        .iter()
        .zip(deliveries)
        .zip(results)
        .zip(acks)
        .zip(spans)
    {
        context
            .metrics
            .handler_duration
            .get_or_create(&labels)
            .observe(elapsed);
        let settled = settle(context, &labels, envelope, delivery, result, ack.is_some());
        match span {
            Some(span) => {
                let settling = tracing::info_span!(
                    parent: &span,
                    "settle",
                    otel.name = format!("settle {}", envelope.event_type),
                    messaging.operation.type = "settle",
                    messaging.operation.name = tracing::field::Empty,
                );
                settled.instrument(settling).await;
            }
            None => settled.await,
        }
    }
}

/// Applies every event of the chunk in one transaction; `results` gets one entry per event that was tried.
async fn run_transaction(
    context: &Context,
    envelopes: &[Envelope],
    attempts: &[u32],
    acks: &[Option<TxAck>],
    spans: &[Option<tracing::Span>],
    results: &mut Vec<Applied>,
) -> Result<(), sqlx::Error> {
    let mut connection = context.db.acquire().await?;
    let mut tx = connection.begin().await?;
    // A lone event needs no savepoint: its decline rolls back the whole transaction.
    let savepoints = envelopes.len() > 1;
    for (((envelope, attempt), ack), span) in envelopes.iter().zip(attempts).zip(acks).zip(spans) {
        if savepoints {
            sqlx::query("SAVEPOINT event").execute(&mut *tx).await?;
        }
        let result = apply_one(
            context,
            &mut tx,
            envelope,
            *attempt,
            ack.as_ref(),
            span.as_ref(),
        )
        .await;
        if savepoints {
            let end = if result.is_ok() {
                "RELEASE SAVEPOINT event"
            } else {
                "ROLLBACK TO SAVEPOINT event"
            };
            sqlx::query(end).execute(&mut *tx).await?;
        }
        results.push(result);
    }
    if !savepoints && results.iter().any(Result::is_err) {
        tx.rollback().await
    } else {
        tx.commit().await
    }
}

/// Records the event in the inbox (skipping it when already there), acks it in the transaction when the
/// transport can, and runs the handler.
async fn apply_one(
    context: &Context,
    tx: &mut PgConnection,
    envelope: &Envelope,
    attempt: u32,
    ack: Option<&TxAck>,
    span: Option<&tracing::Span>,
) -> Applied {
    let fresh = sqlx::query(
        "INSERT INTO inbox (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&context.group)
    .bind(envelope.id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if let Some(ack) = ack {
        ack(&mut *tx).await?;
    }
    if !fresh {
        return Ok(false);
    }
    // A panicking handler is a failed attempt, not a dead consumer lane.
    let handled = AssertUnwindSafe(context.handler.handle(tx, envelope, attempt)).catch_unwind();
    let outcome = match span {
        Some(span) => {
            let outcome = handled.instrument(span.clone()).await;
            if !matches!(outcome, Ok(Outcome::Success)) {
                span.record("otel.status_code", "ERROR");
            }
            outcome
        }
        None => handled.await,
    }
    .unwrap_or_else(|_| Outcome::RetryLater("handler panicked".into()));
    match outcome {
        Outcome::Success => Ok(true),
        Outcome::RetryLater(reason) => Err(Declined::Retry(reason)),
        Outcome::Reject(reason) => Err(Declined::Reject(reason)),
    }
}

/// The consumer span of one event's handling, when the event carries a trace: a child of the span that
/// wrote the event, so the trace of a request runs on through every consumer it sets off (one event,
/// one handling: a parent, not a link, which would leave the consumer's work out of the request's trace
/// in Jaeger's view). The service is the consumer group's (`inventory.order-saga` → `inventory`).
fn process_span(context: &Context, envelope: &Envelope, attempt: u32) -> Option<tracing::Span> {
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let traceparent = envelope.traceparent.as_deref()?;
    if !platform::telemetry::traces::enabled() {
        return None;
    }
    let span = tracing::info_span!(
        parent: None,
        "process",
        otel.name = format!("process {}", envelope.event_type),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        messaging.operation.type = "process",
        messaging.consumer.group.name = context.group.as_str(),
        messaging.destination.name = envelope.event_type.as_str(),
        messaging.message.id = %envelope.id,
        messaging.message.conversation_id = %envelope.correlation_id,
        attempt,
    );
    let mut cx = platform::telemetry::traces::continued(Some(traceparent));
    let service = context.group.split('.').next().unwrap_or(&context.group);
    if let Some(service) = platform::telemetry::traces::intern(service) {
        cx = platform::telemetry::traces::enter(cx, service);
    }
    let _ = span.set_parent(cx);
    Some(span)
}

async fn settle(
    context: &Context,
    labels: &crate::metrics::GroupLabels,
    envelope: &Envelope,
    delivery: Delivery,
    result: Applied,
    acked_in_tx: bool,
) {
    let group = context.group.as_str();
    let metrics = &context.metrics;
    let attempt = delivery.attempt;
    let settled = match result {
        Ok(fresh) => {
            let counter = if fresh {
                &metrics.consumed
            } else {
                &metrics.duplicates
            };
            counter.get_or_create(labels).inc();
            tracing::Span::current().record("messaging.operation.name", "ack");
            if acked_in_tx {
                delivery.settle.acked_in_tx();
                Ok(())
            } else {
                delivery.settle.ack().await
            }
        }
        Err(Declined::Reject(reason)) => {
            tracing::warn!(group, event_id = %envelope.id, event_type = %envelope.event_type, reason, "event rejected");
            metrics.dead_lettered.get_or_create(labels).inc();
            tracing::Span::current().record("messaging.operation.name", "dead_letter");
            delivery.settle.dead_letter(reason).await
        }
        Err(declined) => {
            let reason = match declined {
                Declined::Retry(reason) | Declined::Reject(reason) => reason,
                Declined::Database(error) => format!("database error: {error}"),
            };
            if attempt >= context.options.max_attempts {
                tracing::warn!(group, event_id = %envelope.id, attempt, reason, "attempts exhausted; dead-lettering");
                metrics.dead_lettered.get_or_create(labels).inc();
                tracing::Span::current().record("messaging.operation.name", "dead_letter");
                delivery.settle.dead_letter(reason).await
            } else {
                tracing::info!(group, event_id = %envelope.id, attempt, reason, "event will be retried");
                metrics.retried.get_or_create(labels).inc();
                tracing::Span::current().record("messaging.operation.name", "retry");
                delivery
                    .settle
                    .retry(context.options.retry_delay, reason)
                    .await
            }
        }
    };
    if let Err(error) = settled {
        // The delivery stays unsettled and comes back; the inbox absorbs a repeat of a success.
        tracing::warn!(group, event_id = %envelope.id, error = %error, "cannot settle delivery");
    }
}
