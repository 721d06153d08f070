//! Test harness: a fresh database and a uniquely named exchange (so RabbitMQ queues and the PostgreSQL
//! transport's schema never collide between tests running in parallel), plus a recording handler whose
//! effects land in an `effects` table in the handler's transaction.

#![allow(dead_code)]

pub mod recorder;

use std::sync::Arc;
use std::time::Duration;

use messaging::transport::{Outgoing, RabbitMqTransport};
use messaging::{
    Consumer, Envelope, EventType, Handler, Messaging, MessagingOptions, Metrics, Relay, Transport,
    TransportKind, connect_with,
};
use platform::db::Db;
use prometheus_client::registry::Registry;
use serde_json::json;
use sqlx::Connection;
use testkit::TestDb;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[allow(unused_imports)]
pub use recorder::{Behaviour, Recorder};

pub const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct Harness {
    pub db: Db,
    pub kind: TransportKind,
    pub transport: Arc<dyn Transport>,
    pub rabbit: Option<RabbitMqTransport>,
    pub options: MessagingOptions,
    pub metrics: Metrics,
    pub registry: Registry,
    pub shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    groups: Vec<String>,
    // Dropped last: drops the database with every connection still open.
    _test_db: TestDb,
}

/// Options for tests: short delays and polls so behaviour is observable within seconds.
pub fn test_options() -> MessagingOptions {
    MessagingOptions {
        exchange: format!("test.{}", Uuid::new_v4().simple()),
        prefetch: 64,
        max_attempts: 5,
        retry_delay: Duration::from_millis(150),
        relay_poll: Duration::from_millis(200),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        queue_expires: Some(Duration::from_secs(600)),
        sample_every: Duration::from_millis(200),
        ..MessagingOptions::default()
    }
}

impl Harness {
    pub async fn new(kind: TransportKind) -> Self {
        Self::with_options(kind, |_| {}).await
    }

    pub async fn with_options(
        kind: TransportKind,
        adjust: impl FnOnce(&mut MessagingOptions),
    ) -> Self {
        Self::with_broker(kind, RABBITMQ_URL, adjust).await
    }

    /// [`Harness::with_options`] with RabbitMQ reached at `broker_url` (a [`testkit::Cut`] in front of it, say).
    pub async fn with_broker(
        kind: TransportKind,
        broker_url: &str,
        adjust: impl FnOnce(&mut MessagingOptions),
    ) -> Self {
        let test_db = TestDb::new();
        let settings = testkit::settings(&[("DATABASE_URL", &test_db.url), ("DB_POOL_MAX", "20")]);
        let mut registry = platform::metrics::registry("messaging-test");
        let db = Db::connect(&settings.database, "svc", &mut registry)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        messaging::migrate(&db)
            .await
            .unwrap_or_else(|e| panic!("migrate: {e}"));
        sqlx::raw_sql(
            "CREATE TABLE effects (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             event_id UUID NOT NULL, aggregate_id TEXT NOT NULL, seq BIGINT NOT NULL, \
             instance TEXT NOT NULL)",
        )
        .execute(db.pool())
        .await
        .unwrap_or_else(|e| panic!("effects table: {e}"));
        let mut options = test_options();
        adjust(&mut options);
        let metrics = Metrics::register(&mut registry);
        let rabbit = (kind == TransportKind::RabbitMq)
            .then(|| RabbitMqTransport::new(broker_url, &options, &metrics));
        let transport: Arc<dyn Transport> = match &rabbit {
            Some(rabbit) => Arc::new(rabbit.clone()),
            None => connect_with(kind, "", &db, &options, &metrics)
                .await
                .unwrap_or_else(|e| panic!("transport: {e}")),
        };
        Self {
            db,
            kind,
            transport,
            rabbit,
            options,
            metrics,
            registry,
            shutdown: CancellationToken::new(),
            tasks: Vec::new(),
            groups: Vec::new(),
            _test_db: test_db,
        }
    }

