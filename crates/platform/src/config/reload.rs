//! Configuration hot reload. A reload loads every layer again (defaults, the per-environment file, the file
//! given by `--config`/`LOGICORE_CONFIG`, the environment) through exactly the loader and validation of the
//! start, so a file that would not start the process is rejected and nothing changes.
//!
//! A valid file is compared with the configuration in force key by key ([`Change`]). Keys a running
//! process takes in ([`is_reloadable`]: limits, rules, routes, upstream lists, timeouts, log levels) are
//! applied together: subscribers get the whole new [`Settings`] at once, never half of it. Keys that need a
//! restart (ports, connections, transports) keep their running value; the change is reported (a log line
//! naming the key, `/admin/config`'s `restart_required`) and applied at the next start.
//!
//! Triggers: a change in the configuration file's directory (the directory, not the file: editors save by
//! rename and Kubernetes swaps a ConfigMap's `..data` symlink), debounced; `SIGHUP`; and the gateway's
//! `POST /admin/config/reload`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicU64;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::mask::mask_value;
use super::tree::{self, Source};
use super::{ConfigError, ConfigSources, LoadedConfig, SectionSpec, Settings};

/// Keys (or, ending in `.`, key prefixes) a running process applies without a restart. Everything else
/// (listeners, database, broker, cache connection, discovery backend, secrets, connection limits) is read
/// once at start.
const RELOADABLE: &[&str] = &[
    "log.level",
    "gateway.log_level",
    "gateway.rate_limit.window_ms",
    "gateway.rate_limit.max_requests",
    "gateway.rate_limit.burst",
    "gateway.rate_limit.overrides",
    "gateway.circuit_breaker.",
    "gateway.retry.",
    "gateway.outlier.",
    "gateway.rbac",
    "gateway.public_routes",
    "gateway.cors_allowed_origins",
    "gateway.upstreams.",
    "gateway.request_timeout_ms",
    "gateway.max_body_bytes",
    "gateway.load_balancing",
    "gateway.readiness_timeout_ms",
    "gateway.readiness_cache_ms",
    "tracing.sampler",
    "tracing.sampler_arg",
];

/// Whether a running process applies a change of `key` (a dotted leaf key).
pub fn is_reloadable(key: &str) -> bool {
    RELOADABLE
        .iter()
        .any(|entry| match entry.strip_suffix('.') {
            Some(prefix) => key.starts_with(entry) || key == prefix,
            None => key == *entry,
        })
}

/// One key whose value a reload would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub key: String,
    /// The value in force, masked as printed; `None` when the key is new.
    pub old: Option<String>,
    /// The value loaded now, masked; `None` when the key is gone.
    pub new: Option<String>,
    /// Where the new value comes from.
    pub source: String,
    /// Applied by a reload, or waiting for a restart.
    pub reloadable: bool,
}

/// Every key whose value differs between `current` and `candidate`, in key order.
pub fn diff(current: &LoadedConfig, candidate: &LoadedConfig) -> Vec<Change> {
    let before: BTreeMap<String, toml::Value> = tree::leaves(&current.tree).into_iter().collect();
    let after: BTreeMap<String, toml::Value> = tree::leaves(&candidate.tree).into_iter().collect();
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .map(|key| Change {
            key: key.clone(),
            old: before.get(key).map(|value| mask_value(key, value)),
            new: after.get(key).map(|value| mask_value(key, value)),
            source: candidate
                .sources
                .get(key)
                .or_else(|| current.sources.get(key))
                .cloned()
                .unwrap_or(Source::Default)
                .to_string(),
            reloadable: is_reloadable(key),
        })
        .collect()
}

/// What a reload would do: every change, and the configuration to put in force (the candidate with each
/// change that needs a restart set back to its running value).
struct Plan {
    changes: Vec<Change>,
    applied: LoadedConfig,
}

