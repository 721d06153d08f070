//! Benchmarks, ignored by default. Run them in release mode, alone:
//!
//! ```text
//! cargo test --release -p messaging --test throughput -- --ignored --nocapture --test-threads=1
//! ```
//!
//! * relay throughput (publisher confirms on) next to a plain lapin publisher with confirms, same message
//!   size, same batch size, same exchange/queue set-up (one durable queue bound, persistent messages);
//! * end-to-end latency, from the producer's commit to the consumer's handler, at a steady rate.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Harness, RABBITMQ_URL, event, events};
use futures::future::{BoxFuture, join_all};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use messaging::transport::Outgoing;
use messaging::{Envelope, Handler, Outcome, TransportKind};
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

const EVENTS: usize = 20_000;
const BATCH: usize = 500;

/// Declares `exchange` (topic, durable) and a durable queue bound to every key, as a consumer group would.
async fn bind_sink(channel: &lapin::Channel, exchange: &str, queue: &str) {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn plain_lapin_rate(bodies: &[Outgoing], window: usize) -> f64 {
    let connection = Connection::connect(RABBITMQ_URL, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let channel = connection
        .create_channel()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let exchange = format!("bench.{}", Uuid::new_v4().simple());
    let queue = format!("{exchange}.sink");
    bind_sink(&channel, &exchange, &queue).await;
    let started = Instant::now();
    for batch in bodies.chunks(window) {
        let mut confirms = Vec::with_capacity(batch.len());
        for message in batch {
            // The same properties the relay sends, so both put the same bytes on the wire.
            let mut headers = FieldTable::default();
            headers.insert(
                "aggregate_id".into(),
                lapin::types::AMQPValue::LongString(message.aggregate_id.as_str().into()),
            );
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(message.id.to_string().into())
                .with_type(message.event_type.as_str().into())
                .with_timestamp(1)
                .with_headers(headers);
            confirms.push(
                channel
                    .basic_publish(
                        exchange.as_str().into(),
                        message.event_type.as_str().into(),
                        BasicPublishOptions::default(),
                        &message.body,
                        properties,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        for confirmation in join_all(confirms).await {
            assert!(confirmation.unwrap_or_else(|e| panic!("{e}")).is_ack());
        }
    }
    let rate = bodies.len() as f64 / started.elapsed().as_secs_f64();
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    rate
}

async fn relay_rate(kind: TransportKind) -> f64 {
    let mut h = Harness::with_options(kind, |o| o.relay_batch = BATCH).await;
    if kind == TransportKind::RabbitMq {
        let connection = Connection::connect(RABBITMQ_URL, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let channel = connection
            .create_channel()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        bind_sink(
            &channel,
            &h.options.exchange,
            &format!("{}.sink", h.options.exchange),
        )
        .await;
        let _ = connection.close(200, "done".into()).await;
    } else {
        // A subscribed group, so the PostgreSQL transport fans every event out to one delivery row.
        let schema = messaging::transport::postgres::bus_schema(&h.options.exchange);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{schema}\".subscriptions VALUES ('sink', '#')"
        )))
        .execute(h.db.pool())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }
    h.group("sink");
    h.publish(&events(200, (EVENTS / 200) as i64)).await;
    // Connected before the clock starts, as the plain publisher is.
    assert!(h.transport.health().await.up);
    let rate = rate_of_passes(&h.relay()).await;
    h.finish().await;
    rate.unwrap_or_else(|| panic!("relaying to {kind} failed"))
}

/// Confirms everything at once: what the relay costs on the database side alone.
struct NullTransport;

impl messaging::Transport for NullTransport {
    fn kind(&self) -> TransportKind {
        TransportKind::Postgres
    }
    fn send<'a>(
        &'a self,
        _batch: &'a [Outgoing],
    ) -> BoxFuture<'a, Result<messaging::transport::Confirms, messaging::TransportError>> {
        Box::pin(async {
            let confirmed: messaging::transport::Confirms = Box::pin(async { Ok(()) });
            Ok(confirmed)
        })
    }
    fn subscribe<'a>(
        &'a self,
        _s: &'a messaging::transport::Subscription,
    ) -> BoxFuture<'a, Result<messaging::transport::Deliveries, messaging::TransportError>> {
        Box::pin(async { Err(messaging::TransportError::Timeout(Duration::ZERO)) })
    }
    fn queue_depth<'a>(
        &'a self,
        _g: &'a str,
    ) -> BoxFuture<'a, Result<u64, messaging::TransportError>> {
        Box::pin(async { Ok(0) })
    }
    fn groups<'a>(
        &'a self,
        _e: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Vec<messaging::GroupDeadLetters>, messaging::TransportError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn dead_letters<'a>(
        &'a self,
        _g: &'a str,
        _l: usize,
    ) -> BoxFuture<'a, Result<Vec<messaging::DeadLetter>, messaging::TransportError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn replay<'a>(
        &'a self,
        _g: &'a str,
        _i: Option<&'a [Uuid]>,
    ) -> BoxFuture<'a, Result<u64, messaging::TransportError>> {
        Box::pin(async { Ok(0) })
    }
    fn health(&self) -> BoxFuture<'_, messaging::transport::TransportHealth> {
        Box::pin(async {
            messaging::transport::TransportHealth {
                up: true,
                details: Default::default(),
                error: None,
                fatal: false,
            }
        })
    }
    fn delete_group<'a>(
        &'a self,
        _g: &'a str,
    ) -> BoxFuture<'a, Result<(), messaging::TransportError>> {
        Box::pin(async { Ok(()) })
    }
}

