//! Breaker metrics, registered once per registry and shared by every breaker in it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    upstream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    upstream: String,
    from: String,
    to: String,
}

/// `circuit_breaker_state` (0 closed, 1 open, 2 half-open), `circuit_breaker_transitions_total` and
/// `circuit_breaker_rejections_total`, labelled by the protected service.
#[derive(Clone)]
pub struct BreakerMetrics {
    state: Family<ServiceLabels, Gauge>,
    transitions: Family<TransitionLabels, Counter>,
    rejections: Family<ServiceLabels, Counter>,
}

impl BreakerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            state: Family::default(),
            transitions: Family::default(),
            rejections: Family::default(),
        };
        registry.register(
            "circuit_breaker_state",
            "Breaker state: 0 closed, 1 open, 2 half-open",
            metrics.state.clone(),
        );
        registry.register(
            "circuit_breaker_transitions",
            "Breaker state changes",
            metrics.transitions.clone(),
        );
        registry.register(
            "circuit_breaker_rejections",
            "Calls refused without being made because the breaker was open",
            metrics.rejections.clone(),
        );
        metrics
    }

    pub(super) fn set_state(&self, service: &str, value: i64) {
        self.state
            .get_or_create(&ServiceLabels {
                upstream: service.to_owned(),
            })
            .set(value);
    }

    pub(super) fn transition(&self, service: &str, from: &str, to: &str) {
        self.transitions
            .get_or_create(&TransitionLabels {
                upstream: service.to_owned(),
                from: from.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }

    /// The rejection counter of one service, looked up once by its breaker rather than on every
    /// rejection.
    pub(super) fn rejections(&self, service: &str) -> Counter {
        self.rejections
            .get_or_create(&ServiceLabels {
                upstream: service.to_owned(),
            })
            .clone()
    }
}
