//! The inventory service's business metrics: reservations (made or refused for lack of stock), the units
//! they hold by warehouse, short lines, import rows applied and rejected, and the stock rows below their
//! reorder point by warehouse.
//!
//! Counters move once the change they count committed (a reservation's transaction, an import batch's);
//! a refused reservation is counted once its refusal is final. The low-stock gauge is not kept up by
//! increments, which would drift: [`refresh_low_stock`] reads it from the database every
//! `inventory.stock_gauge_interval_ms`, one bounded `GROUP BY` over the warehouses.
//!
//! `warehouse_id` labels are bounded by the warehouses table (warehouses are deactivated, never deleted, and
//! a deployment has tens of them, not thousands); every other label is one of a fixed few values.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use uuid::Uuid;

use platform::db::Db;

use crate::models::Reservation;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WarehouseLabel {
    warehouse_id: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// What a saga consumer's transaction did, counted once it committed.
#[derive(Debug)]
pub enum Fact {
    Reserved(Reservation),
    /// Refused; this many lines short.
    Short(usize),
}

/// Handles to the families; cheap to clone.
#[derive(Clone, Debug)]
pub struct InventoryMetrics {
    reservations: Family<OutcomeLabel, Counter>,
    reserved_units: Family<WarehouseLabel, Counter>,
    short_lines: Counter,
    import_rows: Family<ResultLabel, Counter>,
    below_reorder_point: Family<WarehouseLabel, Gauge>,
    /// The warehouses the gauge has a series for, so that one gone from the table loses its series.
    gauged: Arc<Mutex<HashSet<String>>>,
}

const RESERVED: OutcomeLabel = OutcomeLabel {
    outcome: "reserved",
};
const SHORT: OutcomeLabel = OutcomeLabel { outcome: "short" };
const APPLIED: ResultLabel = ResultLabel { result: "applied" };
const REJECTED: ResultLabel = ResultLabel { result: "rejected" };

impl Default for InventoryMetrics {
    fn default() -> Self {
        let metrics = Self {
            reservations: Family::default(),
            reserved_units: Family::default(),
            short_lines: Counter::default(),
            import_rows: Family::default(),
            below_reorder_point: Family::default(),
            gauged: Arc::default(),
        };
        // The fixed label values exist (at 0) from the start, so a rate is defined from the first scrape;
        // the returned guards are dropped at once.
        for outcome in [RESERVED, SHORT] {
            drop(metrics.reservations.get_or_create(&outcome));
        }
        for result in [APPLIED, REJECTED] {
            drop(metrics.import_rows.get_or_create(&result));
        }
        metrics
    }
}

impl InventoryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "inventory_reservations",
            "Reservations made (outcome=reserved) or refused for lack of stock (outcome=short)",
            self.reservations.clone(),
        );
        registry.register(
            "inventory_reserved_units",
            "Units held by the reservations made, by the warehouse they are held in",
            self.reserved_units.clone(),
        );
        registry.register(
            "inventory_reservation_short_lines",
            "Lines of refused reservations that stock could not cover",
            self.short_lines.clone(),
        );
        registry.register(
            "inventory_import_rows",
            "CSV import rows applied or rejected (with a row error)",
            self.import_rows.clone(),
        );
        registry.register(
            "inventory_stock_below_reorder_point",
            "Stock rows (product in a warehouse) whose available quantity is at or below the product's reorder point, by warehouse",
            self.below_reorder_point.clone(),
        );
    }

    /// A reservation that committed.
    pub fn reserved(&self, reservation: &Reservation) {
        self.reservations.get_or_create(&RESERVED).inc();
        for line in &reservation.lines {
            let warehouse = WarehouseLabel {
                warehouse_id: line.warehouse_id.to_string(),
            };
            let units = u64::try_from(line.quantity).unwrap_or_default();
            self.reserved_units.get_or_create(&warehouse).inc_by(units);
        }
    }

    /// A reservation refused because stock could not cover `short_lines` of its lines.
    pub fn short(&self, short_lines: usize) {
        self.reservations.get_or_create(&SHORT).inc();
        self.short_lines.inc_by(short_lines as u64);
    }

    pub fn count(&self, facts: Vec<Fact>) {
        for fact in facts {
            match fact {
                Fact::Reserved(reservation) => self.reserved(&reservation),
                Fact::Short(lines) => self.short(lines),
            }
        }
    }

    /// Import rows of a committed batch (or rows rejected before reaching the database).
    pub fn import_rows(&self, applied: u64, rejected: u64) {
        self.import_rows.get_or_create(&APPLIED).inc_by(applied);
        self.import_rows.get_or_create(&REJECTED).inc_by(rejected);
    }
}

/// Sets the low-stock gauge from the database: one series per warehouse (0 for one without low stock), and
/// none left for a warehouse that is gone. A failed read keeps the last values and is logged.
pub async fn refresh_low_stock(db: &Db, metrics: &InventoryMetrics) {
    // One row per warehouse; the partial index `stock_levels_low_stock_idx` covers the rows that count.
    let query = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT w.id, count(s.id) FROM warehouses w \
         LEFT JOIN stock_levels s ON s.warehouse_id = w.id AND s.low_stock \
         GROUP BY w.id",
    )
    .fetch_all(db.pool());
    match db.timed("inventory.low_stock_by_warehouse", query).await {
        Ok(rows) => {
            // Set first, then drop the series of warehouses no longer there (never clear and refill: a
            // scrape in between would see no series at all).
            let gauge = &metrics.below_reorder_point;
            let mut now = HashSet::with_capacity(rows.len());
            for (warehouse, count) in rows {
                let warehouse_id = warehouse.to_string();
                gauge
                    .get_or_create(&WarehouseLabel {
                        warehouse_id: warehouse_id.clone(),
                    })
                    .set(count);
                now.insert(warehouse_id);
            }
            let mut gauged = metrics
                .gauged
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for warehouse_id in gauged.difference(&now) {
                gauge.remove(&WarehouseLabel {
                    warehouse_id: warehouse_id.clone(),
                });
            }
            *gauged = now;
        }
        Err(error) => tracing::warn!(
            error = &error as &dyn std::error::Error,
            "reading the stock below reorder point failed"
        ),
    }
}
