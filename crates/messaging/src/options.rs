//! Runtime options: the `[messaging]` settings plus the knobs that only code (and tests) should turn.

use std::fmt;
use std::time::Duration;

use platform::config::MessagingSettings;

/// The exchange of `docs/api.md`; the PostgreSQL transport derives its schema from it.
pub const EXCHANGE: &str = "logicore.events";

/// Which transport carries events between services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    RabbitMq,
    Postgres,
}

impl TransportKind {
    /// `messaging.system` of the OpenTelemetry conventions.
    pub fn system(self) -> &'static str {
        match self {
            TransportKind::RabbitMq => "rabbitmq",
            TransportKind::Postgres => "postgresql",
        }
    }

    /// `messaging.transport`, where `auto` means RabbitMQ when a URL is configured and PostgreSQL otherwise.
    pub fn resolve(settings: &MessagingSettings) -> Self {
        match settings.transport.as_str() {
            "rabbitmq" => TransportKind::RabbitMq,
            "postgres" => TransportKind::Postgres,
            _ if settings.rabbitmq_url.is_empty() => TransportKind::Postgres,
            _ => TransportKind::RabbitMq,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::RabbitMq => "rabbitmq",
            TransportKind::Postgres => "postgres",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct MessagingOptions {
    /// Topic exchange (RabbitMQ) or, with `.` → `_`, the schema of the PostgreSQL transport's tables.
    pub exchange: String,
    pub prefetch: u16,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    pub relay_poll: Duration,
    /// Outbox rows one relay pass publishes and confirms together.
    pub relay_batch: usize,
    pub retention: Duration,
    /// Handlers running at once per consumer instance; events of one aggregate always share one lane, so
    /// they are handled one after another, in order.
    pub lanes: usize,
    pub connect_timeout: Duration,
    /// Longest wait for publisher confirms of one batch.
    pub publish_timeout: Duration,
    /// First and longest reconnect/breaker cool-down; the wait doubles (with jitter) in between.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long a PostgreSQL-transport consumer owns a claimed delivery before another may take it over.
    pub lease: Duration,
    /// RabbitMQ `x-expires` on the group's queues: unused queues vanish after this long (tests).
    pub queue_expires: Option<Duration>,
    /// How often queue depth and outbox lag are sampled into metrics.
    pub sample_every: Duration,
}

impl Default for MessagingOptions {
    fn default() -> Self {
        Self {
            exchange: EXCHANGE.to_owned(),
            prefetch: 64,
            max_attempts: 5,
            retry_delay: Duration::from_secs(5),
            relay_poll: Duration::from_secs(1),
            relay_batch: 500,
            retention: Duration::from_secs(7 * 24 * 3600),
            lanes: 4,
            connect_timeout: Duration::from_secs(3),
            publish_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            lease: Duration::from_secs(60),
            queue_expires: None,
            sample_every: Duration::from_secs(5),
        }
    }
}

impl MessagingOptions {
    pub fn from_settings(settings: &MessagingSettings) -> Self {
        Self {
            prefetch: settings.prefetch.max(1),
            max_attempts: settings.max_attempts.max(1),
            retry_delay: settings.retry_delay(),
            relay_poll: settings.relay_poll(),
            retention: settings.retention(),
            exchange: settings.exchange.clone(),
            queue_expires: (settings.queue_expires_ms > 0)
                .then(|| Duration::from_millis(settings.queue_expires_ms)),
            reconnect_min: Duration::from_millis(settings.reconnect_min_ms),
            reconnect_max: Duration::from_millis(settings.reconnect_max_ms),
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::config::Secret;

    fn settings(transport: &str, url: &str) -> MessagingSettings {
        MessagingSettings {
            rabbitmq_url: Secret::new(url),
            transport: transport.into(),
            prefetch: 10,
            max_attempts: 3,
            retry_delay_ms: 100,
            relay_poll_ms: 50,
            retention_hours: 1,
            exchange: EXCHANGE.into(),
            queue_expires_ms: 0,
            reconnect_min_ms: 25,
            reconnect_max_ms: 750,
        }
    }

    #[test]
    fn auto_follows_the_rabbitmq_url_and_an_explicit_choice_wins() {
        let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
        assert_eq!(
            TransportKind::resolve(&settings("auto", url)),
            TransportKind::RabbitMq
        );
        assert_eq!(
            TransportKind::resolve(&settings("auto", "")),
            TransportKind::Postgres
        );
        assert_eq!(
            TransportKind::resolve(&settings("postgres", url)),
            TransportKind::Postgres
        );
        assert_eq!(
            TransportKind::resolve(&settings("rabbitmq", url)),
            TransportKind::RabbitMq
        );
    }

    #[test]
    fn options_take_the_configured_values() {
        let options = MessagingOptions::from_settings(&settings("auto", ""));
        assert_eq!(options.prefetch, 10);
        assert_eq!(options.max_attempts, 3);
        assert_eq!(options.retry_delay, Duration::from_millis(100));
        assert_eq!(options.relay_poll, Duration::from_millis(50));
        assert_eq!(options.retention, Duration::from_secs(3600));
        assert_eq!(options.exchange, EXCHANGE);
        assert_eq!(options.reconnect_min, Duration::from_millis(25));
        assert_eq!(options.reconnect_max, Duration::from_millis(750));
    }
}
