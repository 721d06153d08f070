//! Service registries for service-discovery tests.
//!
//! [`etcd::EtcdServer`] and [`dns::Dnsmasq`] run the real servers (`/usr/bin/etcd`, `/usr/sbin/dnsmasq`)
//! as child processes on free loopback ports, so the discovery clients are tested against the
//! protocols they will meet in production, outages included. [`consul::FakeConsul`] is different: no
//! Consul can be installed on the machines these tests run on, so it is an in-process fake of exactly the
//! agent and health endpoints LogiCore uses, written from Consul's API documentation.

pub mod consul;
pub mod dns;
pub mod etcd;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

/// A loopback port that is free for both TCP and UDP at the time of the call.
///
/// The port is released before it is returned, so another process may take it before the caller binds
/// it; the helpers that start servers on it retry with a new port when the server fails to start.
pub fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind a UDP test port: {e}"));
        let port = udp
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr of a UDP socket: {e}"))
            .port();
        // The OS picked the UDP port; the TCP port of the same number may still be in use.
        if std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok() {
            return port;
        }
    }
}

/// The last lines of a server's log, for panic messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Kills a child process and reaps it before returning, for `Drop`, which cannot await: the caller removes
/// the child's data directory next, which fails while the child is still writing into it.
pub(crate) fn kill_now(child: &mut tokio::process::Child) {
    if child.start_kill().is_err() {
        return;
    }
    // SIGKILL takes effect within milliseconds; the bound only guards against a wedged kernel.
    let deadline = Instant::now() + Duration::from_secs(2);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}
