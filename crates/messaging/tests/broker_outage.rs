//! Broker outage: RabbitMQ is stopped (`rabbitmqctl stop_app`) while the service keeps recording events, then
//! started again. Alone in its own test binary, because cargo runs test binaries one after another, so
//! stopping the broker cannot disturb any other test.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Behaviour, DEADLINE, Harness, Recorder, events};
use messaging::transport::Outgoing;
use messaging::{MessagingCheck, TransportError, TransportKind};
use platform::health::Check;

/// Stops the broker's application; starts it again when dropped, so a failing test cannot leave the
/// machine without a broker.
struct StoppedBroker {
    running: bool,
}

fn rabbitmqctl(command: &str) -> bool {
    Command::new("rabbitmqctl")
        .arg(command)
        .status()
        .is_ok_and(|status| status.success())
}

impl StoppedBroker {
    fn stop() -> Self {
        assert!(rabbitmqctl("stop_app"), "rabbitmqctl stop_app failed");
        Self { running: false }
    }

    fn start(&mut self) {
        if !self.running {
            assert!(rabbitmqctl("start_app"), "rabbitmqctl start_app failed");
            self.running = true;
        }
    }
}

impl Drop for StoppedBroker {
    fn drop(&mut self) {
        if !self.running {
            // Already unwinding or finishing: a failure here is reported by the next test that needs it.
            let _ = rabbitmqctl("start_app");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_while_the_broker_is_down_are_delivered_exactly_once_after_it_returns() {
    let mut h = Harness::with_options(TransportKind::RabbitMq, |o| {
        o.reconnect_min = Duration::from_millis(100);
        o.reconnect_max = Duration::from_secs(1);
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

    let mut broker = StoppedBroker::stop();
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

    broker.start();
    h.await_effects(150).await;
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
    assert_eq!(h.effects().await, 150);
    assert_eq!(h.distinct_effects().await, 150);
    assert_eq!(recorder.successes(), 150);
    h.finish().await;
}
