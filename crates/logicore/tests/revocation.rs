//! Deactivation, demotion and logout revoke the user's access tokens within a second, at the gateway and in
//! every service asked directly, in each way revocations travel: one process sharing one set (`logicore
//! all`), separate processes with Redis pushes, and separate processes polling without Redis.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{TestDb, TestServer};

/// How fast a revocation must bite everywhere.
const DEADLINE: Duration = Duration::from_secs(1);
const ADMIN_EMAIL: &str = "admin@revocation.test";
const PASSWORD: &str = "Correct-horse-9";

/// How the services of one test learn of revocations.
#[derive(Clone, Copy, Debug)]
enum Wiring {
    /// As `logicore all` with Redis off: one set, recorded into by the users service.
    OneProcess,
    /// Each service a set of its own, fed by Redis pushes (resync every 5 s, so only the push can meet
    /// the deadline).
    Redis,
    /// Each service a set of its own, polling: services the table, the gateway the users service's feed.
    Polling,
}

struct Platform {
    gateway: TestServer,
    users: TestServer,
    inventory: TestServer,
    orders: TestServer,
    client: reqwest::Client,
    _db: TestDb,
}

impl Platform {
    async fn start(wiring: Wiring) -> Self {
        let db = TestDb::new();
        let prefix = format!("lc-revocation-{}:", uuid::Uuid::now_v7().simple());
        let mut env = vec![("DATABASE_URL", db.url.clone())];
        if matches!(wiring, Wiring::Redis) {
            env.extend([
                ("REDIS_ENABLED", "true".to_owned()),
                ("REDIS_URL", "redis://127.0.0.1:6379/".to_owned()),
                ("REDIS_KEY_PREFIX", prefix),
            ]);
        }
        let settings = |extra: &[(&str, String)]| {
            let all: Vec<(&str, &str)> = env
                .iter()
                .chain(extra)
                .map(|(k, v)| (*k, v.as_str()))
                .collect();
            testkit::settings_with(&all, &logicore::services::sections())
        };
        let base = settings(&[]);
        let users_config = users::Config::from_settings(&base).unwrap_or_else(|e| panic!("{e}"));
        users::create_admin(&users_config, ADMIN_EMAIL, Some(PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("admin: {e}"));
        let users_set = users_config.basics.revocation.set.clone();
        let users = testkit::serve(|l, s| users::run(users_config, l, s)).await;
        // The other services fetch LogiCore's public signing keys from this users service.
        let with_users = settings(&[("LOGICORE_AUTH__USERS_URL", users.url(""))]);
        let mut inventory_config =
            inventory::Config::from_settings(&with_users).unwrap_or_else(|e| panic!("{e}"));
        let mut orders_config =
            orders::Config::from_settings(&with_users).unwrap_or_else(|e| panic!("{e}"));
        if matches!(wiring, Wiring::OneProcess) {
            inventory_config.basics.revocation = inventory_config
                .basics
                .revocation
                .fed_by_users_service(&users_set);
            orders_config.basics.revocation = orders_config
                .basics
                .revocation
                .fed_by_users_service(&users_set);
        }
        let inventory = testkit::serve(|l, s| inventory::run(inventory_config, l, s)).await;
        let orders = testkit::serve(|l, s| orders::run(orders_config, l, s)).await;

        let gateway_settings = settings(&[
            ("USER_SERVICE_URL", users.url("")),
            ("INVENTORY_SERVICE_URL", inventory.url("")),
            ("ORDER_SERVICE_URL", orders.url("")),
            ("GATEWAY_RATE_LIMIT_MAX_REQUESTS", "1000000".to_owned()),
        ]);
        let mut gateway_config =
            gateway::Config::from_settings(&gateway_settings).unwrap_or_else(|e| panic!("{e}"));
        if matches!(wiring, Wiring::OneProcess) {
            gateway_config.revocation = gateway_config.revocation.fed_by_users_service(&users_set);
        }
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
            client: testkit::client(),
            _db: db,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
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
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Signs in through the gateway: `(access token, refresh token)`.
    async fn login(&self, email: &str) -> (String, String) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                self.gateway.url("/api/v1/auth/login"),
                None,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "login of {email}: {body}");
        let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
        (field("access_token"), field("refresh_token"))
    }

