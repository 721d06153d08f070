//! `discovery.backend = "consul"`, through the local agent's HTTP API (the original deployment's choice):
//! - `PUT /v1/agent/service/register` with the instance's address, port and version, and an HTTP check of
//!   its `/health` that the agent runs every `discovery.consul_check_interval_ms`; an instance failing it
//!   for `discovery.consul_deregister_critical_after_s` is removed by the agent (a killed instance whose
//!   deregistration never came);
//! - `PUT /v1/agent/service/deregister/<id>` on shutdown;
//! - `GET /v1/health/service/<name>?passing` as a blocking query: `index` is the last `X-Consul-Index`, so
//!   the agent answers when the healthy set changes or after `wait`. An index that goes backwards (a
//!   restored or restarted server) starts over from 0, and an index below 1 is taken as 1, as Consul's
//!   documentation asks of clients.
//!
//! `CONSUL_HTTP_TOKEN` goes with every request as `X-Consul-Token`.
//!
//! No Consul server can be installed where LogiCore's tests run: this backend is tested against a fake of
//! exactly these endpoints (`testkit::registries::consul`).

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use super::{DiscoveryError, Follower, Instance, Registry, endpoint_url};
use crate::config::{DiscoverySettings, Secret};

/// The shortest time between two health queries, should the agent answer without blocking.
const MIN_QUERY_GAP: Duration = Duration::from_millis(50);

#[derive(Clone)]
struct Agent {
    client: reqwest::Client,
    base: Url,
    token: Secret,
}

impl Agent {
    fn url(&self, path: &[&str]) -> Result<Url, DiscoveryError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| DiscoveryError::Malformed("the Consul address has no path".into()))?
            .pop_if_empty()
            .extend(path);
        Ok(url)
    }

    /// A request to `url` carrying the ACL token.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.client.request(method, url);
        if self.token.is_empty() {
            request
        } else {
            request.header("X-Consul-Token", self.token.expose())
        }
    }
}

/// What the agent said when it did not say yes.
async fn refusal(response: reqwest::Response) -> DiscoveryError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let body: String = body.chars().take(200).collect();
    DiscoveryError::Refused(format!(
        "Consul answered {}: {}",
        status.as_u16(),
        body.trim()
    ))
}

fn unreachable(error: reqwest::Error) -> DiscoveryError {
    DiscoveryError::Unreachable(format!("Consul: {error}"))
}

pub struct ConsulRegistry {
    agent: Agent,
    check_interval: Duration,
    deregister_after_s: u64,
    wait: Duration,
}

impl ConsulRegistry {
    pub fn new(settings: &DiscoverySettings) -> Result<Self, DiscoveryError> {
        let host = settings.consul_host.trim();
        let host = match host.parse::<std::net::Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => host.to_owned(),
        };
        let base =
            Url::parse(&format!("http://{host}:{}/", settings.consul_port)).map_err(|e| {
                DiscoveryError::Malformed(format!("discovery.consul_host {host:?}: {e}"))
            })?;
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .map_err(unreachable)?;
        Ok(Self {
            agent: Agent {
                client,
                base,
                token: settings.consul_token.clone(),
            },
            check_interval: Duration::from_millis(settings.consul_check_interval_ms),
            deregister_after_s: settings.consul_deregister_critical_after_s,
            wait: Duration::from_millis(settings.refresh_interval_ms),
        })
    }
}

