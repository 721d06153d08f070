//! `discovery.backend = "dns"`: each configured upstream URL's host is looked up in DNS, the Kubernetes way
//! (a headless Service has one A/AAAA record per ready pod). A host starting with `_`
//! (`_http._tcp.users.logicore.svc.cluster.local`) is looked up by SRV records, whose targets and ports
//! become the endpoints. An IP address stays as it is.
//!
//! The records are read again when the shortest TTL among them runs out, but no sooner than a second
//! (records with TTL 0 would otherwise be asked for in a loop) and no later than
//! `discovery.refresh_interval_ms`. The resolver keeps no cache of its own: that wait is the cache.
//!
//! Nothing registers with DNS: whoever serves the records (Kubernetes, from the pods' readiness) does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use url::Url;

use super::{DiscoveryError, Follower, Registry};
use crate::config::DiscoverySettings;

/// The shortest wait between two reads of the same records.
const MIN_REFRESH: Duration = Duration::from_secs(1);

/// `discovery.dns_server`: `IP` (port 53) or `IP:port`.
pub fn server_address(raw: &str) -> Option<SocketAddr> {
    raw.parse::<SocketAddr>()
        .ok()
        .or_else(|| raw.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

pub struct DnsRegistry {
    resolver: Arc<TokioResolver>,
    refresh: Duration,
}

impl DnsRegistry {
    pub fn new(settings: &DiscoverySettings) -> Result<Self, DiscoveryError> {
        let unusable = |e: NetError| DiscoveryError::Malformed(format!("DNS resolver: {e}"));
        let mut builder = if settings.dns_server.is_empty() {
            TokioResolver::builder_tokio().map_err(unusable)?
        } else {
            let server = server_address(&settings.dns_server).ok_or_else(|| {
                DiscoveryError::Malformed(format!(
                    "discovery.dns_server {:?} is not IP or IP:port",
                    settings.dns_server
                ))
            })?;
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                TokioRuntimeProvider::default(),
            );
            // A named server is the authority: a stale /etc/hosts entry must not shadow it.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        options.cache_size = 0;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = Duration::from_secs(2);
        options.attempts = 1;
        Ok(Self {
            resolver: Arc::new(builder.build().map_err(unusable)?),
            refresh: Duration::from_millis(settings.refresh_interval_ms),
        })
    }
}

impl Registry for DnsRegistry {
    fn backend(&self) -> &'static str {
        "dns"
    }

    fn follow(&self, _: &str, configured: &[Url]) -> Box<dyn Follower> {
        Box::new(DnsFollower {
            resolver: self.resolver.clone(),
            names: configured.to_vec(),
            refresh: self.refresh,
            next_read: None,
        })
    }
}

struct DnsFollower {
    resolver: Arc<TokioResolver>,
    /// The configured URLs whose hosts are resolved.
    names: Vec<Url>,
    refresh: Duration,
    /// When the records read last expire; `None` before the first read and after an error.
    next_read: Option<Instant>,
}

impl Follower for DnsFollower {
    fn next(&mut self) -> BoxFuture<'_, Result<Vec<Url>, DiscoveryError>> {
        Box::pin(async move {
            if let Some(at) = self.next_read.take() {
                tokio::time::sleep_until(at.into()).await;
            }
            let now = Instant::now();
            let mut valid_until = now + self.refresh;
            let mut endpoints = Vec::new();
            for name in &self.names {
                let (found, until) = resolve(&self.resolver, name).await?;
                endpoints.extend(found);
                valid_until = valid_until.min(until);
            }
            self.next_read = Some(valid_until.max(now + MIN_REFRESH));
            Ok(endpoints)
        })
    }
}

/// The endpoints one configured URL stands for, and until when its records hold.
async fn resolve(
    resolver: &TokioResolver,
    configured: &Url,
) -> Result<(Vec<Url>, Instant), DiscoveryError> {
    let far = Instant::now() + Duration::from_secs(86_400);
    let Some(host) = configured.host_str() else {
        return Ok((Vec::new(), far));
    };
    if host.parse::<IpAddr>().is_ok() || host.starts_with('[') {
        return Ok((vec![configured.clone()], far));
    }
    let port = configured.port_or_known_default().unwrap_or(80);
    if host.starts_with('_') {
        let lookup = match resolver.lookup(host, RecordType::SRV).await {
            Ok(lookup) => lookup,
            Err(error) if error.is_no_records_found() => return Ok((Vec::new(), far)),
            Err(error) => return Err(unreachable(host, &error)),
        };
        let mut until = lookup.valid_until();
        let mut endpoints = Vec::new();
        for record in lookup.answers() {
            let RData::SRV(srv) = &record.data else {
                continue;
            };
            let target = srv.target.to_utf8();
            let (ips, target_until) = addresses(resolver, &target).await?;
            until = until.min(target_until);
            for ip in ips {
                endpoints.push(with_address(configured, ip, srv.port)?);
            }
        }
        return Ok((endpoints, until));
    }
    let (ips, until) = addresses(resolver, host).await?;
    let endpoints = ips
        .into_iter()
        .map(|ip| with_address(configured, ip, port))
        .collect::<Result<_, _>>()?;
    Ok((endpoints, until))
}

/// A name's A and AAAA records; no records is no addresses, not an error (a Service with no ready pod).
async fn addresses(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Vec<IpAddr>, Instant), DiscoveryError> {
    match resolver.lookup_ip(name).await {
        Ok(lookup) => Ok((lookup.iter().collect(), lookup.valid_until())),
        Err(error) if error.is_no_records_found() => Ok((Vec::new(), Instant::now() + MIN_REFRESH)),
        Err(error) => Err(unreachable(name, &error)),
    }
}

fn unreachable(name: &str, error: &NetError) -> DiscoveryError {
    DiscoveryError::Unreachable(format!("looking up {name}: {error}"))
}

/// `configured` with its host replaced by `ip` and its port by `port`; the path prefix stays.
fn with_address(configured: &Url, ip: IpAddr, port: u16) -> Result<Url, DiscoveryError> {
    let mut url = configured.clone();
    url.set_ip_host(ip)
        .and_then(|()| url.set_port(Some(port)))
        .map_err(|()| DiscoveryError::Malformed(format!("{ip}:{port} cannot be a URL's host")))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_server_is_an_ip_with_an_optional_port() {
        assert_eq!(
            server_address("10.0.0.10"),
            Some("10.0.0.10:53".parse().unwrap())
        );
        assert_eq!(
            server_address("127.0.0.1:5353"),
            Some("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            server_address("[::1]:53"),
            Some("[::1]:53".parse().unwrap())
        );
        assert_eq!(server_address("dns.internal"), None);
        assert_eq!(server_address("127.0.0.1:"), None);
    }

    #[test]
    fn a_resolved_address_keeps_the_configured_path_prefix() {
        let configured = Url::parse("http://users.logicore.svc:4001/base").unwrap();
        let url = with_address(&configured, "10.1.0.7".parse().unwrap(), 4001).unwrap();
        assert_eq!(url.as_str(), "http://10.1.0.7:4001/base");
        let v6 = with_address(&configured, "fd00::7".parse().unwrap(), 4002).unwrap();
        assert_eq!(v6.as_str(), "http://[fd00::7]:4002/base");
    }
}
