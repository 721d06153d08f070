//! The instances of one upstream service: balancing (least outstanding requests by default, round-robin on
//! request) and passive health (outlier ejection, after Envoy's `consecutive_5xx`).
//!
//! Least-outstanding by default: a slow or overloaded instance piles up in-flight requests and is then
//! picked less, which round-robin cannot see; the count is local and free. Ties (the common case at low
//! load) are broken by a rotating start, so equal instances share the load round-robin.
//!
//! The set lives in an [`ArcSwap`], so service discovery replaces it ([`Endpoints::apply`]) while requests
//! in flight keep the list they started with and finish on the instance they were sent to.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use platform::discovery::Snapshot;
use serde_json::{Value, json};
use url::Url;

use super::connections::IdleConnections;

/// When an instance is taken out of rotation for failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Consecutive failures (connect errors, timeouts, 5xx) that eject an instance.
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th in a row lasts n times this (Envoy's rule).
    pub base_ejection: Duration,
    /// The longest an instance stays ejected.
    pub max_ejection: Duration,
    /// The most of the instances (percent) that may be ejected at once. One always may be (Envoy's
    /// rule), and the last healthy instance never is, whatever this says.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejection_percent: 100,
        }
    }
}

/// How an instance is picked among the healthy ones not tried yet (`gateway.load_balancing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balancing {
    /// The fewest requests in flight; ties in turn.
    LeastOutstanding,
    /// Each in turn.
    RoundRobin,
}

impl Balancing {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "least_outstanding" => Some(Self::LeastOutstanding),
            "round_robin" => Some(Self::RoundRobin),
            _ => None,
        }
    }
}

/// How each instance keeps idle connections: a list per dedicated worker (and one shared), each at most
/// this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolShape {
    pub(crate) workers: usize,
    pub(crate) max_idle: usize,
}

/// One instance of a service.
pub(crate) struct Endpoint {
    url: Url,
    authority: String,
    prefix: String,
    outstanding: AtomicUsize,
    consecutive_failures: AtomicU32,
    /// Nanoseconds after the set's epoch until which the instance is ejected; 0 when it never was.
    /// An atomic so the hot path (picking) reads it without a lock.
    ejected_until: AtomicU64,
    /// Ejections so far, decayed while healthy; only touched when ejecting.
    ejections: Mutex<u32>,
    /// Its one pool of keep-alive connections, for both proxy paths and the readiness probe
    /// ([`super::connections`]).
    idle: IdleConnections,
}

impl Endpoint {
    fn new(url: Url, pool: PoolShape) -> Self {
        let host = url.host_str().unwrap_or_default();
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Self {
            prefix: url.path().trim_end_matches('/').to_owned(),
            authority,
            url,
            outstanding: AtomicUsize::new(0),
            consecutive_failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: Mutex::new(0),
            idle: IdleConnections::new(pool.workers, pool.max_idle),
        }
    }