impl Registry for ConsulRegistry {
    fn backend(&self) -> &'static str {
        "consul"
    }

    fn registers(&self) -> bool {
        true
    }

    fn register<'a>(&'a self, instance: &'a Instance) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move {
            let url = instance.url()?;
            let interval = self.check_interval.as_millis();
            // The check must give up before the next one is due.
            let timeout = self.check_interval.min(Duration::from_secs(5)).as_millis();
            let body = json!({
                "ID": instance.id,
                "Name": instance.service,
                "Address": instance.address,
                "Port": instance.port,
                "Meta": { "version": instance.version },
                "Tags": ["logicore"],
                "Check": {
                    "Name": format!("{} /health", instance.service),
                    "HTTP": format!("{}health", url),
                    "Interval": format!("{interval}ms"),
                    "Timeout": format!("{timeout}ms"),
                    "DeregisterCriticalServiceAfter": format!("{}s", self.deregister_after_s),
                },
            });
            let response = self
                .agent
                .request(
                    Method::PUT,
                    self.agent.url(&["v1", "agent", "service", "register"])?,
                )
                .json(&body)
                .send()
                .await
                .map_err(unreachable)?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(refusal(response).await)
            }
        })
    }

    fn deregister<'a>(
        &'a self,
        instance: &'a Instance,
    ) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move {
            let response = self
                .agent
                .request(
                    Method::PUT,
                    self.agent
                        .url(&["v1", "agent", "service", "deregister", &instance.id])?,
                )
                .send()
                .await
                .map_err(unreachable)?;
            match response.status() {
                status if status.is_success() => Ok(()),
                // Already gone (the agent reaped it, or it restarted without it): what was asked for.
                StatusCode::NOT_FOUND => {
                    tracing::debug!(id = %instance.id, "Consul did not know the instance any more");
                    Ok(())
                }
                _ => Err(refusal(response).await),
            }
        })
    }

    fn follow(&self, service: &str, _: &[Url]) -> Box<dyn Follower> {
        Box::new(ConsulFollower {
            agent: self.agent.clone(),
            service: service.to_owned(),
            wait: self.wait,
            index: 0,
            last_query: None,
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    node: Option<Node>,
    service: EntryService,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Node {
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EntryService {
    #[serde(default)]
    address: String,
    port: u16,
}

struct ConsulFollower {
    agent: Agent,
    service: String,
    wait: Duration,
    /// The last `X-Consul-Index`; 0 asks without blocking.
    index: u64,
    last_query: Option<Instant>,
}

impl ConsulFollower {
    /// The index to block on next, given the one just answered (Consul's rules for clients).
    fn next_index(&self, answered: u64) -> u64 {
        if answered < self.index {
            0
        } else {
            answered.max(1)
        }
    }
}

impl Follower for ConsulFollower {
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<Url>, DiscoveryError>> {
        Box::pin(async move {
            if let Some(last) = self.last_query {
                tokio::time::sleep_until((last + MIN_QUERY_GAP).into()).await;
            }
            self.last_query = Some(Instant::now());
            let mut url = self
                .agent
                .url(&["v1", "health", "service", &self.service])?;
            url.set_query(Some("passing"));
            url.query_pairs_mut()
                .append_pair("wait", &format!("{}ms", self.wait.as_millis()));
            if self.index > 0 {
                url.query_pairs_mut()
                    .append_pair("index", &self.index.to_string());
            }
            let response = self
                .agent
                .request(Method::GET, url)
                // Consul adds up to wait/16 of jitter to a blocking query.
                .timeout(self.wait + self.wait / 16 + Duration::from_secs(5))
                .send()
                .await;
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    self.index = 0;
                    return Err(unreachable(error));
                }
            };
            if !response.status().is_success() {
                self.index = 0;
                return Err(refusal(response).await);
            }
            let answered = response
                .headers()
                .get("X-Consul-Index")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            let Some(answered) = answered else {
                self.index = 0;
                return Err(DiscoveryError::Malformed(
                    "Consul's answer has no X-Consul-Index".into(),
                ));
            };
            let entries: Vec<Entry> = match response.json().await {
                Ok(entries) => entries,
                Err(error) => {
                    self.index = 0;
                    return Err(DiscoveryError::Malformed(format!(
                        "Consul's health answer: {error}"
                    )));
                }
            };
            self.index = self.next_index(answered);
            entries
                .into_iter()
                .map(|entry| {
                    // An instance registered without an address is reached at its node's.
                    let address = if entry.service.address.is_empty() {
                        entry.node.map(|node| node.address).unwrap_or_default()
                    } else {
                        entry.service.address
                    };
                    endpoint_url(&address, entry.service.port)
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follower(index: u64) -> ConsulFollower {
        let settings = DiscoverySettings {
            backend: "consul".into(),
            etcd_endpoints: String::new(),
            etcd_prefix: "/".into(),
            etcd_lease_ttl_s: 3,
            consul_host: "127.0.0.1".into(),
            consul_port: 8500,
            consul_token: Secret::default(),
            consul_check_interval_ms: 1000,
            consul_deregister_critical_after_s: 60,
            dns_server: String::new(),
            refresh_interval_ms: 1000,
            deregister_delay_ms: 0,
        };
        let registry = ConsulRegistry::new(&settings).unwrap();
        ConsulFollower {
            agent: registry.agent,
            service: "users".into(),
            wait: registry.wait,
            index,
            last_query: None,
        }
    }

    #[test]
    fn the_index_resets_when_it_goes_backwards_and_is_never_below_one() {
        assert_eq!(follower(10).next_index(12), 12);
        assert_eq!(follower(10).next_index(10), 10);
        assert_eq!(follower(10).next_index(3), 0);
        assert_eq!(follower(0).next_index(0), 1);
    }
}
