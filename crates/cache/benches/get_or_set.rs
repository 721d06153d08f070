//! `get_or_set` hit throughput on both backends (Redis with and without its near cache): N tasks hammering keys that are already cached.
//! Run by `bench/cache.sh` next to `redis-benchmark -t get` with the same concurrency and value size.
//!
//! Env: `BENCH_REDIS_URL` (default redis://127.0.0.1:6379/), `BENCH_CONCURRENCY` (32),
//! `BENCH_SECONDS` (3), `BENCH_VALUE_BYTES` (100).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache::{Cache, CacheOptions, Key};
use prometheus_client::registry::Registry;

const KEYS: usize = 1000;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(name: &str, cache: Cache, concurrency: usize, seconds: u64, value: String) {
    let keys: Arc<Vec<Key>> = Arc::new((0..KEYS).map(|i| Key::custom("bench", [i])).collect());
    for key in keys.iter() {
        cache.set(key, &value, Duration::from_secs(600), &[]).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (cache, keys, stop, ops, value) = (
                cache.clone(),
                keys.clone(),
                stop.clone(),
                ops.clone(),
                value.clone(),
            );
            tokio::spawn(async move {
                let mut i = w;
                let mut local = 0_u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = &keys[i % KEYS];
                    let v = value.clone();
                    let got: Result<String, ()> = cache
                        .get_or_set(key, Duration::from_secs(600), &[], || async { Ok(v) })
                        .await;
                    assert!(got.is_ok());
                    i += concurrency;
                    local += 1;
                    // A memory hit never awaits anything; yield now and then as a request handler
                    // would, or these tasks starve the timer that ends the run.
                    if local.is_multiple_of(64) {
                        tokio::task::yield_now().await;
                    }
                }
                ops.fetch_add(local, Ordering::Relaxed);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = ops.load(Ordering::Relaxed);
    let stats = cache.stats();
    println!(
        "{name:>10}: get_or_set hits {:>10.0} ops/s  ({total} ops, {concurrency} tasks, {elapsed:.1} s, hit ratio {:.4}, errors {})",
        total as f64 / elapsed,
        stats.hit_ratio(),
        stats.errors,
    );
}

fn main() {
    let concurrency = env("BENCH_CONCURRENCY", 32_usize);
    let seconds = env("BENCH_SECONDS", 3_u64);
    let value = "x".repeat(env("BENCH_VALUE_BYTES", 100_usize));
    let url = std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => panic!("runtime: {e}"),
    };
    runtime.block_on(async {
        let options = CacheOptions {
            key_prefix: format!("lc-bench:{}:", std::process::id()),
            ..CacheOptions::default()
        };
        let memory = Cache::memory(&options, &mut Registry::default());
        run("memory", memory, concurrency, seconds, value.clone()).await;
        let direct = CacheOptions {
            near_max_entries: 0,
            ..options.clone()
        };
        for (name, options) in [("redis", direct), ("redis+near", options)] {
            match Cache::redis(&url, &options, &mut Registry::default()) {
                Ok(redis) => {
                    run(name, redis.clone(), concurrency, seconds, value.clone()).await;
                    redis.delete_pattern("*").await;
                }
                Err(e) => eprintln!("{name}: {e}"),
            }
        }
    });
}
