//! PostgreSQL: a pool per service confined to the service's own schema, database creation on first start,
//! embedded migrations, transactions that retry serialization failures and deadlocks, COPY batch inserts,
//! and per-query timing metrics with a slow-query log.

use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection, PgPool, Postgres};

use crate::config::DatabaseSettings;
use crate::metrics::latency_histogram;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid database settings: {0}")]
    Settings(String),
    #[error("cannot create database {name}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    #[error("migrations of schema {schema} failed")]
    Migrate {
        schema: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error(transparent)]
    Query(#[from] sqlx::Error),
}

/// SQLSTATEs worth retrying a whole transaction for.
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";
const DUPLICATE_DATABASE: &str = "42P04";
const UNIQUE_VIOLATION: &str = "23505";
const MAX_TX_ATTEMPTS: u32 = 6;

/// The future a [`tx_body`] returns: boxed and `Send`, borrowing only the connection.
pub type TxFuture<'c, T, E> = std::pin::Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

/// Pins down the higher-ranked signature of a [`Db::transaction`] body. Handlers must be `Send` futures,
/// and rustc cannot yet prove that for an `async` closure borrowing from its caller; a closure that owns its
/// captures and returns a boxed `Send` future it can, but closure inference needs this signature spelled out.
pub fn tx_body<T, E, F>(body: F) -> F
where
    F: for<'c> FnMut(&'c mut PgConnection) -> TxFuture<'c, T, E>,
{
    body
}

/// Transaction isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
    Serializable,
}

impl Isolation {
    fn statement(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            Isolation::RepeatableRead => "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
            Isolation::Serializable => "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        }
    }
}

/// Errors a transaction body can fail with; the helper looks inside to decide whether to retry.
pub trait TxError: From<sqlx::Error> {
    fn sqlx_error(&self) -> Option<&sqlx::Error>;
}

impl TxError for sqlx::Error {
    fn sqlx_error(&self) -> Option<&sqlx::Error> {
        Some(self)
    }
}

/// Whether an error is a serialization failure or deadlock, after which the transaction may be rerun.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    sqlx_state(error).is_some_and(|code| code == SERIALIZATION_FAILURE || code == DEADLOCK_DETECTED)
}

/// The SQLSTATE of a database error.
pub fn sqlx_state(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
}

/// The constraint a database error violated, to map it to a 409 or 422 in one place.
pub fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    error.as_database_error().and_then(|e| e.constraint())
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    query: &'static str,
}

#[derive(Clone)]
struct DbMetrics {
    queries: Family<QueryLabels, Histogram>,
    waiting: Gauge,
}

