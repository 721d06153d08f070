//! `spawn_app()` and the small HTTP vocabulary the tests share.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use testkit::{TestDb, TestServer};
use tokio_util::sync::CancellationToken;

pub const ADMIN_EMAIL: &str = "root@logicore.test";
pub const ADMIN_PASSWORD: &str = "admin password 1";
pub const PASSWORD: &str = "correct horse 42";

/// A running users service with its own database.
pub struct TestApp {
    pub server: TestServer,
    pub client: reqwest::Client,
    pub config: users::Config,
    // Dropped last: the database goes away after the server stopped using it.
    _db: TestDb,
}

pub fn config_for(db: &TestDb) -> users::Config {
    config_with(db, &[])
}

/// The test configuration plus `env` (e.g. the `REDIS_*` variables).
pub fn config_with(db: &TestDb, env: &[(&str, &str)]) -> users::Config {
    let mut vars = vec![
        ("DATABASE_URL", db.url.as_str()),
        ("ADMIN_EMAIL", ADMIN_EMAIL),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    vars.extend_from_slice(env);
    let section = platform::config::SectionSpec::of::<users::UsersSettings>();
    users::Config::from_settings(&testkit::settings_with(&vars, &[section]))
        .unwrap_or_else(|e| panic!("{e}"))
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// A service with extra environment settings.
pub async fn spawn_app_with(env: &[(&str, &str)]) -> TestApp {
    let db = TestDb::new();
    let config = config_with(&db, env);
    let listener = testkit::bind().await;
    let address = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"));
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(users::run(config.clone(), listener, shutdown.clone()));
    let handle = tokio::spawn(async move {
        match handle.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the users service failed: {e:?}"),
            Err(e) => panic!("the users service task failed: {e}"),
        }
    });
    let app = TestApp {
        server: TestServer::from_parts(address, shutdown, handle),
        client: testkit::client(),
        config,
        _db: db,
    };
    app.wait_until_serving().await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    async fn wait_until_serving(&self) {
        let url = self.url("/health");
        let client = self.client.clone();
        testkit::eventually(
            "the users service to answer /health",
            Duration::from_secs(60),
            || {
                let request = client.get(&url).send();
                async move {
                    let response = request.await.ok()?;
                    (response.status() == StatusCode::OK).then_some(())
                }
            },
        )
        .await;
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.send(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.send(Method::DELETE, path, token, None).await
    }

    /// Registers a customer; returns the token response.
    pub async fn register(&self, email: &str) -> Value {
        let body = json!({"email": email, "password": PASSWORD, "full_name": "Test User"});
        let response = self.post("/api/v1/auth/register", None, &body).await;
        expect(response, StatusCode::CREATED).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/v1/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// An access token of the bootstrapped admin.
    pub async fn admin_token(&self) -> String {
        let response = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        access_token(&expect(response, StatusCode::OK).await)
    }

    /// Creates a user with `role` through the admin API; returns the user.
    pub async fn create_user(&self, admin: &str, email: &str, role: &str) -> Value {
        let body = json!({
            "email": email, "password": PASSWORD, "full_name": format!("{role} {email}"), "role": role,
        });
        let response = self.post("/api/v1/users", Some(admin), &body).await;
        expect(response, StatusCode::CREATED).await
    }

    /// Creates a user with `role` and signs in as them; returns their access token.
    pub async fn token_for_role(&self, admin: &str, email: &str, role: &str) -> String {
        self.create_user(admin, email, role).await;
        let response = self.login(email, PASSWORD).await;
        access_token(&expect(response, StatusCode::OK).await)
    }
}

pub fn access_token(tokens: &Value) -> String {
    tokens["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {tokens}"))
        .to_owned()
}

pub fn refresh_token(tokens: &Value) -> String {
    tokens["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token in {tokens}"))
        .to_owned()
}

/// Asserts the status and returns the JSON body.
pub async fn expect(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let body = testkit::json(response).await;
    assert_eq!(actual, status, "unexpected status; body: {body}");
    body
}

/// Asserts a problem+json response with `status` and `code`; returns the body.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    testkit::assert_problem(response, status.as_u16(), code).await
}
