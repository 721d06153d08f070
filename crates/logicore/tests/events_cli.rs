//! `logicore events dead-letters groups|list|replay`, run as the real executable against a real dead letter of
//! the PostgreSQL transport: counted per group, listed with its attempts and reason, then replayed and applied;
//! a group nobody subscribed is an error naming the known ones.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use messaging::events::UserDeactivated;
use messaging::{Envelope, EventType, Handler, Messaging, Outcome};
use platform::db::Db;
use serde_json::Value;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_logicore");
const GROUP: &str = "cli.dead-letter-test";

/// Rejects every event until healed, then applies it.
#[derive(Clone, Default)]
struct Gate {
    healed: Arc<AtomicBool>,
    applied: Arc<AtomicUsize>,
}

impl Handler for Gate {
    fn handle<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _event: &'a Envelope,
        _attempt: u32,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.healed.load(Ordering::SeqCst) {
                self.applied.fetch_add(1, Ordering::SeqCst);
                Outcome::Success
            } else {
                Outcome::Reject("the gate is closed".into())
            }
        })
    }
}

fn logicore(database_url: &str, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BINARY);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOGICORE_ENV", "test")
        .env("LOG_LEVEL", "warn")
        .env("DATABASE_URL", database_url)
        .args(args);
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run logicore: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_then_replayed_and_applied() {
    let test_db = testkit::TestDb::new();
    let settings = testkit::settings_with(
        &[
            ("DATABASE_URL", &test_db.url),
            ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
        ],
        &logicore::services::sections(),
    );
    let mut registry = platform::metrics::registry("cli-test");
    let db = Db::connect(&settings.database, "cli_test", &mut registry)
        .await
        .unwrap();
    let messaging = Messaging::start(&settings.messaging, &db, "tests", &mut registry)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let gate = Gate::default();
    let relay = messaging.relay().spawn(shutdown.clone());
    let consumer = messaging
        .consumer(GROUP, &["user.deactivated"], gate.clone())
        .start(shutdown.clone())
        .await;

    let user_id = Uuid::now_v7();
    let envelope = messaging
        .event(
            EventType::UserDeactivated,
            user_id,
            &UserDeactivated {
                user_id,
                deactivated_by: None,
            },
        )
        .unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    messaging.publish_in_tx(&mut tx, &envelope).await.unwrap();
    tx.commit().await.unwrap();

    let listed = testkit::eventually(
        "the rejected event is dead-lettered",
        Duration::from_secs(20),
        || {
            let url = test_db.url.clone();
            async move {
                let output = logicore(&url, &["events", "dead-letters", "list", "--group", GROUP]);
                assert!(
                    output.status.success(),
                    "{}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .map(|line| serde_json::from_str(line).unwrap())
                    .collect();
                (!lines.is_empty()).then_some(lines)
            }
        },
    )
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["event_id"], envelope.id.to_string());
    assert_eq!(listed[0]["type"], "user.deactivated");
    assert_eq!(listed[0]["attempts"], 1);
    assert!(
        listed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("the gate is closed"),
        "{listed:?}"
    );
    assert_eq!(listed[0]["envelope"]["aggregate_id"], user_id.to_string());
    assert_eq!(gate.applied.load(Ordering::SeqCst), 0);

    let output = logicore(&test_db.url, &["events", "dead-letters", "groups"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let groups = String::from_utf8_lossy(&output.stdout).to_string();
    assert_eq!(groups.lines().collect::<Vec<_>>(), [format!("{GROUP}\t1")]);

    for action in [&["list"][..], &["replay", "--all"][..]] {
        let mut args = vec!["events", "dead-letters"];
        args.extend_from_slice(action);
        args.extend_from_slice(&["--group", "cli.dead-leter-test"]);
        let output = logicore(&test_db.url, &args);
        assert_eq!(output.status.code(), Some(1), "{action:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("unknown consumer group \"cli.dead-leter-test\"")
                && stderr.contains(&format!("known groups: {GROUP}")),
            "{stderr}"
        );
    }

    let unknown = Uuid::now_v7().to_string();
    let output = logicore(
        &test_db.url,
        &[
            "events",
            "dead-letters",
            "replay",
            "--group",
            GROUP,
            "--id",
            &unknown,
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("has no dead letter"));

    gate.healed.store(true, Ordering::SeqCst);
    let id = envelope.id.to_string();
    let output = logicore(
        &test_db.url,
        &[
            "events",
            "dead-letters",
            "replay",
            "--group",
            GROUP,
            "--id",
            &id,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    testkit::eventually(
        "the replayed event is applied",
        Duration::from_secs(20),
        || {
            let applied = gate.applied.load(Ordering::SeqCst);
            async move { (applied == 1).then_some(()) }
        },
    )
    .await;
    let output = logicore(
        &test_db.url,
        &["events", "dead-letters", "list", "--group", GROUP],
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).trim().is_empty());

    shutdown.cancel();
    relay.await.unwrap();
    consumer.await.unwrap();
    messaging.close().await;
    db.close().await;
}

#[test]
fn replay_needs_an_id_or_all() {
    let output = logicore(
        "postgres://postgres@127.0.0.1:5432/unused",
        &["events", "dead-letters", "replay", "--group", GROUP],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--id"));
}
