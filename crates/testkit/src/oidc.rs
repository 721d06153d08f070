//! A real OpenID provider on loopback: the `oidc-provider` npm package run by `oidc/provider.mjs` under Node.js,
//! so token verification is tested against the discovery documents, JWKS and JWT access tokens a production
//! provider serves, key rotation and outages included.
//!
//! Its clients use the client-credentials grant; their access tokens are ES256 JWTs whose `aud` is the requested
//! resource indicator and that carry the client's roles both nested (`realm_access.roles`, as Keycloak does) and
//! flat (`groups`). Needs `node` on `PATH` and `npm ci --prefix crates/testkit/oidc`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::TempDir;
use crate::registries::{free_port, kill_now, log_tail};

/// The npm package directory: `provider.mjs`, `package.json` and, once installed, `node_modules`.
const PACKAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/oidc");
const NODE: &str = "node";
const INSTALL: &str = "npm ci --prefix crates/testkit/oidc";
/// Node starts the provider in well under a second; the rest is slack for a loaded CI machine.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// Starts that fail because another process took the port between `free_port` and Node binding it.
const START_ATTEMPTS: usize = 3;

/// A client-credentials client of the provider.
#[derive(Clone, Debug, Serialize)]
pub struct OidcClient {
    pub id: String,
    pub secret: String,
    /// Put into its tokens as `realm_access.roles` and `groups`.
    pub roles: Vec<String>,
    /// `exp - iat` of its access tokens.
    pub token_ttl_secs: u64,
}

/// What `provider.mjs` reads from the file named by `CONFIG`.
#[derive(Serialize)]
struct Config<'a> {
    resources: &'a [&'a str],
    clients: &'a [OidcClient],
}

/// The line `provider.mjs` prints once it listens: `READY {"issuer":...,"kids":[...]}`.
#[derive(Deserialize)]
struct Ready {
    issuer: String,
    kids: Vec<String>,
}

/// An `oidc-provider` process; killed, and its keys removed, when dropped.
pub struct OidcProvider {
    child: Option<Child>,
    port: u16,
    /// `config.json`, the private keys (`keys.json`), the JWKS request count and the provider's log.
    dir: TempDir,
    clients: Vec<OidcClient>,
    kids: Vec<String>,
    http: reqwest::Client,
}

