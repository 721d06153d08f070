//! A real DNS server (dnsmasq) on loopback serving A/AAAA and SRV records with a TTL of one second.
//!
//! The readiness probes speak DNS by hand (a query is a 12-byte header and one question) so the helper
//! needs no resolver of its own, and so it never shares code with the resolver under test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::process::{Child, Command};

use super::{free_port, kill_now, log_tail};
use crate::TempDir;

const BINARY: &str = "/usr/sbin/dnsmasq";
const START_DEADLINE: Duration = Duration::from_secs(10);
const RELOAD_DEADLINE: Duration = Duration::from_secs(5);
/// Starts that fail because another process took the port between `free_port` and dnsmasq binding it.
const START_ATTEMPTS: usize = 3;
/// Asked for when there is no host record to ask for: any answer, even a refusal, shows the server is up.
const PROBE_NAME: &str = "probe.logicore.test";
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The records dnsmasq serves.
#[derive(Clone, Debug, Default)]
pub struct DnsRecords {
    /// A (IPv4) and AAAA (IPv6) records; a name may appear several times.
    pub hosts: Vec<(IpAddr, String)>,
    pub srv: Vec<SrvRecord>,
}

/// One SRV record (priority and weight 0).
#[derive(Clone, Debug)]
pub struct SrvRecord {
    /// The full owner name, e.g. `_http._tcp.orders.logicore.test`.
    pub name: String,
    pub target: String,
    pub port: u16,
}