fn plan(
    current: &LoadedConfig,
    candidate: LoadedConfig,
    sections: &[SectionSpec],
) -> Result<Plan, ConfigError> {
    let changes = diff(current, &candidate);
    if changes.iter().all(|change| change.reloadable) {
        return Ok(Plan {
            changes,
            applied: candidate,
        });
    }
    let LoadedConfig {
        mut tree,
        mut sources,
        ..
    } = candidate;
    for change in changes.iter().filter(|change| !change.reloadable) {
        match tree::get(&current.tree, &change.key) {
            Some(running) => tree::set(&mut tree, &change.key, running.clone()),
            None => tree::remove(&mut tree, &change.key),
        }
        match current.sources.get(&change.key) {
            Some(source) => sources.insert(change.key.clone(), source.clone()),
            None => sources.remove(&change.key),
        };
    }
    let defaults = super::defaults(sections).map_err(|issue| ConfigError {
        issues: vec![issue],
    })?;
    // Checked again: a reloadable value may be valid only beside the new value of a key that waits.
    let applied = super::finish(tree, sources, &defaults, sections, Vec::new())?;
    Ok(Plan { changes, applied })
}

impl LoadedConfig {
    /// A short fingerprint of the configuration (every value, secrets included, hashed): equal for equal
    /// configurations, for the `config_info` metric and `/admin/config`.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(toml::to_string(&self.tree).unwrap_or_default().as_bytes());
        digest
            .iter()
            .take(8)
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Every key with its value (secrets masked), its source and whether it reloads.
    pub fn entries(&self) -> Vec<serde_json::Value> {
        tree::leaves(&self.tree)
            .into_iter()
            .map(|(key, value)| {
                serde_json::json!({
                    "key": key,
                    "value": mask_value(&key, &value),
                    "source": self.sources.get(&key).cloned().unwrap_or(Source::Default).to_string(),
                    "reloadable": is_reloadable(&key),
                })
            })
            .collect()
    }
}

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The reloadable changes are in force; `restart_required` lists those waiting for a restart.
    Applied {
        applied: Vec<Change>,
        restart_required: Vec<Change>,
    },
    /// Nothing a running process applies changed (there may be changes that wait for a restart).
    Unchanged { restart_required: Vec<Change> },
    /// The configuration is invalid: nothing changed.
    Rejected(ConfigError),
}

