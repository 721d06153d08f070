//! `discovery.backend = "etcd"`: an instance is the key `<prefix><service>/<instance id>` (its address,
//! port and version as JSON) attached to a lease of `discovery.etcd_lease_ttl_s` that the instance keeps
//! alive. The lease is its health: a killed instance stops renewing and its key is deleted when the lease
//! runs out. Deregistering revokes the lease, which deletes the key at once.
//!
//! When the keep-alive fails (etcd restarted, the lease expired during a partition), the instance grants a
//! new lease and writes its key again, backing off while etcd stays unreachable.
//!
//! The gateway reads the service's prefix and then watches it from the revision it read at, so no change
//! between the read and the watch is missed; a broken or compacted watch starts over with a fresh read.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions, WatchStream,
};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{DiscoveryError, Follower, Instance, Registry, endpoint_url};
use crate::backoff::Backoff;
use crate::config::DiscoverySettings;

/// What an instance's key holds.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    service: String,
    address: String,
    port: u16,
    version: String,
}

/// One client for the process, connected on first use; tonic reconnects it by itself.
struct Connection {
    endpoints: Vec<String>,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Connection {
    async fn client(&self) -> Result<Client, DiscoveryError> {
        let mut slot = self.client.lock().await;
        if let Some(client) = &*slot {
            return Ok(client.clone());
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(5))
            // Finds a silently dead connection (a partition) even while nothing is sent on it.
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        let client = Client::connect(&self.endpoints, Some(options))
            .await
            .map_err(unreachable)?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

fn unreachable(error: etcd_client::Error) -> DiscoveryError {
    DiscoveryError::Unreachable(format!("etcd: {error}"))
}

/// An instance this process registered: its current lease, and the keep-alive task's stop.
struct Registered {
    lease: Arc<AtomicI64>,
    stop: CancellationToken,
}

pub struct EtcdRegistry {
    connection: Arc<Connection>,
    prefix: String,
    ttl: i64,
    registered: Mutex<HashMap<String, Registered>>,
}

impl EtcdRegistry {
    pub fn new(settings: &DiscoverySettings) -> Self {
        Self {
            connection: Arc::new(Connection {
                endpoints: settings
                    .etcd_endpoints
                    .split(',')
                    .map(|endpoint| endpoint.trim().to_owned())
                    .collect(),
                client: tokio::sync::Mutex::new(None),
            }),
            prefix: settings.etcd_prefix.clone(),
            ttl: i64::try_from(settings.etcd_lease_ttl_s).unwrap_or(i64::MAX),
            registered: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, instance: &Instance) -> String {
        format!("{}{}/{}", self.prefix, instance.service, instance.id)
    }
}

/// Grants a lease and writes `key` under it; returns the lease.
async fn put_under_new_lease(
    client: &mut Client,
    key: &str,
    value: &[u8],
    ttl: i64,
) -> Result<i64, DiscoveryError> {
    let lease = client
        .lease_grant(ttl, None)
        .await
        .map_err(unreachable)?
        .id();
    client
        .put(key, value, Some(PutOptions::new().with_lease(lease)))
        .await
        .map_err(unreachable)?;
    Ok(lease)
}

impl Registry for EtcdRegistry {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    fn registers(&self) -> bool {
        true
    }

    fn register<'a>(&'a self, instance: &'a Instance) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move {
            let key = self.key(instance);
            let value = serde_json::to_vec(&Record {
                id: instance.id.clone(),
                service: instance.service.clone(),
                address: instance.address.clone(),
                port: instance.port,
                version: instance.version.clone(),
            })
            .map_err(|e| DiscoveryError::Malformed(e.to_string()))?;
            let mut client = self.connection.client().await?;
            let lease = put_under_new_lease(&mut client, &key, &value, self.ttl).await?;
            let registered = Registered {
                lease: Arc::new(AtomicI64::new(lease)),
                stop: CancellationToken::new(),
            };
            tokio::spawn(keep_alive(
                client,
                key,
                value,
                self.ttl,
                registered.lease.clone(),
                registered.stop.clone(),
            ));
            let replaced = self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(instance.id.clone(), registered);
            if let Some(replaced) = replaced {
                replaced.stop.cancel();
            }
            Ok(())
        })
    }

    fn deregister<'a>(
        &'a self,
        instance: &'a Instance,
    ) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move {
            let registered = self
                .registered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&instance.id);
            let Some(registered) = registered else {
                return Ok(());
            };
            registered.stop.cancel();
            let mut client = self.connection.client().await?;
            // Revoking deletes the key with it; the delete covers a key written under a lease granted
            // while this call was on its way.
            let lease = registered.lease.load(Ordering::Acquire);
            if let Err(error) = client.lease_revoke(lease).await {
                tracing::debug!(%error, lease, "revoking the lease failed; deleting the key");
            }
            client
                .delete(self.key(instance), None)
                .await
                .map_err(unreachable)?;
            Ok(())
        })
    }

    fn follow(&self, service: &str, _: &[Url]) -> Box<dyn Follower> {
        Box::new(EtcdFollower {
            connection: self.connection.clone(),
            prefix: format!("{}{service}/", self.prefix),
            members: BTreeMap::new(),
            watch: None,
        })
    }
}