    /// Creates an account with `role` as the admin; returns its id.
    async fn create_user(&self, admin: &str, email: &str, role: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                self.gateway.url("/api/v1/users"),
                Some(admin),
                Some(json!({"email": email, "password": PASSWORD, "full_name": "Someone", "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap_or_default().to_owned()
    }

    /// A read any signed-in caller may make, on every service, through the gateway and directly.
    fn reads(&self) -> Vec<String> {
        let mut urls = Vec::new();
        for (server, path) in [
            (&self.users, "/api/v1/users/me"),
            (&self.inventory, "/api/v1/inventory/products"),
            (&self.orders, "/api/v1/orders"),
        ] {
            urls.push(self.gateway.url(path));
            urls.push(server.url(path));
        }
        urls
    }

    async fn statuses(&self, token: &str) -> Vec<(String, u16, Value)> {
        let mut statuses = Vec::new();
        for url in self.reads() {
            let (status, body) = self
                .call(reqwest::Method::GET, url.clone(), Some(token), None)
                .await;
            statuses.push((url, status, body));
        }
        statuses
    }

    async fn assert_accepted(&self, token: &str, whose: &str) {
        for (url, status, body) in self.statuses(token).await {
            assert_eq!(status, 200, "{whose} at {url}: {body}");
        }
    }

    /// Polls until every read refuses `token` as revoked, failing if that takes longer than [`DEADLINE`]
    /// from `since`.
    async fn assert_refused_everywhere_within_deadline(
        &self,
        token: &str,
        since: Instant,
        whose: &str,
    ) {
        let left = DEADLINE.saturating_sub(since.elapsed());
        testkit::eventually(
            &format!("{whose}'s token refused everywhere"),
            left,
            || async {
                let statuses = self.statuses(token).await;
                statuses
                    .iter()
                    .all(|(_, status, body)| *status == 401 && body["code"] == "TOKEN_REVOKED")
                    .then_some(())
            },
        )
        .await;
        assert!(
            since.elapsed() <= DEADLINE,
            "{whose}: took {:?}",
            since.elapsed()
        );
    }
}

async fn deactivation_demotion_and_logout_bite_everywhere_within_a_second(wiring: Wiring) {
    let platform = Box::pin(Platform::start(wiring)).await;
    let (admin, _) = platform.login(ADMIN_EMAIL).await;
    let customer_id = platform
        .create_user(&admin, "customer@revocation.test", "customer")
        .await;
    let manager_id = platform
        .create_user(&admin, "manager@revocation.test", "manager")
        .await;
    platform
        .create_user(&admin, "dispatcher@revocation.test", "dispatcher")
        .await;
    let (customer, _) = platform.login("customer@revocation.test").await;
    let (manager, _) = platform.login("manager@revocation.test").await;
    let (dispatcher, dispatcher_refresh) = platform.login("dispatcher@revocation.test").await;
    let (dispatcher_elsewhere, _) = platform.login("dispatcher@revocation.test").await;
    for (token, whose) in [
        (&customer, "customer"),
        (&manager, "manager"),
        (&dispatcher, "dispatcher"),
    ] {
        platform.assert_accepted(token, whose).await;
    }

    let started = Instant::now();
    let (status, body) = platform
        .call(
            reqwest::Method::DELETE,
            platform
                .gateway
                .url(&format!("/api/v1/users/{customer_id}")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    platform
        .assert_refused_everywhere_within_deadline(&customer, started, "the deactivated customer")
        .await;

    let started = Instant::now();
    let (status, body) = platform
        .call(
            reqwest::Method::PATCH,
            platform.gateway.url(&format!("/api/v1/users/{manager_id}")),
            Some(&admin),
            Some(json!({"role": "customer"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    platform
        .assert_refused_everywhere_within_deadline(&manager, started, "the demoted manager")
        .await;

    let started = Instant::now();
    let (status, body) = platform
        .call(
            reqwest::Method::POST,
            platform.gateway.url("/api/v1/auth/logout"),
            Some(&dispatcher),
            Some(json!({"refresh_token": dispatcher_refresh})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    platform
        .assert_refused_everywhere_within_deadline(
            &dispatcher,
            started,
            "the logged-out dispatcher",
        )
        .await;

    // Only what was revoked: the dispatcher's other session, the admin, and tokens issued afterwards (at once,
    // in the very second of the demotion too) keep working.
    platform
        .assert_accepted(&dispatcher_elsewhere, "the dispatcher's other session")
        .await;
    platform.assert_accepted(&admin, "the admin").await;
    let (demoted, _) = platform.login("manager@revocation.test").await;
    platform
        .assert_accepted(&demoted, "the demoted manager's new token")
        .await;
    let (status, me) = platform
        .call(
            reqwest::Method::GET,
            platform.gateway.url("/api/v1/users/me"),
            Some(&demoted),
            None,
        )
        .await;
    assert_eq!((status, me["role"].as_str()), (200, Some("customer")));
    let (again, _) = platform.login("dispatcher@revocation.test").await;
    platform
        .assert_accepted(&again, "the dispatcher's new token")
        .await;
}

#[tokio::test]
async fn in_one_process_revocations_bite_at_the_gateway_and_in_every_service_within_a_second() {
    Box::pin(deactivation_demotion_and_logout_bite_everywhere_within_a_second(Wiring::OneProcess))
        .await;
}

#[tokio::test]
async fn with_redis_revocations_are_pushed_to_every_process_within_a_second() {
    deactivation_demotion_and_logout_bite_everywhere_within_a_second(Wiring::Redis).await;
}

#[tokio::test]
async fn without_redis_separate_processes_poll_revocations_within_a_second() {
    Box::pin(deactivation_demotion_and_logout_bite_everywhere_within_a_second(Wiring::Polling))
        .await;
}
