//! The shared suite: every test is a generic async fn over a `Cache`, run once per backend by `suite!`.

#![allow(dead_code)]

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache::{Cache, CacheOptions, Key, Tag};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a throwaway server may take to start or stop.
const SERVER_PATIENCE: Duration = Duration::from_secs(10);

pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
const TTL: Duration = Duration::from_secs(60);

/// Removes a test's keys from the shared Redis when the test ends (pass or fail).
pub struct Purge(pub String);

impl Drop for Purge {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(REDIS_URL) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)): Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.0))
                .arg("COUNT")
                .arg(1000)
                .query(&mut conn)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

pub fn options(prefix: &str) -> CacheOptions {
    CacheOptions {
        key_prefix: prefix.to_owned(),
        compress_threshold: 256,
        ..CacheOptions::default()
    }
}

pub fn memory() -> (Cache, Option<Purge>) {
    (Cache::memory(&options(""), &mut Registry::default()), None)
}

/// A Redis cache with a prefix of its own, so tests run in parallel on one Redis; its near cache is on
/// (the default).
pub fn redis() -> (Cache, Option<Purge>) {
    redis_with(options)
}

/// The same without the near cache: every read asks Redis.
pub fn redis_without_near_cache() -> (Cache, Option<Purge>) {
    redis_with(|prefix| CacheOptions {
        near_max_entries: 0,
        ..options(prefix)
    })
}

fn redis_with(options: impl Fn(&str) -> CacheOptions) -> (Cache, Option<Purge>) {
    let prefix = format!("lc-test:{}:", Uuid::new_v4().simple());
    let cache = Cache::redis(REDIS_URL, &options(&prefix), &mut Registry::default())
        .unwrap_or_else(|e| panic!("redis cache: {e}"));
    (cache, Some(Purge(prefix)))
}

/// A port nobody listens on (bound then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A throwaway `redis-server` on its own port, killed when dropped.
pub struct Server {
    pub port: u16,
    pidfile: String,
}