/// Renews the lease every third of its TTL until `stop`; when it is lost, registers again under a new
/// one, backing off while etcd is unreachable.
async fn keep_alive(
    mut client: Client,
    key: String,
    value: Vec<u8>,
    ttl: i64,
    lease: Arc<AtomicI64>,
    stop: CancellationToken,
) {
    let period = Duration::from_millis((ttl.max(1) as u64) * 1000 / 3);
    let mut backoff = Backoff::new(
        Duration::from_millis(200),
        period.max(Duration::from_secs(1)),
    );
    loop {
        let lost = tokio::select! {
            () = stop.cancelled() => return,
            lost = renew(&mut client, lease.load(Ordering::Acquire), period) => lost,
        };
        tracing::warn!(key, reason = %lost, "the etcd lease was lost; registering again");
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
            match put_under_new_lease(&mut client, &key, &value, ttl).await {
                Ok(renewed) => {
                    lease.store(renewed, Ordering::Release);
                    backoff.reset();
                    tracing::info!(key, "registered again in etcd");
                    break;
                }
                Err(error) => tracing::debug!(key, %error, "registering again failed"),
            }
        }
    }
}

/// Keeps `lease` alive until that fails; returns why.
async fn renew(client: &mut Client, lease: i64, period: Duration) -> String {
    let (mut keeper, mut responses) = match client.lease_keep_alive(lease).await {
        Ok(streams) => streams,
        Err(error) => return error.to_string(),
    };
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        if let Err(error) = keeper.keep_alive().await {
            return error.to_string();
        }
        match tokio::time::timeout(period, responses.message()).await {
            Ok(Ok(Some(response))) if response.ttl() > 0 => {}
            Ok(Ok(Some(_))) => return "the lease expired".to_owned(),
            Ok(Ok(None)) => return "the keep-alive stream ended".to_owned(),
            Ok(Err(error)) => return error.to_string(),
            Err(_) => return "no keep-alive answer in time".to_owned(),
        }
    }
}

struct EtcdFollower {
    connection: Arc<Connection>,
    /// `<prefix><service>/`.
    prefix: String,
    /// Key → endpoint, as of the last event.
    members: BTreeMap<String, Url>,
    /// The watch from the last full read on; `None` before it and after an error.
    watch: Option<WatchStream>,
}

impl EtcdFollower {
    fn endpoints(&self) -> Vec<Url> {
        self.members.values().cloned().collect()
    }

    /// Reads the whole prefix and starts watching right after that revision.
    async fn read(&mut self) -> Result<Vec<Url>, DiscoveryError> {
        let mut client = self.connection.client().await?;
        let response = client
            .get(self.prefix.as_str(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(unreachable)?;
        let revision = response.header().map_or(0, |header| header.revision());
        self.members.clear();
        for kv in response.kvs() {
            self.apply_put(kv.key(), kv.value());
        }
        let watch = client
            .watch(
                self.prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1),
                ),
            )
            .await
            .map_err(unreachable)?;
        self.watch = Some(watch);
        Ok(self.endpoints())
    }

    fn apply_put(&mut self, key: &[u8], value: &[u8]) {
        let key = String::from_utf8_lossy(key).into_owned();
        let endpoint = serde_json::from_slice::<Record>(value)
            .map_err(|e| e.to_string())
            .and_then(|record| {
                endpoint_url(&record.address, record.port).map_err(|e| e.to_string())
            });
        match endpoint {
            Ok(url) => {
                self.members.insert(key, url);
            }
            // One bad key must not hide the others; it is left out and said so.
            Err(error) => {
                tracing::warn!(key, %error, "ignoring an etcd registration that is not an instance");
                self.members.remove(&key);
            }
        }
    }
}

impl Follower for EtcdFollower {
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<Url>, DiscoveryError>> {
        Box::pin(async move {
            let Some(mut watch) = self.watch.take() else {
                return self.read().await;
            };
            loop {
                let response = match watch.message().await {
                    Ok(Some(response)) => response,
                    Ok(None) => {
                        return Err(DiscoveryError::Unreachable(
                            "etcd: the watch stream ended".into(),
                        ));
                    }
                    Err(error) => return Err(unreachable(error)),
                };
                if response.canceled() {
                    return Err(DiscoveryError::Unreachable(format!(
                        "etcd cancelled the watch (compacted at revision {}): {}",
                        response.compact_revision(),
                        response.cancel_reason()
                    )));
                }
                if response.events().is_empty() {
                    continue;
                }
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    match event.event_type() {
                        EventType::Put => self.apply_put(kv.key(), kv.value()),
                        EventType::Delete => {
                            self.members
                                .remove(String::from_utf8_lossy(kv.key()).as_ref());
                        }
                    }
                }
                self.watch = Some(watch);
                return Ok(self.endpoints());
            }
        })
    }
}
