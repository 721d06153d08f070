//! The platform under test and the token tools the identity tests share.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use testkit::{TestDb, TestServer};

pub const ADMIN_EMAIL: &str = "admin@identity.test";
pub const PASSWORD: &str = "Correct-horse-9";

/// An ES256 key that neither LogiCore nor the provider publishes: what a forger signs with.
pub const FORGING_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgb9jcXeuhSorEzW0h
EYlCaesFBG7FRwoELWh+d9cuOB6hRANCAATPmUPXC5BVAe/trF0MpqpnFMG6d8DN
UfML5F1QFtYZybhf9NFeP6QP1bNiGW8Ed8Fc4/HfsUibPd9tC2bJuogM
-----END PRIVATE KEY-----
";

/// Every service, with the gateway in front.
pub struct Platform {
    pub gateway: TestServer,
    pub users: TestServer,
    pub inventory: TestServer,
    pub orders: TestServer,
    pub users_config: users::Config,
    client: reqwest::Client,
    _db: TestDb,
}

impl Platform {
    /// Starts everything with HS256 off and no secret, plus `extra` settings (environment variables).
    pub async fn start(extra: &[(&str, String)]) -> Self {
        testkit::init();
        let db = TestDb::new();
        let mut env: Vec<(&str, String)> = vec![
            ("DATABASE_URL", db.url.clone()),
            ("LOGICORE_AUTH__ACCEPT_HS256", "false".to_owned()),
            ("JWT_SECRET", String::new()),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let settings = |more: &[(&str, String)]| {
            let all: Vec<(&str, &str)> = env
                .iter()
                .chain(more)
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            testkit::settings_with(&all, &logicore::services::sections())
        };
        let users_config =
            users::Config::from_settings(&settings(&[])).unwrap_or_else(|e| panic!("{e}"));
        users::create_admin(&users_config, ADMIN_EMAIL, Some(PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let users = testkit::serve({
            let config = users_config.clone();
            |l, s| users::run(config, l, s)
        })
        .await;
        // The others find LogiCore's public keys, and register external users, at this users service.
        let with_users = settings(&[("LOGICORE_AUTH__USERS_URL", users.url(""))]);
        let inventory_config =
            inventory::Config::from_settings(&with_users).unwrap_or_else(|e| panic!("{e}"));
        let orders_config =
            orders::Config::from_settings(&with_users).unwrap_or_else(|e| panic!("{e}"));
        let inventory = testkit::serve(|l, s| inventory::run(inventory_config, l, s)).await;
        let orders = testkit::serve(|l, s| orders::run(orders_config, l, s)).await;
        let gateway_config = gateway::Config::from_settings(&settings(&[
            ("USER_SERVICE_URL", users.url("")),
            ("INVENTORY_SERVICE_URL", inventory.url("")),
            ("ORDER_SERVICE_URL", orders.url("")),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            gateway_config.auth.jwt_secret.is_empty() && !gateway_config.auth.accept_hs256,
            "the gateway holds no shared secret"
        );
        let specs = vec![users::openapi(), inventory::openapi(), orders::openapi()];
        let admin = testkit::bind().await;
        let gateway = testkit::serve(|public, s| {
            gateway::run(
                gateway_config,
                specs,
                gateway::Listeners { public, admin },
                s,
            )
        })
        .await;
        Self {
            gateway,
            users,
            inventory,
            orders,
            users_config,
            client: testkit::client(),
            _db: db,
        }
    }

    /// `(status, JSON body or null)` of a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, url: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, url, Some(token), None)
            .await
    }

    /// Signs in through the gateway; the whole answer.
    pub async fn login(&self, email: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &self.gateway.url("/api/v1/auth/login"),
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "login of {email}: {body}");
        body
    }

    pub async fn admin_token(&self) -> String {
        access_token(&self.login(ADMIN_EMAIL).await)
    }

    /// A form POST to the gateway's token endpoint: `(status, body, Cache-Control)`.
    pub async fn token_request(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (u16, Value, String) {
        let mut request = self
            .client
            .post(self.gateway.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            cache,
        )
    }
}

pub fn access_token(login: &Value) -> String {
    login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A token's header (`0`) or payload (`1`), decoded without verification.
pub fn part(token: &str, index: usize) -> Value {
    let encoded = token.split('.').nth(index).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap_or_else(|e| panic!("{e}: {token}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"))
}

/// A JWS of `header` and `claims` signed with [`FORGING_KEY`] (ES256).
pub fn forge_es256(header: &Value, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(FORGING_KEY.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    forge(header, claims, &key, jsonwebtoken::Algorithm::ES256)
}

/// A JWS of `header` and `claims` with an HMAC-SHA256 signature under `secret`.
pub fn forge_hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    forge(header, claims, &key, jsonwebtoken::Algorithm::HS256)
}

/// Signs exactly the given header, whatever it claims, as `algorithm` does with `key`.
fn forge(
    header: &Value,
    claims: &Value,
    key: &jsonwebtoken::EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, algorithm)
        .unwrap_or_else(|e| panic!("{e}"));
    format!("{signing_input}.{signature}")
}

/// Polls until every one of `urls` refuses `token` as revoked, failing past a second from `since`.
pub async fn assert_revoked_within_a_second(
    platform: &Platform,
    token: &str,
    urls: &[String],
    since: std::time::Instant,
) {
    let deadline = std::time::Duration::from_secs(1);
    testkit::eventually(
        "the token refused everywhere",
        deadline.saturating_sub(since.elapsed()),
        || async {
            let mut refused = true;
            for url in urls {
                let (status, body) = platform.get(url, token).await;
                refused &= status == 401 && body["code"] == "TOKEN_REVOKED";
            }
            refused.then_some(())
        },
    )
    .await;
    assert!(since.elapsed() <= deadline, "took {:?}", since.elapsed());
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
