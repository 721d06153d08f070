//! A real single-member etcd (3.4) on loopback, with a data directory of its own.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{free_port, kill_now, log_tail};
use crate::TempDir;

const BINARY: &str = "/usr/bin/etcd";
/// A single member elects itself within a second; the rest is slack for a loaded CI machine.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// Starts that fail because another process took a port between `free_port` and etcd binding it.
const START_ATTEMPTS: usize = 3;

/// An etcd server; killed, and its data removed, when dropped.
pub struct EtcdServer {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: TempDir,
}

impl EtcdServer {
    /// Starts etcd on free loopback ports and waits until it reports itself healthy.
    pub async fn start() -> EtcdServer {
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut server = EtcdServer {
                child: None,
                client_port: free_port(),
                peer_port: free_port(),
                dir: TempDir::new("logicore-etcd"),
            };
            match server.launch().await {
                Ok(()) => return server,
                Err(failure) => failures.push(failure),
            }
        }
        panic!("etcd did not start:\n{}", failures.join("\n---\n"));
    }

    /// The client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills etcd with SIGKILL, as a crash or a lost machine would, and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts etcd again (stopping it first if it runs) on the same ports and data, and waits until it
    /// is healthy.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err(failure) = self.launch().await {
            panic!("etcd did not restart: {failure}");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Spawns etcd and waits for health; on failure the child is killed and the error carries its log.
    async fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let stderr = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate the etcd log handle: {e}"));
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new(BINARY)
            .arg("--name=t")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=t={peer}"))
            // 3.4 defaults to the deprecated capnslog, which warns about itself and logs raft at info level
            // whatever --log-level says; with zap the log holds only errors, so its tail is worth printing.
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {BINARY}: {e}"));
        self.child = Some(child);
        let outcome = self.wait_healthy().await;
        if outcome.is_err() {
            self.stop().await;
        }
        outcome.map_err(|why| format!("{why}; log tail:\n{}", log_tail(&self.log_path())))
    }

    async fn wait_healthy(&mut self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(1))
            .build()
            .expect("a client with only a timeout and no proxy always builds");
        let url = format!("{}/health", self.endpoint());
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("etcd exited with {status}"));
            }
            if let Ok(response) = http.get(&url).send().await
                && let Ok(body) = response.json::<serde_json::Value>().await
                && body["health"] == "true"
            {
                return Ok(());
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(format!("{url} not healthy after {READY_DEADLINE:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_now(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn etcd_answers_health_and_keeps_its_data_across_a_restart() {
        crate::init();
        let mut etcd = EtcdServer::start().await;
        let http = crate::client();
        let health = crate::json(
            http.get(format!("{}/health", etcd.endpoint()))
                .send()
                .await
                .expect("health"),
        )
        .await;
        assert_eq!(health["health"], "true");

        // The v3 JSON gateway takes base64 keys and values: "k" and "v".
        let put = http
            .post(format!("{}/v3/kv/put", etcd.endpoint()))
            .json(&serde_json::json!({"key": "aw==", "value": "dg=="}))
            .send()
            .await
            .expect("put");
        assert!(put.status().is_success());

        etcd.stop().await;
        assert!(
            http.get(format!("{}/health", etcd.endpoint()))
                .send()
                .await
                .is_err(),
            "a stopped etcd refuses connections"
        );

        etcd.restart().await;
        let range = crate::json(
            http.post(format!("{}/v3/kv/range", etcd.endpoint()))
                .json(&serde_json::json!({"key": "aw=="}))
                .send()
                .await
                .expect("range"),
        )
        .await;
        assert_eq!(range["kvs"][0]["value"], "dg==", "{range}");
    }
}
