//! Event consumers: what the inventory service does when another service's events arrive.

pub mod order_saga;