/// The pool gauges, read at scrape time.
#[derive(Debug)]
struct PoolCollector {
    pool: PgPool,
    max: u32,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, value) in [
            (
                "db_pool_connections",
                "Open connections in the pool",
                i64::from(self.pool.size()),
            ),
            (
                "db_pool_idle_connections",
                "Idle connections in the pool",
                self.pool.num_idle() as i64,
            ),
            (
                "db_pool_max_connections",
                "Pool size limit",
                i64::from(self.max),
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// A service's database handle. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    metrics: DbMetrics,
    slow_query: Duration,
}

impl Db {
    /// Connects to the configured database (creating it when missing and allowed), with every connection's
    /// `search_path` set to `schema`, which is created too. Registers pool and query metrics.
    pub async fn connect(
        settings: &DatabaseSettings,
        schema: &str,
        registry: &mut Registry,
    ) -> Result<Self, DbError> {
        let options = connect_options(settings)?;
        if settings.create_if_missing {
            create_database_if_missing(&options).await?;
        }
        // NOTICEs are chatter such as the "relation … already exists, skipping" of every idempotent
        // migration at every start; warnings and errors still arrive.
        // Custom plans always: the list queries filter with `(cardinality($1) = 0 OR status = ANY($1))`, which
        // only a plan made for the actual values turns into an index scan. After five runs of a prepared
        // statement PostgreSQL may switch to a generic plan, blind to the values, that walks the primary key
        // and filters a whole table (docs/indexing.md); replanning costs a fraction of a millisecond.
        let options = options
            .options([
                ("search_path", schema),
                ("client_min_messages", "warning"),
                ("plan_cache_mode", "force_custom_plan"),
            ])
            .log_slow_statements(tracing::log::LevelFilter::Warn, settings.slow_query())
            .log_statements(tracing::log::LevelFilter::Trace);
        let pool = PgPoolOptions::new()
            .max_connections(settings.pool_max)
            .min_connections(settings.pool_min)
            .acquire_timeout(settings.acquire_timeout())
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        pool.execute(AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(schema)
        )))
        .await?;

        let queries = Family::<QueryLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let waiting = Gauge::default();
        registry.register_with_unit(
            "db_query_duration",
            "Database query latency by query name",
            Unit::Seconds,
            queries.clone(),
        );
        registry.register(
            "db_pool_waiting",
            "Tasks waiting for a pooled connection",
            waiting.clone(),
        );
        registry.register_collector(Box::new(PoolCollector {
            pool: pool.clone(),
            max: settings.pool_max,
        }));
        Ok(Self {
            pool,
            metrics: DbMetrics { queries, waiting },
            slow_query: settings.slow_query(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies the service's embedded migrations; concurrent instances serialize on sqlx's advisory lock.
    pub async fn migrate(&self, migrator: &Migrator, schema: &str) -> Result<(), DbError> {
        migrator
            .run(&self.pool)
            .await
            .map_err(|source| DbError::Migrate {
                schema: schema.to_owned(),
                source,
            })
    }

    /// A pooled connection, counted in `db_pool_waiting` while the caller waits for it.
    pub async fn acquire(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.metrics.waiting.inc();
        let connection = self.pool.acquire().await;
        self.metrics.waiting.dec();
        connection
    }

    /// Runs `fut`, recording its latency under `name` and logging it when slower than the threshold.
    /// Inside a traced span it is a client span of its own (`db.system.name = postgresql`, the query's
    /// name as `db.query.summary`), and sqlx's report of the statement (its text with `$n` for every value,
    /// the rows it touched) becomes that span's event.
    pub async fn timed<F: Future>(&self, name: &'static str, fut: F) -> F::Output {
        let started = Instant::now();
        let output = if crate::telemetry::traces::in_traced_span() {
            let (namespace, summary) = name.split_once('.').unwrap_or(("", name));
            let span = tracing::info_span!(
                "db",
                otel.name = name,
                otel.kind = "client",
                db.system.name = "postgresql",
                db.namespace = namespace,
                db.query.summary = summary,
            );
            tracing::Instrument::instrument(fut, span).await
        } else {
            fut.await
        };
        let elapsed = started.elapsed();
        self.metrics
            .queries
            .get_or_create(&QueryLabels { query: name })
            .observe(elapsed.as_secs_f64());
        if elapsed >= self.slow_query {
            tracing::warn!(
                query = name,
                elapsed_ms = elapsed.as_millis() as u64,
                "slow query"
            );
        }
        output
    }

    /// Runs `body` in a transaction at `isolation`, rerunning the whole body (with jittered exponential
    /// backoff) when it or the commit fails with a serialization failure or deadlock.
    pub async fn transaction<T, E, F>(&self, isolation: Isolation, mut body: F) -> Result<T, E>
    where
        E: TxError,
        F: AsyncFnMut(&mut PgConnection) -> Result<T, E>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.attempt(isolation, &mut body).await;
            match outcome {
                Err(err)
                    if attempt < MAX_TX_ATTEMPTS && err.sqlx_error().is_some_and(is_retryable) =>
                {
                    let backoff = backoff(attempt);
                    tracing::debug!(
                        attempt,
                        backoff_ms = backoff.as_millis() as u64,
                        "retrying transaction"
                    );
                    tokio::time::sleep(backoff).await;
                }
                other => return other,
            }
        }
    }

    async fn attempt<T, E, F>(&self, isolation: Isolation, body: &mut F) -> Result<T, E>
    where
        E: TxError,
        F: AsyncFnMut(&mut PgConnection) -> Result<T, E>,
    {
        let mut connection = self.acquire().await?;
        let mut tx = connection.begin().await?;
        if isolation != Isolation::ReadCommitted {
            tx.execute(isolation.statement()).await?;
        }
        let value = body(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Closes the pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Between reruns of a transaction that lost a serialization race: from 5 ms, doubling up to 320 ms.
fn backoff(attempt: u32) -> Duration {
    crate::backoff::equal_jitter(
        Duration::from_millis(5),
        Duration::from_millis(320),
        attempt,
    )
}

/// Connection options from a URL or from host/port/name/user/password.
pub fn connect_options(settings: &DatabaseSettings) -> Result<PgConnectOptions, DbError> {
    if !settings.url.is_empty() {
        return PgConnectOptions::from_str(settings.url.expose())
            .map_err(|e| DbError::Settings(format!("database.url: {e}")));
    }
    let mut options = PgConnectOptions::new()
        .host(&settings.host)
        .port(settings.port)
        .username(&settings.user)
        .database(&settings.name);
    if !settings.password.is_empty() {
        options = options.password(settings.password.expose());
    }
    Ok(options)
}

async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), DbError> {
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let create_error = |source| DbError::Create {
        name: name.clone(),
        source,
    };
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(DbError::Connect)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let created = admin
            .execute(AssertSqlSafe(format!(
                "CREATE DATABASE {}",
                quote_ident(&name)
            )))
            .await;
        match created {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another instance created it first.
            Err(e)
                if sqlx_state(&e)
                    .is_some_and(|c| c == DUPLICATE_DATABASE || c == UNIQUE_VIOLATION) => {}
            Err(e) => return Err(create_error(e)),
        }
    }
    admin.close().await.map_err(DbError::Connect)?;
    Ok(())
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Bulk-inserts rows with `COPY ... FROM STDIN (FORMAT csv)`: one round trip per 1 MiB of data instead of
/// one per row. `target` is `table (col, ...)`; each row holds one text value per column (`None` is NULL),
/// which PostgreSQL parses as the column's type. Returns the number of rows copied.
pub async fn copy_rows<R, V>(
    connection: &mut PgConnection,
    target: &str,
    rows: impl IntoIterator<Item = R>,
) -> Result<u64, sqlx::Error>
where
    R: IntoIterator<Item = Option<V>>,
    V: AsRef<str>,
{
    const CHUNK_BYTES: usize = 1 << 20;
    let mut copy = connection
        .copy_in_raw(&format!("COPY {target} FROM STDIN (FORMAT csv)"))
        .await?;
    let mut buffer = Vec::with_capacity(CHUNK_BYTES + 4096);
    for row in rows {
        encode_csv_row(&mut buffer, row);
        if buffer.len() >= CHUNK_BYTES {
            copy.send(std::mem::take(&mut buffer)).await?;
        }
    }
    if !buffer.is_empty() {
        copy.send(buffer).await?;
    }
    copy.finish().await
}

fn encode_csv_row<V: AsRef<str>>(buffer: &mut Vec<u8>, row: impl IntoIterator<Item = Option<V>>) {
    for (index, value) in row.into_iter().enumerate() {
        if index > 0 {
            buffer.push(b',');
        }
        // An unquoted empty field is NULL in CSV COPY; a quoted one is the empty string.
        if let Some(value) = value {
            buffer.push(b'"');
            for byte in value.as_ref().bytes() {
                if byte == b'"' {
                    buffer.push(b'"');
                }
                buffer.push(byte);
            }
            buffer.push(b'"');
        }
    }
    buffer.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_quote_everything_and_leave_nulls_bare() {
        let mut buffer = Vec::new();
        encode_csv_row(
            &mut buffer,
            [Some("a,b"), None, Some("say \"hi\"\nbye"), Some("")],
        );
        assert_eq!(
            String::from_utf8(buffer).unwrap_or_default(),
            "\"a,b\",,\"say \"\"hi\"\"\nbye\",\"\"\n"
        );
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
