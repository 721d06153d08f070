//! Orders confirmed per second end to end: HTTP `POST /api/v1/orders` → `order.created` through the outbox
//! and the transport → inventory reserves → `inventory.reserved` back → the order is `confirmed`.
//!
//! `cargo run --release -p logicore --example order_flow_bench [ORDERS] [CONCURRENCY] [SKUS]`
//! (set `RABBITMQ_URL` for the RabbitMQ transport, the PostgreSQL transport otherwise; set `RATE` to send
//! that many orders per second instead of keeping `CONCURRENCY` in flight, for latency without a backlog;
//! set `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_TRACES_SAMPLER_ARG` to export traces while it runs).
//!
//! Starts inventory and orders in-process, as `logicore all` runs them, on a fresh database (dropped at
//! the end; `TEST_DATABASE_URL` names the server), stocks `SKUS` products, then creates `ORDERS` orders of
//! one unit of a random sku with `CONCURRENCY` requests in flight, each with an `Idempotency-Key`, and
//! waits until none is pending. Latency of an order runs from its insert (`orders.created_at`) to the
//! commit of its confirmation (the `confirmed` timeline entry); throughput is confirmed orders over the
//! time from the first insert to the last confirmation. Compare with `bench/orders_pgbench.sh`, which
//! runs the same statements with pgbench. Bounded in count and time.

use std::time::{Duration, Instant};