    pub fn messaging(&self) -> Messaging {
        Messaging::with_transport(
            &self.db,
            self.transport.clone(),
            self.options.clone(),
            self.metrics.clone(),
            "tests",
        )
    }

    pub fn relay(&self) -> Relay {
        Relay::new(
            &self.db,
            self.transport.clone(),
            &self.options,
            &self.metrics,
        )
    }

    /// Starts a relay that stops with the harness.
    pub fn start_relay(&mut self) {
        let handle = self.relay().spawn(self.shutdown.clone());
        self.tasks.push(handle);
    }

    /// A group name remembered for clean-up.
    pub fn group(&mut self, name: &str) -> String {
        self.groups.push(name.to_owned());
        name.to_owned()
    }

    pub fn consumer(&self, group: &str, handler: impl Handler) -> Consumer {
        self.consumer_with(group, handler, &self.options)
    }

    pub fn consumer_with(
        &self,
        group: &str,
        handler: impl Handler,
        options: &MessagingOptions,
    ) -> Consumer {
        Consumer::new(
            &self.db,
            self.transport.clone(),
            group,
            &["order.*"],
            handler,
            options,
            &self.metrics,
        )
    }

    /// Starts a consumer, returning once it is subscribed.
    pub async fn start_consumer(&mut self, group: &str, handler: impl Handler) {
        let handle = self
            .consumer(group, handler)
            .start(self.shutdown.clone())
            .await;
        self.tasks.push(handle);
    }

    /// Records events in the outbox in one transaction, 1 000 per statement.
    pub async fn publish(&self, envelopes: &[Envelope]) {
        let mut connection = self.db.acquire().await.unwrap_or_else(|e| panic!("{e}"));
        let mut tx = connection.begin().await.unwrap_or_else(|e| panic!("{e}"));
        for chunk in envelopes.chunks(1_000) {
            messaging::publish_all_in_tx(&mut tx, chunk)
                .await
                .unwrap_or_else(|e| panic!("publish: {e}"));
        }
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    }

    /// Publishes straight to the transport, as a relay that crashed before marking its batch would again.
    pub async fn republish(&self, envelope: &Envelope) {
        let outgoing = Outgoing::from_envelope(envelope).unwrap_or_else(|e| panic!("{e}"));
        self.transport
            .publish(&[outgoing])
            .await
            .unwrap_or_else(|e| panic!("republish: {e}"));
    }

    pub async fn effects(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM effects")
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub async fn distinct_effects(&self) -> i64 {
        sqlx::query_scalar("SELECT count(DISTINCT event_id) FROM effects")
            .fetch_one(self.db.pool())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until `count` effects exist.
    pub async fn await_effects(&self, count: i64) {
        testkit::eventually(&format!("{count} effects"), DEADLINE, || async {
            (self.effects().await >= count).then_some(())
        })
        .await;
    }

    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Stops every task, then removes the test's queues and exchange.
    pub async fn finish(mut self) {
        self.shutdown.cancel();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        for group in &self.groups {
            let _ = self.transport.delete_group(group).await;
        }
        if let Some(rabbit) = &self.rabbit {
            let _ = rabbit.delete_exchange().await;
            rabbit.close().await;
        }
    }
}

/// An `order.status_changed` event of `aggregate` carrying its sequence number.
pub fn event(aggregate: &str, seq: i64) -> Envelope {
    Envelope::new(
        EventType::OrderStatusChanged,
        "tests",
        aggregate,
        &json!({ "seq": seq }),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `per_aggregate` events for each of `aggregates` aggregates, interleaved as a busy service would emit them.
pub fn events(aggregates: usize, per_aggregate: i64) -> Vec<Envelope> {
    let names: Vec<String> = (0..aggregates).map(|a| format!("agg-{a}")).collect();
    (0..per_aggregate)
        .flat_map(|seq| names.iter().map(move |name| event(name, seq)))
        .collect()
}
