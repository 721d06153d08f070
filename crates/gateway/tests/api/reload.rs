//! Configuration hot reload of a running gateway: its file rewritten under a steady load (an upstream
//! instance added, an RBAC rule changed, a rate limit lowered), an invalid file rejected, a key that needs a
//! restart reported, a Kubernetes-style ConfigMap swap, and the admin endpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use platform::auth::Role;
use platform::config::{ConfigSources, Reloader};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::helpers::{FakeUpstream, bearer};

/// The gateway's file: every upstream, a generous rate limit unless `extra` sets its own section.
fn config_file(users: &str, other: &str, extra: &str) -> String {
    format!(
        "[gateway.upstreams]\nusers = \"{users}\"\ninventory = \"{other}\"\norders = \"{other}\"\n\n{extra}\n"
    )
}

const GENEROUS: &str = "[gateway.rate_limit]\nmax_requests = 1000000\n";

/// Writes `contents` the way an editor saves: a new file renamed over the old one.
fn save(path: &Path, contents: &str) {
    let temporary = path.with_extension("swp");
    std::fs::write(&temporary, contents).unwrap_or_else(|e| panic!("{e}"));
    std::fs::rename(&temporary, path).unwrap_or_else(|e| panic!("{e}"));
}

/// A gateway on random ports whose configuration comes from `file`, reloading on every change of it.
struct Reloading {
    public: String,
    admin: String,
    reloader: Reloader,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reloading {
    async fn start(file: &Path) -> Self {
        testkit::init();
        let sources = ConfigSources {
            file: Some(file.to_path_buf()),
            config_dir: PathBuf::from("/nonexistent"),
            env: HashMap::from([("LOGICORE_ENV".to_owned(), "test".to_owned())]),
        };
        let loaded = platform::config::load(&sources, &[]).unwrap_or_else(|e| panic!("{e}"));
        let config =
            gateway::Config::from_settings(&loaded.settings).unwrap_or_else(|e| panic!("{e}"));
        let reloader = Reloader::new(loaded, sources, Vec::new());
        let listeners = gateway::Listeners {
            public: testkit::bind().await,
            admin: testkit::bind().await,
        };
        let url = |listener: &tokio::net::TcpListener| {
            format!(
                "http://{}",
                listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
            )
        };
        let (public, admin) = (url(&listeners.public), url(&listeners.admin));
        let shutdown = CancellationToken::new();
        reloader.spawn_triggers(shutdown.clone());
        let task = tokio::spawn({
            let (reloader, shutdown) = (reloader.clone(), shutdown.clone());
            async move {
                if let Err(e) =
                    gateway::run_with(config, Vec::new(), listeners, shutdown, Some(reloader)).await
                {
                    panic!("gateway stopped: {e}");
                }
            }
        });
        Self {
            public,
            admin,
            reloader,
            shutdown,
            task,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap_or_else(|e| panic!("{e}"));
    }
}

type Statuses = Arc<Mutex<Vec<(Instant, u16)>>>;

/// Four customers' GETs of `/api/v1/users/me` back to back until `stop`, each answer noted with when it
/// came.
fn load(
    url: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> (Statuses, tokio::task::JoinHandle<()>) {
    let statuses: Statuses = Arc::default();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (statuses, stop, url, token) =
                (statuses.clone(), stop.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let client = testkit::client();
                while !stop.load(Ordering::Relaxed) {
                    let status = match client
                        .get(&url)
                        .header("authorization", &token)
                        .send()
                        .await
                    {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 0,
                    };
                    statuses.lock().await.push((Instant::now(), status));
                }
            })
        })
        .collect();
    let task = tokio::spawn(async move {
        for caller in futures::future::join_all(callers).await {
            caller.unwrap_or_else(|e| panic!("{e}"));
        }
    });
    (statuses, task)
}