    /// `host[:port]`, to connect to and to name in `Host`.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// The base URL's path without its trailing `/`, put before every request's path.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn idle(&self) -> &IdleConnections {
        &self.idle
    }

    pub(crate) fn url(&self) -> &Url {
        &self.url
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InFlight {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// One request in flight on an endpoint; kept until the response body is finished.
pub(crate) struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) type EndpointList = Arc<Vec<Arc<Endpoint>>>;

/// The current instances of one upstream and how they are doing.
pub(crate) struct Endpoints {
    list: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Where the list comes from and how current it is (service discovery).
    source: ArcSwap<Snapshot>,
    balancing: Balancing,
    pool: PoolShape,
    outlier: OutlierConfig,
    epoch: Instant,
    next: AtomicUsize,
    /// Held while deciding an ejection, so two instances failing at once cannot both pass the "never
    /// eject the last healthy one" check.
    ejecting: Mutex<()>,
}

impl Endpoints {
    /// The set `snapshot` gives (the configured list, or none yet for a registry still to be read).
    pub(crate) fn new(
        snapshot: Snapshot,
        balancing: Balancing,
        outlier: OutlierConfig,
        pool: PoolShape,
    ) -> Self {
        Self {
            list: ArcSwap::from_pointee(
                snapshot
                    .endpoints
                    .iter()
                    .map(|u| Arc::new(Endpoint::new(u.clone(), pool)))
                    .collect(),
            ),
            source: ArcSwap::from_pointee(snapshot),
            balancing,
            pool,
            outlier,
            epoch: Instant::now(),
            next: AtomicUsize::new(0),
            ejecting: Mutex::new(()),
        }
    }

    /// The instances as they are now; a request keeps this list for all its attempts.
    pub(crate) fn current(&self) -> EndpointList {
        self.list.load_full()
    }

    /// Where the set comes from, as last told.
    pub(crate) fn source(&self) -> Arc<Snapshot> {
        self.source.load_full()
    }

    /// Takes in what service discovery says now: a new set of instances when it changed. Instances that
    /// stay keep their counters, ejection state and pooled connections; a removed one is dropped once the
    /// requests still on it finish.
    pub(crate) fn apply(&self, snapshot: Snapshot) {
        let changed = self.source.load().endpoints != snapshot.endpoints;
        if changed {
            self.replace(&snapshot.endpoints);
        }
        self.source.store(Arc::new(snapshot));
    }

    fn replace(&self, urls: &[Url]) {
        let old = self.list.load_full();
        let list = urls
            .iter()
            .map(|url| {
                old.iter()
                    .find(|e| e.url == *url)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Endpoint::new(url.clone(), self.pool)))
            })
            .collect();
        self.list.store(Arc::new(list));
    }

    fn nanos(&self, at: Instant) -> u64 {
        // +1 so that an instant at the epoch itself is not mistaken for "never ejected".
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    fn is_ejected(&self, endpoint: &Endpoint, now: Instant) -> bool {
        endpoint.ejected_until.load(Ordering::Relaxed) > self.nanos(now)
    }

    /// The index of the instance for the next attempt: the least busy healthy instance not tried yet;
    /// failing that a healthy one already tried (a single-instance service), then an ejected one (all are
    /// out: better to try than to refuse). `tried` is a bit set of indexes. `None` only for an empty list.
    pub(crate) fn pick(&self, list: &[Arc<Endpoint>], tried: u64) -> Option<usize> {
        let len = list.len();
        if len == 0 {
            return None;
        }
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<((u8, usize), usize)> = None;
        for offset in 0..len {
            let index = (start + offset) % len;
            let endpoint = &list[index];
            let was_tried = tried & bit(index) != 0;
            let rank = match (self.is_ejected(endpoint, now), was_tried) {
                (false, false) => 0,
                (false, true) => 1,
                (true, false) => 2,
                (true, true) => 3,
            };
            let load = match self.balancing {
                Balancing::LeastOutstanding => endpoint.outstanding.load(Ordering::Relaxed),
                Balancing::RoundRobin => 0,
            };
            let key = (rank, load);
            if best.is_none_or(|(best_key, _)| key < best_key) {
                best = Some((key, index));
            }
        }
        best.map(|(_, index)| index)
    }

    /// Records an attempt's outcome on its instance; ejects it after too many failures in a row unless
    /// it is the last healthy instance. Returns the ejection's length when this call ejected it.
    pub(crate) fn record(
        &self,
        list: &[Arc<Endpoint>],
        index: usize,
        failed: bool,
    ) -> Option<Duration> {
        let endpoint = list.get(index)?;
        if !failed {
            // Read first: a store on every success would bounce the cache line between cores.
            if endpoint.consecutive_failures.load(Ordering::Relaxed) != 0 {
                endpoint.consecutive_failures.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let failures = endpoint
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if failures < self.outlier.consecutive_failures.max(1) {
            return None;
        }
        let _deciding = self.ejecting.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if self.is_ejected(endpoint, now) {
            return None;
        }
        let ejected = list.iter().filter(|e| self.is_ejected(e, now)).count();
        let others_healthy = list.len() - ejected > 1;
        let within_share = ejected == 0
            || (ejected + 1) * 100 <= list.len() * self.outlier.max_ejection_percent as usize;
        if !others_healthy || !within_share {
            // The failures stay counted: the instance goes as soon as another one is healthy again.
            return None;
        }
        let mut ejections = endpoint
            .ejections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Like Envoy, the multiplier shrinks by one for each base period spent healthy since the last
        // ejection ended, so an instance that failed once long ago starts again from the base time.
        let base = self.outlier.base_ejection.max(Duration::from_millis(1));
        let last_end = endpoint.ejected_until.load(Ordering::Relaxed);
        if last_end != 0 {
            let healthy_for = self.nanos(now).saturating_sub(last_end);
            let periods = healthy_for / base.as_nanos().max(1) as u64;
            *ejections = ejections.saturating_sub(periods.min(u64::from(u32::MAX)) as u32);
        }
        *ejections = ejections.saturating_add(1);
        let length = base
            .saturating_mul(*ejections)
            .min(self.outlier.max_ejection.max(base));
        endpoint
            .ejected_until
            .store(self.nanos(now + length), Ordering::Relaxed);
        endpoint.consecutive_failures.store(0, Ordering::Relaxed);
        Some(length)
    }

    /// Each instance for `/readyz` and the admin view.
    pub(crate) fn report(&self) -> Vec<Value> {
        let now = Instant::now();
        let now_nanos = self.nanos(now);
        self.current()
            .iter()
            .map(|endpoint| {
                let until = endpoint.ejected_until.load(Ordering::Relaxed);
                let ejected_for =
                    (until > now_nanos).then(|| Duration::from_nanos(until - now_nanos));
                let ejected_until = ejected_for.map(|left| {
                    chrono::DateTime::<chrono::Utc>::from(SystemTime::now() + left)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                });
                json!({
                    "url": endpoint.url.as_str(),
                    "state": if ejected_for.is_some() { "ejected" } else { "healthy" },
                    "outstanding": endpoint.outstanding.load(Ordering::Relaxed),
                    "consecutive_failures": endpoint.consecutive_failures.load(Ordering::Relaxed),
                    "ejected_until": ejected_until,
                    "ejected_for_ms": ejected_for.map(|d| d.as_millis() as u64),
                })
            })
            .collect()
    }
}

/// An index's bit in a `tried` set; indexes past 63 share bits, which only makes a retry less picky.
pub(crate) fn bit(index: usize) -> u64 {
    1 << (index % 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(urls: Vec<Url>) -> Snapshot {
        Snapshot {
            source: "static",
            endpoints: urls,
            known: true,
            error: None,
            changed_at: None,
        }
    }

    fn endpoints(count: usize, outlier: OutlierConfig) -> Endpoints {
        balanced(count, outlier, Balancing::LeastOutstanding)
    }

    fn balanced(count: usize, outlier: OutlierConfig, balancing: Balancing) -> Endpoints {
        let urls = (0..count)
            .map(|i| Url::parse(&format!("http://127.0.0.1:{}", 4000 + i)).unwrap())
            .collect();
        Endpoints::new(
            snapshot(urls),
            balancing,
            outlier,
            PoolShape {
                workers: 1,
                max_idle: 1,
            },
        )
    }

    fn outlier(failures: u32) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: failures,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejection_percent: 100,
        }
    }

    #[test]
    fn equally_idle_instances_take_turns() {
        let set = endpoints(3, outlier(5));
        let list = set.current();
        let mut picks: Vec<usize> = (0..6).filter_map(|_| set.pick(&list, 0)).collect();
        picks.sort_unstable();
        assert_eq!(picks, vec![0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn the_instance_with_fewest_requests_in_flight_is_picked() {
        let set = endpoints(2, outlier(5));
        let list = set.current();
        let _busy = list[0].start();
        for _ in 0..4 {
            assert_eq!(set.pick(&list, 0), Some(1));
        }
    }

    #[test]
    fn a_retry_goes_to_an_instance_not_tried_yet() {
        let set = endpoints(2, outlier(5));
        let list = set.current();
        for _ in 0..4 {
            assert_eq!(set.pick(&list, bit(0)), Some(1));
        }
        assert!(set.pick(&list, bit(0) | bit(1)).is_some());
    }

    #[test]
    fn consecutive_failures_eject_an_instance_for_longer_each_time_but_never_the_last() {
        let set = endpoints(2, outlier(3));
        let list = set.current();
        assert_eq!(set.record(&list, 0, true), None);
        assert_eq!(set.record(&list, 0, false), None);
        assert_eq!(set.record(&list, 0, true), None);
        assert_eq!(set.record(&list, 0, true), None);
        assert_eq!(set.record(&list, 0, true), Some(Duration::from_secs(10)));
        for _ in 0..4 {
            assert_eq!(set.pick(&list, 0), Some(1));
        }
        // The other instance is now the last healthy one: it is never ejected.
        for _ in 0..10 {
            assert_eq!(set.record(&list, 1, true), None);
        }
        list[0].ejected_until.store(1, Ordering::Relaxed);
        for _ in 0..3 {
            set.record(&list, 0, true);
        }
        // Second ejection in a row: twice the base; a third would be capped at the maximum.
        let until = list[0].ejected_until.load(Ordering::Relaxed);
        let length = Duration::from_nanos(until - set.nanos(Instant::now()));
        assert!(length > Duration::from_secs(19) && length <= Duration::from_secs(20));
    }

    #[test]
    fn no_more_than_the_allowed_share_of_instances_is_ejected_at_once_but_always_one() {
        let set = endpoints(
            4,
            OutlierConfig {
                max_ejection_percent: 30,
                ..outlier(1)
            },
        );
        let list = set.current();
        // 30% of four instances is less than one, yet one may always go.
        assert!(set.record(&list, 0, true).is_some());
        assert_eq!(set.record(&list, 1, true), None);
        assert_eq!(set.record(&list, 2, true), None);

        let set = endpoints(
            4,
            OutlierConfig {
                max_ejection_percent: 50,
                ..outlier(1)
            },
        );
        let list = set.current();
        assert!(set.record(&list, 0, true).is_some());
        assert!(set.record(&list, 1, true).is_some());
        assert_eq!(set.record(&list, 2, true), None);
    }

    #[test]
    fn replacing_the_set_keeps_the_state_of_instances_that_stay() {
        let set = endpoints(2, outlier(1));
        let list = set.current();
        let _in_flight = list[1].start();
        let kept = list[1].url.clone();
        set.apply(snapshot(vec![
            kept,
            Url::parse("http://127.0.0.1:5000").unwrap(),
        ]));
        let report = set.report();
        assert_eq!(report[0]["outstanding"], 1);
        assert_eq!(report[1]["url"], "http://127.0.0.1:5000/");
        // The removed instance lives on in the list its requests started with.
        assert_eq!(list[0].url.as_str(), "http://127.0.0.1:4000/");
        assert_eq!(set.current().len(), 2);
    }

    #[test]
    fn round_robin_ignores_requests_in_flight() {
        let set = balanced(2, outlier(5), Balancing::RoundRobin);
        let list = set.current();
        let _busy = list[0].start();
        let mut picks: Vec<usize> = (0..4).filter_map(|_| set.pick(&list, 0)).collect();
        picks.sort_unstable();
        assert_eq!(picks, vec![0, 0, 1, 1]);
    }
}
