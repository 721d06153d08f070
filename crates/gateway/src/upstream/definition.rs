//! What the gateway is told of an upstream service: its name and its instances' base URLs.

use url::Url;

use crate::error::GatewayError;

/// A service the gateway forwards to: its name in the route table and its instances' base URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    /// `http://host:port` with an optional path prefix, one per instance; the request's path and query
    /// are appended to it. Never empty.
    pub endpoints: Vec<Url>,
}

impl Upstream {
    /// Parses and checks a base URL or a comma-separated list of them: plain `http` with a host, no
    /// query or fragment to collide with the request's own.
    pub fn new(name: impl Into<String>, base_urls: &str) -> Result<Self, GatewayError> {
        let name = name.into();
        let invalid = |reason: &str| GatewayError::Config {
            key: format!("gateway.upstreams.{name}"),
            reason: reason.to_owned(),
        };
        let mut endpoints = Vec::new();
        for entry in base_urls.split(',').map(str::trim) {
            let url = Url::parse(entry).map_err(|e| invalid(&format!("not a URL: {e}")))?;
            if url.scheme() != "http" || url.host().is_none() {
                return Err(invalid("must be an http:// URL with a host"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(invalid("must not have a query or fragment"));
            }
            if endpoints.contains(&url) {
                return Err(invalid(&format!("{url} is listed twice")));
            }
            endpoints.push(url);
        }
        Ok(Self { name, endpoints })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_must_be_plain_http_with_a_host() {
        assert!(Upstream::new("users", "http://127.0.0.1:4001").is_ok());
        assert!(Upstream::new("users", "https://users.internal").is_err());
        assert!(Upstream::new("users", "http://users.internal/?a=b").is_err());
        assert!(Upstream::new("users", "users.internal:4001").is_err());
    }

    #[test]
    fn a_comma_separated_list_names_several_instances_each_checked() {
        let upstream =
            Upstream::new("users", "http://10.0.0.1:4001, http://10.0.0.2:4001/").unwrap();
        assert_eq!(upstream.endpoints.len(), 2);
        assert_eq!(upstream.endpoints[1].as_str(), "http://10.0.0.2:4001/");
        assert!(Upstream::new("users", "http://10.0.0.1:4001,").is_err());
        assert!(Upstream::new("users", "http://10.0.0.1:4001,https://10.0.0.2").is_err());
        assert!(Upstream::new("users", "http://10.0.0.1:4001,http://10.0.0.1:4001").is_err());
    }
}