impl OidcProvider {
    /// Starts the provider on a free loopback port with these clients and resource indicators (the first is the
    /// default for token requests without one) and one freshly generated ES256 key; returns once it listens.
    ///
    /// Panics, saying how to install them, when `node` or the npm packages are missing.
    pub async fn start(clients: Vec<OidcClient>, resources: &[&str]) -> Self {
        assert!(
            Path::new(PACKAGE)
                .join("node_modules/oidc-provider")
                .is_dir(),
            "the OpenID provider tests need the npm packages in {PACKAGE}: run `{INSTALL}`"
        );
        let dir = TempDir::new("logicore-oidc");
        let config = serde_json::to_vec(&Config {
            resources,
            clients: &clients,
        })
        .expect("the provider's configuration is plain data");
        let config_path = dir.path().join("config.json");
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let mut provider = OidcProvider {
            child: None,
            port: 0,
            dir,
            clients,
            kids: Vec::new(),
            http: crate::client(),
        };
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            provider.port = free_port();
            match provider.launch(false).await {
                Ok(()) => return provider,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "the OpenID provider did not start:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `http://127.0.0.1:<port>`; its discovery document is at `/.well-known/openid-configuration`.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The ids of the keys in its JWKS, the one that signs new tokens first.
    pub fn kids(&self) -> Vec<String> {
        self.kids.clone()
    }

    /// An access token for a configured client, by the client-credentials grant for `resource` (its `aud`);
    /// panics with the provider's answer when it refuses.
    pub async fn token(&self, client_id: &str, resource: &str) -> String {
        let client = self
            .clients
            .iter()
            .find(|client| client.id == client_id)
            .unwrap_or_else(|| panic!("no OpenID provider client {client_id:?} was configured"));
        self.request_token(client_id, &client.secret, resource)
            .await
            .unwrap_or_else(|error| {
                panic!("the OpenID provider refused a token to {client_id}: {error}")
            })
    }

    /// The client-credentials grant with these credentials (sent in the form body, `client_secret_post`): the
    /// access token, or the provider's OAuth error answer (`{"error": "invalid_client", ...}`).
    pub async fn request_token(
        &self,
        client_id: &str,
        client_secret: &str,
        resource: &str,
    ) -> Result<String, serde_json::Value> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret)
            .append_pair("resource", resource)
            .finish();
        let response = self
            .http
            .post(format!("{}/token", self.issuer()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("the OpenID provider's token endpoint: {e}"));
        let ok = response.status().is_success();
        let body = crate::json(response).await;
        match body["access_token"].as_str() {
            Some(token) if ok => Ok(token.to_owned()),
            _ => Err(body),
        }
    }

    /// Restarts the provider on the same port with a new signing key, keeping the old keys in its JWKS so tokens
    /// they signed stay verifiable; returns the new key's id once the provider listens again.
    pub async fn rotate(&mut self) -> String {
        self.stop().await;
        if let Err(failure) = self.launch(true).await {
            panic!("the OpenID provider did not restart with a new key: {failure}");
        }
        self.kids[0].clone()
    }

    /// Kills the provider with SIGKILL, as an outage would, and waits until it is gone; the port then refuses
    /// connections. [`rotate`](Self::rotate) starts it again.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// How many GET requests its JWKS endpoint has served since [`start`](Self::start), across rotations (the
    /// count is kept in a file); the caller's own fetches count too.
    pub async fn jwks_requests(&self) -> u64 {
        let url = format!("{}/test/jwks-requests", self.issuer());
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let body = crate::json(response).await;
        body["count"]
            .as_u64()
            .unwrap_or_else(|| panic!("{url} answered {body}"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("provider.log")
    }

    /// Spawns the provider (`ROTATE=1`: with a new key first) and waits for its READY line; on failure the child
    /// is killed and the error carries its log.
    async fn launch(&mut self, rotate: bool) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let dir = self.dir.path();
        let mut child = Command::new(NODE)
            .arg(Path::new(PACKAGE).join("provider.mjs"))
            .env("PORT", self.port.to_string())
            .env("CONFIG", dir.join("config.json"))
            .env("KEYS", dir.join("keys.json"))
            .env("JWKS_COUNTER", dir.join("jwks-requests"))
            .env("ROTATE", if rotate { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                log.try_clone()
                    .unwrap_or_else(|e| panic!("cannot duplicate the provider's log handle: {e}")),
            )
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `{NODE}` (Node.js 20 or later, then `{INSTALL}`): {e}")
            });
        let stdout = child.stdout.take().expect("stdout is piped");
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(json) = line.strip_prefix("READY ") {
                    return serde_json::from_str::<Ready>(json)
                        .map_err(|e| format!("unreadable READY line ({e}): {line}"));
                }
                // Startup notices belong in the log, whose tail explains a failed start.
                let _ = writeln!(&log, "{line}");
            }
            Err("the provider exited before it was ready".to_owned())
        })
        .await
        .unwrap_or_else(|_| Err(format!("not ready after {READY_DEADLINE:?}")));
        match ready {
            Ok(ready) => {
                // oidc-provider prints notices on stdout, e.g. when the first request with an Origin header makes it
                // call a default it wants changed; they explain odd answers, so they join its warnings in the log.
                let mut rest = lines.into_inner();
                let mut log = tokio::fs::File::from_std(log);
                tokio::spawn(async move { tokio::io::copy_buf(&mut rest, &mut log).await });
                assert_eq!(ready.issuer, self.issuer(), "the provider's issuer");
                self.kids = ready.kids;
                Ok(())
            }
            Err(why) => {
                self.stop().await;
                Err(format!("{why}; log tail:\n{}", log_tail(&self.log_path())))
            }
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            kill_now(child);
        }
    }
}
