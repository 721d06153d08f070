//! The orders service's business metrics: orders created and the statuses they reach (confirmed, rejected,
//! cancelled, expired, …), how long inventory took to confirm them, shipments by status and deliveries with
//! and without proof. Use cases note what happened in the transaction's [`Tally`] (through the
//! [`Recorder`](crate::events::Recorder) that records the change's events); the runner of the transaction
//! counts the notes once it committed, so a rolled-back change counts nothing.
//!
//! Every label value is a status name of the service's own status machines: the series are bounded and
//! created at start (at 0), so a rate is defined from the first scrape.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::domain::{OrderStatus, ShipmentStatus};

/// Seconds from an order's creation to its confirmation: the saga's round trip through the broker and
/// inventory normally takes well under a second, a backlog minutes, and the pending TTL bounds it.
const CONFIRMATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// Something a transaction did that the business metrics count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fact {
    OrderCreated,
    /// An order moved to this status.
    OrderStatus(OrderStatus),
    /// An order was confirmed this long after it was created.
    OrderConfirmedAfter(Duration),
    /// A shipment was created (in its first status).
    ShipmentCreated,
    /// A shipment moved to this status.
    ShipmentStatus(ShipmentStatus),
    /// A shipment was delivered, with or without a proof of delivery on record.
    Delivered {
        proof: bool,
    },
}

/// The notes of one transaction.
pub type Tally = platform::tally::Tally<Fact>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    to: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProofLabel {
    proof: &'static str,
}

fn proof_label(proof: bool) -> ProofLabel {
    ProofLabel {
        proof: if proof { "with" } else { "without" },
    }
}

/// Handles to the families; cheap to clone.
#[derive(Clone, Debug)]
pub struct OrderMetrics {
    created: Counter,
    status_changes: Family<StatusLabel, Counter>,
    confirmation: Histogram,
    shipments: Family<StatusLabel, Counter>,
    deliveries: Family<ProofLabel, Counter>,
}

impl Default for OrderMetrics {
    fn default() -> Self {
        let metrics = Self {
            created: Counter::default(),
            status_changes: Family::default(),
            confirmation: Histogram::new(CONFIRMATION_BUCKETS.iter().copied()),
            shipments: Family::default(),
            deliveries: Family::default(),
        };
        // Creating a series is all that is wanted here: the returned guard is dropped at once.
        for to in OrderStatus::NAMES {
            drop(metrics.status_changes.get_or_create(&StatusLabel { to }));
        }
        for to in ShipmentStatus::NAMES {
            drop(metrics.shipments.get_or_create(&StatusLabel { to }));
        }
        for proof in [true, false] {
            drop(metrics.deliveries.get_or_create(&proof_label(proof)));
        }
        metrics
    }
}

impl OrderMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "orders_created",
            "Orders placed (committed)",
            self.created.clone(),
        );
        registry.register(
            "orders_status_changes",
            "Orders that moved to a status, by the status (confirmed, rejected, cancelled, expired, ...)",
            self.status_changes.clone(),
        );
        registry.register_with_unit(
            "orders_confirmation_duration",
            "Time from an order's creation to its confirmation by the saga",
            Unit::Seconds,
            self.confirmation.clone(),
        );
        registry.register(
            "orders_shipment_status_changes",
            "Shipments created (to=pending) or moved to a status, by the status",
            self.shipments.clone(),
        );
        registry.register(
            "orders_deliveries",
            "Shipments delivered, with or without a proof of delivery",
            self.deliveries.clone(),
        );
    }

    /// Counts what a committed transaction did.
    pub fn count(&self, facts: Vec<Fact>) {
        for fact in facts {
            match fact {
                Fact::OrderCreated => {
                    self.created.inc();
                }
                Fact::OrderStatus(to) => {
                    self.status_changes
                        .get_or_create(&StatusLabel { to: to.as_str() })
                        .inc();
                }
                Fact::OrderConfirmedAfter(elapsed) => {
                    self.confirmation.observe(elapsed.as_secs_f64());
                }
                Fact::ShipmentCreated => {
                    let to = ShipmentStatus::Pending.as_str();
                    self.shipments.get_or_create(&StatusLabel { to }).inc();
                }
                Fact::ShipmentStatus(to) => {
                    self.shipments
                        .get_or_create(&StatusLabel { to: to.as_str() })
                        .inc();
                }
                Fact::Delivered { proof } => {
                    self.deliveries.get_or_create(&proof_label(proof)).inc();
                }
            }
        }
    }
}
