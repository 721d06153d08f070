//! Service discovery: where a service's instances are. An instance [`Discovery::register`]s itself once it
//! is ready and [`Discovery::deregister`]s first thing on shutdown; the gateway [`Discovery::watch`]es each
//! upstream and gets its current set of healthy endpoints whenever it changes.
//!
//! The backends (`discovery.backend`) share one [`Registry`] interface:
//! - `static`: the configured URLs, as written; nothing registers.
//! - `dns` ([`dns`]): the configured URLs' host names resolved by A/AAAA (or SRV) records, again when
//!   their TTL runs out; instances are registered by whoever serves the records (Kubernetes, for the pods
//!   of a headless Service that pass their readiness probe).
//! - `etcd` ([`etcd`]): a key per instance under a lease it keeps alive; the gateway watches the prefix.
//! - `consul` ([`consul`]): the local agent's HTTP API, with the agent checking each instance's `/health`.
//!
//! What is written once here for all of them: the follow loop that turns a backend's reads into
//! [`Snapshot`]s (only on change), keeps the last known set when the registry cannot be read (flagged
//! stale rather than emptied, so an outage of the registry does not take every route down), backs off
//! between failed reads, and counts it all in [`DiscoveryMetrics`].

pub mod consul;
pub mod dns;
pub mod etcd;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as MetricsRegistry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::backoff::Backoff;
use crate::config::{DiscoverySettings, Settings};

/// The longest a registration or deregistration may take: a shutdown must not hang on a dead registry.
pub const REGISTRY_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One running instance of a service, as it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The service's name (`users`, `inventory`, `orders`): what the gateway resolves its upstream by.
    pub service: String,
    /// Unique per instance and stable across its restarts: `<service>-<address>-<port>`.
    pub id: String,
    /// Where others call it (`service.advertise_address`): an IP or a host name.
    pub address: String,
    pub port: u16,
    /// The build's version (`service.version`), registered as metadata.
    pub version: String,
}

impl Instance {
    /// The instance of `service` listening on `port`, reached at `address`.
    pub fn new(service: &str, address: &str, port: u16, version: &str) -> Self {
        let id = format!("{service}-{address}-{port}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Self {
            service: service.to_owned(),
            id,
            address: address.to_owned(),
            port,
            version: version.to_owned(),
        }
    }

    /// Its base URL, as the gateway calls it.
    pub fn url(&self) -> Result<Url, DiscoveryError> {
        endpoint_url(&self.address, self.port)
    }
}

/// `http://address:port/`, an IPv6 address in brackets.
pub fn endpoint_url(address: &str, port: u16) -> Result<Url, DiscoveryError> {
    let host = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => address.trim_end_matches('.').to_owned(),
    };
    Url::parse(&format!("http://{host}:{port}/"))
        .map_err(|e| DiscoveryError::Malformed(format!("{address}:{port} is not an address: {e}")))
}

/// The address an instance registers: `service.advertise_address`, else `service.host` when it is not a
/// wildcard. `None`: nobody could call it at the configured address (validation refuses that combination
/// for the backends that register).
pub fn advertised_address(settings: &Settings) -> Option<String> {
    let service = &settings.service;
    if !service.advertise_address.is_empty() {
        return Some(service.advertise_address.clone());
    }
    match service.host.parse::<std::net::IpAddr>() {
        Ok(ip) if ip.is_unspecified() => None,
        _ => Some(service.host.clone()),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The registry could not be reached or did not answer in time.
    #[error("the registry is unreachable: {0}")]
    Unreachable(String),
    /// The registry answered with a refusal (an ACL, an unknown id).
    #[error("the registry refused: {0}")]
    Refused(String),
    /// An answer or a record that cannot be made into an endpoint.
    #[error("unusable registry data: {0}")]
    Malformed(String),
}

/// A registry backend. Reads are [`Follower`]s, so each backend waits for changes its own way (a watch
/// stream, a blocking query, a TTL) while the loop around them is shared.
pub trait Registry: Send + Sync + 'static {
    /// `static`, `dns`, `etcd` or `consul`.
    fn backend(&self) -> &'static str;

    /// Whether instances register themselves with it (etcd, Consul); with `static` and `dns` someone else
    /// publishes them and registering does nothing.
    fn registers(&self) -> bool {
        false
    }

    /// Adds `instance` to the registry and keeps it there (a lease kept alive, a health check) until
    /// [`Registry::deregister`].
    fn register<'a>(
        &'a self,
        _instance: &'a Instance,
    ) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async { Ok(()) })
    }

    /// Removes `instance` at once, so callers stop sending to it before it stops accepting.
    fn deregister<'a>(
        &'a self,
        _instance: &'a Instance,
    ) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async { Ok(()) })
    }

    /// A reader of `service`'s endpoints; `configured` is the upstream's configured URL list, which the
    /// `static` and `dns` backends read their names from.
    fn follow(&self, service: &str, configured: &[Url]) -> Box<dyn Follower>;
}

