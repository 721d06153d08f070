//! DNS discovery against a real DNS server (dnsmasq on a loopback port): A records of a headless-Service
//! style name, changed while the gateway runs, and SRV records that give the ports too.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use platform::auth::Role;
use serde_json::Value;
use testkit::registries::dns::{DnsRecords, Dnsmasq, SrvRecord};

use crate::helpers::{FakeUpstream, GatewayServer, bearer, spawn_gateway};

/// A fake upstream listening on `ip` at `port` (0: any).
async fn upstream_on(ip: &str, port: u16) -> FakeUpstream {
    let listener = tokio::net::TcpListener::bind((ip, port))
        .await
        .unwrap_or_else(|e| panic!("bind {ip}:{port}: {e}"));
    FakeUpstream::spawn_on(listener)
}

/// One upstream's discovery view from `/admin/upstreams`.
async fn discovery_of(gateway: &GatewayServer, admin: &str, upstream: &str) -> Value {
    let body = testkit::json(
        testkit::client()
            .get(gateway.admin_url("/admin/upstreams"))
            .header("authorization", admin)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    body["data"]
        .as_array()
        .and_then(|list| list.iter().find(|u| u["upstream"] == upstream))
        .map(|u| u["discovery"].clone())
        .unwrap_or_default()
}

/// Waits until `upstream`'s endpoints are `expected`; returns when they were.
async fn wait_for(
    gateway: &GatewayServer,
    admin: &str,
    upstream: &str,
    expected: &[String],
) -> Instant {
    testkit::eventually(
        &format!("{upstream}'s endpoints to be {expected:?}"),
        Duration::from_secs(10),
        || async {
            let discovery = discovery_of(gateway, admin, upstream).await;
            let seen: Vec<String> = discovery["endpoints"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|e| e.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (seen == expected).then(Instant::now)
        },
    )
    .await
}

fn host(ip: &str, name: &str) -> (IpAddr, String) {
    (
        ip.parse().unwrap_or_else(|e| panic!("{e}")),
        name.to_owned(),
    )
}

#[tokio::test]
async fn a_records_and_srv_records_of_a_real_dns_server_are_followed_as_they_change() {
    // Two instances of users on one port and two loopback addresses, as two pods behind a headless Service.
    let first = upstream_on("127.0.0.2", 0).await;
    let port = first.server.address().port();
    let second = upstream_on("127.0.0.3", port).await;
    let orders_a = upstream_on("127.0.0.1", 0).await;
    let orders_b = upstream_on("127.0.0.1", 0).await;
    let srv = |target: &str, upstream: &FakeUpstream| SrvRecord {
        name: "_http._tcp.orders.logicore.test".into(),
        target: target.into(),
        port: upstream.server.address().port(),
    };
    let orders_hosts = [
        host("127.0.0.1", "orders-a.logicore.test"),
        host("127.0.0.1", "orders-b.logicore.test"),
    ];
    let mut records = DnsRecords {
        hosts: [
            vec![host("127.0.0.2", "users.logicore.test")],
            orders_hosts.to_vec(),
        ]
        .concat(),
        srv: vec![srv("orders-a.logicore.test", &orders_a)],
    };
    let mut dns = Dnsmasq::start(&records).await;

    let users_url = format!("http://users.logicore.test:{port}");
    let server = dns.server().to_string();
    let settings = testkit::settings(&[
        ("DISCOVERY_BACKEND", "dns"),
        ("LOGICORE_DISCOVERY__DNS_SERVER", server.as_str()),
        ("USER_SERVICE_URL", users_url.as_str()),
        (
            "ORDER_SERVICE_URL",
            "http://_http._tcp.orders.logicore.test",
        ),
        ("INVENTORY_SERVICE_URL", &orders_a.url()),
    ]);
    let config = gateway::Config::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    let admin = bearer(&config.auth, Role::Admin);
    let token = bearer(&config.auth, Role::Customer);
    let gateway = spawn_gateway(config).await;
    let first_url = format!("http://127.0.0.2:{port}/");
    let second_url = format!("http://127.0.0.3:{port}/");
    wait_for(&gateway, &admin, "users", std::slice::from_ref(&first_url)).await;
    let users = discovery_of(&gateway, &admin, "users").await;
    assert_eq!(users["source"], "dns", "{users}");
    assert_eq!(users["stale"], false, "{users}");

    let client = testkit::client();
    let send = |count: usize| {
        let client = client.clone();
        let url = gateway.url("/api/v1/users/me");
        let token = token.clone();
        async move {
            for _ in 0..count {
                let response = client
                    .get(&url)
                    .header("authorization", &token)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(response.status(), 200);
            }
        }
    };
    send(10).await;
    assert_eq!((first.hits(), second.hits()), (10, 0));

    // A second pod becomes ready: its A record appears, and it gets traffic.
    let changed = Instant::now();
    dns.set_hosts(
        &[
            vec![
                host("127.0.0.2", "users.logicore.test"),
                host("127.0.0.3", "users.logicore.test"),
            ],
            orders_hosts.to_vec(),
        ]
        .concat(),
    )
    .await;
    let added = wait_for(
        &gateway,
        &admin,
        "users",
        &[first_url.clone(), second_url.clone()],
    )
    .await;
    send(20).await;
    assert!(
        second.hits() >= 5,
        "the new instance got {} of 20",
        second.hits()
    );

    // The first pod goes away: its record is removed, and it gets nothing more.
    dns.set_hosts(
        &[
            vec![host("127.0.0.3", "users.logicore.test")],
            orders_hosts.to_vec(),
        ]
        .concat(),
    )
    .await;
    wait_for(&gateway, &admin, "users", std::slice::from_ref(&second_url)).await;
    let before = first.hits();
    send(10).await;
    assert_eq!(first.hits(), before);

    // SRV records give each instance's port; a second record is a second instance.
    let orders_a_url = format!("{}/", orders_a.url().trim_end_matches('/'));
    let orders_b_url = format!("{}/", orders_b.url().trim_end_matches('/'));
    wait_for(
        &gateway,
        &admin,
        "orders",
        std::slice::from_ref(&orders_a_url),
    )
    .await;
    records.srv.push(srv("orders-b.logicore.test", &orders_b));
    records.hosts = [
        vec![host("127.0.0.3", "users.logicore.test")],
        orders_hosts.to_vec(),
    ]
    .concat();
    dns.restart(&records).await;
    let mut both = vec![orders_a_url, orders_b_url];
    both.sort();
    wait_for(&gateway, &admin, "orders", &both).await;

    // The DNS server stops: the last known instances stay in use, flagged stale.
    drop(dns);
    let stale = testkit::eventually(
        "users to be flagged stale",
        Duration::from_secs(10),
        || async {
            let users = discovery_of(&gateway, &admin, "users").await;
            (users["stale"] == true).then_some(users)
        },
    )
    .await;
    assert_eq!(stale["endpoints"][0], second_url.as_str(), "{stale}");
    send(5).await;
    eprintln!(
        "dns discovery: record change to the gateway's set {:?}",
        added - changed
    );
}
