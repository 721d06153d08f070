//! Database access. Every query is timed under a stable `orders.<name>` for the `db_query_duration` metric.
//! Lock order: an order row before any of its shipment rows.

pub mod orders;
pub mod shipments;