/// Reads one service's endpoints again and again.
pub trait Follower: Send {
    /// The service's endpoints: at once on the first call and on the first call after an error, otherwise
    /// once they may have changed (an unchanged answer is fine: the loop ignores it).
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<Url>, DiscoveryError>>;
}

/// What a watch knows of one service's endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The backend it comes from.
    pub source: &'static str,
    /// The endpoints, sorted; empty until the first read succeeded (see `known`).
    pub endpoints: Vec<Url>,
    /// Whether a read has ever succeeded.
    pub known: bool,
    /// Why the last read failed, while it keeps failing: the endpoints are then the last known ones.
    pub error: Option<String>,
    /// When the endpoints last changed.
    pub changed_at: Option<SystemTime>,
}

impl Snapshot {
    /// Serving the last known set because the registry cannot be read right now.
    pub fn is_stale(&self) -> bool {
        self.error.is_some()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    backend: &'static str,
    /// `register` or `deregister`.
    operation: &'static str,
    /// `ok` or `error`.
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WatchLabels {
    backend: &'static str,
    /// The watched service (the gateway's upstream). Not `service`: every metric of a process already has
    /// that label, naming the process's own service.
    upstream: String,
}

/// Registrations, watch updates and errors, and each watched service's endpoint count and staleness.
#[derive(Clone)]
pub struct DiscoveryMetrics {
    operations: Family<OperationLabels, Counter>,
    updates: Family<WatchLabels, Counter>,
    errors: Family<WatchLabels, Counter>,
    endpoints: Family<WatchLabels, Gauge>,
    stale: Family<WatchLabels, Gauge>,
}

impl DiscoveryMetrics {
    pub fn register(registry: &mut MetricsRegistry) -> Self {
        let metrics = Self {
            operations: Family::default(),
            updates: Family::default(),
            errors: Family::default(),
            endpoints: Family::default(),
            stale: Family::default(),
        };
        registry.register(
            "discovery_registrations",
            "Registrations and deregistrations of this process's instances, by result",
            metrics.operations.clone(),
        );
        registry.register(
            "discovery_watch_updates",
            "Changes of a watched service's endpoint set",
            metrics.updates.clone(),
        );
        registry.register(
            "discovery_watch_errors",
            "Failed reads of a watched service's endpoints (the last known set stays in use)",
            metrics.errors.clone(),
        );
        registry.register(
            "discovery_endpoints",
            "Endpoints a watched service currently has",
            metrics.endpoints.clone(),
        );
        registry.register(
            "discovery_stale",
            "1 while a watched service's endpoints are the last known ones because the registry cannot be read",
            metrics.stale.clone(),
        );
        metrics
    }
}

/// The configured registry, with its metrics. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    registry: Arc<dyn Registry>,
    metrics: DiscoveryMetrics,
    /// Waits after a failed read, from the first retry to the longest.
    retry_min: Duration,
    retry_max: Duration,
}

impl Discovery {
    /// The backend `settings.backend` names, counting into `metrics`.
    pub fn from_settings(
        settings: &DiscoverySettings,
        metrics: DiscoveryMetrics,
    ) -> Result<Self, DiscoveryError> {
        let registry: Arc<dyn Registry> = match settings.backend.as_str() {
            "static" => Arc::new(StaticRegistry),
            "dns" => Arc::new(dns::DnsRegistry::new(settings)?),
            "etcd" => Arc::new(etcd::EtcdRegistry::new(settings)),
            "consul" => Arc::new(consul::ConsulRegistry::new(settings)?),
            other => {
                return Err(DiscoveryError::Malformed(format!(
                    "unknown discovery backend {other:?}"
                )));
            }
        };
        Ok(Self::new(registry, metrics))
    }

