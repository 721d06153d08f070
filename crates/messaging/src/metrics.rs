//! Event metrics, registered once per service registry and shared (cheap clones) by the relay, the
//! transports and every consumer of the service.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GroupLabels {
    pub group: String,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub(crate) published: Counter,
    pub(crate) relayed: Counter,
    pub(crate) relay_failures: Counter,
    pub(crate) consumed: Family<GroupLabels, Counter>,
    pub(crate) duplicates: Family<GroupLabels, Counter>,
    pub(crate) retried: Family<GroupLabels, Counter>,
    pub(crate) dead_lettered: Family<GroupLabels, Counter>,
    pub(crate) handler_duration: Family<GroupLabels, Histogram, fn() -> Histogram>,
    pub(crate) outbox_lag: Gauge<f64, AtomicU64>,
    pub(crate) outbox_pending: Gauge,
    pub(crate) queue_depth: Family<GroupLabels, Gauge>,
    pub(crate) broker_up: Gauge,
}

/// Unregistered metrics, for tools and tests that do not export them.
impl Default for Metrics {
    fn default() -> Self {
        Self {
            published: Counter::default(),
            relayed: Counter::default(),
            relay_failures: Counter::default(),
            consumed: Family::default(),
            duplicates: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            handler_duration: Family::new_with_constructor(
                platform::metrics::latency_histogram as fn() -> Histogram,
            ),
            outbox_lag: Gauge::default(),
            outbox_pending: Gauge::default(),
            queue_depth: Family::default(),
            broker_up: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers every series in `registry` (once per service; clone the handle for more consumers).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "messaging_events_published",
            "Events written to the outbox by this process",
            metrics.published.clone(),
        );
        registry.register(
            "messaging_events_relayed",
            "Outbox events confirmed by the transport",
            metrics.relayed.clone(),
        );
        registry.register(
            "messaging_relay_failures",
            "Relay passes that failed and will be retried",
            metrics.relay_failures.clone(),
        );
        registry.register(
            "messaging_events_consumed",
            "Events handled successfully, by consumer group",
            metrics.consumed.clone(),
        );
        registry.register(
            "messaging_events_duplicates",
            "Redelivered events skipped because the inbox already had them",
            metrics.duplicates.clone(),
        );
        registry.register(
            "messaging_events_retried",
            "Deliveries scheduled for another attempt",
            metrics.retried.clone(),
        );
        registry.register(
            "messaging_events_dead_lettered",
            "Deliveries moved to the dead-letter queue",
            metrics.dead_lettered.clone(),
        );
        registry.register_with_unit(
            "messaging_handler_duration",
            "Time to handle one delivery, inbox and commit included",
            Unit::Seconds,
            metrics.handler_duration.clone(),
        );
        registry.register_with_unit(
            "messaging_outbox_lag",
            "Age of the oldest event not yet relayed",
            Unit::Seconds,
            metrics.outbox_lag.clone(),
        );
        registry.register(
            "messaging_outbox_pending",
            "Events in the outbox not yet relayed",
            metrics.outbox_pending.clone(),
        );
        registry.register(
            "messaging_queue_depth",
            "Deliveries waiting in a consumer group's queue",
            metrics.queue_depth.clone(),
        );
        registry.register(
            "messaging_broker_up",
            "1 while the transport is reachable, 0 while it is down (breaker open)",
            metrics.broker_up.clone(),
        );
        metrics
    }

    pub(crate) fn group(group: &str) -> GroupLabels {
        GroupLabels {
            group: group.to_owned(),
        }
    }

    /// Events written to the outbox so far (as counted by [`crate::Messaging::publish_in_tx`]).
    pub fn published(&self) -> u64 {
        self.published.get()
    }

    pub fn relayed(&self) -> u64 {
        self.relayed.get()
    }

    pub fn consumed(&self, group: &str) -> u64 {
        self.consumed.get_or_create(&Self::group(group)).get()
    }

    pub fn duplicates(&self, group: &str) -> u64 {
        self.duplicates.get_or_create(&Self::group(group)).get()
    }

    pub fn retried(&self, group: &str) -> u64 {
        self.retried.get_or_create(&Self::group(group)).get()
    }

    pub fn dead_lettered(&self, group: &str) -> u64 {
        self.dead_lettered.get_or_create(&Self::group(group)).get()
    }
}
