//! Idempotent consumers.
//!
//! A consumer group handles each event once in effect: the handler runs inside a database transaction that
//! first records the event id in the group's inbox, so a redelivered event (relay republish, broker
//! redelivery, a second consumer instance) finds its id there and is skipped. The delivery is settled with
//! the transport only after that transaction committed. Handlers answer like Dapr's: success, retry later
//! (→ another attempt after the configured delay, dead letter after `max_attempts`) or reject (→ dead letter).
//!
//! Deliveries are spread over lanes by aggregate id: different aggregates are handled concurrently, while the
//! events of one aggregate are handled one after another in delivery order. A busy lane applies the events
//! queued in it in one transaction, each under its own savepoint (see `apply`).

mod apply;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use platform::db::Db;
use sqlx::PgConnection;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::envelope::Envelope;
use crate::metrics::Metrics;
use crate::options::MessagingOptions;
use crate::transport::{Deliveries, Delivery, Subscription, Transport};
use platform::backoff::Backoff;

/// Events a lane applies in one transaction unless the handler says otherwise ([`Handler::max_batch`]).
pub const DEFAULT_MAX_BATCH: usize = 32;

/// What a handler decided about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Applied: its effects and the inbox entry commit together.
    Success,
    /// A transient failure: effects are rolled back and the event comes back after the retry delay.
    RetryLater(String),
    /// The event can never be applied: effects are rolled back and it goes to the dead letters.
    Reject(String),
}

/// Applies one event using the given transaction, which also records the event in the inbox.
///
/// The transaction belongs to the consumer: never commit or roll it back. When one of your statements fails,
/// return [`Outcome::RetryLater`] (the event's savepoint is then rolled back); a `Success` after a failed
/// statement makes the whole transaction fail and every event in it is tried again.
///
/// ```ignore
/// struct CacheProfiles;
/// impl Handler for CacheProfiles {
///     fn handle<'a>(&'a self, tx: &'a mut PgConnection, event: &'a Envelope, _attempt: u32)
///         -> BoxFuture<'a, Outcome> {
///         Box::pin(async move {
///             let Ok(user) = event.data_as::<UserUpdated>() else { return Outcome::Reject("bad data".into()) };
///             match upsert_profile(tx, &user).await {
///                 Ok(()) => Outcome::Success,
///                 Err(e) => Outcome::RetryLater(e.to_string()),
///             }
///         })
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// `attempt` is 1 on the first delivery.
    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        event: &'a Envelope,
        attempt: u32,
    ) -> BoxFuture<'a, Outcome>;

    /// Most events applied in one transaction when they queue up in a lane (each under its own savepoint);
    /// also bounds how long a transaction holds its locks. Batching saves a commit per event; a handler
    /// whose events lock shared rows (stock levels) should answer 1, or the lanes' batches wait on each
    /// other's locks, taken in event order rather than one global order, and deadlock.
    fn max_batch(&self) -> usize {
        DEFAULT_MAX_BATCH
    }

    /// Runs once the transaction in which [`Handler::handle`] applied `event` has committed, for effects
    /// outside the database that must not run before the change is visible (e.g. invalidating a cache: an
    /// invalidation before the commit lets a concurrent read put the old value back). Not called for an
    /// event that was declined, whose transaction rolled back, or that the inbox skipped as a redelivery.
    /// Best effort: a crash between the commit and this call skips it, so keep what it does bounded in time
    /// by other means (e.g. cache TTLs).
    fn after_commit<'a>(&'a self, _event: &'a Envelope) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

struct Context {
    db: Db,
    group: String,
    handler: Arc<dyn Handler>,
    options: MessagingOptions,
    metrics: Metrics,
}

pub struct Consumer {
    context: Arc<Context>,
    transport: Arc<dyn Transport>,
    patterns: Vec<String>,
}

impl Consumer {
    /// A consumer of `group` bound to `patterns` (e.g. `["user.updated", "user.deactivated"]`). Several
    /// instances of one group, in one process or many, share its deliveries.
    pub fn new(
        db: &Db,
        transport: Arc<dyn Transport>,
        group: &str,
        patterns: &[&str],
        handler: impl Handler,
        options: &MessagingOptions,
        metrics: &Metrics,
    ) -> Self {
        Self {
            context: Arc::new(Context {
                db: db.clone(),
                group: group.to_owned(),
                handler: Arc::new(handler),
                options: options.clone(),
                metrics: metrics.clone(),
            }),
            transport,
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        }
    }