use futures::StreamExt;
use platform::auth::{JwtKeys, Role};
use serde_json::json;
use testkit::{TestDb, TestServer};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The longest the run may take to settle after the last request.
const SETTLE_DEADLINE: Duration = Duration::from_secs(300);

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let orders: usize = args.next().map_or(Ok(3000), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let skus: usize = args.next().map_or(Ok(100), |a| a.parse())?;
    let rabbitmq = std::env::var("RABBITMQ_URL").unwrap_or_default();
    let rate: Option<f64> = std::env::var("RATE").ok().map(|r| r.parse()).transpose()?;

    let test_db = TestDb::new();
    let exchange = format!("lc_bench_{}", Uuid::new_v4().simple());
    let mut env = vec![
        ("DATABASE_URL", test_db.url.as_str()),
        ("LOG_LEVEL", "warn"),
        ("DB_POOL_MAX", "20"),
        ("LOGICORE_MESSAGING__EXCHANGE", exchange.as_str()),
    ];
    if !rabbitmq.is_empty() {
        env.push(("RABBITMQ_URL", rabbitmq.as_str()));
        env.push(("LOGICORE_MESSAGING__QUEUE_EXPIRES_MS", "60000"));
    }
    let tracing: Vec<(&str, String)> = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG"]
        .into_iter()
        .filter_map(|name| Some((name, std::env::var(name).ok()?)))
        .collect();
    env.extend(tracing.iter().map(|(name, value)| (*name, value.as_str())));
    let settings = testkit::settings_with(&env, &logicore::services::sections());
    let _logs = platform::telemetry::init(
        platform::telemetry::LogOptions {
            level: "warn",
            format: "json",
            dir: "",
            file_prefix: "bench",
            console: platform::telemetry::Console::Stderr,
        },
        &settings.tracing,
        &platform::telemetry::Identity {
            process: "order-flow-bench",
            version: &settings.service.version,
            environment: &settings.environment,
        },
    )?;
    let shutdown = CancellationToken::new();
    let inventory = inventory::build(&inventory::Config::from_settings(&settings)?).await?;
    let mut background = inventory.spawn_background(shutdown.clone()).await;
    let inventory_server = TestServer::spawn(inventory.router.clone()).await;
    let orders_app = orders::build(&orders::Config::from_settings(&settings)?).await?;
    background.extend(orders_app.spawn_background(shutdown.clone()).await);
    let orders_server = TestServer::spawn(orders_app.router.clone()).await;

    let keys = JwtKeys::new(&settings.auth);
    let admin = keys
        .issue(Uuid::now_v7(), "admin@bench.test", Role::Admin)?
        .0;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?;
    let warehouse: serde_json::Value = client
        .post(inventory_server.url("/api/v1/inventory/warehouses"))
        .bearer_auth(&admin)
        .json(&json!({"code": "MAIN", "name": "Main", "address": "1 Dock Road", "priority": 1}))
        .send()
        .await?
        .json()
        .await?;
    let warehouse_id = warehouse["id"]
        .as_str()
        .ok_or("no warehouse id")?
        .to_owned();
    let sku_names: Vec<String> = (0..skus).map(|i| format!("BENCH-{i}")).collect();
    for sku in &sku_names {
        client
            .post(inventory_server.url("/api/v1/inventory/products"))
            .bearer_auth(&admin)
            .json(&json!({"sku": sku, "name": sku}))
            .send()
            .await?
            .error_for_status()?;
        client
            .post(inventory_server.url("/api/v1/inventory/adjustments"))
            .bearer_auth(&admin)
            .json(&json!({"sku": sku, "warehouse_id": warehouse_id, "delta": 1_000_000, "reason": "receipt"}))
            .send()
            .await?
            .error_for_status()?;
    }

    let customers: Vec<String> = (0..concurrency)
        .map(|i| {
            keys.issue(Uuid::now_v7(), &format!("c{i}@bench.test"), Role::Customer)
                .map(|t| t.0)
        })
        .collect::<Result<_, _>>()?;
    let url = orders_server.url("/api/v1/orders");
    let create = |n: usize| {
        let (client, url) = (client.clone(), url.clone());
        let token = customers[n % customers.len()].clone();
        let sku = sku_names[(n * 7919) % sku_names.len()].clone();
        async move {
            let sent = Instant::now();
            let response = client
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&json!({
                    "lines": [{"sku": sku, "quantity": 1, "unit_price": 100}],
                    "shipping_address": {"name": "Bench", "street": "1 Road", "city": "Delft",
                                         "postal_code": "2611", "country": "NL"},
                }))
                .send()
                .await;
            match response {
                Ok(r) if r.status().as_u16() == 201 => Some(sent.elapsed().as_secs_f64() * 1e3),
                Ok(r) => {
                    eprintln!("order refused: {}", r.status());
                    None
                }
                Err(e) => {
                    eprintln!("order failed: {e}");
                    None
                }
            }
        }
    };
    let started = Instant::now();
    let mut request_ms: Vec<f64> = match rate {
        // Open loop at a fixed rate: latency without a backlog of our own making.
        Some(rate) => {
            let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut requests = tokio::task::JoinSet::new();
            for n in 0..orders {
                ticker.tick().await;
                requests.spawn(create(n));
            }
            requests.join_all().await.into_iter().flatten().collect()
        }
        // As fast as `concurrency` requests in flight allow: throughput.
        None => {
            futures::stream::iter(0..orders)
                .map(create)
                .buffer_unordered(concurrency)
                .filter_map(std::future::ready)
                .collect()
                .await
        }
    };
    let sent_in = started.elapsed();

    let pool = sqlx::PgPool::connect(&test_db.url).await?;
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status = 'pending'")
                .fetch_one(&pool)
                .await?;
        if pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{pending} orders still pending after {SETTLE_DEADLINE:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (confirmed, span_secs): (i64, f64) = sqlx::query_as(
        "SELECT count(*), EXTRACT(EPOCH FROM max(e.occurred_at) - min(o.created_at))::float8 \
         FROM orders.orders o JOIN orders.order_events e ON e.order_id = o.id AND e.to_status = 'confirmed'",
    )
    .fetch_one(&pool)
    .await?;
    let mut latency_ms: Vec<f64> = sqlx::query_scalar(
        "SELECT (EXTRACT(EPOCH FROM e.occurred_at - o.created_at) * 1000)::float8 \
         FROM orders.orders o JOIN orders.order_events e ON e.order_id = o.id AND e.to_status = 'confirmed'",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    latency_ms.sort_by(f64::total_cmp);
    request_ms.sort_by(f64::total_cmp);

    let transport = if rabbitmq.is_empty() {
        "postgres"
    } else {
        "rabbitmq"
    };
    let load = rate.map_or(format!("{concurrency} in flight"), |r| {
        format!("{r} orders/s")
    });
    println!(
        "transport {transport}: {orders} orders of 1 unit over {skus} skus, {load}, release build"
    );
    println!(
        "HTTP create: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms ({} of {orders} answered 201)",
        request_ms.len() as f64 / sent_in.as_secs_f64(),
        percentile(&request_ms, 0.5),
        percentile(&request_ms, 0.99),
        request_ms.len(),
    );
    println!(
        "confirmed: {confirmed} orders in {span_secs:.2} s = {:.0} orders/s; create → confirmed p50 {:.1} ms, p99 {:.1} ms",
        confirmed as f64 / span_secs,
        percentile(&latency_ms, 0.5),
        percentile(&latency_ms, 0.99),
    );

    shutdown.cancel();
    for task in background {
        task.await?;
    }
    inventory.messaging.close().await;
    orders_app.messaging.close().await;
    Ok(())
}