/// A dnsmasq process; killed, and its files removed, when dropped.
pub struct Dnsmasq {
    child: Child,
    server: SocketAddr,
    hosts: Vec<(IpAddr, String)>,
    dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on a free loopback port with these records and waits until it answers.
    pub async fn start(records: &DnsRecords) -> Dnsmasq {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = TempDir::new("logicore-dnsmasq");
            let server = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
            match launch(&dir, server, records).await {
                Ok(child) => {
                    return Dnsmasq {
                        child,
                        server,
                        hosts: records.hosts.clone(),
                        dir,
                    };
                }
                Err(failure) => failures.push(failure),
            }
        }
        panic!("dnsmasq did not start:\n{}", failures.join("\n---\n"));
    }

    /// Where to send queries (UDP and TCP).
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Replaces the host records without a restart, as an operator editing a hosts file would: the new
    /// file is renamed over the old one so dnsmasq never reads half of it, then SIGHUP makes dnsmasq
    /// re-read it. Returns once dnsmasq answers with the new addresses.
    pub async fn set_hosts(&mut self, hosts: &[(IpAddr, String)]) {
        let path = hosts_path(&self.dir);
        let staging = self.dir.path().join("hosts.new");
        write_hosts(&staging, hosts);
        std::fs::rename(&staging, &path)
            .unwrap_or_else(|e| panic!("cannot replace {}: {e}", path.display()));
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("dnsmasq has exited; log tail:\n{}", self.log_tail()));
        let hup = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .await
            .unwrap_or_else(|e| panic!("cannot run kill: {e}"));
        assert!(hup.success(), "kill -HUP {pid} failed: {hup}");

        // The name to watch: the first new one, or when the records are all removed, the first old one
        // (whose answer becomes empty). With neither there is nothing dnsmasq could show.
        let previous = std::mem::replace(&mut self.hosts, hosts.to_vec());
        let Some((ip, name)) = hosts.first().or(previous.first()) else {
            return;
        };
        let qtype = if ip.is_ipv4() { TYPE_A } else { TYPE_AAAA };
        let mut expected: Vec<IpAddr> = hosts
            .iter()
            .filter(|(a, n)| n.eq_ignore_ascii_case(name) && a.is_ipv4() == ip.is_ipv4())
            .map(|(a, _)| *a)
            .collect();
        expected.sort();
        // Compared as sets of addresses rather than counts, so a change that keeps the count is awaited too.
        let started = Instant::now();
        loop {
            if let Some(mut answer) = query(self.server, name, qtype).await {
                answer.addresses.sort();
                if answer.addresses == expected {
                    return;
                }
            }
            assert!(
                started.elapsed() < RELOAD_DEADLINE,
                "dnsmasq did not serve {expected:?} for {name} within {RELOAD_DEADLINE:?}; log tail:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills dnsmasq and starts it again on the same port with these records; SRV records can only be
    /// changed this way, as dnsmasq reads them from its command line.
    pub async fn restart(&mut self, records: &DnsRecords) {
        let _ = self.child.kill().await;
        match launch(&self.dir, self.server, records).await {
            Ok(child) => self.child = child,
            Err(failure) => panic!("dnsmasq did not restart: {failure}"),
        }
        self.hosts = records.hosts.clone();
    }

    fn log_tail(&self) -> String {
        log_tail(&log_path(&self.dir))
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        kill_now(&mut self.child);
    }
}

fn hosts_path(dir: &TempDir) -> PathBuf {
    dir.path().join("hosts")
}

fn log_path(dir: &TempDir) -> PathBuf {
    dir.path().join("dnsmasq.log")
}

fn write_hosts(path: &std::path::Path, hosts: &[(IpAddr, String)]) {
    let text: String = hosts
        .iter()
        .map(|(ip, name)| format!("{ip} {name}\n"))
        .collect();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Spawns dnsmasq and waits until it answers; on failure the child is killed and the error carries its log.
async fn launch(dir: &TempDir, server: SocketAddr, records: &DnsRecords) -> Result<Child, String> {
    let hosts = hosts_path(dir);
    write_hosts(&hosts, &records.hosts);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(dir))
        .unwrap_or_else(|e| panic!("cannot open the dnsmasq log: {e}"));
    let mut command = Command::new(BINARY);
    command
        // Nothing from the machine's own configuration: no /etc/dnsmasq.conf, /etc/hosts or upstreams.
        .arg("--conf-file=/dev/null")
        .arg("--keep-in-foreground")
        .arg("--no-resolv")
        .arg("--no-hosts")
        .arg(format!("--port={}", server.port()))
        .arg(format!("--listen-address={}", server.ip()))
        .arg("--bind-interfaces")
        .arg(format!("--addn-hosts={}", hosts.display()))
        // One second, so resolvers that honour TTLs see changes quickly.
        .arg("--local-ttl=1")
        // An empty path writes no pid file (the default is /var/run/dnsmasq.pid, shared by all instances).
        .arg("--pid-file=")
        // dnsmasq reads the hosts file only after dropping root for `nobody`, which cannot read it when the
        // umask made the temp dir private; staying root keeps the helper independent of the umask.
        .arg("--user=root")
        .arg("--log-facility=-");
    for srv in &records.srv {
        command.arg(format!(
            "--srv-host={},{},{}",
            srv.name, srv.target, srv.port
        ));
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"));

    let probe = records
        .hosts
        .first()
        .map_or(PROBE_NAME, |(_, name)| name.as_str());
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "dnsmasq exited with {status}; log tail:\n{}",
                log_tail(&log_path(dir))
            ));
        }
        if query(server, probe, TYPE_A).await.is_some() {
            return Ok(child);
        }
        if started.elapsed() > START_DEADLINE {
            let _ = child.kill().await;
            return Err(format!(
                "dnsmasq on {server} did not answer within {START_DEADLINE:?}; log tail:\n{}",
                log_tail(&log_path(dir))
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the helpers read from a response.
struct Answer {
    /// A and AAAA records in the answer section.
    addresses: Vec<IpAddr>,
}

/// Sends one query over UDP and returns the response with the same id, or `None` if none came in time.
async fn query(server: SocketAddr, name: &str, qtype: u16) -> Option<Answer> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.ok()?;
    socket.connect(server).await.ok()?;
    // A random id, so a late answer to an earlier probe is never taken for this one.
    let [high, low, ..] = *uuid::Uuid::new_v4().as_bytes();
    let id = u16::from_be_bytes([high, low]);
    socket.send(&encode_query(id, name, qtype)).await.ok()?;
    let mut buf = [0u8; 1500];
    let receive = async {
        loop {
            let len = socket.recv(&mut buf).await.ok()?;
            if len >= 2 && buf[..2] == id.to_be_bytes() {
                return parse_response(&buf[..len]);
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(300), receive)
        .await
        .ok()
        .flatten()
}

/// A standard query with recursion desired: header (id, flags, one question) + QNAME + QTYPE + QCLASS.
fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(12 + name.len() + 6);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&0x0100u16.to_be_bytes());
    message.extend_from_slice(&1u16.to_be_bytes());
    message.extend_from_slice(&[0; 6]);
    for label in name.trim_end_matches('.').split('.') {
        let label = label.as_bytes();
        let len = u8::try_from(label.len()).expect("test host names have DNS labels of < 64 bytes");
        message.push(len);
        message.extend_from_slice(label);
    }
    message.push(0);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    message
}

/// Reads the A and AAAA records of a response; `None` if it is truncated or malformed.
fn parse_response(message: &[u8]) -> Option<Answer> {
    let count = |at: usize| {
        Some(u16::from_be_bytes([
            *message.get(at)?,
            *message.get(at + 1)?,
        ]))
    };
    let (questions, answers) = (count(4)?, count(6)?);
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(message, at)?;
        let rtype = count(at)?;
        let rdlength = usize::from(count(at + 8)?);
        let rdata = message.get(at + 10..at + 10 + rdlength)?;
        match (
            rtype,
            <[u8; 4]>::try_from(rdata),
            <[u8; 16]>::try_from(rdata),
        ) {
            (TYPE_A, Ok(v4), _) => addresses.push(IpAddr::from(v4)),
            (TYPE_AAAA, _, Ok(v6)) => addresses.push(IpAddr::from(v6)),
            _ => {}
        }
        at += 10 + rdlength;
    }
    Some(Answer { addresses })
}

/// The offset just past a (possibly compressed) name.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some(at + 1),
            // A compression pointer (two bytes) ends the name.
            _ if len & 0xC0 == 0xC0 => return Some(at + 2),
            _ => at += 1 + usize::from(len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE_SRV: u16 = 33;

    fn host(ip: [u8; 4], name: &str) -> (IpAddr, String) {
        (IpAddr::from(ip), name.to_owned())
    }

    async fn addresses(server: &Dnsmasq, name: &str) -> Vec<IpAddr> {
        let mut answer = query(server.server(), name, TYPE_A)
            .await
            .expect("dnsmasq answers")
            .addresses;
        answer.sort();
        answer
    }

    async fn exchange(server: &Dnsmasq, query: &[u8]) -> Vec<u8> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        socket.send_to(query, server.server()).await.expect("send");
        let mut buf = [0u8; 1500];
        let len = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .expect("an answer in time")
            .expect("recv");
        assert_eq!(buf[..2], query[..2], "the answer's id");
        buf[..len].to_vec()
    }

    #[tokio::test]
    async fn dnsmasq_serves_the_records_and_follows_set_hosts_and_restart() {
        let name = "orders.logicore.test";
        let records = DnsRecords {
            hosts: vec![host([127, 0, 0, 5], name), host([127, 0, 0, 6], name)],
            srv: vec![SrvRecord {
                name: "_http._tcp.orders.logicore.test".into(),
                target: name.into(),
                port: 8080,
            }],
        };
        let mut dns = Dnsmasq::start(&records).await;
        assert_eq!(
            addresses(&dns, name).await,
            [IpAddr::from([127, 0, 0, 5]), IpAddr::from([127, 0, 0, 6])]
        );
        // Records carry the one-second TTL: the answer's name is a pointer (2 bytes) after the question,
        // then type and class (4), then the TTL.
        let a = exchange(&dns, &encode_query(7, name, TYPE_A)).await;
        let ttl_at = 12 + (name.len() + 2) + 4 + 2 + 4;
        assert_eq!(a[ttl_at..ttl_at + 4], 1u32.to_be_bytes());

        // ANCOUNT 1; dnsmasq adds the target's addresses as additional records. The record ends with
        // priority, weight, port and the target.
        let srv = exchange(
            &dns,
            &encode_query(8, "_http._tcp.orders.logicore.test", TYPE_SRV),
        )
        .await;
        assert_eq!(srv[6..8], 1u16.to_be_bytes());
        let ttl_at = 12 + ("_http._tcp.orders.logicore.test".len() + 2) + 4 + 2 + 4;
        assert_eq!(srv[ttl_at..ttl_at + 4], 1u32.to_be_bytes());
        assert_eq!(srv[ttl_at + 6..ttl_at + 12], [0, 0, 0, 0, 0x1f, 0x90]);

        dns.set_hosts(&[host([127, 0, 0, 7], name)]).await;
        assert_eq!(addresses(&dns, name).await, [IpAddr::from([127, 0, 0, 7])]);

        // Same count, different address: still awaited.
        dns.set_hosts(&[host([127, 0, 0, 8], name)]).await;
        assert_eq!(addresses(&dns, name).await, [IpAddr::from([127, 0, 0, 8])]);

        dns.set_hosts(&[]).await;
        assert!(addresses(&dns, name).await.is_empty());

        let server = dns.server();
        dns.restart(&DnsRecords {
            hosts: vec![host([127, 0, 0, 9], name)],
            srv: Vec::new(),
        })
        .await;
        assert_eq!(dns.server(), server);
        assert_eq!(addresses(&dns, name).await, [IpAddr::from([127, 0, 0, 9])]);
    }
}