impl ReloadOutcome {
    fn result(&self) -> &'static str {
        match self {
            ReloadOutcome::Applied { .. } => "applied",
            ReloadOutcome::Unchanged { .. } => "unchanged",
            ReloadOutcome::Rejected(_) => "rejected",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    hash: String,
}

/// The process's reload metrics, one set however many registries expose them.
struct ReloadMetrics {
    reloads: Family<ResultLabels, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    info: Family<InfoLabels, Gauge>,
}

static METRICS: LazyLock<ReloadMetrics> = LazyLock::new(|| ReloadMetrics {
    reloads: Family::default(),
    last_success: Gauge::default(),
    info: Family::default(),
});

/// Registers the reload metrics in a service's or the gateway's registry (called by
/// [`crate::metrics::HttpMetrics::register`], so every `/metrics` has them).
pub(crate) fn register_metrics(registry: &mut Registry) {
    let metrics = &*METRICS;
    registry.register(
        "config_reloads",
        "Configuration reloads by result: applied, rejected (invalid, nothing changed) or unchanged",
        metrics.reloads.clone(),
    );
    registry.register(
        "config_last_reload_success_timestamp_seconds",
        "When the configuration was last loaded successfully (at start, or by a reload that was not rejected)",
        metrics.last_success.clone(),
    );
    registry.register(
        "config_info",
        "The configuration in force, by a hash of its values",
        metrics.info.clone(),
    );
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Quiet time after a change in the file's directory before reloading: an editor's save or a ConfigMap
/// swap is several events.
const DEBOUNCE: Duration = Duration::from_millis(150);

/// The configuration in force and how to reload it. Cheap to clone.
#[derive(Clone)]
pub struct Reloader(Arc<Inner>);

struct Inner {
    /// Where the configuration is loaded from: the files are read again on each reload; the environment
    /// is the process's, which does not change while it runs.
    sources: ConfigSources,
    sections: Vec<SectionSpec>,
    state: Mutex<State>,
    /// One reload at a time: two triggers at once must not interleave.
    running: tokio::sync::Mutex<()>,
    sender: watch::Sender<Arc<Settings>>,
    /// What each part of the process checks a configuration for beyond the loader's rules, before it is
    /// applied (see [`Reloader::add_check`]).
    checks: Mutex<Vec<Check>>,
}

/// A part's own check of a configuration: `Err((key, rule))` refuses it.
type Check = Box<dyn Fn(&Settings) -> Result<(), (String, String)> + Send + Sync>;

struct State {
    current: Arc<LoadedConfig>,
    restart_required: Vec<Change>,
    last: Option<serde_json::Value>,
}

impl Reloader {
    /// The configuration the process started with, loaded from `sources` with `sections` registered.
    pub fn new(loaded: LoadedConfig, sources: ConfigSources, sections: Vec<SectionSpec>) -> Self {
        let metrics = &*METRICS;
        metrics.last_success.set(now_seconds());
        metrics
            .info
            .get_or_create(&InfoLabels {
                hash: loaded.fingerprint(),
            })
            .set(1);
        let (sender, _) = watch::channel(Arc::new(loaded.settings.clone()));
        Self(Arc::new(Inner {
            sources,
            sections,
            state: Mutex::new(State {
                current: Arc::new(loaded),
                restart_required: Vec::new(),
                last: None,
            }),
            running: tokio::sync::Mutex::new(()),
            sender,
            checks: Mutex::new(Vec::new()),
        }))
    }

    /// The configuration file given by `--config` or `LOGICORE_CONFIG`, if any.
    fn file(&self) -> Option<PathBuf> {
        let sources = &self.0.sources;
        sources
            .file
            .clone()
            .or_else(|| sources.env.get("LOGICORE_CONFIG").map(PathBuf::from))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<LoadedConfig> {
        self.state().current.clone()
    }

    /// Adds a check every reloaded configuration must pass before it is applied, for a part of the process
    /// whose own rules go beyond the loader's (the gateway's route table against its upstreams, say).
    pub fn add_check(
        &self,
        check: impl Fn(&Settings) -> Result<(), (String, String)> + Send + Sync + 'static,
    ) {
        self.0
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(check));
    }

    /// Every added check's objection to `settings`, as configuration issues.
    fn objections(&self, settings: &Settings) -> Result<(), ConfigError> {
        let checks = self.0.checks.lock().unwrap_or_else(PoisonError::into_inner);
        let issues: Vec<super::ConfigIssue> = checks
            .iter()
            .filter_map(|check| check(settings).err())
            .map(|(key, rule)| super::ConfigIssue {
                key,
                rule,
                value: String::new(),
                source: "the reloaded configuration".to_owned(),
            })
            .collect();
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { issues })
        }
    }