    pub fn new(registry: Arc<dyn Registry>, metrics: DiscoveryMetrics) -> Self {
        Self {
            registry,
            metrics,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }

    pub fn backend(&self) -> &'static str {
        self.registry.backend()
    }

    /// Whether instances register themselves (etcd, Consul).
    pub fn registers(&self) -> bool {
        self.registry.registers()
    }

    /// Registers `instance`, within [`REGISTRY_CALL_TIMEOUT`].
    pub async fn register(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        let outcome = self.bounded(self.registry.register(instance)).await;
        self.count("register", &outcome);
        outcome
    }

    /// Deregisters `instance`, within [`REGISTRY_CALL_TIMEOUT`].
    pub async fn deregister(&self, instance: &Instance) -> Result<(), DiscoveryError> {
        let outcome = self.bounded(self.registry.deregister(instance)).await;
        self.count("deregister", &outcome);
        outcome
    }

    async fn bounded(
        &self,
        call: BoxFuture<'_, Result<(), DiscoveryError>>,
    ) -> Result<(), DiscoveryError> {
        tokio::time::timeout(REGISTRY_CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| {
                Err(DiscoveryError::Unreachable(format!(
                    "no answer within {} s",
                    REGISTRY_CALL_TIMEOUT.as_secs()
                )))
            })
    }

    fn count(&self, operation: &'static str, outcome: &Result<(), DiscoveryError>) {
        self.metrics
            .operations
            .get_or_create(&OperationLabels {
                backend: self.backend(),
                operation,
                result: if outcome.is_ok() { "ok" } else { "error" },
            })
            .inc();
    }

