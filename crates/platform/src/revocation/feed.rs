//! Keeping a process's [`Revocations`] current: a poll of the source of truth, and with Redis a
//! subscription to the channel the users service pushes every revocation on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::store::{self, Batch};
use super::{Revocation, RevocationOptions, Revocations, channel};
use crate::config::RedisSettings;
use crate::db::Db;

/// Pause before resubscribing after the Redis subscription failed or ended.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(500);
/// Longest wait for one poll of the source.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a process reads the revocations recorded since its last read.
pub trait Source: Send + 'static {
    /// What the logs call this source.
    fn name(&self) -> &'static str;
    /// The revocations recorded since the previous successful call (all live ones on the first).
    fn fetch(&mut self) -> impl Future<Output = Result<Vec<Revocation>, String>> + Send;
}

/// The users service's table, read directly: for the services, which share its PostgreSQL.
pub struct TableFeed {
    db: Db,
    watermark: Option<i64>,
}

impl TableFeed {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            watermark: None,
        }
    }
}

impl Source for TableFeed {
    fn name(&self) -> &'static str {
        "the revocations table"
    }

    async fn fetch(&mut self) -> Result<Vec<Revocation>, String> {
        let batch = store::read_since(self.db.pool(), self.watermark)
            .await
            .map_err(|e| e.to_string())?;
        self.watermark = batch.watermark;
        Ok(batch.revocations)
    }
}

/// The users service's `GET /internal/revocations`: for the gateway, which has no database. Asks one
/// instance per poll, the next one after a failure.
pub struct UsersFeed {
    client: reqwest::Client,
    /// The users service's instances as they are now (service discovery may change them).
    endpoints: Box<dyn Fn() -> Vec<Url> + Send + Sync>,
    next: usize,
    watermark: Option<i64>,
}

impl UsersFeed {
    /// `endpoints` gives the users service instances' base URLs at the time of each poll.
    pub fn new(endpoints: impl Fn() -> Vec<Url> + Send + Sync + 'static) -> Self {
        Self {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            endpoints: Box::new(endpoints),
            next: 0,
            watermark: None,
        }
    }
}

impl Source for UsersFeed {
    fn name(&self) -> &'static str {
        "the users service's revocation feed"
    }

    async fn fetch(&mut self) -> Result<Vec<Revocation>, String> {
        let endpoints = (self.endpoints)();
        let Some(base) = endpoints.get(self.next % endpoints.len().max(1)) else {
            return Err("no users service instance is known".into());
        };
        let mut url = base
            .join("internal/revocations")
            .map_err(|e| e.to_string())?;
        if let Some(watermark) = self.watermark {
            url.query_pairs_mut()
                .append_pair("since", &watermark.to_string());
        }
        let fetched = async {
            self.client
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json::<Batch>()
                .await
        }
        .await;
        match fetched {
            Ok(batch) => {
                self.watermark = batch.watermark.or(self.watermark);
                Ok(batch.revocations)
            }
            Err(error) => {
                self.next = self.next.wrapping_add(1);
                Err(error.to_string())
            }
        }
    }
}

/// Starts feeding `options.set` from `source` (and Redis when configured) until `shutdown`; nothing when
/// the set is fed by someone else. The first poll reads every live revocation.
pub fn spawn_feed(
    options: &RevocationOptions,
    source: impl Source,
    shutdown: CancellationToken,
) -> Vec<JoinHandle<()>> {
    if !options.feed {
        return Vec::new();
    }
    let resync = Arc::new(Notify::new());
    let mut tasks = vec![tokio::spawn(poll(
        options.set.clone(),
        source,
        options.poll_interval,
        resync.clone(),
        shutdown.clone(),
    ))];
    if let Some(redis) = &options.redis {
        tasks.push(tokio::spawn(subscribe(
            options.set.clone(),
            redis.clone(),
            resync,
            shutdown,
        )));
    }
    tasks
}