    /// The settings in force now and after every applied reload.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Settings>> {
        self.0.sender.subscribe()
    }

    /// Loads the configuration again and applies what a running process can; `trigger` names why, for
    /// the logs.
    pub async fn reload(&self, trigger: &'static str) -> ReloadOutcome {
        let _one_at_a_time = self.0.running.lock().await;
        let current = self.current();
        let outcome = match super::load(&self.0.sources, &self.0.sections)
            .and_then(|candidate| plan(&current, candidate, &self.0.sections))
            .and_then(|plan| self.objections(&plan.applied.settings).map(|()| plan))
        {
            Err(error) => {
                for issue in &error.issues {
                    tracing::warn!(
                        trigger,
                        key = %issue.key,
                        rule = %issue.rule,
                        value = %issue.value,
                        source = %issue.source,
                        "configuration reload rejected: the configuration in force stays"
                    );
                }
                ReloadOutcome::Rejected(error)
            }
            Ok(Plan { changes, applied }) => {
                let (reloadable, restart_required): (Vec<Change>, Vec<Change>) =
                    changes.into_iter().partition(|change| change.reloadable);
                for change in &restart_required {
                    tracing::warn!(
                        trigger,
                        key = %change.key,
                        running = change.old.as_deref().unwrap_or("(unset)"),
                        loaded = change.new.as_deref().unwrap_or("(unset)"),
                        "configuration change needs a restart; the running value stays until then"
                    );
                }
                if reloadable.is_empty() {
                    ReloadOutcome::Unchanged { restart_required }
                } else {
                    for change in &reloadable {
                        tracing::info!(
                            trigger,
                            key = %change.key,
                            old = change.old.as_deref().unwrap_or("(unset)"),
                            new = change.new.as_deref().unwrap_or("(unset)"),
                            "configuration change applied"
                        );
                    }
                    let metrics = &*METRICS;
                    metrics.info.remove(&InfoLabels {
                        hash: current.fingerprint(),
                    });
                    metrics
                        .info
                        .get_or_create(&InfoLabels {
                            hash: applied.fingerprint(),
                        })
                        .set(1);
                    let settings = Arc::new(applied.settings.clone());
                    self.state().current = Arc::new(applied);
                    self.0.sender.send_replace(settings);
                    ReloadOutcome::Applied {
                        applied: reloadable,
                        restart_required,
                    }
                }
            }
        };
        let metrics = &*METRICS;
        metrics
            .reloads
            .get_or_create(&ResultLabels {
                result: outcome.result(),
            })
            .inc();
        let mut state = self.state();
        if !matches!(outcome, ReloadOutcome::Rejected(_)) {
            metrics.last_success.set(now_seconds());
        }
        if let ReloadOutcome::Applied {
            restart_required, ..
        }
        | ReloadOutcome::Unchanged { restart_required } = &outcome
        {
            state.restart_required = restart_required.clone();
        }
        state.last = Some(serde_json::json!({
            "trigger": trigger,
            "result": outcome.result(),
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }));
        outcome
    }

    /// `GET /admin/config`: the configuration in force (secrets masked, each value's source, whether it
    /// reloads), its hash, the changes waiting for a restart and the last reload.
    pub fn report(&self) -> serde_json::Value {
        let state = self.state();
        serde_json::json!({
            "hash": state.current.fingerprint(),
            "file": self.file().map(|file| file.display().to_string()),
            "restart_pending": !state.restart_required.is_empty(),
            "restart_required": state.restart_required,
            "last_reload": state.last,
            "values": state.current.entries(),
        })
    }

    /// Reloads on `SIGHUP` and on every change in the configuration file's directory, until `shutdown`.
    pub fn spawn_triggers(&self, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        let reloader = self.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!(
                    "cannot listen for SIGHUP; reload through the file or the admin API"
                );
                return;
            };
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    received = hangups.recv() => {
                        if received.is_none() {
                            return;
                        }
                        reloader.reload("sighup").await;
                    }
                }
            }
        }));
        if let Some(file) = self.file() {
            match watch_directory(&file) {
                Ok((watcher, mut changes)) => {
                    let reloader = self.clone();
                    tasks.push(tokio::spawn(async move {
                        // Kept alive as long as the task: dropping it stops the watch.
                        let _watcher = watcher;
                        loop {
                            tokio::select! {
                                () = shutdown.cancelled() => return,
                                change = changes.recv() => if change.is_none() { return },
                            }
                            // The rest of the burst.
                            loop {
                                match tokio::time::timeout(DEBOUNCE, changes.recv()).await {
                                    Ok(Some(())) => {}
                                    Ok(None) => return,
                                    Err(_) => break,
                                }
                            }
                            reloader.reload("file").await;
                        }
                    }));
                }
                Err(error) => tracing::warn!(
                    file = %file.display(),
                    %error,
                    "cannot watch the configuration file's directory; reload with SIGHUP or the admin API"
                ),
            }
        }
        tasks
    }
}