    /// Follows `service`'s endpoints until `shutdown`: the receiver holds the latest [`Snapshot`] and is
    /// told of every change. `configured` is the upstream's configured URL list (see [`Registry::follow`]).
    pub fn watch(
        &self,
        service: &str,
        configured: &[Url],
        shutdown: CancellationToken,
    ) -> (watch::Receiver<Snapshot>, JoinHandle<()>) {
        let backend = self.backend();
        let (sender, receiver) = watch::channel(Snapshot {
            source: backend,
            endpoints: Vec::new(),
            known: false,
            error: None,
            changed_at: None,
        });
        let follower = self.registry.follow(service, configured);
        let labels = WatchLabels {
            backend,
            upstream: service.to_owned(),
        };
        let task = tokio::spawn(follow(
            follower,
            sender,
            self.metrics.clone(),
            labels,
            Backoff::new(self.retry_min, self.retry_max),
            shutdown,
        ));
        (receiver, task)
    }
}

/// The shared loop around a backend's reads.
async fn follow(
    mut follower: Box<dyn Follower>,
    sender: watch::Sender<Snapshot>,
    metrics: DiscoveryMetrics,
    labels: WatchLabels,
    mut backoff: Backoff,
    shutdown: CancellationToken,
) {
    loop {
        let read = tokio::select! {
            () = shutdown.cancelled() => return,
            read = follower.next() => read,
        };
        match read {
            Ok(mut endpoints) => {
                backoff.reset();
                endpoints.sort();
                endpoints.dedup();
                let mut changed = false;
                sender.send_if_modified(|snapshot| {
                    let recovered = snapshot.error.take().is_some();
                    changed = !snapshot.known || snapshot.endpoints != endpoints;
                    if changed {
                        snapshot.endpoints = endpoints;
                        snapshot.known = true;
                        snapshot.changed_at = Some(SystemTime::now());
                    }
                    changed || recovered
                });
                metrics.stale.get_or_create(&labels).set(0);
                if changed {
                    let snapshot = sender.borrow();
                    metrics.updates.get_or_create(&labels).inc();
                    metrics
                        .endpoints
                        .get_or_create(&labels)
                        .set(snapshot.endpoints.len() as i64);
                    tracing::info!(
                        upstream = %labels.upstream,
                        backend = labels.backend,
                        endpoints = ?snapshot.endpoints.iter().map(Url::as_str).collect::<Vec<_>>(),
                        "service endpoints changed"
                    );
                }
            }
            Err(error) => {
                metrics.errors.get_or_create(&labels).inc();
                metrics.stale.get_or_create(&labels).set(1);
                let message = error.to_string();
                let first = sender.send_if_modified(|snapshot| {
                    let first = snapshot.error.is_none();
                    snapshot.error = Some(message.clone());
                    first
                });
                if first {
                    tracing::warn!(
                        upstream = %labels.upstream,
                        backend = labels.backend,
                        error = %message,
                        "cannot read the service's endpoints; keeping the last known ones"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

/// `discovery.backend = "static"`: the configured lists, as they are.
struct StaticRegistry;

impl Registry for StaticRegistry {
    fn backend(&self) -> &'static str {
        "static"
    }

    fn follow(&self, _: &str, configured: &[Url]) -> Box<dyn Follower> {
        Box::new(StaticFollower(Some(configured.to_vec())))
    }
}

/// Gives the list once, then never anything new.
struct StaticFollower(Option<Vec<Url>>);

impl Follower for StaticFollower {
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<Url>, DiscoveryError>> {
        let first = self.0.take();
        Box::pin(async move {
            match first {
                Some(list) => Ok(list),
                None => futures::future::pending().await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Answers from a script, a few milliseconds apart so the test sees each, then waits forever.
    struct Scripted(VecDeque<Result<Vec<Url>, DiscoveryError>>);

    impl Follower for Scripted {
        fn next(&mut self) -> BoxFuture<'_, Result<Vec<Url>, DiscoveryError>> {
            let answer = self.0.pop_front();
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                match answer {
                    Some(answer) => answer,
                    None => futures::future::pending().await,
                }
            })
        }
    }

    fn url(port: u16) -> Url {
        endpoint_url("127.0.0.1", port).unwrap()
    }

    #[tokio::test]
    async fn a_failed_read_keeps_the_last_known_set_flagged_stale_until_a_read_succeeds() {
        let script = Scripted(VecDeque::from([
            Ok(vec![url(2), url(1)]),
            Err(DiscoveryError::Unreachable("connection refused".into())),
            Err(DiscoveryError::Unreachable("connection refused".into())),
            Ok(vec![url(1), url(2)]),
            Ok(vec![url(1)]),
        ]));
        let (sender, mut receiver) = watch::channel(Snapshot {
            source: "test",
            endpoints: Vec::new(),
            known: false,
            error: None,
            changed_at: None,
        });
        let mut registry = MetricsRegistry::default();
        let metrics = DiscoveryMetrics::register(&mut registry);
        let labels = WatchLabels {
            backend: "test",
            upstream: "users".into(),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(follow(
            Box::new(script),
            sender,
            metrics.clone(),
            labels.clone(),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(2)),
            shutdown.clone(),
        ));
        let mut seen = Vec::new();
        while seen.len() < 4 {
            receiver.changed().await.unwrap();
            let snapshot = receiver.borrow_and_update().clone();
            seen.push((snapshot.endpoints.len(), snapshot.is_stale()));
        }
        // Sorted on arrival, so the same set in another order is no change; two errors in a row are one
        // change (to stale), and the recovery with the same set is one more (back to fresh).
        assert_eq!(seen, vec![(2, false), (2, true), (2, false), (1, false)]);
        assert_eq!(metrics.updates.get_or_create(&labels).get(), 2);
        assert_eq!(metrics.errors.get_or_create(&labels).get(), 2);
        assert_eq!(metrics.endpoints.get_or_create(&labels).get(), 1);
        shutdown.cancel();
        task.await.unwrap();
    }

    #[test]
    fn an_instance_id_is_stable_and_safe_in_keys_and_urls() {
        let instance = Instance::new("users", "10.1.2.3", 4001, "1.0.0");
        assert_eq!(instance.id, "users-10-1-2-3-4001");
        assert_eq!(instance.url().unwrap().as_str(), "http://10.1.2.3:4001/");
        let v6 = Instance::new("users", "fd00::1", 4001, "1.0.0");
        assert_eq!(v6.url().unwrap().as_str(), "http://[fd00::1]:4001/");
    }
}