async fn poll(
    set: Revocations,
    mut source: impl Source,
    interval: Duration,
    resync: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        match tokio::time::timeout(FETCH_TIMEOUT, source.fetch()).await {
            Ok(Ok(revocations)) => {
                set.apply(revocations);
                if std::mem::take(&mut failing) {
                    tracing::info!(source = source.name(), "revocation feed recovered");
                }
            }
            // Logged once per outage: the poll repeats every few hundred milliseconds.
            outcome if !failing => {
                failing = true;
                let error = match outcome {
                    Ok(Err(error)) => error,
                    _ => format!("no answer within {FETCH_TIMEOUT:?}"),
                };
                tracing::warn!(source = source.name(), error = %error, "cannot read revocations; retrying");
            }
            _ => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
            () = resync.notified() => {}
        }
    }
}

/// Applies every revocation pushed on the channel. Each (re)subscription asks the poll to read the source
/// again, so what was pushed while the subscription was down is not missed.
async fn subscribe(
    set: Revocations,
    redis: RedisSettings,
    resync: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let channel = channel(&redis);
    loop {
        let outcome = tokio::select! {
            () = shutdown.cancelled() => return,
            outcome = listen(&set, &redis, &channel, &resync) => outcome,
        };
        if let Err(error) = outcome {
            tracing::warn!(error = %error, "revocation subscription to redis lost; resubscribing");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESUBSCRIBE_PAUSE) => {}
        }
    }
}

async fn listen(
    set: &Revocations,
    redis: &RedisSettings,
    channel: &str,
    resync: &Notify,
) -> Result<(), String> {
    let client = redis::Client::open(redis.connection_url()).map_err(|e| e.to_string())?;
    let mut pubsub = tokio::time::timeout(redis.connect_timeout(), client.get_async_pubsub())
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    pubsub.subscribe(channel).await.map_err(|e| e.to_string())?;
    resync.notify_one();
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let payload: Vec<u8> = message.get_payload().map_err(|e| e.to_string())?;
        match serde_json::from_slice::<Revocation>(&payload) {
            Ok(revocation) => set.apply([revocation]),
            Err(error) => tracing::warn!(error = %error, "ignoring a malformed revocation push"),
        }
    }
    Err("the subscription ended".into())
}

/// The users service's side: applies its revocations to its own set at once and pushes them to every
/// other process through Redis when Redis is on. Call after the transaction that recorded them commits.
#[derive(Clone)]
pub struct Announcer {
    set: Revocations,
    redis: Option<Arc<Publisher>>,
}

struct Publisher {
    url: String,
    channel: String,
    timeout: Duration,
    connection: Mutex<Option<redis::aio::MultiplexedConnection>>,
}

impl Announcer {
    pub fn new(options: &RevocationOptions) -> Self {
        let redis = options.redis.as_ref().map(|redis| {
            Arc::new(Publisher {
                url: redis.connection_url(),
                channel: channel(redis),
                timeout: redis.command_timeout().max(redis.connect_timeout()),
                connection: Mutex::new(None),
            })
        });
        Self {
            set: options.set.clone(),
            redis,
        }
    }

    /// Never fails: a push that does not get through is healed by the other processes' next poll.
    pub async fn announce(&self, revocations: &[Revocation]) {
        self.set.apply(revocations.iter().copied());
        let Some(publisher) = &self.redis else {
            return;
        };
        for revocation in revocations {
            if let Err(error) = publisher.publish(revocation).await {
                tracing::warn!(error = %error, "cannot push a revocation to redis; other instances see it at their next poll");
            }
        }
    }
}

impl Publisher {
    async fn publish(&self, revocation: &Revocation) -> Result<(), String> {
        let payload = serde_json::to_vec(revocation).map_err(|e| e.to_string())?;
        let mut slot = self.connection.lock().await;
        let mut connection = match slot.as_ref() {
            Some(connection) => connection.clone(),
            None => {
                let client = redis::Client::open(self.url.as_str()).map_err(|e| e.to_string())?;
                let connection =
                    tokio::time::timeout(self.timeout, client.get_multiplexed_async_connection())
                        .await
                        .map_err(|_| "connect timed out".to_owned())?
                        .map_err(|e| e.to_string())?;
                slot.insert(connection).clone()
            }
        };
        drop(slot);
        let published = tokio::time::timeout(
            self.timeout,
            redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(payload)
                .query_async::<i64>(&mut connection),
        )
        .await;
        match published {
            Ok(Ok(_)) => Ok(()),
            failed => {
                *self.connection.lock().await = None;
                Err(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "publish timed out".into(),
                })
            }
        }
    }
}