async fn relay_database_only_rate() -> f64 {
    let h = Harness::with_options(TransportKind::Postgres, |o| o.relay_batch = BATCH).await;
    h.publish(&events(200, (EVENTS / 200) as i64)).await;
    let relay = messaging::Relay::new(&h.db, Arc::new(NullTransport), &h.options, &h.metrics);
    let rate = rate_of_passes(&relay).await;
    h.finish().await;
    rate.unwrap_or_else(|| panic!("relaying failed"))
}

/// Events per second of back-to-back relay passes over the `EVENTS` waiting in the outbox: what a relay
/// does while it has a backlog (it starts the next pass at once), without wake-up or polling delays.
async fn rate_of_passes(relay: &messaging::Relay) -> Option<f64> {
    let started = Instant::now();
    let mut relayed = 0;
    while relayed < EVENTS {
        match relay.relay_once().await {
            Ok(messaging::Pass::Relayed(n)) => relayed += n,
            Ok(_) => return None,
            Err(error) => panic!("relay pass failed: {error}"),
        }
    }
    Some(EVENTS as f64 / started.elapsed().as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release mode with --ignored"]
async fn relay_throughput_next_to_a_plain_lapin_publisher() {
    const ROUNDS: usize = 3;
    let sample: Vec<Outgoing> = events(200, (EVENTS / 200) as i64)
        .iter()
        .map(|e| Outgoing::from_envelope(e).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    // Interleaved rounds, medians reported: the machine is shared, so one-off runs are noisy.
    let (mut windowed, mut pipelined, mut rabbit, mut postgres, mut database) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        windowed.push(plain_lapin_rate(&sample, BATCH).await);
        pipelined.push(plain_lapin_rate(&sample, sample.len()).await);
        rabbit.push(relay_rate(TransportKind::RabbitMq).await);
        postgres.push(relay_rate(TransportKind::Postgres).await);
        database.push(relay_database_only_rate().await);
        println!(
            "BENCH round {round}: plain/window {:.0}, plain/all {:.0}, relay->rabbitmq {:.0}, relay->postgres {:.0}, relay db-only {:.0}",
            windowed[round - 1],
            pipelined[round - 1],
            rabbit[round - 1],
            postgres[round - 1],
            database[round - 1]
        );
    }
    let (windowed, pipelined, rabbit) = (median(windowed), median(pipelined), median(rabbit));
    println!(
        "BENCH events={EVENTS} body_bytes={} batch={BATCH} (medians of {ROUNDS} rounds)",
        sample[0].body.len()
    );
    println!("BENCH plain lapin, confirms, {BATCH} per window: {windowed:.0} events/s");
    println!("BENCH plain lapin, confirms, all in flight:     {pipelined:.0} events/s");
    println!("BENCH relay -> rabbitmq, confirms:              {rabbit:.0} events/s");
    println!(
        "BENCH relay -> postgres transport:              {:.0} events/s",
        median(postgres)
    );
    println!(
        "BENCH relay, database side only (no transport): {:.0} events/s",
        median(database)
    );
    println!(
        "BENCH ratio relay/plain (window of {BATCH}): {:.2}; relay/plain (all in flight): {:.2}",
        rabbit / windowed,
        rabbit / pipelined
    );
}

/// Records when each event reached the handler.
#[derive(Clone, Default)]
struct Stamp(Arc<Mutex<HashMap<Uuid, Instant>>>);

impl Handler for Stamp {
    fn handle<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        event: &'a Envelope,
        _attempt: u32,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if let Ok(mut seen) = self.0.lock() {
                seen.entry(event.id).or_insert_with(Instant::now);
            }
            Outcome::Success
        })
    }
}

async fn latencies(
    kind: TransportKind,
    count: usize,
    rate_per_second: u64,
) -> (Duration, Duration) {
    let mut h = Harness::with_options(kind, |o| o.relay_poll = Duration::from_secs(1)).await;
    let group = h.group("latency");
    let stamps = Stamp::default();
    let handle = h
        .consumer(&group, stamps.clone())
        .start(h.shutdown.clone())
        .await;
    h.start_relay();
    let mut committed = HashMap::with_capacity(count);
    let pause = Duration::from_micros(1_000_000 / rate_per_second);
    for seq in 0..count {
        let envelope = event(&format!("agg-{}", seq % 50), seq as i64);
        let mut connection = h.db.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        let mut tx = connection.begin().await.unwrap_or_else(|e| panic!("{e}"));
        messaging::publish_in_tx(&mut tx, &envelope)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
        committed.insert(envelope.id, Instant::now());
        // Pacing the producer to a steady rate, not waiting for an outcome.
        tokio::time::sleep(pause).await;
    }
    testkit::eventually("every event handled", Duration::from_secs(60), || async {
        (stamps.0.lock().map(|s| s.len()).unwrap_or(0) >= count).then_some(())
    })
    .await;
    let mut samples: Vec<Duration> = {
        let seen = stamps.0.lock().unwrap_or_else(|p| p.into_inner());
        committed
            .iter()
            .filter_map(|(id, at)| {
                seen.get(id)
                    .map(|handled| handled.saturating_duration_since(*at))
            })
            .collect()
    };
    samples.sort();
    let percentile = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    let result = (percentile(0.50), percentile(0.99));
    h.finish().await;
    let _ = handle.await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run in release mode with --ignored"]
async fn end_to_end_latency_at_a_steady_rate() {
    for kind in [TransportKind::RabbitMq, TransportKind::Postgres] {
        let (p50, p99) = latencies(kind, 2_000, 200).await;
        println!(
            "BENCH end-to-end latency via {kind} at 200 events/s: p50 {:.1} ms, p99 {:.1} ms",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0
        );
    }
}