    /// Subscribes (declaring the group's queue and bindings, so events published from now on reach the
    /// group) and then consumes in the background until `shutdown`.
    pub async fn start(self, shutdown: CancellationToken) -> JoinHandle<()> {
        let subscription = self.subscription();
        let deliveries = subscribe(&*self.transport, &subscription, &self.context, &shutdown).await;
        tokio::spawn(async move {
            if let Some(deliveries) = deliveries {
                self.consume(deliveries, shutdown).await;
            }
        })
    }

    /// [`Consumer::start`] without waiting for the subscription.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Subscribes, then consumes until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let subscription = self.subscription();
        if let Some(deliveries) =
            subscribe(&*self.transport, &subscription, &self.context, &shutdown).await
        {
            self.consume(deliveries, shutdown).await;
        }
    }

    fn subscription(&self) -> Subscription {
        Subscription {
            group: self.context.group.clone(),
            patterns: self.patterns.clone(),
            prefetch: self.context.options.prefetch,
        }
    }

    /// Dispatches deliveries to the lanes until `shutdown`, then lets the lanes finish what they hold.
    async fn consume(self, mut deliveries: Deliveries, shutdown: CancellationToken) {
        let context = self.context;
        let sampler = tokio::spawn(sample(
            context.clone(),
            self.transport.clone(),
            shutdown.clone(),
        ));
        let lane_count = context.options.lanes.max(1);
        let capacity = usize::from(context.options.prefetch.max(1));
        let (lanes, workers): (Vec<_>, Vec<_>) = (0..lane_count)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(capacity);
                (sender, tokio::spawn(apply::lane(context.clone(), receiver)))
            })
            .unzip();
        loop {
            let delivery = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                delivery = deliveries.next() => match delivery {
                    Some(delivery) => delivery,
                    None => break,
                },
            };
            let envelope = match Envelope::from_json(&delivery.body) {
                Ok(envelope) => envelope,
                Err(error) => {
                    // Retrying cannot fix a body that is not an envelope.
                    let reason = format!("malformed envelope: {error}");
                    tracing::warn!(group = %context.group, reason, "dead-lettering a delivery");
                    dead_letter(&context, delivery, reason).await;
                    continue;
                }
            };
            let lane = lane_of(&envelope.aggregate_id, lane_count);
            if lanes[lane].send((envelope, delivery)).await.is_err() {
                break;
            }
        }
        drop(lanes);
        for worker in workers {
            let _ = worker.await;
        }
        sampler.abort();
        drop(deliveries);
    }
}

async fn subscribe(
    transport: &dyn Transport,
    subscription: &Subscription,
    context: &Context,
    shutdown: &CancellationToken,
) -> Option<Deliveries> {
    let mut backoff = Backoff::new(context.options.reconnect_min, context.options.reconnect_max);
    loop {
        match transport.subscribe(subscription).await {
            Ok(deliveries) => return Some(deliveries),
            Err(error) => {
                tracing::warn!(group = %context.group, error = %error, "cannot subscribe; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

fn lane_of(aggregate_id: &str, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    aggregate_id.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

async fn dead_letter(context: &Context, delivery: Delivery, reason: String) {
    context
        .metrics
        .dead_lettered
        .get_or_create(&Metrics::group(&context.group))
        .inc();
    if let Err(error) = delivery.settle.dead_letter(reason).await {
        tracing::warn!(group = %context.group, error = %error, "cannot dead-letter delivery");
    }
}

/// Samples the queue depth and prunes the inbox now and then, until shutdown.
async fn sample(context: Arc<Context>, transport: Arc<dyn Transport>, shutdown: CancellationToken) {
    let labels = Metrics::group(&context.group);
    let prune_every =
        (context.options.retention / 10).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    let mut last_prune: Option<Instant> = None;
    loop {
        if let Ok(depth) = transport.queue_depth(&context.group).await {
            context
                .metrics
                .queue_depth
                .get_or_create(&labels)
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
        }
        if last_prune.is_none_or(|at| at.elapsed() >= prune_every) {
            last_prune = Some(Instant::now());
            let pruned = sqlx::query(
                "DELETE FROM inbox WHERE consumer_group = $1 \
                 AND processed_at < now() - make_interval(secs => $2)",
            )
            .bind(&context.group)
            .bind(context.options.retention.as_secs_f64())
            .execute(context.db.pool())
            .await;
            if let Err(error) = pruned {
                tracing::warn!(group = %context.group, error = %error, "pruning the inbox failed");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(context.options.sample_every) => {}
        }
    }
}
