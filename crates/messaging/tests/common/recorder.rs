//! A handler that records what it was asked to do and writes one `effects` row per success, in the
//! consumer's transaction, so duplicates would show as extra rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use messaging::{Envelope, Handler, Outcome};
use sqlx::PgConnection;
use uuid::Uuid;

#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    Succeed,
    /// `RetryLater` on the first `n` attempts.
    FailTimes(u32),
    /// `RetryLater` until healed.
    RetryUntilHealed,
    /// `Reject` until healed.
    RejectUntilHealed,
    /// Work for this long, then succeed.
    Slow(Duration),
}

/// Attempt number and time of every handling, by event.
type Attempts = Arc<Mutex<HashMap<Uuid, Vec<(u32, Instant)>>>>;

#[derive(Clone)]
pub struct Recorder {
    pub instance: &'static str,
    pub behaviour: Behaviour,
    /// Successful handlings (committed or not: a duplicate handling would count twice).
    pub successes: Arc<AtomicUsize>,
    pub attempts: Attempts,
    pub healed: Arc<AtomicBool>,
    /// Events whose after-commit hook ran, in order.
    pub after_commits: Arc<Mutex<Vec<Uuid>>>,
}

impl Recorder {
    pub fn new(instance: &'static str, behaviour: Behaviour) -> Self {
        Self {
            instance,
            behaviour,
            successes: Arc::new(AtomicUsize::new(0)),
            attempts: Arc::new(Mutex::new(HashMap::new())),
            healed: Arc::new(AtomicBool::new(false)),
            after_commits: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn successes(&self) -> usize {
        self.successes.load(Ordering::SeqCst)
    }

    pub fn attempts_of(&self, id: Uuid) -> Vec<(u32, Instant)> {
        self.attempts
            .lock()
            .map(|a| a.get(&id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// How often the after-commit hook ran for `id`.
    pub fn after_commits_of(&self, id: Uuid) -> usize {
        self.after_commits
            .lock()
            .map(|seen| seen.iter().filter(|seen| **seen == id).count())
            .unwrap_or_default()
    }

    pub fn heal(&self) {
        self.healed.store(true, Ordering::SeqCst);
    }

    async fn apply(&self, tx: &mut PgConnection, event: &Envelope) -> Outcome {
        let seq = event.data.get("seq").and_then(|v| v.as_i64()).unwrap_or(-1);
        let inserted = sqlx::query(
            "INSERT INTO effects (event_id, aggregate_id, seq, instance) VALUES ($1, $2, $3, $4)",
        )
        .bind(event.id)
        .bind(&event.aggregate_id)
        .bind(seq)
        .bind(self.instance)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                self.successes.fetch_add(1, Ordering::SeqCst);
                Outcome::Success
            }
            Err(e) => Outcome::RetryLater(e.to_string()),
        }
    }
}

impl Handler for Recorder {
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Envelope,
        attempt: u32,
    ) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if let Ok(mut attempts) = self.attempts.lock() {
                attempts
                    .entry(event.id)
                    .or_default()
                    .push((attempt, Instant::now()));
            }
            let healed = self.healed.load(Ordering::SeqCst);
            match self.behaviour {
                Behaviour::FailTimes(n) if attempt <= n => {
                    Outcome::RetryLater(format!("transient failure {attempt}"))
                }
                Behaviour::RetryUntilHealed if !healed => {
                    Outcome::RetryLater("still failing".into())
                }
                Behaviour::RejectUntilHealed if !healed => Outcome::Reject("poison".into()),
                Behaviour::Slow(pause) => {
                    tokio::time::sleep(pause).await;
                    self.apply(tx, event).await
                }
                _ => self.apply(tx, event).await,
            }
        })
    }

    fn after_commit<'a>(&'a self, event: &'a Envelope) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Ok(mut seen) = self.after_commits.lock() {
                seen.push(event.id);
            }
        })
    }
}
