//! `logicore all` as a child process on free ports with a database of its own, for the test binaries that
//! run the real executable as a whole (`binary.rs`, `prometheus/`). Included by path by those alone, so the
//! other binaries' `support` carries none of it.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::logicore;

/// The first admin every [`AllServices`] is started with.
pub const ADMIN_EMAIL: &str = "root@logicore.test";
pub const ADMIN_PASSWORD: &str = "Admin-password-1";

/// A child process killed (and reaped) when dropped, however the test ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls the gateway's `/readyz` until it says ready, for at most a minute.
pub async fn wait_until_ready(gateway: &str) {
    let client = testkit::client();
    testkit::eventually("the gateway to be ready", Duration::from_secs(60), || {
        let request = client.get(format!("{gateway}/readyz"));
        async move {
            request
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        }
    })
    .await;
}

/// `logicore all` on free ports against a database of its own, with a first admin and `extra` settings.
pub struct AllServices {
    /// Killed when dropped; `binary.rs` also stops it with SIGTERM.
    #[allow(dead_code, reason = "prometheus/ only holds it")]
    pub server: Running,
    pub gateway: String,
    /// The port of each listener: `gateway`, `admin` (the gateway's), `users`, `inventory`, `orders`.
    pub listeners: BTreeMap<&'static str, u16>,
    _db: testkit::TestDb,
}

impl AllServices {
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        let db = testkit::TestDb::new();
        let listeners: BTreeMap<&'static str, u16> =
            ["gateway", "admin", "users", "inventory", "orders"]
                .into_iter()
                .map(|listener| (listener, testkit::registries::free_port()))
                .collect();
        let port = |listener: &str| listeners[listener].to_string();
        let (gateway_port, admin_port) = (port("gateway"), port("admin"));
        let (users_port, inventory_port, orders_port) =
            (port("users"), port("inventory"), port("orders"));
        let mut env = vec![
            ("DATABASE_URL", db.url.as_str()),
            ("GATEWAY_PORT", gateway_port.as_str()),
            ("LOGICORE_GATEWAY__ADMIN_PORT", admin_port.as_str()),
            ("LOGICORE_USERS__PORT", users_port.as_str()),
            ("LOGICORE_INVENTORY__PORT", inventory_port.as_str()),
            ("LOGICORE_ORDERS__PORT", orders_port.as_str()),
            ("ADMIN_EMAIL", ADMIN_EMAIL),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("LOGICORE_MESSAGING__RELAY_POLL_MS", "50"),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "100000"),
        ];
        env.extend_from_slice(extra);
        let server = Running(
            logicore(&env)
                .stdout(Stdio::null())
                .arg("all")
                .spawn()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let gateway = format!("http://127.0.0.1:{gateway_port}");
        wait_until_ready(&gateway).await;
        Self {
            server,
            gateway,
            listeners,
            _db: db,
        }
    }

    /// A call through the gateway that must succeed; its JSON body. A null `body` sends none.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        let mut request =
            testkit::client().request(method.clone(), format!("{}{path}", self.gateway));
        if !body.is_null() {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status();
        let body: Value = testkit::json(response).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// An access token, signed in through the gateway.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let login = json!({"email": email, "password": password});
        let tokens = self
            .call(reqwest::Method::POST, "/api/v1/auth/login", None, login)
            .await;
        tokens["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}