/// Watches the directory holding `file`; each change there is one `()` on the receiver. Reads (ours
/// included) are not changes.
fn watch_directory(
    file: &std::path::Path,
) -> notify::Result<(
    notify::RecommendedWatcher,
    tokio::sync::mpsc::UnboundedReceiver<()>,
)> {
    use notify::Watcher;
    let directory = match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !matches!(event.kind, notify::EventKind::Access(_))
        {
            let _ = sender.send(());
        }
    })?;
    watcher.watch(&directory, notify::RecursiveMode::NonRecursive)?;
    Ok((watcher, receiver))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn sources(file: &std::path::Path, env: &[(&str, &str)]) -> ConfigSources {
        let mut env: HashMap<String, String> = env
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        env.insert("LOGICORE_ENV".into(), "test".into());
        ConfigSources {
            file: Some(file.to_path_buf()),
            config_dir: PathBuf::from("/nonexistent"),
            env,
        }
    }

    fn temp_file(contents: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("logicore-reload-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn reloader(file: &std::path::Path, env: &[(&str, &str)]) -> Reloader {
        let sources = sources(file, env);
        let loaded = super::super::load(&sources, &[]).unwrap();
        Reloader::new(loaded, sources, Vec::new())
    }

    #[test]
    fn limits_rules_and_levels_reload_and_connections_do_not() {
        for key in [
            "log.level",
            "gateway.rate_limit.max_requests",
            "gateway.rate_limit.overrides",
            "gateway.circuit_breaker.timeout_ms",
            "gateway.rbac",
            "gateway.upstreams.users",
            "tracing.sampler_arg",
        ] {
            assert!(is_reloadable(key), "{key}");
        }
        for key in [
            "gateway.port",
            "gateway.rate_limit.backend",
            "database.url",
            "messaging.transport",
            "discovery.backend",
            "auth.jwt_secret",
            "gateway.circuit_breakerx",
            "tracing.otlp_endpoint",
        ] {
            assert!(!is_reloadable(key), "{key}");
        }
    }

    #[tokio::test]
    async fn a_reload_applies_what_it_can_holds_back_the_rest_and_rejects_an_invalid_file() {
        let file = temp_file("[log]\nlevel = \"info\"\n");
        let reloader = reloader(&file, &[("DB_PASSWORD", "hunter2-secret")]);
        let mut settings = reloader.subscribe();
        settings.borrow_and_update();

        assert!(matches!(
            reloader.reload("test").await,
            ReloadOutcome::Unchanged { ref restart_required } if restart_required.is_empty()
        ));

        std::fs::write(&file, "[log]\nlevel = \"debug\"\n[gateway]\nport = 9999\n").unwrap();
        let ReloadOutcome::Applied {
            applied,
            restart_required,
        } = reloader.reload("test").await
        else {
            panic!("not applied");
        };
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0].key, "log.level");
        assert_eq!(applied[0].old.as_deref(), Some("\"info\""));
        assert_eq!(applied[0].new.as_deref(), Some("\"debug\""));
        assert_eq!(restart_required.len(), 1);
        assert_eq!(restart_required[0].key, "gateway.port");
        assert!(settings.has_changed().unwrap());
        let current = settings.borrow_and_update().clone();
        assert_eq!(current.log.level, "debug");
        assert_eq!(current.gateway.port, 8080, "the running port stays");
        let report = reloader.report();
        assert_eq!(report["restart_pending"], true);
        assert!(
            !report.to_string().contains("hunter2"),
            "a secret leaked: {report}"
        );

        std::fs::write(
            &file,
            "[log]\nlevel = \"loud\"\n[gateway.retry]\nmax_attempts = \"x\"\n",
        )
        .unwrap();
        let ReloadOutcome::Rejected(error) = reloader.reload("test").await else {
            panic!("not rejected");
        };
        let keys: Vec<&str> = error.issues.iter().map(|i| i.key.as_str()).collect();
        assert!(
            keys.contains(&"log.level") && keys.contains(&"gateway.retry.max_attempts"),
            "{keys:?}"
        );
        assert!(
            !settings.has_changed().unwrap(),
            "a rejected file reached the subscribers"
        );
        assert_eq!(reloader.current().settings.log.level, "debug");
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn a_diff_masks_secrets_and_names_where_the_new_value_comes_from() {
        let file = temp_file("[database]\npassword = \"old-secret\"\n");
        let current = super::super::load(&sources(&file, &[]), &[]).unwrap();
        std::fs::write(
            &file,
            "[database]\npassword = \"new-secret\"\npool_max = 20\n",
        )
        .unwrap();
        let candidate = super::super::load(&sources(&file, &[]), &[]).unwrap();
        let changes = diff(&current, &candidate);
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["database.password", "database.pool_max"]);
        assert!(!format!("{changes:?}").contains("secret"), "{changes:?}");
        assert!(changes[1].source.starts_with("file "), "{:?}", changes[1]);
        assert!(changes.iter().all(|c| !c.reloadable));
        let _ = std::fs::remove_file(&file);
    }
}
