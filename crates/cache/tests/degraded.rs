//! Redis down, paused and restarted: requests keep working without the cache, `/readyz` says degraded,
//! and the cache comes back by itself without serving a value that was invalidated while it was away.

mod common;

use common::{Server, closed_port};

use std::time::{Duration, Instant};

use cache::{Cache, Key, Tag};
use platform::health::{Check, Readiness};
use prometheus_client::registry::Registry;
use uuid::Uuid;

const TTL: Duration = Duration::from_secs(60);
const PATIENCE: Duration = Duration::from_secs(10);

fn cache_at(url: &str) -> Cache {
    let prefix = format!("lc-test:{}:", Uuid::new_v4().simple());
    Cache::redis(url, &common::options(&prefix), &mut Registry::default()).expect("cache")
}

async fn degraded(cache: &Cache) -> bool {
    !cache.health_check().check().await.up
}

#[tokio::test]
async fn with_redis_down_requests_still_succeed_quickly_and_readiness_says_degraded() {
    let cache = cache_at(&format!("redis://127.0.0.1:{}/", closed_port()));
    let key = Key::user(Uuid::new_v4());

    let started = Instant::now();
    assert_eq!(cache.get::<String>(&key).await, None);
    assert!(
        !cache.set(&key, &"v", TTL, &[]).await,
        "a write is skipped, not an error"
    );
    let loaded: Result<String, ()> = cache
        .get_or_set(&key, TTL, &[Tag::user(Uuid::nil())], || async {
            Ok("from the database".into())
        })
        .await;
    assert_eq!(loaded, Ok("from the database".into()));
    cache.invalidate_tags(&[Tag::user(Uuid::nil())]).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    assert!(cache.stats().errors >= 2, "{:?}", cache.stats());

    let readiness = Readiness::new(vec![Box::new(cache.health_check())], Duration::from_secs(1));
    let (ready, body) = readiness.report().await;
    assert!(ready, "the cache is not required: {body}");
    assert_eq!(body["checks"]["cache"]["status"], "degraded", "{body}");
}

#[tokio::test]
async fn the_cache_recovers_by_itself_when_redis_comes_back() {
    let port = closed_port();
    let server = Server::start(port);
    drop(server.redis());
    let cache = cache_at(&server.url());
    let key = Key::product(Uuid::new_v4());

    testkit::eventually("redis to be used", PATIENCE, || async {
        (cache.set(&key, &1_u32, TTL, &[]).await && cache.get::<u32>(&key).await == Some(1))
            .then_some(())
    })
    .await;

    server.kill();
    testkit::eventually("the cache to notice redis is gone", PATIENCE, || async {
        (cache.get::<u32>(&key).await.is_none() && degraded(&cache).await).then_some(())
    })
    .await;
    let loaded: Result<u32, ()> = cache.get_or_set(&key, TTL, &[], || async { Ok(2) }).await;
    assert_eq!(loaded, Ok(2), "requests are served without the cache");

    let server = Server::start(port);
    drop(server.redis());
    testkit::eventually("the cache to use redis again", PATIENCE, || async {
        (!degraded(&cache).await
            && cache.set(&key, &3_u32, TTL, &[]).await
            && cache.get::<u32>(&key).await == Some(3))
        .then_some(())
    })
    .await;
    drop(server);
}

#[tokio::test]
async fn an_invalidation_that_missed_redis_is_replayed_before_the_cache_is_used_again() {
    let server = Server::start(closed_port());
    let mut admin = server.redis();
    let cache = cache_at(&server.url());
    let (first, second) = (Key::user(Uuid::new_v4()), Key::user(Uuid::new_v4()));
    testkit::eventually("redis to be used", PATIENCE, || async {
        (cache.set(&first, &"old", TTL, &[]).await && cache.set(&second, &"old", TTL, &[]).await)
            .then_some(())
    })
    .await;

    // Redis stops answering but keeps its data, as in a partition.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(400)
        .arg("ALL")
        .query(&mut admin)
        .expect("pause");
    // Times out (Redis may still run it after the pause) and opens the breaker…
    assert_eq!(cache.invalidate_keys(std::slice::from_ref(&first)).await, 0);
    // …so this one never reaches Redis: only the replay can remove `second`.
    assert_eq!(cache.invalidate_tags(&[Tag::user(Uuid::nil())]).await, 0);
    assert_eq!(
        cache.invalidate_keys(std::slice::from_ref(&second)).await,
        0
    );
    assert_eq!(
        cache.get::<String>(&second).await,
        None,
        "the old value is never served"
    );
    assert!(degraded(&cache).await);

    testkit::eventually("the invalidations to be replayed", PATIENCE, || async {
        (!degraded(&cache).await).then_some(())
    })
    .await;
    assert_eq!(
        cache.get::<String>(&second).await,
        None,
        "redis no longer holds the old value"
    );
    assert_eq!(cache.get::<String>(&first).await, None);
    assert!(
        cache.set(&second, &"new", TTL, &[]).await,
        "and the cache is used again"
    );
}

/// Redis restarted (and so emptied) while a load was in flight: an invalidation after the restart must
/// still beat the load's snapshot, although the invalidation clock started again from nothing.
#[tokio::test]
async fn a_load_that_spans_a_redis_restart_cannot_store_a_stale_value() {
    let port = closed_port();
    let server = Server::start(port);
    drop(server.redis());
    let cache = cache_at(&server.url());
    let id = Uuid::new_v4();
    let key = Key::user(id);
    testkit::eventually("redis to be used", PATIENCE, || async {
        let probe = Key::custom("probe", [Uuid::new_v4()]);
        cache.set(&probe, &1_u8, TTL, &[]).await.then_some(())
    })
    .await;
    // Clock values from before the restart that a plain counter would only reach again much later.
    for _ in 0..5 {
        cache.invalidate_tags(&[Tag::user(id)]).await;
    }

    let (read_tx, read_rx) = tokio::sync::oneshot::channel::<()>();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let reader = {
        let (cache, key) = (cache.clone(), key.clone());
        tokio::spawn(async move {
            cache
                .get_or_set(&key, TTL, &[Tag::user(id)], || async move {
                    let _ = read_tx.send(());
                    let _ = go_rx.await;
                    Ok::<_, ()>("stale".to_owned())
                })
                .await
        })
    };
    read_rx.await.expect("the reader started its load");

    server.kill();
    let server = Server::start(port);
    drop(server.redis());
    testkit::eventually("the cache to use the restarted redis", PATIENCE, || async {
        let probe = Key::custom("probe", [Uuid::new_v4()]);
        cache.set(&probe, &1_u8, TTL, &[]).await.then_some(())
    })
    .await;
    cache.invalidate_tags(&[Tag::user(id)]).await;
    go_tx.send(()).expect("reader waiting");
    assert_eq!(reader.await.expect("task"), Ok("stale".to_owned()));
    assert_eq!(
        cache.get::<String>(&key).await,
        None,
        "the load's older value was refused"
    );
    drop(server);
}
