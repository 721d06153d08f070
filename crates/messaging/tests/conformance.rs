//! The conformance suite: every scenario runs against both transports, with a real RabbitMQ and a real
//! PostgreSQL.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Behaviour, DEADLINE, Harness, Recorder, event, events};
use messaging::{MessagingCheck, TransportKind};
use platform::health::Check;

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(messaging::TransportKind::RabbitMq).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(messaging::TransportKind::Postgres).await;
                }
            )*
        }
    };
}

conformance!(
    a_published_event_is_consumed_with_its_envelope_intact,
    ten_thousand_events_keep_their_order_per_aggregate,
    a_handler_failing_twice_is_retried_after_the_delay_and_then_succeeds,
    a_poison_event_is_dead_lettered_with_attempts_and_reason_and_can_be_replayed,
    a_redelivered_event_has_no_second_effect,
    two_consumer_instances_share_the_load_and_handle_no_event_twice,
    a_relay_restarted_mid_stream_loses_nothing,
);

async fn a_published_event_is_consumed_with_its_envelope_intact(kind: TransportKind) {
    let mut h = Harness::new(kind).await;
    let group = h.group("round-trip");
    let recorder = Recorder::new("a", Behaviour::Succeed);
    h.start_consumer(&group, recorder.clone()).await;
    h.start_relay();
    let sent = event("order-1", 7)
        .with_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    let messaging = h.messaging();
    let mut connection = h.db.acquire().await.unwrap_or_else(|e| panic!("{e}"));
    messaging
        .publish_in_tx(&mut connection, &sent)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    drop(connection);
    h.await_effects(1).await;

    let (event_id, aggregate, seq): (uuid::Uuid, String, i64) =
        sqlx::query_as("SELECT event_id, aggregate_id, seq FROM effects")
            .fetch_one(h.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((event_id, aggregate.as_str(), seq), (sent.id, "order-1", 7));
    assert_eq!(recorder.attempts_of(sent.id).len(), 1);
    assert_eq!(h.metrics.published(), 1);
    testkit::eventually("the outbox row marked sent", DEADLINE, || async {
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(h.db.pool())
            .await
            .ok()?;
        (unsent == 0).then_some(())
    })
    .await;
    assert_eq!(h.metrics.relayed(), 1);
    assert_eq!(h.metrics.consumed(&group), 1);

    let report = MessagingCheck::new(&h.db, h.transport.clone())
        .check()
        .await;
    assert!(report.up, "{report:?}");
    assert_eq!(report.details["transport"], kind.as_str());
    assert_eq!(report.details["outbox_pending"], 0);
    // The queue depth is sampled in the background; its series appears with the first sample.
    let text = testkit::eventually("the queue depth sampled", DEADLINE, || async {
        let text = h.render_metrics();
        text.contains("messaging_queue_depth{").then_some(text)
    })
    .await;
    for series in [
        "messaging_events_published_total",
        "messaging_events_relayed_total",
        "messaging_events_consumed_total",
        "messaging_outbox_lag_seconds",
        "messaging_queue_depth",
    ] {
        assert!(text.contains(series), "{series} missing from:\n{text}");
    }
    h.finish().await;
}

async fn ten_thousand_events_keep_their_order_per_aggregate(kind: TransportKind) {
    let mut h = Harness::with_options(kind, |o| o.prefetch = 256).await;
    let group = h.group("ordering");
    h.start_consumer(&group, Recorder::new("a", Behaviour::Succeed))
        .await;
    h.publish(&events(100, 100)).await;
    h.start_relay();
    h.await_effects(10_000).await;

    assert_eq!(h.distinct_effects().await, 10_000);
    // Effects are numbered in commit order; per aggregate that must be the publishing order.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, seq FROM effects ORDER BY id")
            .fetch_all(h.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    let mut last: HashMap<String, i64> = HashMap::new();
    for (aggregate, seq) in rows {
        let previous = last.insert(aggregate.clone(), seq).unwrap_or(-1);
        assert_eq!(
            seq,
            previous + 1,
            "{aggregate}: {seq} handled after {previous}"
        );
    }
    h.finish().await;
}

async fn a_handler_failing_twice_is_retried_after_the_delay_and_then_succeeds(kind: TransportKind) {
    let mut h = Harness::new(kind).await;
    let group = h.group("retries");
    let recorder = Recorder::new("a", Behaviour::FailTimes(2));
    h.start_consumer(&group, recorder.clone()).await;
    h.start_relay();
    let sent = event("order-1", 0);
    h.publish(std::slice::from_ref(&sent)).await;
    h.await_effects(1).await;

    let attempts = recorder.attempts_of(sent.id);
    let numbers: Vec<u32> = attempts.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 3]);
    let delay = h.options.retry_delay;
    for pair in attempts.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        // A few ms of slack: the broker's and the database's clocks round differently from ours.
        assert!(
            gap + Duration::from_millis(5) >= delay,
            "retried after {gap:?}, delay {delay:?}"
        );
        assert!(
            gap < delay + Duration::from_secs(3),
            "retried only after {gap:?}"
        );
    }
    assert_eq!(h.metrics.retried(&group), 2);
    assert_eq!(h.metrics.consumed(&group), 1);
    assert_eq!(h.effects().await, 1);
    // The declined attempts rolled back, so only the committed one runs the after-commit hook.
    testkit::eventually("the after-commit hook", DEADLINE, || async {
        (recorder.after_commits_of(sent.id) > 0).then_some(())
    })
    .await;
    assert_eq!(recorder.after_commits_of(sent.id), 1);
    h.finish().await;
}

