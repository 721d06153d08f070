//! The `/readyz` check of the event backbone: transport connectivity (with the breaker state) and outbox lag.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use platform::db::Db;
use platform::health::{Check, CheckReport};
use serde_json::json;

use crate::outbox::outbox_stats;
use crate::transport::Transport;

/// Reports `messaging` as down when the transport cannot be reached or the oldest unrelayed event is older
/// than `max_lag`. Not required by default: while the broker is down the service still serves requests and
/// its outbox keeps their events, so `/readyz` shows the dependency as degraded rather than pulling the
/// instance out of rotation; [`MessagingCheck::required`] changes that.
pub struct MessagingCheck {
    db: Db,
    transport: Arc<dyn Transport>,
    max_lag: Duration,
    required: bool,
}

impl MessagingCheck {
    pub fn new(db: &Db, transport: Arc<dyn Transport>) -> Self {
        Self {
            db: db.clone(),
            transport,
            max_lag: Duration::from_secs(60),
            required: false,
        }
    }

    pub fn max_lag(mut self, max_lag: Duration) -> Self {
        self.max_lag = max_lag;
        self
    }

    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }
}

impl Check for MessagingCheck {
    fn name(&self) -> &str {
        "messaging"
    }

    fn required(&self) -> bool {
        self.required
    }

    fn check(&self) -> BoxFuture<'_, CheckReport> {
        Box::pin(async move {
            let health = self.transport.health().await;
            let error = || {
                health
                    .error
                    .clone()
                    .unwrap_or_else(|| "transport down".into())
            };
            let mut report = match (health.up, health.fatal) {
                (true, _) => CheckReport::up(),
                (false, false) => CheckReport::down(error()),
                (false, true) => CheckReport::fatal(error()),
            };
            report.details.extend(health.details);
            match outbox_stats(&self.db).await {
                Ok(stats) => {
                    report
                        .details
                        .insert("outbox_pending".into(), json!(stats.pending));
                    report
                        .details
                        .insert("outbox_lag_seconds".into(), json!(stats.lag.as_secs_f64()));
                    if stats.lag > self.max_lag && report.up {
                        report.up = false;
                        report.error = Some(format!(
                            "outbox lag {:.1} s exceeds {} s",
                            stats.lag.as_secs_f64(),
                            self.max_lag.as_secs()
                        ));
                    }
                }
                Err(error) => {
                    report.up = false;
                    report.error = Some(format!("cannot read the outbox: {error}"));
                }
            }
            report
        })
    }
}
