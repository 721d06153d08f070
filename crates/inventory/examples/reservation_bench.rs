//! Reservation throughput and import time of the inventory service, on this machine, over loopback.
//!
//! `cargo run --release -p inventory --example reservation_bench [REQUESTS] [CONCURRENCY]`
//!
//! Starts the service in-process on a fresh database (dropped at the end; `TEST_DATABASE_URL` names the
//! server), then measures: reservations per second on one SKU (every request locks the same hot row) and
//! on 1000 SKUs, and the time to import a 100k-row CSV. Compare with `bench/inventory_pgbench.sh`,
//! which runs the same statements with pgbench. The request count is bounded and the run stops by itself.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use futures::StreamExt;
use platform::auth::{JwtKeys, Role};
use rand::RngExt;
use serde_json::{Value, json};
use testkit::{TestDb, TestServer};
use uuid::Uuid;

struct Bench {
    server: TestServer,
    client: reqwest::Client,
    token: String,
}

impl Bench {
    async fn post(&self, path: &str, body: &Value) -> Result<reqwest::StatusCode, reqwest::Error> {
        let response = self
            .client
            .post(self.server.url(path))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        Ok(response.status())
    }

    /// Fires `requests` reservations of one unit of a random sku among `skus`; returns requests per second.
    async fn reservations(&self, skus: &[String], requests: usize, concurrency: usize) -> f64 {
        let mut rng = rand::rng();
        let bodies: Vec<Value> = (0..requests)
            .map(|_| {
                let sku = &skus[rng.random_range(0..skus.len())];
                json!({"order_id": Uuid::now_v7(), "lines": [{"sku": sku, "quantity": 1}]})
            })
            .collect();
        let started = Instant::now();
        let failures = futures::stream::iter(bodies)
            .map(|body| async move { self.post("/api/v1/inventory/reservations", &body).await })
            .buffer_unordered(concurrency)
            .filter(|r| std::future::ready(!matches!(r, Ok(s) if s.as_u16() == 201)))
            .count()
            .await;
        let elapsed = started.elapsed();
        if failures > 0 {
            eprintln!("{failures} reservations failed");
        }
        requests as f64 / elapsed.as_secs_f64()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args.next().map_or(Ok(5000), |a| a.parse())?;
    let concurrency: usize = args.next().map_or(Ok(32), |a| a.parse())?;

    let test_db = TestDb::new();
    let settings = testkit::settings(&[("DATABASE_URL", &test_db.url), ("LOG_LEVEL", "warn")]);
    let config = inventory::Config::from_settings(&settings)?;
    let app = inventory::build(&config).await?;
    let bench = Bench {
        server: TestServer::spawn(app.router).await,
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()?,
        token: JwtKeys::new(&settings.auth)
            .issue(Uuid::now_v7(), "bench@example.com", Role::Admin)?
            .0,
    };

    bench
        .post(
            "/api/v1/inventory/warehouses",
            &json!({"code": "MAIN", "name": "Main", "address": ""}),
        )
        .await?;
    // Stock for every sku through one import, which also times the setup path.
    let mut seed = String::new();
    for i in 0..1000 {
        writeln!(seed, "S-{i},Item {i},MAIN,100000000")?;
    }
    import(&bench, seed).await?;

    let hot = bench
        .reservations(&["S-0".to_owned()], requests, concurrency)
        .await;
    let skus: Vec<String> = (0..1000).map(|i| format!("S-{i}")).collect();
    let spread = bench.reservations(&skus, requests, concurrency).await;

    let mut csv = String::from("sku,name,warehouse_code,quantity,reorder_point\n");
    for i in 0..100_000 {
        writeln!(csv, "IMP-{i},Imported {i},MAIN,{},5", i % 100)?;
    }
    let started = Instant::now();
    let report = import(&bench, csv).await?;
    let import_time = started.elapsed();

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| reservations/s, one SKU ({requests} requests, {concurrency} in flight) | {hot:.0} |"
    );
    println!(
        "| reservations/s, 1000 SKUs ({requests} requests, {concurrency} in flight) | {spread:.0} |"
    );
    println!(
        "| import of 100k rows ({} applied) | {:.2} s |",
        report["rows_applied"],
        import_time.as_secs_f64()
    );
    bench.server.stop().await;
    app.db.close().await;
    Ok(())
}

async fn import(bench: &Bench, csv: String) -> Result<Value, Box<dyn std::error::Error>> {
    let response = bench
        .client
        .post(bench.server.url("/api/v1/inventory/import"))
        .bearer_auth(&bench.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    Ok(response.json().await?)
}