impl Server {
    pub fn start(port: u16) -> Self {
        let pidfile = format!("/tmp/lc-cache-test-{port}.pid");
        let status = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .args(["--pidfile", &pidfile])
            .status()
            .expect("redis-server is installed");
        assert!(status.success());
        Self { port, pidfile }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn redis(&self) -> redis::Connection {
        let deadline = Instant::now() + SERVER_PATIENCE;
        loop {
            match redis::Client::open(self.url()).and_then(|c| c.get_connection()) {
                Ok(conn) => return conn,
                Err(e) if Instant::now() > deadline => panic!("throwaway redis never came up: {e}"),
                // Startup of a daemonized server: a blocking poll in a sync helper, not synchronisation
                // between tasks.
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    pub fn kill(&self) {
        if let Ok(pid) = std::fs::read_to_string(&self.pidfile) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        // Until the port is free, a restart on it would fail.
        let deadline = Instant::now() + SERVER_PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(&self.pidfile);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub id: Uuid,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub preferences: serde_json::Value,
}

pub fn profile(name: &str) -> Profile {
    Profile {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        phone: None,
        preferences: serde_json::json!({"theme": "dark", "alerts": [1, 2]}),
    }
}

pub async fn every_operation(cache: Cache) {
    let alice = profile("alice");
    let key = Key::user(alice.id);
    assert_eq!(cache.get::<Profile>(&key).await, None);
    assert!(!cache.exists(&key).await);
    assert_eq!(cache.ttl(&key).await, None);

    assert!(cache.set(&key, &alice, TTL, &[]).await);
    assert_eq!(cache.get::<Profile>(&key).await, Some(alice.clone()));
    assert!(cache.exists(&key).await);
    let left = cache.ttl(&key).await.expect("a ttl");
    assert!(
        left <= TTL && left > TTL - Duration::from_secs(5),
        "{left:?}"
    );

    assert!(cache.expire(&key, Duration::from_secs(5)).await);
    assert!(cache.ttl(&key).await.expect("a ttl") <= Duration::from_secs(5));
    assert!(!cache.expire(&Key::user(Uuid::new_v4()), TTL).await);

    assert!(cache.delete(&key).await);
    assert!(!cache.delete(&key).await, "already gone");
    assert_eq!(cache.get::<Profile>(&key).await, None);

    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let entries: Vec<(Key, u32)> = ids
        .iter()
        .zip(1..)
        .map(|(id, n)| (Key::product(*id), n))
        .collect();
    assert_eq!(cache.mset(&entries, TTL, &[]).await, 3);
    let mut keys: Vec<Key> = entries.iter().map(|(k, _)| k.clone()).collect();
    keys.push(Key::product(Uuid::new_v4()));
    assert_eq!(
        cache.mget::<u32>(&keys).await,
        vec![Some(1), Some(2), Some(3), None]
    );

    assert!(
        cache
            .set(&Key::product_by_sku("AB-1"), &1_u8, TTL, &[])
            .await
    );
    assert!(
        cache
            .set(&Key::product_by_sku("AB-2"), &2_u8, TTL, &[])
            .await
    );
    assert_eq!(cache.delete_pattern("product:sku:*").await, 2);
    assert_eq!(cache.get::<u8>(&Key::product_by_sku("AB-1")).await, None);
    assert_eq!(
        cache.mget::<u32>(&keys[..1]).await,
        vec![Some(1)],
        "others kept"
    );

    assert!(
        !cache.set(&key, &alice, Duration::ZERO, &[]).await,
        "zero ttl stores nothing"
    );

    let stats = cache.stats();
    assert!(stats.hits >= 5 && stats.misses >= 4, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.sets >= 6 && stats.deletes >= 3, "{stats:?}");
}

pub async fn short_ttls_expire(cache: Cache) {
    let key = Key::custom("ttl", [Uuid::new_v4()]);
    assert!(
        cache
            .set(&key, &"soon gone", Duration::from_millis(100), &[])
            .await
    );
    testkit::eventually("the entry to expire", Duration::from_secs(5), || async {
        cache.get::<String>(&key).await.is_none().then_some(())
    })
    .await;
}

pub async fn tags_invalidate_every_key_they_were_stored_with(cache: Cache) {
    let product = Uuid::new_v4();
    let other = Uuid::new_v4();
    let tag = Tag::product(product);
    let tags = std::slice::from_ref(&tag);
    cache.set(&Key::product(product), &"by id", TTL, tags).await;
    cache
        .set(&Key::product_by_sku("SKU-9"), &"by sku", TTL, tags)
        .await;
    cache
        .set(
            &Key::availability(product),
            &5_i64,
            TTL,
            &[tag.clone(), Tag::availability()],
        )
        .await;
    cache
        .set(&Key::product(other), &"other", TTL, &[Tag::product(other)])
        .await;

    assert_eq!(cache.invalidate_tags(tags).await, 3);
    assert!(!cache.exists(&Key::product(product)).await);
    assert!(!cache.exists(&Key::product_by_sku("SKU-9")).await);
    assert!(!cache.exists(&Key::availability(product)).await);
    assert!(
        cache.exists(&Key::product(other)).await,
        "an unrelated tag is untouched"
    );
    assert_eq!(
        cache.invalidate_tags(&[tag]).await,
        0,
        "the tag is empty now"
    );

    // A key re-cached after the invalidation can be cached and invalidated again.
    cache
        .set(
            &Key::availability(product),
            &6_i64,
            TTL,
            &[Tag::availability()],
        )
        .await;
    assert_eq!(cache.get::<i64>(&Key::availability(product)).await, Some(6));
    assert_eq!(cache.invalidate_tags(&[Tag::availability()]).await, 1);
}

pub async fn a_burst_of_misses_runs_the_loader_once(cache: Cache) {
    let key = Key::user(Uuid::new_v4());
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, key, calls) = (cache.clone(), key.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get_or_set(&key, TTL, &[], || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // A database round trip long enough for every task to miss meanwhile.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, String>(profile("loaded"))
                    })
                    .await
            })
        })
        .collect();
    let mut names = Vec::new();
    for task in tasks {
        names.push(task.await.expect("task").expect("loaded").name);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one loader call for 100 misses"
    );
    assert!(names.iter().all(|n| n == "loaded"));
    assert_eq!(
        cache.get::<Profile>(&key).await.map(|p| p.name),
        Some("loaded".into())
    );
}

pub async fn loader_errors_are_returned_and_never_cached(cache: Cache) {
    let key = Key::user(Uuid::new_v4());
    let failed: Result<u32, &str> = cache
        .get_or_set(&key, TTL, &[], || async { Err("db down") })
        .await;
    assert_eq!(failed, Err("db down"));
    assert!(!cache.exists(&key).await);
    let loaded: Result<u32, &str> = cache.get_or_set(&key, TTL, &[], || async { Ok(7) }).await;
    assert_eq!(loaded, Ok(7));
    let cached: Result<u32, &str> = cache.get_or_set(&key, TTL, &[], || async { Ok(8) }).await;
    assert_eq!(cached, Ok(7), "served from the cache");
}

