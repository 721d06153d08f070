//! The near cache in front of Redis: repeated reads are answered in process, and no instance serves a
//! copy after another instance's write returned, after a flush, over a broken link or a silent Redis.

mod common;

use std::time::Duration;

use cache::{Cache, Key, Tag};
use common::{Purge, REDIS_URL, Server, closed_port};
use platform::health::Check;
use prometheus_client::registry::Registry;
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(60);
const PATIENCE: Duration = Duration::from_secs(10);

/// `count` instances of one service: caches with the same prefix on one Redis.
fn instances(url: &str, count: usize) -> (Vec<Cache>, Purge) {
    let prefix = format!("lc-test:{}:", Uuid::new_v4().simple());
    let caches = (0..count)
        .map(|_| {
            Cache::redis(url, &common::options(&prefix), &mut Registry::default()).expect("cache")
        })
        .collect();
    (caches, Purge(prefix))
}

/// Stores a value, retrying while the new cache's lazy connections come up on a loaded machine.
async fn store(cache: &Cache, key: &Key, value: &str, tags: &[Tag]) {
    testkit::eventually("redis to take a write", PATIENCE, || async {
        cache
            .set(key, &value.to_owned(), TTL, tags)
            .await
            .then_some(())
    })
    .await;
}

/// Reads until the value comes from the near cache. The first reads fill it once the link is up; a fill
/// that raced the push of the write that stored the value is refused, and the next read fills again.
async fn warm(cache: &Cache, key: &Key) -> String {
    testkit::eventually("a near-cache hit", PATIENCE, || async {
        let before = cache.stats().near_hits;
        let value = cache.get::<String>(key).await?;
        (cache.stats().near_hits > before).then_some(value)
    })
    .await
}

fn get_calls(admin: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(admin)
        .expect("info");
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// A throwaway Redis (so tests may flush, pause or kill it) with `count` instances on it, and one key
/// the first instance stored and the last one has warmed into its near cache.
struct Warmed {
    caches: Vec<Cache>,
    key: Key,
    admin: redis::Connection,
    _server: Server,
}

async fn warmed(count: usize, value: &str) -> Warmed {
    let server = Server::start(closed_port());
    let admin = server.redis();
    let (caches, _) = instances(&server.url(), count);
    let key = Key::user(Uuid::new_v4());
    store(&caches[0], &key, value, &[]).await;
    assert_eq!(warm(&caches[count - 1], &key).await, value);
    Warmed {
        caches,
        key,
        admin,
        _server: server,
    }
}

#[tokio::test]
async fn repeated_reads_are_answered_in_process_without_asking_redis() {
    let mut setup = warmed(1, "alice").await;
    let (key, admin) = (&setup.key, &mut setup.admin);
    let cache = &setup.caches[0];

    let (gets, near_hits) = (get_calls(admin), cache.stats().near_hits);
    for _ in 0..100 {
        assert_eq!(cache.get::<String>(key).await.as_deref(), Some("alice"));
    }
    assert_eq!(cache.stats().near_hits, near_hits + 100);
    assert_eq!(get_calls(admin), gets, "no GET reached redis");

    let report = cache.health_check().check().await;
    assert_eq!(
        report.details["near_cache"]["linked"], true,
        "{:?}",
        report.details
    );
    assert!(report.details["near_cache"]["entries"].as_u64() >= Some(1));
}

/// The writer's call returns only after Redis has written the change's pushes to every tracking
/// instance (its barrier), so the very next read on another instance must see the change: checked for
/// overwrites, key invalidations and tag invalidations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_seen_by_another_as_soon_as_it_returns() {
    let (caches, _purge) = instances(REDIS_URL, 2);
    let (writer, reader) = (&caches[0], &caches[1]);
    for round in 0..90 {
        let id = Uuid::new_v4();
        let key = Key::user(id);
        store(writer, &key, "old", &[Tag::user(id)]).await;
        assert_eq!(warm(reader, &key).await, "old");
        let expected = match round % 3 {
            0 => {
                assert!(writer.set(&key, &"new".to_owned(), TTL, &[]).await);
                Some("new".to_owned())
            }
            1 => {
                assert_eq!(writer.invalidate_keys(std::slice::from_ref(&key)).await, 1);
                None
            }
            _ => {
                assert_eq!(writer.invalidate_tags(&[Tag::user(id)]).await, 1);
                None
            }
        };
        assert_eq!(
            reader.get::<String>(&key).await,
            expected,
            "round {round}: the other instance served its old copy"
        );
    }
}

#[tokio::test]
async fn a_flush_drops_every_copy_at_once() {
    let mut setup = warmed(1, "widget").await;
    let (key, admin) = (&setup.key, &mut setup.admin);
    let cache = &setup.caches[0];

    let _: () = redis::cmd("FLUSHALL").query(admin).expect("flushall");
    // What the cache's own writes do before they return (see `barrier` in remote.rs).
    let _: String = redis::cmd("PING").query(admin).expect("ping");
    assert_eq!(cache.get::<String>(key).await, None);
}

#[tokio::test]
async fn copies_are_not_served_over_a_broken_link() {
    let mut setup = warmed(2, "old").await;
    let (key, admin) = (&setup.key, &mut setup.admin);
    let (writer, reader) = (&setup.caches[0], &setup.caches[1]);

    // Every connection but the admin's is dropped: the reader's link cannot deliver the next change.
    let _: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query(admin)
        .expect("client kill");
    store(writer, key, "new", &[]).await;
    assert_ne!(
        reader.get::<String>(key).await.as_deref(),
        Some("old"),
        "the old copy was served after the link broke"
    );
    assert_eq!(warm(reader, key).await, "new", "the near cache comes back");
}

#[tokio::test]
async fn copies_are_not_trusted_while_redis_is_silent() {
    let mut setup = warmed(1, "alice").await;
    let (key, admin) = (&setup.key, &mut setup.admin);
    let cache = &setup.caches[0];

    // Redis stops answering, as in a partition, in which pushes would be lost too.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(3000)
        .arg("ALL")
        .query(admin)
        .expect("pause");
    let near_hits = cache.stats().near_hits;
    testkit::eventually(
        "reads to stop using the copy",
        Duration::from_secs(2),
        || async { cache.get::<String>(key).await.is_none().then_some(()) },
    )
    .await;
    let served = cache.stats().near_hits - near_hits;
    assert!(
        served < 1000,
        "the copy was served {served} times while redis was silent"
    );
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(admin)
        .expect("unpause");
    assert_eq!(warm(cache, key).await, "alice", "and trusted again after");
}