async fn a_poison_event_is_dead_lettered_with_attempts_and_reason_and_can_be_replayed(
    kind: TransportKind,
) {
    let mut h = Harness::with_options(kind, |o| o.max_attempts = 3).await;
    let rejected_group = h.group("poison");
    let exhausted_group = h.group("exhausted");
    let rejecting = Recorder::new("a", Behaviour::RejectUntilHealed);
    let failing = Recorder::new("b", Behaviour::RetryUntilHealed);
    h.start_consumer(&rejected_group, rejecting.clone()).await;
    h.start_consumer(&exhausted_group, failing.clone()).await;
    h.start_relay();
    let first = event("order-1", 0);
    let second = event("order-2", 0);
    h.publish(&[first.clone(), second.clone()]).await;

    let letters = |group: String| {
        let transport = h.transport.clone();
        move || {
            let (transport, group) = (transport.clone(), group.clone());
            async move {
                let letters = messaging::list_dead_letters(&*transport, &group, 10)
                    .await
                    .ok()?;
                (letters.len() == 2).then_some(letters)
            }
        }
    };
    let rejected = testkit::eventually(
        "rejected dead letters",
        DEADLINE,
        letters(rejected_group.clone()),
    )
    .await;
    assert!(
        rejected
            .iter()
            .all(|l| l.attempts == 1 && l.last_error == "poison"),
        "{rejected:?}"
    );
    let exhausted = testkit::eventually(
        "exhausted dead letters",
        DEADLINE,
        letters(exhausted_group.clone()),
    )
    .await;
    assert!(
        exhausted
            .iter()
            .all(|l| l.attempts == 3 && l.last_error == "still failing"),
        "{exhausted:?}"
    );
    let ids: Vec<_> = exhausted.iter().map(|l| l.event_id).collect();
    assert!(ids.contains(&first.id) && ids.contains(&second.id));
    assert!(
        exhausted
            .iter()
            .all(|l| l.event_type == "order.status_changed" && l.envelope["id"].is_string())
    );
    assert_eq!(failing.attempts_of(first.id).len(), 3);
    assert_eq!(h.metrics.dead_lettered(&rejected_group), 2);
    assert_eq!(h.metrics.retried(&exhausted_group), 4);
    assert_eq!(h.effects().await, 0);

    // Replaying one event after the fix applies exactly that one; replaying all brings the rest.
    rejecting.heal();
    failing.heal();
    let replayed = messaging::replay_dead_letter(&*h.transport, &rejected_group, first.id).await;
    assert!(replayed.unwrap_or_else(|e| panic!("{e}")));
    h.await_effects(1).await;
    let remaining = messaging::list_dead_letters(&*h.transport, &rejected_group, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        remaining.iter().map(|l| l.event_id).collect::<Vec<_>>(),
        [second.id]
    );
    let all = messaging::replay_dead_letters(&*h.transport, &exhausted_group).await;
    assert_eq!(all.unwrap_or_else(|e| panic!("{e}")), 2);
    h.await_effects(3).await;
    assert_eq!(h.distinct_effects().await, 2);
    h.finish().await;
}

