//! The `[messaging]` settings: defaults, validation, and the transport they select.

use std::collections::HashMap;
use std::path::PathBuf;

use messaging::{MessagingOptions, TransportKind};
use platform::config::{ConfigError, ConfigSources, Settings, load};

fn load_with(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut vars: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.insert("LOGICORE_ENV".into(), "test".into());
    let sources = ConfigSources {
        file: None,
        config_dir: PathBuf::from("/nonexistent"),
        env: vars,
    };
    load(&sources, &[]).map(|loaded| loaded.settings)
}

fn rejected_keys(env: &[(&str, &str)]) -> Vec<String> {
    match load_with(env) {
        Ok(_) => Vec::new(),
        Err(error) => error.issues.into_iter().map(|issue| issue.key).collect(),
    }
}

#[test]
fn defaults_select_postgres_and_rabbitmq_url_selects_rabbitmq() {
    let settings = load_with(&[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(settings.messaging.transport, "auto");
    assert_eq!(
        TransportKind::resolve(&settings.messaging),
        TransportKind::Postgres
    );
    let options = MessagingOptions::from_settings(&settings.messaging);
    assert_eq!(options.prefetch, 64);
    assert_eq!(options.max_attempts, 5);

    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let settings = load_with(&[("RABBITMQ_URL", url)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        TransportKind::resolve(&settings.messaging),
        TransportKind::RabbitMq
    );
    let settings = load_with(&[
        ("RABBITMQ_URL", url),
        ("LOGICORE_MESSAGING__TRANSPORT", "postgres"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        TransportKind::resolve(&settings.messaging),
        TransportKind::Postgres
    );
}

#[test]
fn messaging_settings_outside_their_ranges_are_refused_together() {
    let keys = rejected_keys(&[
        ("LOGICORE_MESSAGING__TRANSPORT", "kafka"),
        ("LOGICORE_MESSAGING__PREFETCH", "0"),
        ("LOGICORE_MESSAGING__MAX_ATTEMPTS", "0"),
        ("LOGICORE_MESSAGING__RETRY_DELAY_MS", "0"),
        ("LOGICORE_MESSAGING__RELAY_POLL_MS", "1"),
        ("LOGICORE_MESSAGING__RETENTION_HOURS", "0"),
    ]);
    for key in [
        "messaging.transport",
        "messaging.prefetch",
        "messaging.max_attempts",
        "messaging.retry_delay_ms",
        "messaging.relay_poll_ms",
        "messaging.retention_hours",
    ] {
        assert!(keys.iter().any(|k| k == key), "{key} not refused: {keys:?}");
    }
}

#[test]
fn the_rabbitmq_transport_needs_a_url() {
    let keys = rejected_keys(&[("LOGICORE_MESSAGING__TRANSPORT", "rabbitmq")]);
    assert_eq!(keys, ["messaging.transport"]);
}