/// Waits until an answer after `since` has `status`; returns when the first came.
async fn first_answer(statuses: &Statuses, since: Instant, status: u16) -> Instant {
    testkit::eventually(
        &format!("an answer {status}"),
        Duration::from_secs(5),
        || async {
            statuses
                .lock()
                .await
                .iter()
                .find(|(at, seen)| *at > since && *seen == status)
                .map(|(at, _)| *at)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_under_load_take_effect_within_a_second_and_no_request_fails() {
    let first = FakeUpstream::spawn().await;
    let second = FakeUpstream::spawn().await;
    let dir = testkit::TempDir::new("logicore-reload");
    let file = dir.path().join("logicore.toml");
    save(&file, &config_file(&first.url(), &first.url(), GENEROUS));
    let gateway = Reloading::start(&file).await;
    let settings = gateway.reloader.current().settings.clone();
    let customer = bearer(&settings.auth, Role::Customer);
    let admin = bearer(&settings.auth, Role::Admin);

    let stop = Arc::new(AtomicBool::new(false));
    let (statuses, task) = load(
        format!("{}/api/v1/users/me", gateway.public),
        customer.clone(),
        stop.clone(),
    );
    first_answer(&statuses, Instant::now() - Duration::from_secs(1), 200).await;

    // A second instance of users.
    let both = format!("{},{}", first.url(), second.url());
    let written = Instant::now();
    save(&file, &config_file(&both, &first.url(), GENEROUS));
    let before = second.hits();
    let reached = testkit::eventually(
        "the new instance to get requests",
        Duration::from_secs(5),
        || std::future::ready((second.hits() > before).then(Instant::now)),
    )
    .await;
    let upstream_added = reached - written;

    // An RBAC rule: /users/me for admins only.
    let written = Instant::now();
    save(
        &file,
        &config_file(
            &both,
            &first.url(),
            &format!(
                "{GENEROUS}\n[[gateway.rbac]]\nroute = \"GET /api/v1/users/me\"\nroles = [\"admin\"]\n"
            ),
        ),
    );
    let rbac_changed = first_answer(&statuses, written, 403).await - written;

    // Back to the default rules, with a rate limit of 5 per minute.
    let written = Instant::now();
    save(
        &file,
        &config_file(
            &both,
            &first.url(),
            "[gateway.rate_limit]\nmax_requests = 5\nwindow_ms = 60000\n",
        ),
    );
    let limited = first_answer(&statuses, written, 429).await - written;

    stop.store(true, Ordering::Relaxed);
    task.await.unwrap_or_else(|e| panic!("{e}"));
    let statuses = statuses.lock().await;
    let failed: Vec<u16> = statuses
        .iter()
        .map(|(_, status)| *status)
        .filter(|status| ![200, 403, 429].contains(status))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    for (what, took) in [
        ("an added instance", upstream_added),
        ("an RBAC rule", rbac_changed),
        ("a lower rate limit", limited),
    ] {
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    }
    assert!(statuses.len() > 1000, "only {} requests", statuses.len());
    // The reload metrics are the process's, which other tests here reload too: at least these three.
    assert!(
        testkit::metric_sum(
            &testkit::metrics(&format!("{}/metrics", gateway.admin)).await,
            "config_reloads_total",
            r#"result="applied""#,
        ) >= 3.0
    );

    // A non-admin may not read or reload the configuration.
    let client = testkit::client();
    for (token, status) in [(None, 401), (Some(&customer), 403), (Some(&admin), 200)] {
        let mut request = client.post(format!("{}/admin/config/reload", gateway.admin));
        if let Some(token) = token {
            request = request.header("authorization", token);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(response.status(), status);
    }
    eprintln!(
        "reload: added instance {upstream_added:?}, rbac {rbac_changed:?}, rate limit {limited:?}, {} requests",
        statuses.len()
    );
    drop(statuses);
    gateway.stop().await;
}

#[tokio::test]
async fn an_invalid_file_changes_nothing_and_a_restart_only_key_waits_for_a_restart() {
    let upstream = FakeUpstream::spawn().await;
    let dir = testkit::TempDir::new("logicore-reload");
    let file = dir.path().join("logicore.toml");
    let valid = config_file(
        &upstream.url(),
        &upstream.url(),
        "[gateway.rate_limit]\nmax_requests = 3\nwindow_ms = 60000\n",
    );
    save(&file, &valid);
    let gateway = Reloading::start(&file).await;
    let settings = gateway.reloader.current().settings.clone();
    let admin = bearer(&settings.auth, Role::Admin);
    let client = testkit::client();
    let reload = || {
        client
            .post(format!("{}/admin/config/reload", gateway.admin))
            .header("authorization", &admin)
            .send()
    };

    // A wrong type, an unknown key and a value out of range, all at once: every one is named.
    std::fs::write(
        &file,
        format!(
            "{valid}\n[gateway.retry]\nmax_attempts = \"three\"\nbackoff_sideways_ms = 5\n\n[gateway.outlier]\nmax_ejection_percent = 250\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let rejected = reload().await.unwrap_or_else(|e| panic!("{e}"));
    let problem = testkit::assert_problem(rejected, 422, "CONFIG_INVALID").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
        .unwrap_or_default();
    for key in [
        "gateway.retry.max_attempts",
        "gateway.retry.backoff_sideways_ms",
        "gateway.outlier.max_ejection_percent",
    ] {
        assert!(fields.contains(&key), "{key} not named: {problem}");
    }
    assert!(
        testkit::metric_sum(
            &testkit::metrics(&format!("{}/metrics", gateway.admin)).await,
            "config_reloads_total",
            r#"result="rejected""#,
        ) >= 1.0
    );
    // Valid to the loader, but no route goes to a `billing` upstream: the gateway's own check refuses it
    // before anything is applied.
    let with_billing = valid.replacen(
        "[gateway.upstreams]\n",
        &format!("[gateway.upstreams]\nbilling = \"{}\"\n", upstream.url()),
        1,
    );
    std::fs::write(&file, with_billing).unwrap_or_else(|e| panic!("{e}"));
    let refused = reload().await.unwrap_or_else(|e| panic!("{e}"));
    let problem = testkit::assert_problem(refused, 422, "CONFIG_INVALID").await;
    assert_eq!(
        problem["errors"][0]["field"], "gateway.upstreams.billing",
        "{problem}"
    );
    // The old limit of 3 still applies.
    let url = format!("{}/api/v1/track/LC123", gateway.public);
    let statuses: Vec<u16> = futures::future::join_all((0..4).map(|_| client.get(&url).send()))
        .await
        .into_iter()
        .map(|r| r.map(|r| r.status().as_u16()).unwrap_or(0))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        1,
        "{statuses:?}"
    );

    // The listener's port needs a restart: reported, not applied; the rest of the file is.
    let port_moved = config_file(
        &upstream.url(),
        &upstream.url(),
        "[gateway]\nport = 18081\nrequest_timeout_ms = 4000\n\n[gateway.rate_limit]\nmax_requests = 3\nwindow_ms = 60000\n",
    );
    std::fs::write(&file, port_moved).unwrap_or_else(|e| panic!("{e}"));
    let answer = testkit::json(reload().await.unwrap_or_else(|e| panic!("{e}"))).await;
    assert_eq!(answer["result"], "applied", "{answer}");
    assert_eq!(
        answer["applied"][0]["key"], "gateway.request_timeout_ms",
        "{answer}"
    );
    assert_eq!(
        answer["restart_required"][0]["key"], "gateway.port",
        "{answer}"
    );
    // The limit's rule did not change, so its bucket carried over the reload: still spent.
    let after = client
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(after.status(), 429, "the bucket was reset by the reload");
    let report = testkit::json(
        client
            .get(format!("{}/admin/config", gateway.admin))
            .header("authorization", &admin)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
    assert_eq!(report["restart_pending"], true, "{report}");
    let value = |key: &str| -> Value {
        report["values"]
            .as_array()
            .and_then(|values| values.iter().find(|v| v["key"] == key).cloned())
            .unwrap_or_default()
    };
    assert_eq!(
        value("gateway.port")["value"],
        "8080",
        "the running port stays: {report}"
    );
    assert_eq!(value("gateway.request_timeout_ms")["value"], "4000");
    assert_eq!(value("gateway.request_timeout_ms")["reloadable"], true);
    assert_eq!(
        value("auth.jwt_secret")["value"],
        "\"********\"",
        "secrets masked"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_configmap_swapped_through_its_data_symlink_is_reloaded() {
    let upstream = FakeUpstream::spawn().await;
    let dir = testkit::TempDir::new("logicore-reload");
    // What the kubelet makes: ..data -> a timestamped directory; the file is a symlink through ..data.
    let publish = |version: &str, contents: &str| {
        let versioned = dir.path().join(format!("..{version}"));
        std::fs::create_dir_all(&versioned).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(versioned.join("logicore.toml"), contents).unwrap_or_else(|e| panic!("{e}"));
        let staging = dir.path().join("..data_tmp");
        let _ = std::fs::remove_file(&staging);
        std::os::unix::fs::symlink(format!("..{version}"), &staging)
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&staging, dir.path().join("..data")).unwrap_or_else(|e| panic!("{e}"));
    };
    publish(
        "v1",
        &config_file(&upstream.url(), &upstream.url(), GENEROUS),
    );
    let file = dir.path().join("logicore.toml");
    std::os::unix::fs::symlink("..data/logicore.toml", &file).unwrap_or_else(|e| panic!("{e}"));
    let gateway = Reloading::start(&file).await;

    let swapped = Instant::now();
    publish(
        "v2",
        &config_file(
            &upstream.url(),
            &upstream.url(),
            "[gateway.rate_limit]\nmax_requests = 1\nwindow_ms = 60000\n",
        ),
    );
    testkit::eventually(
        "the swapped ConfigMap to be in force",
        Duration::from_secs(2),
        || async {
            (gateway
                .reloader
                .current()
                .settings
                .gateway
                .rate_limit
                .max_requests
                == 1)
                .then_some(())
        },
    )
    .await;
    assert!(
        swapped.elapsed() < Duration::from_secs(1),
        "{:?}",
        swapped.elapsed()
    );
    let client = testkit::client();
    let url = format!("{}/api/v1/track/LC1", gateway.public);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(
            client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0),
        );
    }
    assert_eq!(statuses[1], 429, "{statuses:?}");
    gateway.stop().await;
}
