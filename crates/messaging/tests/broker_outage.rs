//! Broker outage: the connection to RabbitMQ is cut (a [`testkit::Cut`] between the code and the shared
//! broker, which keeps running for everyone else) while the service keeps recording events, then restored.
//! The reconnect backoff is the configured default, and the consumer must be back within 5 s.

mod common;

use std::time::{Duration, Instant};

use common::{Behaviour, DEADLINE, Harness, Recorder, events};
use messaging::transport::Outgoing;
use messaging::{MessagingCheck, MessagingOptions, TransportError, TransportKind};
use platform::health::Check;
use testkit::Cut;

/// Full service within this long of the broker's return.
const RECOVERY: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_while_the_broker_is_down_are_delivered_exactly_once_after_it_returns() {
    let cut = Cut::start(
        "127.0.0.1:5672"
            .parse()
            .unwrap_or_else(|e| panic!("broker address: {e}")),
    )
    .await;
    // The reconnect bounds as configured by default (messaging.reconnect_min_ms / reconnect_max_ms).
    let configured = MessagingOptions::from_settings(&testkit::settings(&[]).messaging);
    let url = format!("amqp://guest:guest@{}/%2f", cut.address());
    let mut h = Harness::with_broker(TransportKind::RabbitMq, &url, |o| {
        o.reconnect_min = configured.reconnect_min;
        o.reconnect_max = configured.reconnect_max;
        o.connect_timeout = Duration::from_secs(2);
        o.publish_timeout = Duration::from_secs(3);
    })
    .await;
    let group = h.group("outage");
    let recorder = Recorder::new("a", Behaviour::Succeed);
    h.start_consumer(&group, recorder.clone()).await;
    h.start_relay();
    h.publish(&events(10, 5)).await;
    h.await_effects(50).await;

    cut.cut();
    // Requests keep succeeding: their events only need the database.
    for request in 0..20 {
        let started = Instant::now();
        h.publish(&events(5, 1)).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "request {request} was slow"
        );
    }
    let check = MessagingCheck::new(&h.db, h.transport.clone());
    testkit::eventually("readiness to report the broker down", DEADLINE, || async {
        let report = check.check().await;
        (!report.up).then_some(())
    })
    .await;
    // Callers fail fast while the broker is known to be down.
    let probe =
        Outgoing::from_envelope(&common::event("probe", 0)).unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    let refused = h.transport.publish(std::slice::from_ref(&probe)).await;
    // Either the breaker is open (`Unavailable` at once) or its cool-down just ended and the one trial
    // connection is refused: no caller waits for a timeout.
    assert!(refused.is_err(), "published while the broker was down");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{refused:?} only after {:?}",
        started.elapsed()
    );
    if let Err(TransportError::Unavailable { retry_after }) = refused {
        assert!(retry_after <= Duration::from_secs(1));
    }
    assert_eq!(h.effects().await, 50);

    // Keep the broker away until the clients have failed to reconnect many times in a row: their backoff
    // has grown to its cap (with the old 30 s cap, the next attempt would now be 6-25 s away).
    testkit::eventually("repeated reconnect attempts", DEADLINE, || async {
        (cut.refused() >= 8).then_some(())
    })
    .await;
    cut.restore();
    let restored = Instant::now();
    h.publish(&events(5, 1)).await;
    // Everything recorded during the outage and after it is consumed within the recovery target.
    testkit::eventually("every event consumed", RECOVERY, || async {
        (h.effects().await == 155).then_some(())
    })
    .await;
    println!(
        "consumers caught up {:?} after the broker's return",
        restored.elapsed()
    );
    testkit::eventually("the outbox drained", DEADLINE, || async {
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(h.db.pool())
            .await
            .ok()?;
        (unsent == 0).then_some(())
    })
    .await;
    testkit::eventually("readiness to report the broker up", DEADLINE, || async {
        check.check().await.up.then_some(())
    })
    .await;
    assert_eq!(h.effects().await, 155);
    assert_eq!(h.distinct_effects().await, 155);
    assert_eq!(recorder.successes(), 155);
    h.finish().await;
}