async fn a_redelivered_event_has_no_second_effect(kind: TransportKind) {
    let mut h = Harness::new(kind).await;
    let group = h.group("dedup");
    let recorder = Recorder::new("a", Behaviour::Succeed);
    h.start_consumer(&group, recorder.clone()).await;
    h.start_relay();
    let sent = event("order-1", 0);
    h.publish(std::slice::from_ref(&sent)).await;
    h.await_effects(1).await;

    // As a relay that crashed after publishing but before marking the row sent would do, twice.
    for redeliveries in 1..=2 {
        h.republish(&sent).await;
        testkit::eventually("the redelivery skipped", DEADLINE, || async {
            (h.metrics.duplicates(&group) >= redeliveries).then_some(())
        })
        .await;
    }
    assert_eq!(h.effects().await, 1);
    assert_eq!(recorder.successes(), 1);
    assert_eq!(
        recorder.after_commits_of(sent.id),
        1,
        "a skipped redelivery runs no after-commit hook"
    );
    h.finish().await;
}

async fn two_consumer_instances_share_the_load_and_handle_no_event_twice(kind: TransportKind) {
    let mut h = Harness::with_options(kind, |o| {
        o.prefetch = 8;
        o.lanes = 2;
    })
    .await;
    let group = h.group("shared");
    let first = Recorder::new("first", Behaviour::Slow(Duration::from_millis(2)));
    let second = Recorder::new("second", Behaviour::Slow(Duration::from_millis(2)));
    h.start_consumer(&group, first.clone()).await;
    h.start_consumer(&group, second.clone()).await;
    h.publish(&events(200, 10)).await;
    h.start_relay();
    h.await_effects(2_000).await;

    assert_eq!(h.distinct_effects().await, 2_000);
    assert_eq!(first.successes() + second.successes(), 2_000);
    assert!(
        first.successes() > 0 && second.successes() > 0,
        "{} / {}",
        first.successes(),
        second.successes()
    );
    assert_eq!(h.effects().await, 2_000);
    h.finish().await;
}

async fn a_relay_restarted_mid_stream_loses_nothing(kind: TransportKind) {
    let mut h = Harness::with_options(kind, |o| o.relay_batch = 50).await;
    let group = h.group("restart");
    h.start_consumer(&group, Recorder::new("a", Behaviour::Succeed))
        .await;
    h.publish(&events(30, 100)).await;

    let crashing = h.relay().spawn(h.shutdown.child_token());
    testkit::eventually("the first relay under way", DEADLINE, || async {
        (h.metrics.relayed() >= 200).then_some(())
    })
    .await;
    // Aborting drops the pass wherever it is, possibly between publish and commit: as a crash would.
    crashing.abort();
    let _ = crashing.await;
    let relayed_before = h.metrics.relayed();
    assert!(
        relayed_before < 3_000,
        "the first relay finished before the restart"
    );
    h.publish(&events(5, 10)).await;
    h.start_relay();
    h.await_effects(3_050).await;

    assert_eq!(h.distinct_effects().await, 3_050);
    assert_eq!(h.effects().await, 3_050);
    testkit::eventually("every outbox row sent", DEADLINE, || async {
        let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            .fetch_one(h.db.pool())
            .await
            .ok()?;
        (unsent == 0).then_some(())
    })
    .await;
    h.finish().await;
}