/// A reader misses and reads v1 from the "database"; before it stores v1 a writer commits v2 and
/// invalidates (by key, or by tag). The reader's v1 must not end up in the cache.
pub async fn a_read_racing_a_write_never_leaves_a_stale_value(cache: Cache, by_tag: bool) {
    let id = Uuid::new_v4();
    let key = Key::user(id);
    let db = Arc::new(std::sync::Mutex::new("v1".to_owned()));
    let (read_done_tx, read_done_rx) = tokio::sync::oneshot::channel::<()>();
    let (write_done_tx, write_done_rx) = tokio::sync::oneshot::channel::<()>();

    let reader = {
        let (cache, key, db) = (cache.clone(), key.clone(), db.clone());
        tokio::spawn(async move {
            cache
                .get_or_set(&key, TTL, &[Tag::user(id)], || async move {
                    let value = db.lock().expect("db").clone();
                    let _ = read_done_tx.send(());
                    // Holds the old value while the write commits and invalidates.
                    let _ = write_done_rx.await;
                    Ok::<_, String>(value)
                })
                .await
        })
    };
    read_done_rx.await.expect("the reader read");
    *db.lock().expect("db") = "v2".to_owned();
    if by_tag {
        cache.invalidate_tags(&[Tag::user(id)]).await;
    } else {
        cache.invalidate_keys(std::slice::from_ref(&key)).await;
    }
    write_done_tx.send(()).expect("reader waiting");
    assert_eq!(
        reader.await.expect("task"),
        Ok("v1".to_owned()),
        "the reader itself saw v1"
    );

    assert_eq!(
        cache.get::<String>(&key).await,
        None,
        "the old value was not stored"
    );
    let next: Result<String, String> = cache
        .get_or_set(&key, TTL, &[Tag::user(id)], || async {
            Ok(db.lock().expect("db").clone())
        })
        .await;
    assert_eq!(next, Ok("v2".to_owned()));
    assert_eq!(
        cache.get::<String>(&key).await,
        Some("v2".to_owned()),
        "and the new one is cached"
    );
}

pub async fn large_values_are_compressed_and_small_ones_are_not(cache: Cache) {
    let small = Key::custom("small", [Uuid::new_v4()]);
    cache.set(&small, &"tiny", TTL, &[]).await;
    let raw = cache.raw(&small).await.expect("stored");
    assert!(!cache::is_compressed(&raw));

    let large = Key::custom("large", [Uuid::new_v4()]);
    let value: Vec<Profile> = (0..500)
        .map(|i| profile(&format!("user number {i}")))
        .collect();
    cache.set(&large, &value, TTL, &[]).await;
    let raw = cache.raw(&large).await.expect("stored");
    assert!(cache::is_compressed(&raw));
    assert_eq!(cache.get::<Vec<Profile>>(&large).await, Some(value));
}

/// Declares one `#[tokio::test]` per suite function for a backend constructor.
#[macro_export]
macro_rules! suite {
    ($make:path) => {
        #[tokio::test]
        async fn every_operation_works() {
            let (cache, _purge) = $make();
            common::every_operation(cache).await;
        }

        #[tokio::test]
        async fn short_ttls_expire() {
            let (cache, _purge) = $make();
            common::short_ttls_expire(cache).await;
        }

        #[tokio::test]
        async fn tags_invalidate_every_key_they_were_stored_with() {
            let (cache, _purge) = $make();
            common::tags_invalidate_every_key_they_were_stored_with(cache).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_burst_of_misses_runs_the_loader_once() {
            let (cache, _purge) = $make();
            common::a_burst_of_misses_runs_the_loader_once(cache).await;
        }

        #[tokio::test]
        async fn loader_errors_are_returned_and_never_cached() {
            let (cache, _purge) = $make();
            common::loader_errors_are_returned_and_never_cached(cache).await;
        }

        #[tokio::test]
        async fn a_read_racing_a_key_invalidation_never_leaves_a_stale_value() {
            let (cache, _purge) = $make();
            common::a_read_racing_a_write_never_leaves_a_stale_value(cache, false).await;
        }

        #[tokio::test]
        async fn a_read_racing_a_tag_invalidation_never_leaves_a_stale_value() {
            let (cache, _purge) = $make();
            common::a_read_racing_a_write_never_leaves_a_stale_value(cache, true).await;
        }

        #[tokio::test]
        async fn large_values_are_compressed_and_small_ones_are_not() {
            let (cache, _purge) = $make();
            common::large_values_are_compressed_and_small_ones_are_not(cache).await;
        }
    };
}
