//! Keys whose default follows other keys: a value nobody set is computed from the ones that were, so
//! moving one setting cannot leave a dependent one pointing at the old place.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::SectionSpec;
use super::tree::{self, Source};

/// Fills in every derived key that no file or variable set.
pub(super) fn apply(
    tree: &mut toml::Table,
    origin: &mut BTreeMap<String, Source>,
    services: &[SectionSpec],
) {
    upstreams(tree, origin, services);
    users_url(tree, origin);
    hs256_in_production(tree, origin);
    redis_enabled(tree, origin);
    consul_selected(tree, origin);
}

/// Naming a Consul agent (`CONSUL_HOST`) means registering with it, as the original deployment did; an
/// explicit `discovery.backend` wins.
fn consul_selected(tree: &mut toml::Table, origin: &mut BTreeMap<String, Source>) {
    if origin.contains_key("discovery.backend") || !origin.contains_key("discovery.consul_host") {
        return;
    }
    let named = tree::get(tree, "discovery.consul_host")
        .and_then(toml::Value::as_str)
        .is_some_and(|host| !host.trim().is_empty());
    if named {
        tree::set(
            tree,
            "discovery.backend",
            toml::Value::String("consul".to_owned()),
        );
        origin.insert(
            "discovery.backend".to_owned(),
            Source::Derived("discovery.consul_host being set".to_owned()),
        );
    }
}

/// `gateway.upstreams.<service>` defaults to the service's own listen address, so moving
/// `<service>.port` (as `logicore all` does) moves the gateway's target with it. A service is a registered
/// section with a `port`.
fn upstreams(
    tree: &mut toml::Table,
    origin: &mut BTreeMap<String, Source>,
    services: &[SectionSpec],
) {
    let Some(host) = tree::get(tree, "service.host").and_then(toml::Value::as_str) else {
        return;
    };
    let Some(host) = reachable_host(host) else {
        return;
    };
    for service in services.iter().map(|section| section.name) {
        let upstream = format!("gateway.upstreams.{service}");
        let port_key = format!("{service}.port");
        if origin.contains_key(&upstream) {
            continue;
        }
        let Some(port) = tree::get(tree, &port_key).and_then(toml::Value::as_integer) else {
            continue;
        };
        tree::set(
            tree,
            &upstream,
            toml::Value::String(format!("http://{host}:{port}")),
        );
        origin.insert(
            upstream,
            Source::Derived(format!("service.host and {port_key}")),
        );
    }
}

/// `auth.users_url` follows the users service's listen address, as the gateway's upstreams do.
fn users_url(tree: &mut toml::Table, origin: &mut BTreeMap<String, Source>) {
    if origin.contains_key("auth.users_url") {
        return;
    }
    let Some(host) = tree::get(tree, "service.host")
        .and_then(toml::Value::as_str)
        .and_then(reachable_host)
    else {
        return;
    };
    let Some(port) = tree::get(tree, "users.port").and_then(toml::Value::as_integer) else {
        return;
    };
    tree::set(
        tree,
        "auth.users_url",
        toml::Value::String(format!("http://{host}:{port}")),
    );
    origin.insert(
        "auth.users_url".to_owned(),
        Source::Derived("service.host and users.port".to_owned()),
    );
}

/// HS256 tokens (a secret every verifier could also sign with) are accepted in production only when asked for.
fn hs256_in_production(tree: &mut toml::Table, origin: &mut BTreeMap<String, Source>) {
    let production =
        tree::get(tree, "environment").and_then(toml::Value::as_str) == Some("production");
    if !production || origin.contains_key("auth.accept_hs256") {
        return;
    }
    tree::set(tree, "auth.accept_hs256", toml::Value::Boolean(false));
    origin.insert(
        "auth.accept_hs256".to_owned(),
        Source::Derived("environment being production".to_owned()),
    );
}

/// The host a local client reaches a listener bound to `bind` at: a wildcard bind is reached on loopback.
fn reachable_host(bind: &str) -> Option<String> {
    match bind.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if v4.is_unspecified() => Some("127.0.0.1".to_owned()),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("[::1]".to_owned()),
        IpAddr::V4(v4) => Some(v4.to_string()),
        IpAddr::V6(v6) => Some(format!("[{v6}]")),
    }
}

/// Naming a Redis server (`REDIS_HOST`, `REDIS_URL`, or their keys in a file) means using it, as in the
/// original deployment's `.env`; only an explicit `redis.enabled = false` keeps the in-process cache.
fn redis_enabled(tree: &mut toml::Table, origin: &mut BTreeMap<String, Source>) {
    if origin.contains_key("redis.enabled") {
        return;
    }
    let Some(named_by) = ["redis.url", "redis.host"].into_iter().find(|key| {
        origin.contains_key(*key)
            && tree::get(tree, key)
                .and_then(toml::Value::as_str)
                .is_some_and(|value| !value.trim().is_empty())
    }) else {
        return;
    };
    tree::set(tree, "redis.enabled", toml::Value::Boolean(true));
    origin.insert(
        "redis.enabled".to_owned(),
        Source::Derived(format!("{named_by} being set")),
    );
}
